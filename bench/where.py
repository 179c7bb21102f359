"""Where a request's CPU goes: the production server against the raw model call, by library.

``bench/run.py`` gives the server's CPU time per request; this splits it. It starts
``make serve``'s configuration (granian, one worker) and ``bench/raw.py`` on one core, then,
in turns, records each with ``perf record`` (Linux perf: ``apt-get install linux-perf``, and
the right to profile other processes) while wrk loads the server or the raw loop calls the
model, and prints per request (server) and per call (raw) the CPU time spent in each shared
library: ONNX Runtime or torch, the Python interpreter, the kernel (sockets, thread switches),
libc (malloc, memcpy), granian's HTTP side, the tokenizer, orjson, numpy. The last column is
what the server pays over the raw call for the same input.

Interpreting it: a library's share of the samples times the CPU time sampled, divided by the
requests answered (or calls made) while recording, the median over the rounds. The two sides
are recorded one right after the other, since this machine's speed drifts from minute to minute.

    .venv/bin/python bench/where.py [--cases minilm] [--concurrency 1,32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cases import cases
from bench.run import (
    SERVERS,
    RawCall,
    Server,
    descendants,
    django_env,
    free_port,
    log,
    manage,
    wrk,
)

#: Shared objects -> the name a row gets (the first pattern that matches).
COMPONENTS = [
    (r"onnxruntime", "ONNX Runtime"),
    (r"libtorch|libc10|libgomp|libiomp", "torch"),
    (r"libpython", "Python interpreter"),
    (r"\[kernel", "kernel"),
    (r"^libc\.so|^libm\.so|ld-linux", "libc"),
    (r"_granian", "granian"),
    (r"tokenizers", "tokenizers"),
    (r"orjson", "orjson"),
    (r"_multiarray|numpy", "numpy"),
]
OTHER = "other"


def component(dso: str) -> str:
    for pattern, name in COMPONENTS:
        if re.search(pattern, dso):
            return name
    return OTHER


def record(pids: list[int], output: Path) -> subprocess.Popen:
    """``perf record`` of ``pids`` until :func:`stop_recording`."""
    # cpu-clock, whose event count is in nanoseconds (the hardware "cycles" would count cycles).
    command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
               "-p", ",".join(map(str, pids)), "-o", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached before the load starts (idle processes add no samples)
    if process.poll() is not None:
        raise SystemExit(f"perf record failed: {process.stderr.read().decode()[-2000:]}")
    return process


def stop_recording(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def seconds_by_component(data: Path) -> dict[str, float]:
    """CPU seconds sampled in each component of a ``perf record`` file."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Event count \(approx\.\): (\d+)", report)
    if match is None:
        raise SystemExit(f"perf recorded no samples in {data}")
    sampled = int(match.group(1)) / 1e9  # cpu-clock events count nanoseconds
    totals: dict[str, float] = {}
    for line in report.splitlines():
        row = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
        if row:
            name = component(row.group(2))
            totals[name] = totals.get(name, 0.0) + float(row.group(1)) / 100 * sampled
    return totals


TOTAL = "total"


def per_item(seconds: dict[str, float], count: int) -> dict[str, float]:
    """Microseconds per request or call, with the round's total under :data:`TOTAL`."""
    micros = {name: 1e6 * value / max(count, 1) for name, value in seconds.items()}
    micros[TOTAL] = sum(micros.values())
    return micros


def median_rows(rounds: list[dict[str, float]]) -> dict[str, float]:
    names = {name for r in rounds for name in r}
    return {name: statistics.median(r.get(name, 0.0) for r in rounds) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="minilm")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per recording")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    for tool in ("perf", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (apt-get install linux-perf wrk)")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("Needs two cores: one for the server and the raw call, one for wrk.")
    server_core, load_core = cores[0], cores[1]
    selected = [cases()[name] for name in args.cases.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mlapp-bench-where-"))
    tables = []
    try:
        log(f"setting up the demo models in {work}")
        var = work / "var"
        manage(var, "migrate", "--noinput", "-v0")
        manage(var, "setup_demo", "--no-admin")
        with ExitStack() as stack:
            models = sorted({case.model for case in selected})
            raw = RawCall(server_core, var, models, args.seconds)
            stack.callback(raw.stop)
            port = free_port()
            server = Server(
                "mlapp granian",
                ["taskset", "-c", str(server_core), *SERVERS["granian"]],
                django_env(var, port),
                port,
                work / "server.log",
            )
            stack.enter_context(server)
            for case in selected:
                bodies = work / f"{case.name}.bodies"
                bodies.write_bytes(b"\n".join(case.bodies) + b"\n")
                path = f"/v2/models/{case.model}/infer"
                for c in concurrencies:
                    wrk(load_core, port, bodies, path, c, 2)  # warm-up
                    raw.measure(case.model, 1)
                    served, called, rates = [], [], []
                    for n in range(args.rounds):
                        data = work / f"server-{case.name}-{c}-{n}.data"
                        recording = record(descendants(server.process.pid), data)
                        result = wrk(load_core, port, bodies, path, c, args.seconds)
                        stop_recording(recording)
                        served.append(per_item(seconds_by_component(data), result["requests"]))
                        data = work / f"raw-{case.name}-{c}-{n}.data"
                        recording = record([raw.process.pid], data)
                        measured = raw.measure(case.model, args.seconds)
                        stop_recording(recording)
                        called.append(per_item(seconds_by_component(data), measured["calls"]))
                        rates.append((result["requests"] * 1e6 / result["duration_us"],
                                      measured["calls_per_s"]))  # fmt: skip
                        log(f"{case.name} c={c} round {n + 1}: server {rates[-1][0]:.0f} req/s, "
                            f"raw {rates[-1][1]:.0f} calls/s")  # fmt: skip
                    tables.append((case.name, c, median_rows(served), median_rows(called), rates))
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for name, c, server_us, raw_us, rates in tables:
        print(f"\n{name}, concurrency {c}: CPU µs per request (server) and per call (raw), "
              f"median of {args.rounds} rounds; server "
              f"{statistics.median(r[0] for r in rates):.0f} req/s, raw "
              f"{statistics.median(r[1] for r in rates):.0f} calls/s\n")  # fmt: skip
        print("| component | server | raw call | server over raw |")
        print("| --- | ---: | ---: | ---: |")
        names = sorted(
            (set(server_us) | set(raw_us)) - {TOTAL}, key=lambda k: -server_us.get(k, 0.0)
        )
        for component_name in names:
            s, r = server_us.get(component_name, 0.0), raw_us.get(component_name, 0.0)
            if s < 1 and r < 1:
                continue
            print(f"| {component_name} | {s:.0f} | {r:.0f} | {s - r:+.0f} |")
        s, r = server_us[TOTAL], raw_us[TOTAL]
        print(f"| **total** | **{s:.0f}** | **{r:.0f}** | **{s - r:+.0f}** |")


if __name__ == "__main__":
    main()
