"""Batch jobs on real Redis and real Celery worker processes, on PostgreSQL.

The workers are ``celery -A project worker --pool=prefork -c 1`` subprocesses sharing this
test run's PostgreSQL database and media folder. Redis database 9 (``MLAPP_TEST_REDIS_URL``)
keeps these messages away from other runs. A missing Redis skips these tests with the
reason, and fails them under ``CI=true``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from mlapp import batch
from mlapp.batch import runner
from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version
from project.flowers.loading import load_flowers
from tests.artifacts import expected

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REPO = Path(django_settings.BASE_DIR)
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_URL = os.environ.get("MLAPP_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
#: A message whose worker vanished goes back to the queue after 10 s (not the default hour);
#: the surviving worker looks for such messages every second. (A chunk running longer than
#: that is handed out again while it runs: harmless, as writes are idempotent, but slower.)
TRANSPORT = {
    "visibility_timeout": 10,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 5,
}
#: This process sends chunks through its own app: the project's stays without a broker.
producer_app = Celery("mlapp-test-producer", broker=REDIS_URL, set_as_current=False)
producer_app.conf.update(broker_transport_options=TRANSPORT, task_ignore_result=True)
MLAPP = {
    "THREADS": 1,
    "CELERY_APP": "tests.batch.test_celery_workers.producer_app",
    "BATCH_MAX_RETRIES": 2,
    "BATCH_RETRY_DELAY": 0.2,
    "BATCH_SOURCES": {
        "flowers": {
            "queryset": "project.flowers.sources.flowers",
            "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        }
    },
}


# -- handlers the workers load (by dotted path) -------------------------------------------


def _log(event: dict) -> None:
    path = os.environ.get("MLAPP_TEST_WORKER_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(event) + "\n")


class LoggingHandler(BaseHandler):
    """Notes which worker runs which chunk (by its first row's first value)."""

    delay = 0.0

    def preprocess(self, inputs):
        if not any(np.asarray(value).any() for value in inputs.values()):
            return inputs  # the example (zeros) a load runs through the handler: no chunk
        first = float(np.asarray(inputs["x"])[0][0])
        _log({"model": self.model_name, "worker": os.getppid(), "first": first})
        time.sleep(self.delay)
        return inputs


class SlowHandler(LoggingHandler):
    delay = 0.6


class BrokenHandler(LoggingHandler):
    """Broken on the job's rows; its example (zeros) passes the check a load and a
    promotion run."""

    def preprocess(self, inputs):
        if any(np.asarray(value).any() for value in inputs.values()):
            super().preprocess(inputs)
            raise RuntimeError("broken on purpose")
        return inputs


# -- services and workers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_client():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if CI:
            pytest.fail(f"{message}; CI=true requires it.")
        pytest.skip(f"{message} (start redis-server to run the Celery worker tests)")
    client.flushdb()
    return client


class Worker:
    """One ``celery worker`` process (its own session, so a kill takes its children too)."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.hostname = f"{name}@{socket.gethostname()}"
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "project",
                    "worker",
                    "--pool=prefork",
                    "-c",
                    "1",
                    "-n",
                    self.hostname,
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.hostname} exited:\n{self.log()}")
            if producer_app.control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise RuntimeError(f"worker {self.hostname} not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="module")
def worker_env(redis_client, django_db_setup, django_db_blocker, tmp_path_factory):
    folder = tmp_path_factory.mktemp("celery-workers")
    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MLAPP_DB": "postgres",
        "PGDATABASE": database,
        "MLAPP_VAR_DIR": str(folder / "var"),
        "MLAPP_BROKER_URL": REDIS_URL,
        "MLAPP_CELERY_TRANSPORT_OPTIONS": json.dumps(TRANSPORT),
        "MLAPP_THREADS": "1",
        "MLAPP_TEST_WORKER_LOG": str(folder / "chunks.log"),
    }
    return env, folder


@pytest.fixture(scope="module")
def worker(worker_env):
    env, folder = worker_env
    started = Worker("w1", env, folder)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


@pytest.fixture
def shared(worker, worker_env, settings):
    """This test's files where the workers find them; the chunk log emptied; MLAPP set."""
    env, folder = worker_env
    settings.MEDIA_ROOT = str(Path(env["MLAPP_VAR_DIR"]) / "media")
    settings.MLAPP = MLAPP
    Path(env["MLAPP_TEST_WORKER_LOG"]).write_text("")
    return env, folder


def chunk_log(env: dict[str, str], model: str) -> list[dict]:
    lines = Path(env["MLAPP_TEST_WORKER_LOG"]).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["model"] == model]


