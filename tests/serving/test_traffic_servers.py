"""Traffic policies across real server processes on PostgreSQL: a preloaded gunicorn with
two workers and a ``runserver`` share one 10 % canary, their shared counters add up in the
database, and a failing canary is rolled back from those counters while the load goes on."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
import torch
from django.db import connection
from django.db.models import Sum

from mlapp.models import TrafficEvent, TrafficPolicy, TrafficWindow
from mlapp.versions.lifecycle import register_version
from tests.artifacts import Affine
from tests.serving.test_hot_swap_servers import Server, _free_port, _server_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REQUESTS = 10_000
CLIENTS_PER_SERVER = 5


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())["version"]


def _stored_by_version(at_least: int) -> dict[int, int]:
    """Requests per version in the shared counters, once they hold ``at_least`` (each process
    writes its own about once a second: POLL_INTERVAL)."""
    until = time.monotonic() + 15
    while True:
        stored = dict(
            TrafficWindow.objects.values_list("version").annotate(n=Sum("requests")).order_by()
        )
        if sum(stored.values()) >= at_least or time.monotonic() > until:
            return stored
        time.sleep(0.2)


def _servers(tmp_path, *, preloaded: bool = False) -> list[Server]:
    """Two servers: runserver processes, or (``preloaded``) a gunicorn that loads the models
    before forking two workers (whose traffic threads start after the fork) and a runserver."""
    env = _server_env(tmp_path / "var")
    servers = []
    for name in ("one", "two"):
        port = _free_port()
        command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        if preloaded and name == "one":
            command = [
                sys.executable, "-m", "gunicorn", "project.wsgi:application", "--preload",
                "--workers", "2", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
            ]  # fmt: skip
        servers.append(Server(name, command, port, env, tmp_path / f"{name}.log"))
    return servers


def test_a_ten_percent_canary_answers_ten_percent_over_server_processes(onnx_file, tmp_path):
    assert connection.vendor == "postgresql"
    production = register_version("affine", onnx_file, promote=True)
    canary = register_version("affine", onnx_file)
    TrafficPolicy.objects.create(model=production.model, canary=canary, canary_weight=10)
    servers = _servers(tmp_path, preloaded=True)
    body = json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode()
    answers: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    share = REQUESTS // (len(servers) * CLIENTS_PER_SERVER)

    def client(server: Server) -> None:
        mine: Counter[tuple[str, int]] = Counter()
        for _ in range(share):
            mine[server.name, _post(server.url, body, {})] += 1
        with lock:
            answers.update(mine)

    try:
        for server in servers:
            server.wait_ready()
        baseline = _stored_by_version(at_least=len(servers))  # wait_ready's requests
        threads = [
            threading.Thread(target=client, args=(server,))
            for server in servers
            for _ in range(CLIENTS_PER_SERVER)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = _stored_by_version(at_least=sum(baseline.values()) + REQUESTS)
    finally:
        for server in servers:
            server.stop()
    total = sum(answers.values())
    on_canary = sum(n for (_, version), n in answers.items() if version == 2)
    print(f"canary answered {on_canary} of {total}: {dict(answers)}")
    assert total == share * len(servers) * CLIENTS_PER_SERVER
    assert abs(on_canary / total - 0.10) <= 0.01
    # Every process served, and their counters met in the shared table.
    assert {server for server, _ in answers} == {"one", "two"}
    processes = TrafficWindow.objects.values("process").distinct().count()
    assert processes >= 2
    added = {v: n - baseline.get(v, 0) for v, n in stored.items()}
    assert added == {1: total - on_canary, 2: on_canary}


def test_sticky_callers_keep_their_version_on_either_server(onnx_file, tmp_path):
    production = register_version("affine", onnx_file, promote=True)
    canary = register_version("affine", onnx_file)
    TrafficPolicy.objects.create(
        model=production.model, canary=canary, canary_weight=50, sticky="header:X-Session"
    )
    servers = _servers(tmp_path)
    body = json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode()
    seen: dict[str, set[int]] = {}
    try:
        for server in servers:
            server.wait_ready()
        for session in map(str, range(100)):
            for server in servers:
                version = _post(server.url, body, {"X-Session": session})
                seen.setdefault(session, set()).add(version)
    finally:
        for server in servers:
            server.stop()
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert set().union(*seen.values()) == {1, 2}


class _Shifted(torch.nn.Module):
    """affine with its first output moved by 1000: what FailsOnShiftedHandler fails on."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Affine()
        with torch.no_grad():
            self.inner.linear.bias.add_(torch.tensor([1000.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_a_canary_failing_a_fifth_of_its_requests_is_rolled_back_under_load(
    onnx_file, tmp_path, reliability
):
    shifted = tmp_path / "shifted.onnx"
    torch.onnx.export(
        _Shifted().eval(), (torch.zeros(2, 3),), str(shifted), input_names=["x"],
        output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    handler = "tests.importable.handlers.FailsOnShiftedHandler"
    production = register_version("affine", onnx_file, promote=True, handler=handler)
    canary = register_version("affine", shifted)
    TrafficPolicy.objects.create(
        model=production.model,
        canary=canary,
        canary_weight=30,
        rollback_error_rate=0.1,
        rollback_window=30,
        rollback_min_requests=40,
    )
    servers = _servers(tmp_path)
    results: list[tuple[float, int, int | None]] = []  # (sent, first input, version or None)
    lock = threading.Lock()
    stop = threading.Event()

    def client(server: Server, offset: int) -> None:
        n = offset
        while not stop.is_set():
            first = (7, 1, 2, 3, 4)[n % 5]  # 7 on one request in five: the canary fails those
            n += 1
            body = json.dumps({"inputs": [[float(first), 2.0, 3.0]]}).encode()
            sent = time.monotonic()
            try:
                version: int | None = _post(server.url, body, {})
            except urllib.error.HTTPError as exc:
                version = None if exc.code == 500 else -exc.code
            except Exception:
                version = -1  # not a failure of the canary: the test fails on it
            with lock:
                results.append((sent, first, version))

    threads: list[threading.Thread] = []
    try:
        for server in servers:
            server.wait_ready()
        threads = [
            threading.Thread(target=client, args=(server, i))
            for server in servers
            for i in range(3)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        until = started + 60
        while TrafficPolicy.objects.get().canary_id is not None:
            assert time.monotonic() < until, "the canary was not rolled back in 60 s"
            time.sleep(0.1)
        rolled_back = time.monotonic()
        time.sleep(3)  # every process has read the change (POLL_INTERVAL is 1 s)
        settled = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for server in servers:
            server.stop()
    assert not [r for r in results if r[2] is not None and r[2] < 0], "requests failed"
    failed = [r for r in results if r[2] is None]
    print(
        f"rolled back after {rolled_back - started:.1f}s; {len(results)} requests, "
        f"{len(failed)} failed by the canary"
    )
    # Only the canary's own failures: never an input it does not fail on, nor any request
    # sent once every process had read the rollback.
    assert failed, "the canary never failed: nothing was tested"
    assert all(first == 7 for _, first, _ in failed)
    after = [r for r in results if r[0] >= settled]
    assert after
    assert {version for _, _, version in after} == {1}
    reliability.add(
        "canary rollback",
        "requests after the rollback reached both servers (2 runservers, 6 clients)",
        tried=len(after),
        bad=sum(version != 1 for _, _, version in after),
        unit="failed or not production",
    )
    assert TrafficEvent.objects.filter(action="rolled back").count() == 1
    assert rolled_back - started < 30 + 5  # within the window, plus the writes' second
