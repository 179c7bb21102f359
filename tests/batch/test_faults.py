"""Faults during a batch job on real Celery workers: every key is stored exactly once and the
job ends succeeded (or resumable, then succeeded).

A PRIVATE redis-server on a free port (the shared one at 6379 is left alone, so stopping it
harms no other test) and ``celery -A project worker`` subprocesses on this run's PostgreSQL
database. PostgreSQL pass only; a missing redis-server fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.db import connection

from mlapp import batch
from mlapp.models import BatchJob
from tests.batch.test_celery_workers import (
    CI,
    Worker,
    affine,
    chunk_log,
    rows_file,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRANSPORT = {
    "visibility_timeout": 8,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 5,
}
#: This process sends chunks to the private Redis through this app (broker set below).
producer_app = Celery("mlapp-test-faults", set_as_current=False)
producer_app.conf.update(broker_transport_options=TRANSPORT, task_ignore_result=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this module's own, without persistence: a restart empties it."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class FaultWorker(Worker):
    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.hostname} exited:\n{self.log()}")
            try:
                if producer_app.control.ping(destination=[self.hostname], timeout=0.5):
                    return
            except (ConnectionError, redis.ConnectionError):
                # A pooled connection to a Redis that restarted: the next try reopens it.
                time.sleep(0.2)
        raise RuntimeError(f"worker {self.hostname} not ready after {timeout}s:\n{self.log()}")


@pytest.fixture(scope="module")
def private_redis():
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: the fault tests start their own"
        if CI:
            pytest.fail(f"{message}; CI=true requires it.")
        pytest.skip(message)
    server = PrivateRedis()
    server.start()
    producer_app.conf.broker_url = server.url
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(private_redis, django_db_setup, django_db_blocker, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MLAPP_DB": "postgres",
        "PGDATABASE": database,
        "MLAPP_VAR_DIR": str(folder / "var"),
        "MLAPP_BROKER_URL": private_redis.url,
        "MLAPP_CELERY_TRANSPORT_OPTIONS": json.dumps(TRANSPORT),
        "MLAPP_THREADS": "1",
        "MLAPP_TEST_WORKER_LOG": str(folder / "chunks.log"),
    }, folder


@pytest.fixture(scope="module")
def worker(env):
    environ, folder = env
    started = FaultWorker("f1", environ, folder)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


@pytest.fixture
def shared(worker, env, settings):
    environ, folder = env
    settings.MEDIA_ROOT = str(Path(environ["MLAPP_VAR_DIR"]) / "media")
    settings.MLAPP = {
        "THREADS": 1,
        "CELERY_APP": f"{__name__}.producer_app",
        "BATCH_MAX_RETRIES": 1,
        "BATCH_RETRY_DELAY": 0.2,
    }
    Path(environ["MLAPP_TEST_WORKER_LOG"]).write_text("")
    return environ, folder


def _first_chunk_started(environ: dict[str, str], model: str, worker_pid: int | None = None):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = chunk_log(environ, model)
        if worker_pid is not None:
            runs = [r for r in runs if r["worker"] == worker_pid]
        if runs:
            return runs[0]
        time.sleep(0.02)
    raise AssertionError(f"no chunk of {model} started")


def _every_key_once(job: BatchJob, count: int, reliability, fault: str) -> None:
    keys = list(job.predictions.values_list("key", flat=True))
    expected = {f"k{i}" for i in range(count)}
    reliability.add(
        "batch",
        f"rows of a Celery job through: {fault}",
        tried=count,
        bad=len(expected - set(keys)) + len(keys) - len(set(keys)),
        unit="lost or duplicated",
    )
    assert sorted(keys) == sorted(f"k{i}" for i in range(count))  # none lost, none twice
    assert (job.status, job.done, job.failed, job.total) == ("succeeded", count, 0, count)


def test_a_whole_worker_sigkilled_mid_job_loses_and_duplicates_nothing(
    shared, worker, onnx_file, reliability
):
    environ, folder = shared
    victim = FaultWorker("victim", environ, folder)
    try:
        victim.wait_ready()
        affine("fault-kill", onnx_file, "SlowHandler")
        job = batch.create_job("fault-kill", file=rows_file(folder, 24), chunk_size=4)
        _first_chunk_started(environ, "fault-kill", victim.pid)
        victim.kill()  # the worker and its pool process: nobody rejects the message
        job = wait_for(job, worker, timeout=25)
    finally:
        victim.stop()
    _every_key_once(job, 24, reliability, "a worker SIGKILLed mid-chunk")


def test_redis_stopped_and_restarted_empty_mid_job_then_resumed(
    shared, worker, private_redis, onnx_file, reliability
):
    environ, folder = shared
    affine("fault-redis", onnx_file, "SlowHandler")
    job = batch.create_job("fault-redis", file=rows_file(folder, 24), chunk_size=4)
    _first_chunk_started(environ, "fault-redis")
    private_redis.stop()  # its queued chunks are gone with it (no persistence)
    time.sleep(1)
    private_redis.start()
    time.sleep(3)  # nothing left to run: the job stays "running", stuck
    job.refresh_from_db()
    assert job.status == "running"
    assert job.done < 24
    worker.wait_ready(timeout=20)  # the worker reconnected to the new, empty Redis
    batch.resume(job, stuck_after=timedelta(0))
    job = wait_for(job, worker, timeout=25)
    _every_key_once(job, 24, reliability, "Redis restarted empty, then resumed")


def test_postgresql_backends_terminated_mid_job_are_waited_for(
    shared, worker, onnx_file, reliability
):
    environ, folder = shared
    affine("fault-pg", onnx_file, "SlowHandler")
    job = batch.create_job("fault-pg", file=rows_file(folder, 24), chunk_size=4)
    _first_chunk_started(environ, "fault-pg")
    terminated = 0
    for _ in range(3):  # the worker's connections, while chunks run and write
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated += cursor.fetchone()[0]
        time.sleep(0.7)
    assert terminated >= 1
    job = wait_for(job, worker, timeout=25)
    _every_key_once(job, 24, reliability, "PostgreSQL backends terminated")