def wait_for(job: BatchJob, *workers: Worker, timeout: float = 120) -> BatchJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not BatchJob.objects.active().filter(pk=job.pk).exists():
            job.refresh_from_db()
            return job
        time.sleep(0.2)
    job.refresh_from_db()
    logs = "\n".join(w.log() for w in workers)
    raise AssertionError(f"job {job.pk} still {job.status} ({job.done}/{job.total}):\n{logs}")


def affine(name: str, onnx_file: Path, handler: str = "LoggingHandler"):
    return register_version(
        name, onnx_file, handler=f"tests.batch.test_celery_workers.{handler}", promote=True
    )


def rows_file(folder: Path, count: int) -> Path:
    path = folder / f"rows-{count}.csv"
    path.write_text("key,a,b,c\n" + "".join(f"k{i},{i},1,0\n" for i in range(count)))
    return path


# -- tests ------------------------------------------------------------------------------------


def test_a_job_runs_on_a_worker_and_gives_the_in_process_answers(shared, worker, tmp_path):
    register_version(
        "iris-workers",
        REPO / "fixtures/iris/model.pt",
        signature=json.loads((REPO / "fixtures/iris/signature.json").read_text()),
        handler="project.demo.handlers.IrisHandler",
        promote=True,
    )
    path = tmp_path / "iris.csv"
    with (REPO / "fixtures/iris/flowers.csv").open() as fh:
        flowers = list(csv.DictReader(fh))
    fields = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    path.write_text(
        "key,sl,sw,pl,pw\n"
        + "".join(",".join([f["id"], *(f[c] for c in fields)]) + "\n" for f in flowers)
    )
    assert batch.executor() == "celery"
    on_workers = wait_for(batch.create_job("iris-workers", file=path, chunk_size=40), worker)
    assert (on_workers.status, on_workers.done, on_workers.total) == ("succeeded", 150, 150)
    here, plan = batch.prepare_job("iris-workers", file=path, chunk_size=40)
    runner.run_job(here.pk, plan.chunks, max_retries=0, retry_delay=0)
    theirs = dict(on_workers.predictions.values_list("key", "outputs"))
    ours = dict(here.predictions.values_list("key", "outputs"))
    assert theirs == ours
    assert theirs["1"]["label"] == ["setosa"]


def test_a_registered_source_runs_on_a_worker(shared, worker, onnx_file):
    register_version(
        "iris-source",
        REPO / "fixtures/iris/model.pt",
        signature=json.loads((REPO / "fixtures/iris/signature.json").read_text()),
        handler="project.demo.handlers.IrisHandler",
        promote=True,
    )
    load_flowers()
    job = wait_for(batch.create_job("iris-source", source="flowers", chunk_size=50), worker)
    assert (job.status, job.done) == ("succeeded", 150)
    assert job.predictions.get(key="150").outputs["label"] == ["virginica"]


def test_chunks_run_in_the_worker_processes(shared, worker, onnx_file):
    env, folder = shared
    affine("affine-where", onnx_file)
    job = wait_for(batch.create_job("affine-where", file=rows_file(folder, 30), chunk_size=10))
    assert (job.status, job.done) == ("succeeded", 30)
    assert {e["worker"] for e in chunk_log(env, "affine-where")} == {worker.pid}
    np.testing.assert_allclose(
        job.predictions.get(key="k7").outputs["y"], expected(np.array([[7, 1, 0]], np.float32))
    )


