"""The benchmark: mlapp's production server against the raw model call and KServe.

Sets up a fresh database with the demo models, then starts every server at once, each pinned
to one core: mlapp's production configuration (batching on, and off), KServe's Python model
server on the same artifacts (from ``.venv-kserve``), and a process making raw model calls.
wrk, pinned to another core, drives them over 127.0.0.1 for a fixed time per run: iris
(TorchScript), digits (ONNX) and minilm (ONNX + tokenizer), OIP V2 JSON, batch 1, at each
concurrency; the raw call is measured next to each cell, and each cell runs three times, the
servers taking turns. Prints one table, then the memory (PSS) of one worker against two, then
iris with the prediction log off, at 1 % and at 100 % (three servers taking turns, same
conditions) and the rows the log's writer inserts per second on SQLite and PostgreSQL.

    make bench                       # the whole run (about 7 minutes)
    make bench BENCH_ARGS=--quick    # c=1 and 32, one run per cell (about 2 minutes)
    make bench-traffic               # iris and minilm with a canary, + a shadow, and neither
    .venv/bin/python bench/run.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import cases  # noqa: E402

PYTHON = str(ROOT / ".venv/bin/python")
KSERVE_PYTHON = ROOT / ".venv-kserve/bin/python"
LUA = str(ROOT / "bench/wrk_post.lua")
#: The production server configurations (``make serve`` runs the first one).
SERVERS = {
    "granian": [
        "sh",
        "-c",
        f"exec {PYTHON} {ROOT / 'manage.py'} mlapp_serve --host $HOST --port $PORT",
    ],
    "gunicorn": [
        str(ROOT / ".venv/bin/gunicorn"),
        "-c",
        str(ROOT / "project/gunicorn.conf.py"),
        "project.wsgi:application",
    ],
    # For comparison only: granian's own command line, which loads the application in every
    # worker after the fork (no weights shared copy-on-write).
    "granian-cli": [
        "sh",
        "-c",
        f"exec {ROOT / '.venv/bin/granian'} --interface wsgi --no-ws --host $HOST --port $PORT "
        "--workers ${WEB_WORKERS:-1} --blocking-threads ${WEB_THREADS:-8} project.wsgi:application",
    ],
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- processes ----------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLOCK_TICKS


def pss_mib(pid: int) -> dict[int, float]:
    """Proportional set size (MiB) of ``pid`` and of each of its descendants: shared pages
    are split between the processes sharing them, so the sum counts them once."""
    sizes = {}
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        sizes[p] = int(line.split()[1]) / 1024
                        break
        except OSError:
            pass
    return sizes


class Server:
    """A server process group started for the benchmark, stopped on exit."""

    def __init__(self, label: str, command: list[str], env: dict, port: int, log_path: Path):
        self.label, self.port = label, port
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        url = f"http://127.0.0.1:{self.port}/v2/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{self.label} did not become ready:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Server:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- load -----------------------------------------------------------------------------------


@dataclass
class Cell:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float | None = None
    errors: int = 0


def wrk(core: int, port: int, bodies: Path, path: str, concurrency: int, seconds: float) -> dict:
    command = [
        "taskset", "-c", str(core), "wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s",
        "--timeout", "10s", "-s", LUA, f"http://127.0.0.1:{port}", "--", str(bodies), path,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(server: Server, core: int, bodies: Path, path: str, c: int, args) -> Cell:
    wrk(core, server.port, bodies, path, c, args.warmup)
    cpu_before = cpu_seconds(server.process.pid)
    result = wrk(core, server.port, bodies, path, c, args.duration)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    seconds = result["duration_us"] / 1e6
    count = max(result["requests"], 1)
    return Cell(
        requests_per_s=result["requests"] / seconds,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cpu_us_per_request=1e6 * cpu / count,
        errors=result["socket_errors"] + result["status_errors"],
    )


# -- set-up ---------------------------------------------------------------------------------


def server_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``granian@WEB_THREADS=4@MLAPP_THREADS=1`` -> ("granian", {"WEB_THREADS": "4", ...})."""
    name, *settings = spec.split("@")
    return name, dict(item.split("=", 1) for item in settings)


def django_env(var_dir: Path, port: int | None = None, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLAPP_", "WEB_", "PROMETHEUS_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        MLAPP_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
    )
    if port is not None:
        env.update(HOST="127.0.0.1", PORT=str(port))
    env.update(extra)
    return env


