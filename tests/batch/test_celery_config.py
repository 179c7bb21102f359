"""Celery wiring without a broker: task options, the project's app, choosing the executor,
and one message per chunk sent on commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.test import override_settings

from mlapp import batch
from mlapp.batch import jobs
from mlapp.batch.jobs import TASK_NAME
from mlapp.exceptions import QueueUnavailable
from mlapp.models import BatchJob
from mlapp.tasks import run_batch_chunk
from mlapp.versions.lifecycle import register_version

REPO = Path(django_settings.BASE_DIR)


class StubApp:
    """Stands in for a Celery app: records what would be sent."""

    def __init__(self, broker_url: str | None) -> None:
        self.conf = type("Conf", (), {"broker_url": broker_url})()
        self.sent: list[tuple] = []

    @contextmanager
    def producer_or_acquire(self):
        yield "producer"

    def send_task(self, name, args, kwargs, producer):
        self.sent.append((name, args, kwargs, producer))


with_broker = StubApp("redis://127.0.0.1:6379/9")
without_broker = StubApp(None)
#: A real app whose broker refuses connections at once.
dead_broker = Celery("dead", broker="redis://127.0.0.1:9/0", set_as_current=False)
dead_broker.conf.update(task_publish_retry=False, broker_connection_retry=False)


def test_the_chunk_task_is_acknowledged_late_and_requeued_when_its_worker_dies():
    assert run_batch_chunk.name == TASK_NAME
    assert run_batch_chunk.acks_late is True
    assert run_batch_chunk.reject_on_worker_lost is True
    assert run_batch_chunk.ignore_result is True


@pytest.mark.parametrize(
    ("mlapp", "executor"),
    [
        ({"CELERY_APP": f"{__name__}.with_broker"}, "celery"),
        ({"CELERY_APP": f"{__name__}.without_broker"}, "thread"),
        (
            {"CELERY_APP": f"{__name__}.with_broker", "BATCH_EXECUTOR": "thread"},
            "thread",
        ),
        (
            {"CELERY_APP": f"{__name__}.without_broker", "BATCH_EXECUTOR": "celery"},
            "celery",
        ),
    ],
)
def test_auto_executor_is_celery_exactly_when_the_app_has_a_broker(mlapp, executor):
    with override_settings(MLAPP=mlapp):
        assert batch.executor() == executor


def test_the_project_app_reads_broker_and_transport_options_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MLAPP_BROKER_URL": "redis://127.0.0.1:6379/7",
        "MLAPP_CELERY_TRANSPORT_OPTIONS": '{"visibility_timeout": 5}',
        "MLAPP_VAR_DIR": str(tmp_path),
    }
    code = (
        "import django, json; django.setup(); from project import celery_app as a; "
        "a.loader.import_default_modules(); "
        "print(json.dumps([a.conf.broker_url, a.conf.task_acks_late, "
        "a.conf.task_reject_on_worker_lost, a.conf.worker_prefetch_multiplier, "
        "a.conf.broker_transport_options, sorted(t for t in a.tasks if t.startswith('mlapp'))]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "redis://127.0.0.1:6379/7",
        True,
        True,
        1,
        {
            "visibility_timeout": 5,  # the environment's, over the example's 60
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 30,
            "socket_connect_timeout": 3,
            "socket_timeout": 5,
        },
        ["mlapp.check_drift", "mlapp.run_batch_chunk"],
    ]


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n" + "1,2,3\n" * 7)
    return path


@pytest.mark.django_db
def test_one_message_per_chunk_is_sent_when_the_transaction_commits(
    affine, rows, django_capture_on_commit_callbacks
):
    with_broker.sent.clear()
    mlapp = {
        "CELERY_APP": f"{__name__}.with_broker",
        "BATCH_MAX_RETRIES": 2,
        "BATCH_RETRY_DELAY": 0.5,
    }
    with override_settings(MLAPP=mlapp), django_capture_on_commit_callbacks() as callbacks:
        job = batch.create_job("affine", file=rows, chunk_size=3)
        assert with_broker.sent == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert [(name, args[0], args[1]["count"]) for name, args, _, _ in with_broker.sent] == [
        (TASK_NAME, job.pk, 3),
        (TASK_NAME, job.pk, 3),
        (TASK_NAME, job.pk, 1),
    ]
    assert with_broker.sent[0][2] == {"max_retries": 2, "retry_delay": 0.5}
    json.dumps([args for _, args, _, _ in with_broker.sent])  # a JSON message body


@pytest.mark.django_db
def test_a_broker_that_is_down_fails_the_job_and_answers_503(
    affine, rows, django_capture_on_commit_callbacks
):
    with (
        pytest.raises(QueueUnavailable) as caught,
        override_settings(MLAPP={"CELERY_APP": f"{__name__}.dead_broker"}),
        django_capture_on_commit_callbacks(execute=True),
    ):
        batch.create_job("affine", file=rows)
    assert caught.value.status_code == 503
    job = BatchJob.objects.get()
    assert job.status == "failed"
    assert "could not be queued" in job.error


class StuckApp(StubApp):
    """A broker that takes the connection and never answers."""

    def __init__(self) -> None:
        super().__init__("redis://stuck")
        self.release = threading.Event()

    @contextmanager
    def producer_or_acquire(self):
        self.release.wait(30)
        yield "producer"


stuck_broker = StuckApp()


@pytest.mark.django_db
def test_a_stuck_broker_answers_503_within_the_enqueue_timeout(
    affine, rows, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(jobs, "ENQUEUE_TIMEOUT", 0.5)
    started = time.monotonic()
    try:
        with (
            pytest.raises(QueueUnavailable, match=r"no answer in 0\.5s"),
            override_settings(MLAPP={"CELERY_APP": f"{__name__}.stuck_broker"}),
            django_capture_on_commit_callbacks(execute=True),
        ):
            batch.create_job("affine", file=rows)
        assert time.monotonic() - started < 5
    finally:
        stuck_broker.release.set()
    job = BatchJob.objects.get()
    assert job.status == "failed"
    assert job.error == "The chunks could not be queued: no answer in 0.5s"
