"""Traffic policies across real server processes on PostgreSQL: two ``runserver`` processes
share one 10 % canary; their shared counters add up in the database."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Sum

from mlapp.models import TrafficPolicy, TrafficWindow
from mlapp.versions.lifecycle import register_version
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


def _servers(tmp_path) -> list[Server]:
    env = _server_env(tmp_path / "var")
    servers = []
    for name in ("one", "two"):
        port = _free_port()
        command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        servers.append(Server(name, command, port, env, tmp_path / f"{name}.log"))
    return servers


def test_a_ten_percent_canary_answers_ten_percent_over_two_server_processes(onnx_file, tmp_path):
    assert connection.vendor == "postgresql"
    production = register_version("affine", onnx_file, promote=True)
    canary = register_version("affine", onnx_file)
    TrafficPolicy.objects.create(model=production.model, canary=canary, canary_weight=10)
    servers = _servers(tmp_path)
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
    # Both processes served both versions, and their counters met in the shared table.
    assert {server for server, _ in answers} == {"one", "two"}
    rows = TrafficWindow.objects.values("process").distinct().count()
    assert rows == 2
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
