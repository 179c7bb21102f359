"""The prediction log under the production launcher: two granian workers, a graceful
restart (SIGHUP) and a graceful stop (SIGTERM) lose no logged row.

The writer threads flush only every 60 s here, so every row reaches the database through the
flush a worker runs as it stops: each answered request must have its row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

from tests.serving.test_production_launcher import (
    LAUNCHER,
    ROOT,
    Server,
    _env,
    _free_port,
    _wait_ready,
)

BODY = json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode()
COUNT_ROWS = (
    "import json; from mlapp.models import PredictionLog; "
    "print(json.dumps(list(PredictionLog.objects.values_list('key', flat=True))))"
)
LOG_ALL = (
    "from mlapp.models import MLModel; "
    "MLModel.objects.filter(name='affine').update(monitoring={'sample_rate': 1.0})"
)


class Sender(threading.Thread):
    """Sends predictions with a fresh key each until stopped; keeps the keys answered 200."""

    def __init__(self, server: Server, prefix: str) -> None:
        super().__init__(daemon=True)
        self.server, self.prefix = server, prefix
        self.answered: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            key = f"{self.prefix}-{number}"
            headers = {"Content-Type": "application/json", "X-MLApp-Key": key}
            try:
                response = self.server.request(
                    "/api/mlapp/models/affine/predict", BODY, headers, timeout=5
                )
            except (OSError, urllib.error.URLError):
                time.sleep(0.01)  # a worker being replaced: the request was not answered
                continue
            if response.status == 200:
                self.answered.append(key)


def test_no_logged_row_is_lost_over_two_workers_a_restart_and_a_stop(
    tmp_path: Path, onnx_file: Path
):
    env = {**_env(tmp_path, tmp_path / "prometheus"), "MLAPP_LOG_FLUSH_INTERVAL": "60"}
    (tmp_path / "prometheus").mkdir()

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    manage("register_model", "affine", str(onnx_file), "--promote")
    manage("shell", "-v", "0", "-c", LOG_ALL)
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*LAUNCHER, "--port", str(port), "--workers", "2", "--threads", "4"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(process, port, log, tmp_path / "prometheus", "", grpc_port=0)
    senders = [Sender(server, f"s{i}") for i in range(4)]
    try:
        _wait_ready(server)
        first = server.workers()
        assert len(first) == 2
        for sender in senders:
            sender.start()
        time.sleep(1.5)
        os.kill(process.pid, signal.SIGHUP)  # granian: respawn every worker gracefully
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            server.workers() & first or len(server.workers()) < 2
        ):
            time.sleep(0.1)
        assert not server.workers() & first, f"the workers were not replaced:\n{server.tail()}"
        _wait_ready(server)
        time.sleep(1.5)
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(10)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    answered = [key for sender in senders for key in sender.answered]
    assert len(answered) > 50, server.tail()
    logged = json.loads(manage("shell", "-v", "0", "-c", COUNT_ROWS))
    assert sorted(logged) == sorted(answered), (
        f"{len(answered)} answered, {len(logged)} logged; "
        f"missing {sorted(set(answered) - set(logged))[:10]}\n{server.tail()}"
    )