def test_cancel_stops_the_chunks_still_queued(shared, worker, redis_client, onnx_file):
    env, folder = shared
    affine("affine-cancel", onnx_file, "SlowHandler")
    job = batch.create_job("affine-cancel", file=rows_file(folder, 20), chunk_size=2)
    deadline = time.monotonic() + 60
    while not chunk_log(env, "affine-cancel") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batch.cancel(job)
    # Every message is taken and acknowledged: the queued chunks ran and did nothing.
    while redis_client.llen("celery") or redis_client.hlen("unacked"):
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.1)
    job.refresh_from_db()
    ran = len(chunk_log(env, "affine-cancel"))
    assert job.status == "cancelled"
    assert ran <= 2
    assert job.predictions.count() == job.done <= 2 * ran < job.total


def test_a_failing_chunk_is_retried_twice_on_celery_then_fails_the_job(shared, worker, onnx_file):
    env, folder = shared
    affine("affine-broken", onnx_file, "BrokenHandler")
    job = wait_for(batch.create_job("affine-broken", file=rows_file(folder, 3)), worker)
    assert job.status == "failed"
    assert job.error.startswith("Chunk 0 (items 0-2) failed after 3 attempt(s)")
    assert len(chunk_log(env, "affine-broken")) == 3
    assert job.predictions.count() == 0


def test_a_worker_killed_mid_chunk_loses_nothing_and_duplicates_nothing(
    shared, worker, worker_env, onnx_file
):
    env, folder = shared
    victim = Worker("victim", env, folder)
    try:
        victim.wait_ready()
        affine("affine-kill", onnx_file, "SlowHandler")
        job = batch.create_job("affine-kill", file=rows_file(folder, 40), chunk_size=4)
        deadline = time.monotonic() + 60
        started = []
        while not started:
            assert time.monotonic() < deadline, f"the victim ran no chunk:\n{victim.log()}"
            started = [e for e in chunk_log(env, "affine-kill") if e["worker"] == victim.pid]
            time.sleep(0.02)
        victim.kill()  # SIGKILL, mid-chunk: the handler sleeps before anything is written
        killed_chunk = started[0]["first"]
        job = wait_for(job, worker)
    finally:
        victim.stop()
    assert (job.status, job.done, job.failed, job.total) == ("succeeded", 40, 0, 40)
    keys = list(job.predictions.values_list("key", flat=True))
    assert sorted(keys) == sorted(f"k{i}" for i in range(40))
    # The chunk the victim was running also ran on the surviving worker.
    runs = {e["worker"] for e in chunk_log(env, "affine-kill") if e["first"] == killed_chunk}
    assert runs == {victim.pid, worker.pid}


def test_run_batch_waits_for_the_workers_with_a_progress_bar(shared, worker, onnx_file, tmp_path):
    env, folder = shared
    affine("affine-cli", onnx_file)
    output = tmp_path / "out.jsonl"
    out, err = StringIO(), StringIO()
    call_command(
        "run_batch",
        "affine-cli",
        "--input",
        str(rows_file(folder, 25)),
        "--chunk-size",
        "5",
        "--output",
        str(output),
        stdout=out,
        stderr=err,
    )
    assert "25/25" in err.getvalue()
    assert "succeeded: affine-cli v1, 25 items, 0 failed" in out.getvalue()
    assert len(output.read_text().splitlines()) == 25
    assert {e["worker"] for e in chunk_log(env, "affine-cli")} == {worker.pid}


def test_run_batch_enqueue_prints_the_job_id_and_returns(shared, worker, onnx_file):
    _, folder = shared
    affine("affine-enqueue", onnx_file)
    out = StringIO()
    call_command(
        "run_batch",
        "affine-enqueue",
        "--input",
        str(rows_file(folder, 10)),
        "--enqueue",
        stdout=out,
    )
    job = BatchJob.objects.get(pk=int(out.getvalue().strip()))
    assert wait_for(job, worker).status == "succeeded"
