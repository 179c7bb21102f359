"""Measure how long Redis takes to hand a SIGKILLed worker's task to another worker.

Not a test (it takes minutes): ``.venv/bin/python tests/batch/measure_redelivery.py VT
INTERVAL THROTTLE``. A private redis-server on a free port, two ``celery worker --pool=prefork
-c 1`` processes of a bare app (acks_late, reject_on_worker_lost, prefetch multiplier 1),
tasks that sleep 3 s; the worker running the first task is SIGKILLed with its children, and
the script prints the seconds from the kill until that task starts again on the survivor.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

APP = textwrap.dedent(
    """
    import json, os, time
    from celery import Celery
    app = Celery("redelivery", broker=os.environ["BROKER"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options=json.loads(os.environ["TRANSPORT"]),
    )

    @app.task(name="sleepy")
    def sleepy(n):
        with open(os.environ["LOG"], "a") as fh:
            fh.write(json.dumps({"n": n, "pid": os.getppid(), "t": time.time()}) + "\\n")
        time.sleep(3)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(visibility: float, interval: float, throttle: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="redelivery-"))
    (folder / "redelivery_app.py").write_text(APP)
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    transport = {
        "visibility_timeout": visibility,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": throttle,
        "unacked_mutex_expire": 30,
    }
    env = {
        **os.environ,
        "BROKER": f"redis://127.0.0.1:{port}/0",
        "TRANSPORT": json.dumps(transport),
        "LOG": str(folder / "log.jsonl"),
        "PYTHONPATH": str(folder),
    }
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "redelivery_app",
                "worker",
                "-c",
                "1",
                "-n",
                f"w{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=folder,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    try:
        sys.path.insert(0, str(folder))
        os.environ.update(env)
        from redelivery_app import sleepy

        time.sleep(6)  # both workers up
        for n in range(6):
            sleepy.delay(n)
        log = folder / "log.jsonl"
        while not log.exists() or not log.read_text().strip():
            time.sleep(0.05)
        first = json.loads(log.read_text().splitlines()[0])
        victim = next(w for w in workers if w.pid == first["pid"])
        os.killpg(victim.pid, signal.SIGKILL)
        killed = time.time()
        deadline = killed + visibility + interval * throttle + 300
        while time.time() < deadline:
            runs = [json.loads(line) for line in log.read_text().splitlines()]
            again = [r for r in runs if r["n"] == first["n"] and r["t"] > killed]
            if again:
                return again[0]["t"] - killed
            time.sleep(0.1)
        return float("inf")
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
        redis.terminate()


if __name__ == "__main__":
    vt, iv, th = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    print(
        f"visibility_timeout={vt} restore_interval={iv} throttle={th}: "
        f"redelivered after {main(vt, iv, th):.1f}s",
        flush=True,
    )
