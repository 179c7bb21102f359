"""The embedded default: with no broker, a job runs in a background thread of this process.

Transactional tests: chunks are handed over on commit, which never comes inside a test
wrapped in a transaction.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import transaction

from mlapp import batch
from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version
from tests.artifacts import expected

pytestmark = pytest.mark.django_db(transaction=True)


class ThreadRecordingHandler(BaseHandler):
    """Notes the thread each call runs in."""

    threads: list[str] = []

    def preprocess(self, inputs):
        type(self).threads.append(threading.current_thread().name)
        return inputs


@pytest.fixture
def affine(onnx_file):
    version = register_version(
        "affine",
        onnx_file,
        handler="tests.batch.test_inprocess.ThreadRecordingHandler",
        promote=True,
    )
    # The upload and the promotion ran the handler's example here, in this thread.
    ThreadRecordingHandler.threads = []
    return version


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n" + "".join(f"{i},{i},{i}\n" for i in range(25)))
    return path


def test_without_a_broker_the_executor_is_a_thread_of_this_process():
    assert batch.executor() == "thread"


def test_a_job_runs_in_a_background_thread_after_commit(affine, rows):
    job = batch.create_job("affine", file=rows, chunk_size=10)
    assert batch.inprocess.wait(timeout=60)
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("succeeded", 25, 25)
    assert ThreadRecordingHandler.threads
    assert all(name.startswith("mlapp-batch") for name in ThreadRecordingHandler.threads)
    np.testing.assert_allclose(
        job.predictions.get(key="24").outputs["y"], expected(np.full((1, 3), 24, np.float32))
    )


def test_jobs_queued_in_process_run_one_after_another(affine, rows):
    # One transaction: this thread writes nothing while the runner's thread does (the
    # in-memory test database locks instead of waiting, unlike a SQLite file in WAL mode).
    with transaction.atomic():
        first = batch.create_job("affine", file=rows, chunk_size=5)
        second = batch.create_job("affine", file=rows, chunk_size=5)
    assert batch.inprocess.wait(timeout=60)
    statuses = BatchJob.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", "done")
    assert sorted(statuses) == [("succeeded", 25), ("succeeded", 25)]


def test_a_job_created_in_a_rolled_back_transaction_never_runs(affine, rows):
    def create_then_fail() -> None:
        with transaction.atomic():
            batch.create_job("affine", file=rows)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        create_then_fail()
    assert batch.inprocess.wait(timeout=60)
    assert not BatchJob.objects.exists()
    assert ThreadRecordingHandler.threads == []


def test_a_cancelled_job_stops_in_the_thread_too(affine, rows):
    with transaction.atomic():
        job = batch.create_job("affine", file=rows, chunk_size=5)
        # Cancelled before the commit hands it over: no chunk may run.
        batch.cancel(job)
    assert batch.inprocess.wait(timeout=60)
    job.refresh_from_db()
    assert (job.status, job.done) == ("cancelled", 0)
    assert ThreadRecordingHandler.threads == []
