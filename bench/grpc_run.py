"""The gRPC rows of the benchmark: mlapp's gRPC against KServe 0.21's, on the same artifacts.

Sets up a fresh database with the demo models, starts ``mlapp_serve --grpc-port`` (the
production server: gRPC from its worker, beside HTTP; batching off, the default, or as
``--batching`` says) and KServe's model server with its gRPC server
(bench/kserve_server.py, from ``.venv-kserve``), both pinned to one core, and drives each
from the other core: ModelInfer with the inputs in ``raw_input_contents`` (tritonclient's
default), batch 1, at each concurrency, the servers taking turns. mlapp's REST path (OIP V2
JSON by wrk, as bench/run.py measures it) is measured beside, for the latency at c=1.

The model's own call, two ways: "raw µs", timed back to back on the server core after each
repeat, the servers idle (``bench/raw.py``: the handler's pre- and post-processing and the
runtime, on the inputs the load sends); "in mlapp µs", the same calls as mlapp's server
measured them during its runs at c=1 (``mlapp_model_compute_seconds`` from its /metrics, wall
time: at c=32 calls sharing the core would count each other's), colder there, between
requests. "ceiling" is the rate of one core doing nothing but those in-server
calls over KServe's req/s: what mlapp ÷ KServe would be if everything around the model cost
nothing. A target above it cannot be met by a server on that artifact, runtime and core.

The load (``--loader``): ``h2load`` (nghttp2's C load generator, Debian's nghttp2-client; the
default when installed) posts the case's first request, framed as gRPC, over connections kept
open, as wrk does for REST, so that a latency at c=1 is the server's and not a Python
client's; it does not read gRPC's status trailer, so every answer is checked otherwise: one
call through grpcio before and after, and the answers' bytes counted (a refused call answers
no message). ``python``: bench/grpc_load.py (asyncio over grpc.aio, each answer's status
read; the bodies of every row of the case), whose own per-call cost at c=1 is about the
server's.

    make bench-grpc                  # about five minutes
    .venv/bin/python bench/grpc_run.py --help
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import cases  # noqa: E402
from bench.grpc_load import METHOD, percentiles  # noqa: E402
from bench.grpc_load import requests as grpc_requests  # noqa: E402
from bench.run import (  # noqa: E402
    KSERVE_PYTHON,
    PYTHON,
    SERVERS,
    Cell,
    RawCall,
    Server,
    cpu_seconds,
    django_env,
    free_port,
    log,
    manage,
    measure,
    set_batching,
)


def grpc_cell(server: Server, grpc_port: int, core: int, case: str, c: int, args) -> Cell:
    command = [
        "taskset", "-c", str(core), PYTHON, str(ROOT / "bench/grpc_load.py"),
        f"127.0.0.1:{grpc_port}", case, "--concurrency", str(c),
        "--connections", str(min(c, args.connections)),
        "--seconds", str(args.duration), "--warmup", str(args.warmup),
    ]  # fmt: skip
    cpu_before = cpu_seconds(server.process.pid)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"grpc_load failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The server's CPU over the warm-up and the run: per request of both.
    cpu = cpu_seconds(server.process.pid) - cpu_before
    total = result["requests"] * (1 + args.warmup / args.duration)
    if result["errors"]:
        log(f"{server.label}: {result['errors']} errors, first: {result['first_error']}")
    log(f"  ({time.monotonic() - started:.1f} s)")
    return Cell(
        requests_per_s=result["requests"] / result["seconds"],
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cpu_us_per_request=1e6 * cpu / max(total, 1),
        errors=result["errors"],
    )


def grpc_answer(port: int, body: bytes) -> bytes:
    """The answer to one ModelInfer call (serialized ``body``); raises unless it is OK."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(METHOD)(body, timeout=30)


