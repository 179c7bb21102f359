"""``manage.py purge_predictions``: old finished jobs go, with predictions and files."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from mlapp.models import BatchJob, BatchPrediction
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def _job(version, status: str, days_ago: float, keys: int = 3) -> BatchJob:
    job = BatchJob(version=version, status=status, total=keys, done=keys)
    job.source_file.save("in.csv", ContentFile(b"a,b,c\n1,2,3\n"), save=False)
    job.finished_at = timezone.now() - timedelta(days=days_ago) if status != "running" else None
    job.save()
    BatchPrediction.objects.bulk_create(
        BatchPrediction(job=job, model=version.model, version=version, key=str(i))
        for i in range(keys)
    )
    return job


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_predictions", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_old_finished_jobs_with_their_predictions_and_files(version):
    old_failed = _job(version, "failed", 40)
    old_succeeded = _job(version, "succeeded", 35)
    newest_succeeded = _job(version, "succeeded", 31)
    recent = _job(version, "succeeded", 2)
    running = _job(version, "running", 0)
    old_file = Path(old_failed.source_file.path)
    out = purge("--days", "30", "--include-latest")
    assert "Deleted 3 batch job(s) and 9 prediction(s)" in out
    assert set(BatchJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not BatchPrediction.objects.filter(
        job_id__in=[old_failed.pk, old_succeeded.pk, newest_succeeded.pk]
    ).exists()
    assert not old_file.exists()


def test_purge_keeps_each_models_latest_succeeded_job_by_default(version):
    old = _job(version, "succeeded", 50)
    latest = _job(version, "succeeded", 40)
    out = purge("--days", "30")
    assert "Deleted 1 batch job(s) and 3 prediction(s)" in out
    assert list(BatchJob.objects.values_list("pk", flat=True)) == [latest.pk]
    assert not BatchJob.objects.filter(pk=old.pk).exists()


def test_purge_dry_run_counts_and_deletes_nothing(version):
    _job(version, "failed", 40)
    out = purge("--days", "30", "--dry-run")
    assert "Would delete 1 batch job(s) and 3 prediction(s)" in out
    assert BatchPrediction.objects.count() == 3


def test_purge_needs_an_age_limit():
    with pytest.raises(CommandError, match="--days"):
        purge()
    with pytest.raises(CommandError, match=">= 0"):
        purge("--days", "-1")
