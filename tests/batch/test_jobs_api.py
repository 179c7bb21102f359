"""The batch routes of the native API, which create jobs through ``mlapp.batch.create_job``.

A stub Celery app records the chunks the API queues; the test then runs them the way a
worker would, so every step is deterministic.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from mlapp.batch import runner
from mlapp.batch.sources import Chunk
from mlapp.models import BatchJob
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


class Recorder:
    """A Celery app that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.conf = type("Conf", (), {"broker_url": "redis://stub"})()
        self.sent: list[tuple] = []

    @contextmanager
    def producer_or_acquire(self):
        yield None

    def send_task(self, name, args, kwargs, producer):
        self.sent.append(args)


recorder = Recorder()


@pytest.fixture
def api(onnx_file):
    recorder.sent.clear()
    register_version("affine", onnx_file, promote=True)
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    with override_settings(MLAPP={"THREADS": 1, "CELERY_APP": f"{__name__}.recorder"}):
        yield client


def _upload(content: bytes, name: str = "rows.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_a_job_created_over_the_api_is_queued_run_and_served_by_key(
    api, django_capture_on_commit_callbacks
):
    rows = b"key,a,b,c\n" + b"".join(b"k%d,%d,1,0\n" % (i, i) for i in range(5))
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/mlapp/jobs/", {"model": "affine", "file": _upload(rows)}, format="multipart"
        )
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    assert created.json()["total"] == 5
    assert [args[0] for args in recorder.sent] == [job_id]
    for args in recorder.sent:  # what a worker does with each message
        runner.run_chunk(args[0], Chunk.from_dict(args[1]))
    detail = api.get(f"/api/mlapp/jobs/{job_id}/").json()
    assert (detail["status"], detail["done"], detail["progress"]) == ("succeeded", 5, 1.0)
    found = api.get("/api/mlapp/models/affine/predictions/k3").json()
    assert (found["key"], found["outputs"]) == ("k3", {"y": [[5.5, -3.5]]})


def test_a_bad_file_over_the_api_is_a_400_and_leaves_no_job(
    api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/mlapp/jobs/",
            {"model": "affine", "file": _upload(b"key,a,b\nx,1,2\n")},
            format="multipart",
        )
    assert response.status_code == 400
    assert "takes 3 value(s) per row; 2 column(s)" in response.json()["error"]
    assert not BatchJob.objects.exists()
    assert recorder.sent == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.csv", b"key,a,b\nx,1,2\n", "takes 3 value(s) per row"),
        ("rows.ndjson", b'{"key": "a", "inputs": [[1, 2, 3]]}\nnot json\n', "not valid JSON"),
        ("rows.npy", b"not an array", "Not a readable NumPy file"),
        ("rows.xlsx", b"a,b,c\n1,2,3\n", "is not a file a batch job reads"),
    ],
)
def test_a_bad_file_over_the_api_stores_no_job_and_no_file(api, name, content, message):
    done = api.post("/api/mlapp/jobs/", {"model": "affine", "file": _upload(b"a,b,c\n1,2,3\n")})
    assert done.status_code == 201, done.content
    jobs_before = BatchJob.objects.count()
    files_before = sorted(Path(django_settings.MEDIA_ROOT).rglob("*"))
    response = api.post(
        "/api/mlapp/jobs/", {"model": "affine", "file": _upload(content, name)}, format="multipart"
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert BatchJob.objects.count() == jobs_before
    assert sorted(Path(django_settings.MEDIA_ROOT).rglob("*")) == files_before


def test_an_ndjson_file_over_the_api_is_a_job_like_jsonl(api, django_capture_on_commit_callbacks):
    rows = b'{"key": "a", "inputs": [[1, 2, 3]]}\n{"key": "b", "inputs": [[0, 0, 1]]}\n'
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post(
            "/api/mlapp/jobs/",
            {"model": "affine", "file": _upload(rows, "rows.ndjson")},
            format="multipart",
        )
    assert created.status_code == 201, created.content
    assert created.json()["total"] == 2
    assert created.json()["source_file"].endswith(".ndjson")
    for args in recorder.sent:
        runner.run_chunk(args[0], Chunk.from_dict(args[1]))
    found = api.get("/api/mlapp/models/affine/predictions/a").json()
    assert found["outputs"] == {"y": [[14.5, 1.5]]}


def test_a_registered_source_over_the_api_with_unknown_name_is_a_400(api):
    response = api.post("/api/mlapp/jobs/", {"model": "affine", "source": "nope"}, format="json")
    assert response.status_code == 400
    assert "No batch source named 'nope'" in response.json()["error"]
    assert not BatchJob.objects.exists()


def test_job_predictions_download_as_jsonl_and_csv(api, django_capture_on_commit_callbacks):
    rows = b"key,a,b,c\nfirst,1,2,3\nsecond,0,0,1\n"
    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post(
            "/api/mlapp/jobs/", {"model": "affine", "file": _upload(rows)}, format="multipart"
        ).json()["id"]
    for args in recorder.sent:
        runner.run_chunk(args[0], Chunk.from_dict(args[1]))
    jsonl = api.get(f"/api/mlapp/jobs/{job_id}/download")
    assert jsonl.status_code == 200
    lines = [json.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert {line["key"]: line["outputs"]["y"] for line in lines} == {
        "first": [[14.5, 1.5]],
        "second": [[3.5, 0.5]],
    }
    assert all((line["model"], line["version"]) == ("affine", 1) for line in lines)
    csv_body = b"".join(api.get(f"/api/mlapp/jobs/{job_id}/download?as=csv").streaming_content)
    assert csv_body.decode().splitlines()[0].startswith("key,")
    bad = api.get(f"/api/mlapp/jobs/{job_id}/download?as=xml")
    assert bad.status_code == 400
    assert "csv" in bad.json()["error"]
    assert APIClient().get(f"/api/mlapp/jobs/{job_id}/download").status_code == 403
