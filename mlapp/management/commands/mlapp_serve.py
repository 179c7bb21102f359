"""``manage.py mlapp_serve``: the production web server (granian), for any project.

    python manage.py collectstatic --noinput
    python manage.py mlapp_serve --host 0.0.0.0 --port 8000

Workers: one per core this process may run on; the models are loaded once, before the fork,
through the project's ``WSGI_APPLICATION``; a dead worker is replaced. :mod:`mlapp.launcher`
says how and why.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp import launcher


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(value)
    return int(value)


class Command(BaseCommand):
    help = (
        "Serve the project in production: granian, the models loaded before the workers "
        "fork, workers sized from the CPU affinity, dead workers replaced, metrics over all "
        "workers, collected static files served."
    )
    # Checked once, in the run that serves (the command executes itself again first).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind.")
        parser.add_argument("--port", type=int, default=8000, help="Port to bind.")
        parser.add_argument(
            "--workers",
            type=_positive_int,
            help="Worker processes (default: $WEB_WORKERS, else one per available core).",
        )
        parser.add_argument(
            "--threads",
            type=_positive_int,
            help=f"Request threads per worker (default: $WEB_THREADS, else "
            f"{launcher.DEFAULT_THREADS}).",
        )
        parser.add_argument(
            "--intra-op-threads",
            type=_positive_int,
            help="torch / ONNX Runtime threads per worker (default: $MLAPP_THREADS, else "
            "MLAPP['THREADS'], else available cores / workers).",
        )

        parser.add_argument(
            "--grpc-port",
            type=int,
            help="Serve the Open Inference Protocol over gRPC on this port too, from every "
            "worker (default: $GRPC_PORT, else MLAPP['GRPC_PORT']; none when unset).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = launcher.ServeConfig.build(
                host=options["host"],
                port=options["port"],
                workers=options["workers"],
                threads=options["threads"],
                intra_op_threads=options["intra_op_threads"],
                grpc_port=options["grpc_port"],
            )
        except launcher.LaunchError as exc:
            raise CommandError(str(exc)) from exc
        if not launcher.is_prepared():
            launcher.prepare_metrics_dir()
            launcher.run_again()  # does not return
        self.check(display_num_errors=False)
        self.stdout.write(
            f"mlapp_serve: http://{config.host}:{config.port}/, {config.workers} worker(s) x "
            f"{config.threads} thread(s), {config.intra_op_threads} intra-op thread(s) each"
            + (f"; gRPC on {config.host}:{config.grpc_port}" if config.grpc_port else "")
        )
        try:
            launcher.serve(config)
        except launcher.LaunchError as exc:
            raise CommandError(str(exc)) from exc
