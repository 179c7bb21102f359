"""Resuming a failed, cancelled or stuck job where it stopped (Python, API, admin,
``run_batch --resume``), and outages of the database waited for instead of failing a job."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from mlapp import batch
from mlapp.batch import outages, runner
from mlapp.batch.sources import Chunk
from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob
from mlapp.tasks import run_batch_chunk
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

POLICY = {"max_retries": 0, "retry_delay": 0.0}


class BreakableHandler(BaseHandler):
    """Notes the first value of every call; fails for rows from ``broken_from`` on."""

    broken_from: float | None = None
    firsts: list[float] = []

    def preprocess(self, inputs):
        first = float(np.asarray(inputs["x"])[0][0])
        type(self).firsts.append(first)
        if self.broken_from is not None and first >= self.broken_from:
            raise RuntimeError("broken on purpose")
        return inputs


class Recorder:
    """A Celery app that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.conf = type("Conf", (), {"broker_url": "redis://stub"})()
        self.sent: list[tuple] = []

    @contextmanager
    def producer_or_acquire(self):
        yield None

    def send_task(self, name, args, kwargs, producer):
        self.sent.append((args, kwargs))


recorder = Recorder()


@pytest.fixture
def affine(onnx_file):
    BreakableHandler.broken_from = None
    BreakableHandler.firsts = []
    recorder.sent.clear()
    return register_version(
        "affine", onnx_file, handler="tests.batch.test_resume.BreakableHandler", promote=True
    )


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("key,a,b,c\n" + "".join(f"k{i},{i},1,0\n" for i in range(30)))
    return path


@pytest.fixture
def failed_job(affine, rows):
    """A job of 30 rows in chunks of 10 that failed on its second chunk."""
    BreakableHandler.broken_from = 10
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert (job.status, job.done) == ("failed", 10)
    BreakableHandler.broken_from = None
    BreakableHandler.firsts = []
    return job


def _keys(job: BatchJob) -> list[str]:
    return sorted(job.predictions.values_list("key", flat=True), key=lambda k: int(k[1:]))


def _all_keys() -> list[str]:
    return [f"k{i}" for i in range(30)]


# -- Python --------------------------------------------------------------------------------


def test_a_failed_job_resumes_where_it_stopped_and_stores_every_key_once(failed_job):
    job, plan = batch.prepare_resume(failed_job, chunk_size=10)
    assert (job.status, job.error, job.finished_at) == ("pending", "", None)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert (job.status, job.done, job.failed, job.total) == ("succeeded", 30, 0, 30)
    assert _keys(job) == _all_keys()
    # Only the missing rows ran through the model again.
    assert min(BreakableHandler.firsts) == 10


def test_a_resumed_job_keeps_the_time_it_first_started(failed_job):
    started = failed_job.started_at
    job, plan = batch.prepare_resume(failed_job)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert job.started_at == started


def test_resume_on_celery_queues_every_chunk_to_skip_the_stored_keys(
    failed_job, django_capture_on_commit_callbacks
):
    with (
        override_settings(MLAPP={"CELERY_APP": f"{__name__}.recorder"}),
        django_capture_on_commit_callbacks(execute=True),
    ):
        batch.resume(failed_job, chunk_size=10)
    assert [kwargs["skip_stored"] for _, kwargs in recorder.sent] == [True, True, True]
    for args, kwargs in recorder.sent:  # what a worker does with each message
        run_batch_chunk.apply(args=args, kwargs=kwargs).get()
    failed_job.refresh_from_db()
    assert (failed_job.status, failed_job.done) == ("succeeded", 30)
    assert _keys(failed_job) == _all_keys()
    assert min(BreakableHandler.firsts) == 10


def test_a_job_whose_every_key_is_stored_resumes_straight_to_succeeded(affine, rows):
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    BatchJob.objects.filter(pk=job.pk).update(status="running")  # its last update was lost
    an_hour_ago = timezone.now() - timedelta(hours=1)
    BatchJob.objects.filter(pk=job.pk).update(created_at=an_hour_ago, started_at=an_hour_ago)
    job.predictions.update(created_at=timezone.now() - timedelta(hours=1))
    resumed, plan = batch.prepare_resume(job)
    assert plan is None
    assert resumed.status == "succeeded"


