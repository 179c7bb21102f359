"""Metrics under two worker processes: a real preloaded gunicorn (the production config) on a
SQLite database in a temporary MLAPP_VAR_DIR. Every request counted by whichever worker
answered it, ``/metrics`` (served by either) adds them up."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
BODY = json.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLAPP_", "DJANGO_", "WEB_", "PROMETHEUS_"))
        and k != "PYTEST_CURRENT_TEST"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        MLAPP_VAR_DIR=str(tmp_path / "var"),
        MLAPP_THREADS="1",
        WEB_WORKERS="2",
        PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _post(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/affine/infer",
        data=BODY,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _wait_ready(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")


def _counted(text: str) -> float:
    pattern = r'mlapp_requests_total\{model="affine",outcome="ok",protocol="v2",version="1"\} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _sample(text: str, name: str) -> float:
    match = re.search(rf'{name}\{{model="affine"\}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batching-on"])
def test_requests_counted_by_two_workers_add_up_in_metrics(tmp_path, onnx_file, batching):
    port = _free_port()
    env = _env(tmp_path, port)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    subprocess.run(
        [*manage, "register_model", "affine", str(onnx_file), "--promote"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    if batching:
        code = (
            "from mlapp.models import MLModel; "
            "MLModel.objects.filter(name='affine').update(serving={'batching': {'enabled': True}})"
        )
        subprocess.run([*manage, "shell", "-c", code], env=env, cwd=ROOT, check=True)
    log = tmp_path / "gunicorn.log"
    gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "-c", "project/gunicorn.conf.py"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*gunicorn, "project.wsgi:application"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(process, port, log)
        sent = 0
        workers_seen: set[str] = set()
        # Concurrent requests on fresh connections until both workers have answered some.
        while len(workers_seen) < 2 and sent < 800:
            threads = [threading.Thread(target=_post, args=(port,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            sent += len(threads)
            workers_seen = {p.name for p in (tmp_path / "prometheus").glob("counter_*.db")}
        assert len(workers_seen) == 2, "both workers should have answered requests"
        for _ in range(4):  # whichever worker answers the scrape, the sum is the same
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            assert _counted(text) == sent
        assert 'mlapp_model_ready{model="affine",version="1"} 1.0' in text
        if batching:
            # Calls of one request are counted by their worker and folded into the shared
            # histograms at each poll (~1 s); the first calls may have formed batches before
            # the batcher found the affine model too fast to batch.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
                if _sample(text, "mlapp_batch_size_sum") == sent:
                    break
                time.sleep(0.5)
            calls = _sample(text, "mlapp_batch_size_count")
            assert _sample(text, "mlapp_batch_size_sum") == sent  # requests over all calls
            assert _sample(text, "mlapp_queue_wait_seconds_count") == sent  # one per request
            assert _sample(text, "mlapp_model_compute_seconds_count") == calls
            assert 0 < calls <= sent
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
