"""``BatchJob.objects``: the one place that says which jobs are active and which finished."""

from __future__ import annotations

import pytest

from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs(onnx_file):
    version = register_version("affine", onnx_file, promote=True)
    return {
        status: BatchJob.objects.create(version=version, status=status, source_name="s")
        for status in BatchJob.Status.values
    }


def test_active_jobs_are_the_pending_and_running_ones(jobs):
    assert {job.status for job in BatchJob.objects.active()} == {"pending", "running"}


def test_finished_jobs_are_the_succeeded_failed_and_cancelled_ones(jobs):
    assert {job.status for job in BatchJob.objects.finished()} == {
        "succeeded",
        "failed",
        "cancelled",
    }


def test_every_status_is_either_active_or_finished(jobs):
    active = set(BatchJob.objects.active().values_list("pk", flat=True))
    finished = set(BatchJob.objects.finished().values_list("pk", flat=True))
    assert active.isdisjoint(finished)
    assert active | finished == {job.pk for job in jobs.values()}


def test_active_and_finished_chain_with_other_filters(jobs):
    running = jobs["running"]
    assert list(BatchJob.objects.filter(pk=running.pk).active()) == [running]
    assert not BatchJob.objects.finished().filter(pk=running.pk).exists()