def manage(var_dir: Path, *args: str) -> None:
    result = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=django_env(var_dir),
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def batching_config(spec: str) -> dict:
    """``on``, ``off`` or ``on@max_queue_delay_ms=2@max_batch_size=16`` -> a batching config."""
    mode, *settings = spec.split("@")
    config: dict = {"enabled": mode == "on"}
    for item in settings:
        key, value = item.split("=", 1)
        config[key] = float(value) if "." in value or key.endswith("_ms") else int(value)
    return config


def set_batching(var_dir: Path, spec: str) -> None:
    """The batching config of every model of the database (``MLModel.serving``)."""
    code = (
        "from mlapp.models import MLModel\n"
        "for m in MLModel.objects.all():\n"
        f"    m.serving = {{**m.serving, 'batching': {batching_config(spec)!r}}}\n"
        "    m.save(update_fields=['serving'])\n"
    )
    manage(var_dir, "shell", "-c", code)


#: Traffic policies a server can run under (``--policies``): a canary answering 10 % of the
#: requests, and a shadow receiving a copy of all of them; each a copy of the production
#: artifact registered as another version, so the answers are the same and only the cost of
#: the policy shows.
POLICIES = {
    "none": {},
    "canary": {"canary_weight": 10},
    "canary+shadow": {"canary_weight": 10, "shadow_share": 100},
}


def set_policy(var_dir: Path, spec: str) -> None:
    """Give every model of the database the traffic policy ``spec`` (of POLICIES)."""
    fields = POLICIES[spec]
    if not fields:
        return
    code = (
        "from mlapp.models import MLModel, TrafficPolicy\n"
        "from mlapp.versions.lifecycle import register_version\n"
        "for m in MLModel.objects.all():\n"
        "    prod = m.production_version\n"
        "    if prod is None: continue\n"
        "    extra = lambda: register_version(m.name, prod.artifact.path)\n"
        f"    fields = {fields!r}\n"
        "    if 'canary_weight' in fields: fields['canary'] = extra()\n"
        "    if 'shadow_share' in fields: fields['shadow'] = extra()\n"
        "    TrafficPolicy.objects.update_or_create(model=m, defaults=fields)\n"
    )
    manage(var_dir, "shell", "-c", code)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Results:
    #: (case, concurrency) -> the raw call measured next to those cells.
    raw: dict[tuple[str, int], dict] = field(default_factory=dict)
    cells: dict[tuple[str, str, int], Cell] = field(default_factory=dict)
    #: Every run of a cell, in the order of the repeats (a repeat runs each server once,
    #: one right after the other).
    runs: dict[tuple[str, str, int], list[Cell]] = field(default_factory=dict)
    memory: dict[int, float] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    #: (sample rate, concurrency) -> iris with the prediction log at that rate.
    logging: dict[tuple[float, int], Cell] = field(default_factory=dict)
    #: database vendor -> rows per second of the log's writer (or why not measured).
    log_rows: dict[str, dict] = field(default_factory=dict)