def test_a_running_job_that_makes_progress_is_not_resumed(affine, rows):
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_chunk(job.pk, plan.chunks[0])
    with pytest.raises(batch.jobs.Conflict, match="is running and stored predictions 0s ago"):
        batch.resume(job)


def test_a_job_that_stored_nothing_for_a_while_is_stuck_and_resumes(affine, rows):
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_chunk(job.pk, plan.chunks[0])  # then its other chunks were lost
    job.refresh_from_db()
    assert not batch.resumable(job)
    later = timezone.now() + batch.jobs.STUCK_AFTER
    job.predictions.update(created_at=later - batch.jobs.STUCK_AFTER - timedelta(seconds=1))
    BatchJob.objects.filter(pk=job.pk).update(
        created_at=later - timedelta(hours=1), started_at=later - timedelta(hours=1)
    )
    job.refresh_from_db()
    assert batch.jobs.is_stuck(job, now=later)
    resumed, plan = batch.prepare_resume(job, stuck_after=timedelta(0))
    runner.run_job(resumed.pk, plan.chunks, **POLICY)
    resumed.refresh_from_db()
    assert (resumed.status, resumed.done) == ("succeeded", 30)
    assert _keys(resumed) == _all_keys()


# -- the API ---------------------------------------------------------------------------------


@pytest.fixture
def staff():
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    return client


def test_api_resume_answers_the_job_pending_then_409_once_it_succeeded(
    failed_job, staff, django_capture_on_commit_callbacks
):
    with (
        override_settings(MLAPP={"CELERY_APP": f"{__name__}.recorder"}),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = staff.post(f"/api/mlapp/jobs/{failed_job.pk}/resume")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["error"]) == ("pending", "")
    for args, kwargs in recorder.sent:
        runner.run_chunk(args[0], Chunk.from_dict(args[1]), skip_stored=kwargs["skip_stored"])
    again = staff.post(f"/api/mlapp/jobs/{failed_job.pk}/resume")
    assert again.status_code == 409
    assert again.json() == {
        "error": f"Batch job {failed_job.pk} succeeded: there is nothing left to resume."
    }


def test_api_resume_of_a_running_job_is_409_and_of_no_job_404(affine, rows, staff):
    job, _ = batch.prepare_job("affine", file=rows)
    BatchJob.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    assert staff.post(f"/api/mlapp/jobs/{job.pk}/resume").status_code == 409
    missing = staff.post("/api/mlapp/jobs/999999/resume")
    assert (missing.status_code, missing.json()) == (404, {"error": "No batch job 999999."})


def test_api_resume_needs_staff(failed_job):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("someone"))
    assert client.post(f"/api/mlapp/jobs/{failed_job.pk}/resume").status_code == 403
    failed_job.refresh_from_db()
    assert failed_job.status == "failed"


def test_api_resume_of_a_job_whose_file_is_gone_is_400_and_leaves_it(failed_job, staff):
    failed_job.source_file.delete(save=False)
    BatchJob.objects.filter(pk=failed_job.pk).update(source_file="")
    response = staff.post(f"/api/mlapp/jobs/{failed_job.pk}/resume")
    assert response.status_code == 400
    failed_job.refresh_from_db()
    assert failed_job.status == "failed"


# -- the admin -------------------------------------------------------------------------------


