"""Hot swap across real server processes on PostgreSQL: a preloaded gunicorn with two workers
and a ``runserver``, both loading models at startup through ``project.wsgi``. Requests keep
flowing to both while this process promotes and rolls back; each server switches within two
seconds, no request fails, and every answer names an expected version."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from mlapp.conf.defaults import DEFAULTS
from mlapp.versions.lifecycle import promote_version, register_version, rollback

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(settings.BASE_DIR)
#: The bound the issue sets, from the commit of a stage change to every worker answering.
SWITCH_LIMIT_S = 2.0
#: Consecutive answers with the new version that prove a server (all its workers) switched.
SETTLED = 30
BODY = json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(var_dir: Path) -> dict[str, str]:
    db = connection.settings_dict
    (var_dir).mkdir()
    # The servers read the artifacts this test process stores.
    (var_dir / "media").symlink_to(Path(settings.MEDIA_ROOT))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLAPP_", "DJANGO_", "PG")) and k != "PYTEST_CURRENT_TEST"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_DEBUG": "0",
            "MLAPP_DB": "postgres",
            "MLAPP_VAR_DIR": str(var_dir),
            "MLAPP_THREADS": "1",
            "PGDATABASE": db["NAME"],
            "PGHOST": str(db["HOST"] or "127.0.0.1"),
            "PGPORT": str(db["PORT"] or "5432"),
            "PGUSER": str(db["USER"] or "postgres"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Server:
    """A server process in its own process group, stopped (with its workers) on exit."""

    def __init__(self, name: str, command: list[str], port: int, env: dict, log: Path) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}/api/mlapp/models/affine/predict"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def predict(self, timeout: float = 10.0) -> int:
        request = urllib.request.Request(
            self.url, data=BODY, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            assert response.status == 200
            return json.loads(response.read())["version"]

    def wait_ready(self, deadline_s: float = 90.0) -> None:
        until = time.monotonic() + deadline_s
        while time.monotonic() < until:
            if self.process.poll() is not None:
                break
            try:
                self.predict(timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Answer:
    server: str
    started: float
    version: int | None
    error: str | None = None


class Traffic:
    """Client threads sending predict requests to every server, recording each answer."""

    def __init__(self, servers: list[Server], per_server: int = 2) -> None:
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(server,), daemon=True)
            for server in servers
            for _ in range(per_server)
        ]

    def _run(self, server: Server) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = Answer(server.name, started, server.predict())
            except Exception as exc:
                answer = Answer(server.name, started, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.answers.append(answer)

    def since(self, server: str, moment: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.server == server and a.started >= moment]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _switch_time(traffic: Traffic, server: str, committed: float, version: int) -> float:
    """Seconds from the commit until ``server`` answered only ``version``; waits for it."""
    until = committed + 30
    while time.monotonic() < until:
        answers = sorted(traffic.since(server, committed), key=lambda a: a.started)
        stale = [i for i, a in enumerate(answers) if a.version != version]
        settled = answers[stale[-1] + 1 :] if stale else answers
        if len(settled) >= SETTLED:
            return settled[0].started - committed
        time.sleep(0.05)
    raise AssertionError(f"{server} never settled on v{version}")


def test_two_servers_switch_within_two_seconds_without_a_failed_request(
    onnx_file, tmp_path, reliability
):
    assert connection.vendor == "postgresql"
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    env = _server_env(tmp_path / "var")
    python = sys.executable
    servers = [
        Server(
            "gunicorn",
            [python, "-m", "gunicorn", "project.wsgi:application", "--preload", "--workers",
             "2", "--bind", f"127.0.0.1:{(port := _free_port())}", "--log-level", "warning"],
            port, env, tmp_path / "gunicorn.log",
        ),
        Server(
            "runserver",
            [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{(port := _free_port())}"],
            port, env, tmp_path / "runserver.log",
        ),
    ]  # fmt: skip
    traffic = Traffic(servers)
    timings: list[tuple[str, int, float]] = []
    try:
        for server in servers:
            server.wait_ready()
            assert server.predict() == 1  # loaded at startup by project.wsgi
        traffic.start()
        for step, target in enumerate([2, 1, 2, 1]):
            if step % 2 == 0:
                promote_version(v2)
            else:
                rollback(v2.model)
            committed = time.monotonic()
            for server in servers:
                timings.append(
                    (server.name, target, _switch_time(traffic, server.name, committed, target))
                )
    finally:
        traffic.stop()
        for server in servers:
            server.stop()
    failures = [a for a in traffic.answers if a.error is not None]
    reliability.add(
        "hot swap",
        "requests to gunicorn (2 workers) and runserver during 4 promotions / roll backs",
        tried=len(traffic.answers),
        bad=len(failures),
        unit="failed",
    )
    assert failures == [], failures[:5]
    assert {a.version for a in traffic.answers} == {1, 2}
    print("switch times (server, version, seconds):", timings)
    slow = [t for t in timings if t[2] > SWITCH_LIMIT_S]
    assert slow == [], f"switches slower than {SWITCH_LIMIT_S}s: {slow} (all: {timings})"


def test_a_handler_change_without_a_promotion_reaches_another_server(onnx_file, tmp_path):
    """``register_version`` with a new handler and no promotion (as ``register_model
    --handler`` and an API upload with a handler do) changes what the production version
    answers: a server in another process follows within POLL_INTERVAL + 1 s."""
    register_version("affine", onnx_file, promote=True)
    port = _free_port()
    server = Server(
        "runserver",
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        port, _server_env(tmp_path / "var"), tmp_path / "runserver.log",
    )  # fmt: skip

    def outputs() -> list:
        request = urllib.request.Request(
            server.url, data=BODY, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["outputs"]

    try:
        server.wait_ready()
        plain = outputs()
        register_version("affine", onnx_file, handler="tests.importable.handlers.DoublingHandler")
        committed = time.monotonic()
        doubled = [[2 * v for v in row] for row in next(iter(plain.values()))]
        while next(iter(outputs().values())) != doubled:
            assert time.monotonic() - committed < 30, "the server kept the old handler"
            time.sleep(0.05)
        elapsed = time.monotonic() - committed
    finally:
        server.stop()
    limit = DEFAULTS["POLL_INTERVAL"] + 1.0  # project.settings keeps the default
    print(f"handler change reached the other server in {elapsed:.2f}s")
    assert elapsed <= limit
