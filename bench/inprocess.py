"""CPU per V2 request inside one process: the layers of the hot path, without a server.

For each case of ``bench/cases.py`` it times, in turns, one request of each kind and prints
the CPU microseconds per request (median over the rounds):

- raw call: the loaded model (handler and runtime) on ready arrays, as ``bench/raw.py``;
- service: ``mlapp.predict``'s service on the same arrays (routing, validation, metrics);
- V2 fast path: the V2 body through ``mlapp.wsgi``'s application with
  ``V2_SKIP_MIDDLEWARE`` (``mlapp.api.v2.fastpath``);
- gRPC handler: the serialized ModelInfer request (``bench/grpc_load.py``'s, inputs raw)
  through the gRPC service's handler (``mlapp.api.grpc.server``), parsed to answer bytes,
  without the transport;
- V2 through Django: the same body through Django's handler, URL resolving and the example
  project's middleware.

It sets up its own database in a fresh folder (SQLite, ``setup_demo``), pins nothing: run it
under ``taskset -c 0`` for steadier figures. ``MLAPP_THREADS=1`` as the servers run.
``--stub-model`` replays each model's first answer instead of running it, leaving what the
path around the model costs.

    .venv/bin/python bench/inprocess.py [--cases iris,digits] [--requests 2000] [--rounds 5]
        [--stub-model]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure() -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        MLAPP_VAR_DIR=tempfile.mkdtemp(prefix="mlapp-bench-inprocess-"),
        MLAPP_THREADS="1",
        DJANGO_DEBUG="0",
        # The plain application is built here and wrapped below, so both paths can be timed.
        MLAPP_V2_SKIP_MIDDLEWARE="0",
    )
    os.environ.pop("MLAPP_DB", None)
    sys.path.insert(0, str(ROOT))


def environ(path: str, body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }


def wsgi_call(app, path: str):
    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise SystemExit(f"{path}: {status}")

    def call(body: bytes) -> None:
        result = app(environ(path, body), start_response)
        b"".join(result)
        if hasattr(result, "close"):
            result.close()

    return call


def cpu_per_call(call, items: list, count: int) -> float:
    """CPU microseconds per call of ``call`` over ``count`` calls cycling through ``items``."""
    started = time.process_time()
    for i in range(count):
        call(items[i % len(items)])
    return 1e6 * (time.process_time() - started) / count


def stub_runtime(runtime) -> None:
    """Make ``runtime.run`` answer its first result again, without running the model."""
    run = runtime.run
    answers: list = []

    def replay(inputs):
        if not answers:
            answers.append(run(inputs))
        return answers[0]

    runtime.run = replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="iris,digits,minilm")
    parser.add_argument("--requests", type=int, default=2000, help="per round, iris and digits")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--stub-model",
        action="store_true",
        help="replace each model's runtime call by its first answer, replayed: what the path "
        "costs around the model (handler, codec, service), the model itself left out",
    )
    args = parser.parse_args()
    configure()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("setup_demo", "--no-admin", stdout=open(os.devnull, "w"))  # noqa: SIM115

    from bench.cases import cases
    from bench.grpc_load import METHOD
    from bench.grpc_load import requests as grpc_requests
    from mlapp.api.grpc.server import InferenceServicer, handlers
    from mlapp.api.v2 import fastpath
    from mlapp.serving.inputs import named
    from mlapp.serving.service import service
    from mlapp.wsgi import get_wsgi_application

    django_app = get_wsgi_application()
    fast_app = fastpath.SkipMiddleware(django_app, fastpath.infer_pattern())
    grpc_handler = handlers(InferenceServicer())[METHOD]
    selected = [cases()[name] for name in args.cases.split(",")]
    rows = []
    for case in selected:
        path = f"/v2/models/{case.model}/infer"
        loaded = service.model(case.model)
        if args.stub_model:
            stub_runtime(loaded.runtime)
        kinds = {
            "raw call": (loaded.run, case.arrays),
            "service": (
                lambda arrays, m=case.model: service.predict(m, named(arrays)),
                case.arrays,
            ),
            "V2 fast path": (wsgi_call(fast_app, path), case.bodies),
            "V2 through Django": (wsgi_call(django_app, path), case.bodies),
            "gRPC handler": (lambda raw: grpc_handler(raw, ()), grpc_requests(case.name)),
        }
        count = args.requests if case.model != "minilm" else max(args.requests // 50, 20)
        for call, items in kinds.values():  # warm-up
            cpu_per_call(call, items, max(count // 10, 5))
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind, (call, items) in kinds.items():
                samples[kind].append(cpu_per_call(call, items, count))
        medians = {kind: statistics.median(values) for kind, values in samples.items()}
        rows.append((case.name, medians))
        print(f"{case.name}: " + ", ".join(f"{k} {v:.0f} µs" for k, v in medians.items()))

    print()
    stubbed = ", the model's runtime call stubbed out" if args.stub_model else ""
    print(
        f"CPU µs per request, median of {args.rounds} rounds, MLAPP_THREADS=1, one process"
        + stubbed
    )
    print()
    header = [
        "case", "raw call", "service", "V2 fast path", "V2 through Django", "Django's share",
        "gRPC handler",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("| --- " + "| ---: " * (len(header) - 1) + "|")
    for name, m in rows:
        share = m["V2 through Django"] - m["V2 fast path"]
        print(
            f"| {name} | {m['raw call']:.0f} | {m['service']:.0f} | {m['V2 fast path']:.0f} | "
            f"{m['V2 through Django']:.0f} | {share:.0f} | {m['gRPC handler']:.0f} |"
        )


if __name__ == "__main__":
    main()