def test_admin_resume_action_asks_first_then_resumes_only_failed_jobs(
    failed_job, client, django_capture_on_commit_callbacks
):
    done = BatchJob.objects.create(version=failed_job.version, status="succeeded", total=1)
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    data = {"action": "resume_selected", ACTION_CHECKBOX_NAME: [failed_job.pk, done.pk]}
    page = client.post("/admin/mlapp/batchjob/", data)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Resume batch jobs?" in html
    assert f"job {failed_job.pk}" in html
    failed_job.refresh_from_db()
    assert failed_job.status == "failed"  # nothing happens before the confirming POST
    with (
        override_settings(MLAPP={"CELERY_APP": f"{__name__}.recorder"}),
        django_capture_on_commit_callbacks(execute=True),
    ):
        answer = client.post("/admin/mlapp/batchjob/", {**data, "post": "yes"}, follow=True)
    messages = [str(m) for m in answer.context["messages"]]
    assert "Resumed 1 batch job: its missing items are queued." in messages
    assert "1 job succeeded or is still making progress, and was left as it was." in messages
    failed_job.refresh_from_db()
    assert failed_job.status == "pending"
    assert len(recorder.sent) == 1  # the default chunk size: one chunk of 30


# -- run_batch --resume ------------------------------------------------------------------------


def test_run_batch_resume_runs_the_missing_items_here(failed_job, tmp_path):
    out, err = StringIO(), StringIO()
    output = tmp_path / "out.jsonl"
    call_command(
        "run_batch",
        "--resume",
        str(failed_job.pk),
        "--in-process",
        "--output",
        str(output),
        stdout=out,
        stderr=err,
    )
    assert f"Job {failed_job.pk} succeeded: affine v1, 30 items, 0 failed" in out.getvalue()
    assert "30/30" in err.getvalue()
    keys = [json.loads(line)["key"] for line in output.read_text().splitlines()]
    assert sorted(keys) == sorted(_all_keys())
    assert min(BreakableHandler.firsts) == 10


def test_run_batch_resume_of_a_succeeded_job_says_why_not(failed_job):
    call_command("run_batch", "--resume", str(failed_job.pk), "--in-process", stdout=StringIO())
    with pytest.raises(CommandError, match="succeeded: there is nothing left to resume"):
        call_command("run_batch", "--resume", str(failed_job.pk), stdout=StringIO())


def test_run_batch_resume_takes_no_model(failed_job):
    with pytest.raises(CommandError, match="--resume takes the job's id only"):
        call_command("run_batch", "affine", "--resume", str(failed_job.pk), stdout=StringIO())


# -- outages ---------------------------------------------------------------------------------


@pytest.fixture
def outage(monkeypatch):
    """run_chunk fails ``count`` times as if the database went away, then runs."""
    real = runner.run_chunk
    state = {"left": 0, "calls": 0}

    def flaky(*args, **kwargs):
        state["calls"] += 1
        if state["left"]:
            state["left"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_chunk", flaky)
    monkeypatch.setattr(outages, "outage_delay", lambda attempt: 0.0)
    return state


def test_a_database_outage_is_waited_for_and_not_counted_as_a_failure(affine, rows, outage):
    outage["left"] = 5  # more than max_retries (0): an outage is not the chunk's fault
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert (job.status, job.done) == ("succeeded", 30)
    assert outage["calls"] == 3 + 5


def test_a_database_outage_longer_than_the_patience_fails_the_job(affine, rows, outage):
    outage["left"] = outages.OUTAGE_RETRIES + 1
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=10)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "server closed the connection" in job.error


def test_the_celery_task_retries_an_outage_apart_from_its_failures(affine, rows, outage):
    outage["left"] = 4  # more than the task's default max_retries (3) and than POLICY's 0
    job, plan = batch.prepare_job("affine", file=rows, chunk_size=30)
    result = run_batch_chunk.apply(args=(job.pk, plan.chunks[0].to_dict()), kwargs=POLICY)
    assert result.get() == {"written": 30, "failed": 0}
    assert outage["calls"] == 5
    job.refresh_from_db()
    assert (job.status, job.done) == ("succeeded", 30)


def test_outage_delays_double_up_to_a_cap():
    delays = [outages.outage_delay(n) for n in range(1, outages.OUTAGE_RETRIES + 1)]
    assert outages.OUTAGE_FIRST_DELAY * 0.75 <= delays[0] <= outages.OUTAGE_FIRST_DELAY
    assert max(delays) <= outages.OUTAGE_MAX_DELAY
    assert 120 < sum(delays) < 900  # minutes of patience, not seconds, not hours