class RawCall:
    """bench/raw.py kept running on the server core, measuring one model when asked."""

    def __init__(self, core: int, var: Path, models: list[str], seconds: float) -> None:
        command = ["taskset", "-c", str(core), PYTHON, str(ROOT / "bench/raw.py"), *models,
                   "--seconds", str(seconds), "--serve"]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=django_env(var, MLAPP_THREADS="1"), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("bench/raw.py failed to load the models")

    def measure(self, model: str, seconds: float, first: bool = False) -> dict:
        """Calls of ``model`` for ``seconds`` on the case's inputs in turn (``first``: on its
        first input only)."""
        self.process.stdin.write(f"{model} {seconds}{' first' if first else ''}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def copy_database(source: Path, target: Path) -> Path:
    """Another database with the same models (the artifacts themselves are shared)."""
    target.mkdir()
    for db in source.glob("db.sqlite3*"):
        shutil.copy2(db, target / db.name)
    (target / "media").symlink_to(source / "media")
    return target


def start_targets(args, work: Path, core: int, stack: ExitStack) -> list[Server]:
    """Every server of the table at once, each pinned to ``core``: the cells of one model and
    concurrency then run one right after the other, so that a change in the machine's load
    (it is shared) hits every column alike. An idle server costs the others nothing."""
    servers = []
    for index, spec in enumerate(args.servers):
        server_name, extra = server_spec(spec)
        for batching in args.batching:
            for policy in args.policies:
                tag = f"{index}-{batching}-{policy}"
                var = copy_database(work / "var", work / f"var-{tag}")
                set_batching(var, batching)
                set_policy(var, policy)
                port = free_port()
                servers.append(
                    Server(
                        f"mlapp {spec}, batching {batching}"
                        + (f", {policy}" if policy != "none" else ""),
                        ["taskset", "-c", str(core), *SERVERS[server_name]],
                        django_env(var, port, **extra),
                        port,
                        work / f"server-{tag}.log",
                    )
                )
    if not args.no_kserve:
        port = free_port()
        command = [
            "taskset", "-c", str(core), str(KSERVE_PYTHON),
            str(ROOT / "bench/kserve_server.py"), "--http_port", str(port),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
        servers.append(Server("KServe", command, env, port, work / "kserve.log"))
    for server in servers:
        stack.callback(server.stop)
    for server in servers:
        server.wait_ready()
    return servers


def run_targets(args, work: Path, server_core: int, load_core: int, results: Results) -> None:
    selected = [cases()[name] for name in args.cases]
    with ExitStack() as stack:
        raw = RawCall(
            server_core, work / "var", sorted({c.model for c in selected}), args.raw_seconds
        )
        stack.callback(raw.stop)
        servers = start_targets(args, work, server_core, stack)
        results.targets = [server.label for server in servers]
        for case in selected:
            bodies = work / f"{case.name}.bodies"
            bodies.write_bytes(b"\n".join(case.bodies) + b"\n")
            path = f"/v2/models/{case.model}/infer"
            for c in args.concurrency:
                runs: dict[str, list[Cell]] = {server.label: [] for server in servers}
                raws = []
                for repeat in range(args.repeat):
                    # The raw call in the same minute as the cells it is compared with: the
                    # machine's load changes. Each repeat starts with another server, so that
                    # no column always goes first.
                    raws.append(raw.measure(case.model, args.raw_seconds))
                    order = servers[repeat % len(servers) :] + servers[: repeat % len(servers)]
                    for server in order:
                        runs[server.label].append(measure(server, load_core, bodies, path, c, args))
                raws.sort(key=lambda r: r["calls_per_s"])
                median = results.raw[(case.name, c)] = raws[len(raws) // 2]
                log(f"raw call   {case.name:10} c={c:<3} {median['calls_per_s']:8.0f} calls/s")
                for server in servers:
                    cell = _median(runs[server.label])
                    results.cells[(server.label, case.name, c)] = cell
                    results.runs[(server.label, case.name, c)] = runs[server.label]
                    log(
                        f"{server.label:28} {case.name:10} c={c:<3} {cell.requests_per_s:8.0f} "
                        f"req/s p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms  "
                        f"cpu {cell.cpu_us_per_request:6.0f} us/req"
                    )


def _paired(results: Results, target: str, base: str, case: str, c: int) -> str:
    """The median over the repeats of each repeat's ratio (target ÷ base req/s, CPU): the
    two ran one right after the other, so the machine's drift from minute to minute, which
    a ratio of medians keeps, mostly cancels. Empty with fewer than 3 repeats."""
    ours, theirs = results.runs.get((target, case, c), []), results.runs.get((base, case, c), [])
    if len(ours) < 3 or len(ours) != len(theirs):
        return ""
    rates = sorted(a.requests_per_s / b.requests_per_s for a, b in zip(ours, theirs, strict=True))
    cpus = sorted(
        a.cpu_us_per_request / max(b.cpu_us_per_request, 1e-9)
        for a, b in zip(ours, theirs, strict=True)
    )
    middle = len(rates) // 2
    return (
        f" (paired by repeat: {rates[middle]:.3f} req/s, {cpus[middle]:.2f} CPU, "
        f"req/s ratios {rates[0]:.3f}..{rates[-1]:.3f})"
    )


def _median(cells: list[Cell]) -> Cell:
    """The run with the median throughput (its own latencies come with it)."""
    return sorted(cells, key=lambda cell: cell.requests_per_s)[len(cells) // 2]


def run_memory(args, work: Path, load_core: int, results: Results) -> None:
    """PSS of master + workers for a minilm-only server with each count of workers asked."""
    var = work / "var-minilm"
    manage(var, "migrate", "--noinput", "-v0")
    manage(
        var, "register_model", "minilm", str(ROOT / "fixtures/build/minilm/model.onnx"),
        "--handler", "project.demo.handlers.MiniLMHandler", "--promote",
    )  # fmt: skip
    set_batching(var, args.memory_batching)
    bodies = work / "minilm.bodies"
    bodies.write_bytes(b"\n".join(cases()["minilm"].bodies) + b"\n")
    for workers in args.memory_workers:
        port = free_port()
        env = django_env(var, port, WEB_WORKERS=str(workers), MLAPP_THREADS="1")
        name, extra = server_spec(args.servers[0])
        env.update(extra)
        command = SERVERS[name]
        log_path = work / f"memory-{workers}.log"
        with Server(f"{workers} worker(s)", command, env, port, log_path) as server:
            # Traffic on every worker first: what they touch while serving is counted too.
            wrk(load_core, port, bodies, "/v2/models/minilm/infer", 8, args.memory_seconds)
            sizes = pss_mib(server.process.pid)
        results.memory[workers] = sum(sizes.values())
        each = ", ".join(f"{size:.0f}" for size in sizes.values())
        log(f"memory: {workers} worker(s): {results.memory[workers]:.0f} MiB PSS ({each})")


def set_log_rate(var_dir: Path, model: str, rate: float) -> None:
    code = (
        "from mlapp.models import MLModel\n"
        f"MLModel.objects.filter(name={model!r}).update(monitoring={{'sample_rate': {rate!r}}})\n"
    )
    manage(var_dir, "shell", "-c", code)


def run_logging(args, work: Path, server_core: int, load_core: int, results: Results) -> None:
    """iris over V2 with the prediction log at each rate: one server per rate, pinned to the
    server core, taking turns per repeat as the main table's servers do; the writer thread
    runs in the worker, so its cost is in the figures."""
    case = cases()["iris"]
    bodies = work / "iris-log.bodies"
    bodies.write_bytes(b"\n".join(case.bodies) + b"\n")
    name, extra = server_spec(args.servers[0])
    with ExitStack() as stack:
        servers = {}
        for rate in args.log_rates:
            var = copy_database(work / "var", work / f"var-log-{rate}")
            set_batching(var, args.batching[0])
            set_log_rate(var, case.model, rate)
            port = free_port()
            server = Server(
                f"iris, log {rate:g}",
                ["taskset", "-c", str(server_core), *SERVERS[name]],
                django_env(var, port, **extra),
                port,
                work / f"server-log-{rate}.log",
            )
            stack.callback(server.stop)
            servers[rate] = server
        for server in servers.values():
            server.wait_ready()
        ordered = list(servers.items())
        for c in args.concurrency:
            runs: dict[float, list[Cell]] = {rate: [] for rate in servers}
            for repeat in range(args.repeat):
                turn = ordered[repeat % len(ordered) :] + ordered[: repeat % len(ordered)]
                for rate, server in turn:
                    path = f"/v2/models/{case.model}/infer"
                    runs[rate].append(measure(server, load_core, bodies, path, c, args))
            for rate in servers:
                cell = results.logging[(rate, c)] = _median(runs[rate])
                rps = cell.requests_per_s
                log(f"iris, prediction log at {rate:>5g}: c={c:<3} {rps:8.0f} req/s")
    for label, env in (("sqlite", {}), ("postgresql", {"MLAPP_DB": "postgres"})):
        if label == "postgresql" and not _postgres_reachable():
            results.log_rows[label] = {"error": "PostgreSQL not reachable (PGHOST:PGPORT)"}
            continue
        extra_env = {**env, "PGDATABASE": os.environ.get("PGDATABASE", "mlapp_bench_log")}
        done = subprocess.run(
            [PYTHON, str(ROOT / "bench/predlog.py"), "--rows", str(args.log_rows)],
            cwd=ROOT, env=django_env(work / "var-log-rows", **extra_env),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            results.log_rows[label] = {"error": done.stderr.strip().splitlines()[-1]}
        else:
            results.log_rows[label] = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"prediction log writer on {label}: {results.log_rows[label]}")


def _postgres_reachable() -> bool:
    host, port = os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def logging_lines(args, results: Results) -> list[str]:
    """iris req/s with the log at each rate, as a share of the log off; the writer's rows/s."""
    lines = []
    for c in args.concurrency:
        off = results.logging.get((0.0, c))
        if off is None:
            continue
        parts = []
        for rate in args.log_rates:
            cell = results.logging[(rate, c)]
            share = f" = {cell.requests_per_s / off.requests_per_s:.0%} of off" if rate else ""
            cpu = f", {cell.cpu_us_per_request:.0f} CPU µs/req" if cell.cpu_us_per_request else ""
            parts.append(f"{rate:g}: {cell.requests_per_s:.0f} req/s{share}{cpu}")
        lines.append(f"prediction log, iris c={c}: " + ", ".join(parts))
    for label, found in results.log_rows.items():
        if "error" in found:
            lines.append(f"prediction log writer, {label}: not measured ({found['error']})")
        else:
            lines.append(
                f"prediction log writer, {label}: {found['rows_per_s']:.0f} rows/s "
                f"({found['rows']} rows, {found['rows_per_insert']} per insert)"
            )
    return lines


# -- the table --------------------------------------------------------------------------------


def table(args, results: Results) -> str:
    main = results.targets[0] if results.targets else None
    others = [t for t in results.targets[1:] if t != "KServe"]
    kserve = "KServe" if "KServe" in results.targets else None
    header = ["model", "c", "raw/s", "raw p50"]
    header += ["req/s", "p50 ms", "p99 ms", "CPU µs", "÷raw"]
    for other in others:
        header += [f"{_short(other)} req/s", "p50 ms", "CPU µs"]
    if kserve:
        header += ["KServe req/s", "p50 ms", "p99 ms", "CPU µs", "mlapp÷KServe"]
    rows = []
    for name in args.cases:
        for c in args.concurrency:
            raw = results.raw.get((name, c), {})
            cell = results.cells.get((main, name, c))
            if cell is None:
                continue
            row = [name, str(c)]
            row += [f"{raw.get('calls_per_s', 0):.0f}", f"{raw.get('p50_us', 0) / 1000:.2f}"]
            row += _cell(cell)
            row.append(f"{cell.requests_per_s / raw['calls_per_s']:.2f}" if raw else "")
            for other in others:
                o = results.cells[(other, name, c)]
                row += [f"{o.requests_per_s:.0f}", f"{o.p50_ms:.2f}", f"{o.cpu_us_per_request:.0f}"]
            if kserve:
                k = results.cells[(kserve, name, c)]
                row += _cell(k)
                row.append(f"{cell.requests_per_s / k.requests_per_s:.2f}")
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    if rows:
        lines.append(f"main columns: {main}")
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    for target in others:
        base = target.rsplit(", ", 1)[0]
        if (
            base == target
            or base not in results.targets
            or not target.endswith(tuple(p for p in POLICIES if p != "none"))
        ):
            continue
        ratios = [
            f"{name} c={c}: {cell.requests_per_s / b.requests_per_s:.3f} req/s, "
            f"{cell.cpu_us_per_request / max(b.cpu_us_per_request, 1e-9):.2f} CPU"
            + _paired(results, target, base, name, c)
            for name in args.cases
            for c in args.concurrency
            if (cell := results.cells.get((target, name, c)))
            and (b := results.cells.get((base, name, c)))
        ]
        lines.append(f"{_short(target)} against {_short(base)}: " + "; ".join(ratios))
    errors = {k: v.errors for k, v in results.cells.items() if v.errors}
    if errors:
        lines.append(f"ERRORS (non-2xx or socket errors): {errors}")
    if results.memory:
        first = min(results.memory)
        sizes = ", ".join(
            f"{n} worker(s) {mib:.0f} MiB = {mib / results.memory[first]:.2f}x"
            for n, mib in sorted(results.memory.items())
        )
        lines.append(
            f"memory, minilm only, PSS of master + workers after {args.memory_seconds:g} s of "
            f"minilm traffic at c=8 ({args.servers[0]}, batching {args.memory_batching}): "
            f"{sizes}"
        )
    lines += logging_lines(args, results)
    return "\n".join(lines)


def _short(target: str) -> str:
    return target.replace("mlapp ", "").replace(", batching ", " b:")


def _cell(cell: Cell) -> list[str]:
    return [
        f"{cell.requests_per_s:.0f}",
        f"{cell.p50_ms:.2f}",
        f"{cell.p99_ms:.2f}",
        f"{cell.cpu_us_per_request:.0f}",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="c=1 and 32, one 2 s run per cell")
    parser.add_argument("--cases", default="iris,digits,minilm,minilm-bin")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=int, default=2, help="seconds per run of a cell")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each cell")
    parser.add_argument(
        "--servers",
        default="granian",
        help=f"comma-separated, of {', '.join(SERVERS)}; the first is the main columns; "
        "NAME@VAR=VALUE@... sets environment variables of that server, e.g. "
        "granian@WEB_THREADS=4",
    )
    parser.add_argument(
        "--batching",
        default="on,off",
        help="comma-separated: on, off, or on@KEY=VALUE@... (a serving batching config, "
        "e.g. on@max_queue_delay_ms=2)",
    )
    parser.add_argument(
        "--policies",
        default="none",
        help=f"comma-separated traffic policies, of {', '.join(POLICIES)}: a server per "
        "policy (a 10%% canary; a shadow copy of every request)",
    )
    parser.add_argument("--no-kserve", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the memory lines")
    parser.add_argument("--memory-seconds", type=int, default=3)
    parser.add_argument(
        "--memory-workers", default="1,2", help="comma-separated worker counts, e.g. 1,2,4"
    )
    parser.add_argument("--memory-batching", default="off", help="batching config for memory")
    parser.add_argument(
        "--raw-seconds", type=float, default=1.0, help="seconds of raw calls per run of a cell"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per cell, in turn; the median is shown"
    )
    parser.add_argument(
        "--log-rates",
        default="0,0.01,1",
        help="prediction log sample rates iris is measured at (the first must be 0); empty: skip",
    )
    parser.add_argument(
        "--log-rows", type=int, default=20000, help="rows the log's writer inserts, timed"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.duration, args.warmup, args.repeat = "1,32", 2, 1, 1
        args.raw_seconds, args.memory_seconds = 1.0, 2
    args.cases = args.cases.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.servers = args.servers.split(",")
    args.memory_workers = [int(n) for n in args.memory_workers.split(",")]
    args.batching = args.batching.split(",")
    args.log_rates = [float(r) for r in args.log_rates.split(",")] if args.log_rates else []
    if args.log_rates and args.log_rates[0] != 0:
        parser.error("--log-rates must start with 0 (the figures are shares of logging off)")
    args.policies = args.policies.split(",")
    if set(args.policies) - set(POLICIES):
        parser.error(f"unknown polic(ies) {sorted(set(args.policies) - set(POLICIES))}")
    unknown = [s for s in args.servers if server_spec(s)[0] not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (Debian/Ubuntu)")
    if not args.no_kserve and not KSERVE_PYTHON.exists():
        raise SystemExit("KServe's environment is missing: make kserve-venv (or --no-kserve)")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("The benchmark needs two cores: one for the server, one for wrk.")
    server_core, load_core = cores[0], cores[1]
    started = time.monotonic()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mlapp-bench-"))
    results = Results()
    try:
        if not args.memory_only:
            log(f"setting up the demo models in {work}")
            manage(work / "var", "migrate", "--noinput", "-v0")
            manage(work / "var", "setup_demo", "--no-admin")
        if not args.memory_only:
            run_targets(args, work, server_core, load_core, results)
        if not args.no_memory:
            run_memory(args, work, load_core, results)
        if args.log_rates and not args.memory_only:
            run_logging(args, work, server_core, load_core, results)
    finally:
        if args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table(args, results))
    print(
        f"server on core {server_core}, wrk on core {load_core}; {args.duration:g} s per cell; "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    if args.json:
        data = {
            "raw": {f"{n}|{c}": v for (n, c), v in results.raw.items()},
            "cells": {f"{t}|{n}|{c}": vars(v) for (t, n, c), v in results.cells.items()},
            "memory": results.memory,
            "logging": {f"{r}|{c}": vars(v) for (r, c), v in results.logging.items()},
            "log_rows": results.log_rows,
        }
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