def h2load(core: int, port: int, body: Path, c: int, connections: int, seconds: float, log=None):
    streams = math.ceil(c / connections)
    command = [
        "taskset", "-c", str(core), "h2load", "-c", str(connections), "-m", str(streams),
        "-D", str(max(1, round(seconds))), "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(["--log-file", str(log)] if log else []),
        f"http://127.0.0.1:{port}{METHOD}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"h2load failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def h2load_cell(
    server: Server, grpc_port: int, core: int, case: str, c: int, args, work: Path
) -> Cell:
    """One run of h2load at ``c`` calls in flight (``c`` over at most ``--connections``
    connections), after a warm-up run; latencies from its per-request log."""
    message = grpc_requests(case)[0]
    body = work / f"{case}.grpc"
    body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)
    answer = grpc_answer(grpc_port, message)
    connections = min(c, args.connections)
    h2load(core, grpc_port, body, c, connections, args.warmup)
    log_file = work / "h2load.log"
    log_file.unlink(missing_ok=True)
    cpu_before = cpu_seconds(server.process.pid)
    output = h2load(core, grpc_port, body, c, connections, args.duration, log_file)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    if grpc_answer(grpc_port, message) != answer:
        raise SystemExit(f"{server.label}: the answer to {case} changed during the run")
    rows = [line.split("\t") for line in log_file.read_text().splitlines()]
    count = max(len(rows), 1)
    p50_us, p99_us = percentiles([int(row[2]) for row in rows])
    # HTTP statuses other than 200, and calls answered without the OK answer's message
    # (h2load counts the bytes of the DATA frames it received: 5 + the message per answer).
    data = int(re.search(r"\((\d+)\) data", output).group(1))
    not_ok = sum(row[1] != "200" for row in rows) + max(0, count - data // (5 + len(answer)))
    return Cell(
        requests_per_s=len(rows) / args.duration,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        cpu_us_per_request=1e6 * cpu / count,
        errors=not_ok,
    )


def model_seconds(server: Server, model: str) -> tuple[float, float]:
    """mlapp's own measure of its calls of ``model`` so far, from its /metrics: (seconds,
    calls) of the model's compute (the handler and the runtime, as ``bench/raw.py`` times)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "mlapp_model_compute_seconds":
            for sample in family.samples:
                kind = sample.name.rpartition("_")[2]
                if kind in found and sample.labels.get("model") == model:
                    found[kind] = sample.value
    return found["sum"], found["count"]


def _median(cells: list[Cell]) -> Cell:
    return sorted(cells, key=lambda cell: cell.requests_per_s)[len(cells) // 2]


def run(args, work: Path, server_core: int, load_core: int) -> dict:
    var = work / "var"
    manage(var, "migrate", "--noinput", "-v0")
    manage(var, "setup_demo", "--no-admin")
    if args.batching != "off":
        set_batching(var, args.batching)
    results: dict = {}
    with ExitStack() as stack:
        port, grpc_port = free_port(), free_port()
        mlapp = Server(
            "mlapp gRPC",
            ["taskset", "-c", str(server_core), *SERVERS["granian"]],
            django_env(
                var,
                port,
                GRPC_PORT=str(grpc_port),
                # project/settings.py reads it into MLAPP["GRPC_THREADS"].
                **({"MLAPP_GRPC_THREADS": str(args.grpc_threads)} if args.grpc_threads else {}),
            ),
            port,
            work / "mlapp.log",
        )
        stack.callback(mlapp.stop)
        kserve_port, kserve_grpc = free_port(), free_port()
        kserve = Server(
            "KServe gRPC",
            [
                "taskset", "-c", str(server_core), str(KSERVE_PYTHON),
                str(ROOT / "bench/kserve_server.py"), "--enable-grpc",
                "--http_port", str(kserve_port), "--grpc_port", str(kserve_grpc),
            ],
            {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")},
            kserve_port,
            work / "kserve.log",
        )  # fmt: skip
        stack.callback(kserve.stop)
        mlapp.wait_ready()
        kserve.wait_ready()
        selected = {name: cases()[name] for name in args.cases}
        models = sorted({case.model for case in selected.values()})
        raw = RawCall(server_core, var, models, args.raw_seconds)
        stack.callback(raw.stop)
        targets = [(mlapp, grpc_port), (kserve, kserve_grpc)]
        # The model's call alone: h2load replays the case's first request, the python
        # loader all of them.
        first_only = args.loader == "h2load"
        for case in args.cases:
            model = selected[case].model
            bodies = work / f"{case}.bodies"
            bodies.write_bytes(b"\n".join(selected[case].bodies) + b"\n")
            for c in args.concurrency:
                runs: dict[str, list[Cell]] = {"mlapp gRPC": [], "KServe gRPC": [], "REST": []}
                raws: list[dict] = []
                in_server: list[float] = []  # µs a model call took inside mlapp's server
                for repeat in range(args.repeat):
                    order = targets[repeat % 2 :] + targets[: repeat % 2]
                    for server, grpc in order:
                        # At c=1 only: calls overlapping on one core would count each
                        # other's time (the metric is wall time).
                        timed = server is mlapp and c == 1
                        if timed:
                            before = model_seconds(mlapp, model)
                        if args.loader == "h2load":
                            cell = h2load_cell(server, grpc, load_core, case, c, args, work)
                        else:
                            cell = grpc_cell(server, grpc, load_core, case, c, args)
                        runs[server.label].append(cell)
                        if timed:
                            after = model_seconds(mlapp, model)
                            calls = max(after[1] - before[1], 1)
                            in_server.append(1e6 * (after[0] - before[0]) / calls)
                    path = f"/v2/models/{model}/infer"
                    runs["REST"].append(measure(mlapp, load_core, bodies, path, c, args))
                    # On the same core, the servers idle.
                    raws.append(raw.measure(model, args.raw_seconds, first=first_only))
                raws.sort(key=lambda r: r["calls_per_s"])
                results[f"raw|{case}|{c}"] = raw_median = raws[len(raws) // 2]
                if in_server:
                    results[f"in mlapp|{case}"] = {"us": sorted(in_server)[len(in_server) // 2]}
                for label, cells in runs.items():
                    cell = _median(cells)
                    results[f"{label}|{case}|{c}"] = vars(cell)
                    log(
                        f"{label:12} {case:8} c={c:<3} {cell.requests_per_s:8.0f} req/s  "
                        f"p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:6.2f} ms  "
                        f"cpu {cell.cpu_us_per_request:6.0f} us/req  errors {cell.errors}"
                    )
                inside = results.get(f"in mlapp|{case}", {}).get("us", math.nan)
                log(
                    f"model call   {case:8} c={c:<3} raw {1e6 / raw_median['calls_per_s']:8.0f} µs"
                    f"  in mlapp (c=1) {inside:8.0f} µs"
                )
    return results


def table(args, results: dict) -> str:
    header = [
        "model", "c", "mlapp gRPC req/s", "p50 ms", "p99 ms", "CPU µs",
        "KServe gRPC req/s", "p50 ms", "p99 ms", "CPU µs", "mlapp÷KServe",
        "raw µs", "in mlapp µs (c=1)", "ceiling", "mlapp REST req/s", "REST p50 ms",
    ]  # fmt: skip
    rows = []
    for case in args.cases:
        for c in args.concurrency:
            m, k, r, raw = (
                results[f"{label}|{case}|{c}"]
                for label in ("mlapp gRPC", "KServe gRPC", "REST", "raw")
            )
            inside = results.get(f"in mlapp|{case}", {}).get("us", math.nan)
            rows.append([
                case, str(c),
                f"{m['requests_per_s']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
                f"{m['cpu_us_per_request']:.0f}",
                f"{k['requests_per_s']:.0f}", f"{k['p50_ms']:.2f}", f"{k['p99_ms']:.2f}",
                f"{k['cpu_us_per_request']:.0f}",
                f"{m['requests_per_s'] / k['requests_per_s']:.2f}",
                f"{1e6 / raw['calls_per_s']:.0f}", f"{inside:.0f}",
                f"{1e6 / inside / k['requests_per_s']:.2f}",
                f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.2f}",
            ])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    errors = {key: cell["errors"] for key, cell in results.items() if cell.get("errors")}
    if errors:
        lines.append(f"ERRORS: {errors}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="iris,digits,minilm")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--duration", type=float, default=3, help="seconds per run of a cell")
    parser.add_argument("--warmup", type=float, default=1, help="seconds before each run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median shown")
    parser.add_argument(
        "--connections", type=int, default=4, help="channels the load keeps open (at most c)"
    )
    parser.add_argument(
        "--loader",
        choices=("h2load", "python"),
        default="h2load" if shutil.which("h2load") else "python",
        help="h2load (C, the default when installed) or bench/grpc_load.py (asyncio)",
    )
    parser.add_argument(
        "--raw-seconds", type=float, default=2.0, help="seconds of raw calls after each repeat"
    )
    parser.add_argument(
        "--grpc-threads",
        type=int,
        help="MLAPP['GRPC_THREADS'] of mlapp's server (default: the setting's default, 8)",
    )
    parser.add_argument(
        "--batching",
        default="off",
        help="mlapp's micro-batching for every model: off (the default, as shipped), on, or "
        "on@KEY=VALUE@... (bench/run.py's --batching); KServe's Python server batches nothing",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    args.cases = args.cases.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian/Ubuntu)")
    if not KSERVE_PYTHON.exists():
        raise SystemExit("KServe's environment is missing: make kserve-venv")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("The benchmark needs two cores: one for the servers, one for the load.")
    server_core, load_core = cores[0], cores[1]
    started = time.monotonic()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mlapp-bench-grpc-"))
    try:
        results = run(args, work, server_core, load_core)
    finally:
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table(args, results))
    print(
        f"servers on core {server_core}, load on core {load_core} ({args.loader}); "
        f"mlapp's gRPC threads {args.grpc_threads or 'default'}, batching {args.batching}; "
        f"{args.duration:g} s per run, "
        f"median of {args.repeat}; load average before {load_before[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f}; {time.monotonic() - started:.0f} s in all"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
