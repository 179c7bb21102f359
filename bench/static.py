"""Static files in production: granian's static mount against WhiteNoise, same run.

``manage.py mlapp_serve`` mounts ``STATIC_ROOT`` in granian (Rust, no Python per file) unless
the project serves its static files with WhiteNoise (a Django middleware). This measures both
on one core, with wrk on the other: a stylesheet of the admin (about 20 KB) and an image
(under 1 KB), and what the middleware costs a request it does not serve (native predict,
iris, batch 1; the raw model call is measured in the same run for scale).

    .venv/bin/python bench/static.py [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    SERVERS,
    Cell,
    RawCall,
    Server,
    copy_database,
    django_env,
    free_port,
    log,
    manage,
    measure,
)

SETUPS = {
    "granian mount": "project.settings",
    "WhiteNoise": "bench.whitenoise_settings",
}
GETS = {
    "admin CSS (base.css)": "/static/admin/css/base.css",
    "admin icon (svg)": "/static/admin/img/icon-yes.svg",
}
PREDICT = "/api/mlapp/models/iris/predict"
PREDICT_BODIES = [{"inputs": [[5.1, 3.5, 1.4, 0.2]]}, {"inputs": [[6.3, 3.3, 6.0, 2.5]]}]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian/Ubuntu)")
    server_core, load_core = sorted(os.sched_getaffinity(0))[:2]
    work = Path(tempfile.mkdtemp(prefix="mlapp-bench-static-"))
    bodies = work / "predict.jsonl"
    bodies.write_text("".join(json.dumps(b) + "\n" for b in PREDICT_BODIES))
    rows: list[tuple[str, str, int, Cell]] = []
    try:
        log(f"setting up the demo models in {work}")
        manage(work / "var", "migrate", "--noinput", "-v0")
        manage(work / "var", "setup_demo", "--no-admin")
        with ExitStack() as stack:
            servers = {}
            for index, (label, settings_module) in enumerate(SETUPS.items()):
                var = copy_database(work / "var", work / f"var-{index}")
                env = django_env(var, DJANGO_SETTINGS_MODULE=settings_module)
                _collectstatic(env)
                port = free_port()
                env.update(HOST="127.0.0.1", PORT=str(port))
                server = Server(
                    label,
                    ["taskset", "-c", str(server_core), *SERVERS["granian"]],
                    env,
                    port,
                    work / f"server-{index}.log",
                )
                stack.callback(server.stop)
                servers[label] = server
            for server in servers.values():
                server.wait_ready()
            raw = RawCall(server_core, work / "var", ["iris"], args.duration)
            stack.callback(raw.stop)
            for what, path in GETS.items():
                for c in args.concurrency:
                    for label, server in servers.items():
                        cell = measure(server, load_core, Path("-"), path, c, args)
                        rows.append((what, label, c, cell))
            for label, server in servers.items():
                cell = measure(server, load_core, bodies, PREDICT, 1, args)
                rows.append(("native predict, iris", label, 1, cell))
            raw_call = raw.measure("iris", args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(_table(rows, raw_call))
    print(f"server on core {server_core}, wrk on core {load_core}; {args.duration:g} s per cell")


def _collectstatic(env: dict[str, str]) -> None:
    import subprocess

    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def _table(rows: list[tuple[str, str, int, Cell]], raw_call: dict) -> str:
    lines = [
        "| request | served by | c | req/s | p50 ms | p99 ms | CPU µs/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for what, label, c, cell in rows:
        cpu = f"{cell.cpu_us_per_request:.0f}" if cell.cpu_us_per_request is not None else "-"
        lines.append(
            f"| {what} | {label} | {c} | {cell.requests_per_s:,.0f} | {cell.p50_ms:.2f} | "
            f"{cell.p99_ms:.2f} | {cpu} | {cell.errors} |"
        )
    lines.append(f"\nraw model call, iris, same core: {_raw(raw_call)}")
    return "\n".join(lines)


def _raw(result: dict) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"{time.monotonic() - started:.0f} s in all")
