"""``manage.py mlapp_worker``: a Celery worker for batch jobs, for any project.

    python manage.py mlapp_worker                 # one process per available core
    python manage.py mlapp_worker --concurrency 2

Runs the Celery app batch jobs are sent through (:func:`mlapp.batch.jobs.celery_app`: the
project's own app when it has one, else :mod:`mlapp.celery`'s) with the prefork pool, each
process given an equal share of the cores for torch / ONNX Runtime. Needs a broker
(``CELERY_BROKER_URL``); without one, batch jobs run in the web process and no worker is
needed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlapp import launcher
from mlapp.batch import jobs
from mlapp.conf import settings as mlapp_settings


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(value)
    return int(value)


class Command(BaseCommand):
    help = (
        "Run a Celery worker for mlapp's batch jobs: the project's Celery app or mlapp's, "
        "one prefork process per available core, intra-op threads shared out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            help="Worker processes (default: one per core this process may run on).",
        )
        parser.add_argument("--loglevel", default="INFO", help="Celery's log level.")
        parser.add_argument(
            "--queues", help="Comma-separated queues to consume (default: Celery's)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        app = jobs.celery_app()
        if app is None:
            raise CommandError("Celery is not installed: pip install 'mlapp[celery]'.")
        if not app.conf.broker_url:
            raise CommandError(
                "No Celery broker is configured: set CELERY_BROKER_URL (for example "
                "redis://127.0.0.1:6379/0). Without one, batch jobs run in the web process "
                "and no worker is needed."
            )
        concurrency = options["concurrency"] or launcher.cores()
        if mlapp_settings.THREADS is None:
            launcher.use_intra_op_threads(max(1, launcher.cores() // concurrency))
        argv = [
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            f"--loglevel={options['loglevel']}",
        ]
        if options["queues"]:
            argv.append(f"--queues={options['queues']}")
        self.stdout.write(
            f"mlapp_worker: Celery app {app.main!r}, {concurrency} process(es), broker "
            f"{app.conf.broker_url.split('@')[-1]}"
        )
        self.stdout.flush()
        app.worker_main(argv)
