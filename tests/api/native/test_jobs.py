"""Batch job routes (create, list, detail, cancel, predictions) and predictions by key."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from mlapp.batch import jobs
from mlapp.models import BatchJob, BatchPrediction
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

CSV = b"key,x0,x1,x2\na,1,2,3\nb,0,0,0\n"
#: The same two rows in every other format a batch job reads.
JSONL = b'{"key": "a", "inputs": [[1, 2, 3]]}\n{"key": "b", "inputs": [[0, 0, 0]]}\n'
SOURCES = {
    "active-users": {
        "queryset": f"{__name__}.users_since",
        "inputs": {"x": ["id", "id", "id"]},
        "key": "username",
    }
}


def users_since(since: str):
    return get_user_model().objects.filter(date_joined__date__gte=since)


def npy_bytes() -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([[1, 2, 3], [0, 0, 0]], np.float32))
    return out.getvalue()


def npz_bytes() -> bytes:
    out = io.BytesIO()
    np.savez(out, x=np.array([[1, 2, 3], [0, 0, 0]], np.float32))
    return out.getvalue()


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("ops", is_staff=True)


@pytest.fixture
def client(staff):
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def affine(onnx_file):
    register_version("affine", onnx_file, promote=True)
    return register_version("affine", onnx_file)  # v2, staging


@pytest.fixture
def enqueued(monkeypatch):
    queued: list[BatchJob] = []
    monkeypatch.setattr(jobs, "enqueue", lambda job, plan: queued.append(job))
    return queued


def csv_file(name="rows.csv", content=CSV):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def make_job(version, status=BatchJob.Status.SUCCEEDED, finished=None, **kwargs):
    return BatchJob.objects.create(
        version=version, status=status, source_name="users", finished_at=finished, **kwargs
    )


def test_create_job_from_an_uploaded_file_is_pending(client, staff, affine, enqueued):
    response = client.post(
        "/api/mlapp/jobs/", {"model": "affine", "file": csv_file()}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["model"], body["version"], body["status"]) == ("affine", 1, "pending")
    assert body["source_file"].endswith(".csv")
    assert body["created_by"] == "ops"
    assert (body["total"], body["done"], body["failed"], body["progress"]) == (2, 0, 0, 0.0)
    assert response["Location"] == body["url"]
    job = BatchJob.objects.get(pk=body["id"])
    assert job.source_file.read() == CSV
    assert enqueued == [job]


def test_create_job_on_a_pinned_version(client, affine, enqueued):
    response = client.post(
        "/api/mlapp/jobs/",
        {"model": "affine", "version": 2, "file": csv_file()},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2


def test_create_job_from_a_registered_source(client, affine, enqueued):
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        response = client.post(
            "/api/mlapp/jobs/",
            {"model": "affine", "source": "active-users", "params": {"since": "2024-01-01"}},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source_file"] is None
    assert (body["source_name"], body["source_params"]) == (
        "active-users",
        {"since": "2024-01-01"},
    )


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        ({"model": "nope", "source": "s"}, "json", "model: No model named 'nope'."),
        ({"model": "affine", "version": 9, "source": "s"}, "json", "has no version 9"),
        ({"model": "affine"}, "json", "Give either a 'file'"),
        ({"model": "affine", "source": "s", "file": "x"}, "multipart", "file:"),
        ({"model": "affine", "source": "bad name!"}, "json", "source:"),
        ({"model": "affine", "source": "s", "params": [1]}, "json", "params: Must be"),
        ({"model": "affine", "params": {"a": 1}, "source": ""}, "json", "source:"),
    ],
)
def test_create_job_with_bad_fields_is_a_400(client, affine, enqueued, data, fmt, message):
    response = client.post("/api/mlapp/jobs/", data, format=fmt)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not BatchJob.objects.exists()
    assert enqueued == []


@pytest.mark.parametrize("name", ["rows.txt", "rows.pkl", "rows", "rows.csv.exe"])
def test_create_job_refuses_files_it_cannot_read(client, affine, enqueued, name):
    response = client.post(
        "/api/mlapp/jobs/", {"model": "affine", "file": csv_file(name)}, format="multipart"
    )
    assert response.status_code == 400
    assert ".csv, .jsonl, .ndjson, .npy, .npz" in response.json()["error"]
    assert not BatchJob.objects.exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("rows.jsonl", JSONL),
        ("rows.ndjson", JSONL),
        ("rows.npy", npy_bytes()),
        ("rows.NPZ", npz_bytes()),
    ],
)
def test_create_job_takes_jsonl_ndjson_npy_and_npz(client, affine, enqueued, name, content):
    response = client.post(
        "/api/mlapp/jobs/", {"model": "affine", "file": csv_file(name, content)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["total"] == 2


def test_create_job_over_the_size_limit_is_a_413(client, affine, enqueued):
    with override_settings(MLAPP={"MAX_UPLOAD_SIZE": 10}):
        response = client.post(
            "/api/mlapp/jobs/", {"model": "affine", "file": csv_file()}, format="multipart"
        )
    assert response.status_code == 413
    assert not BatchJob.objects.exists()


def test_create_job_for_a_model_without_production_needs_a_version(client, onnx_file, enqueued):
    register_version("staged", onnx_file)
    response = client.post("/api/mlapp/jobs/", {"model": "staged", "source": "s"}, format="json")
    assert response.status_code == 400
    assert "no production version" in response.json()["error"]


def test_job_list_filters_by_status_and_model(client, affine, onnx_file):
    other = register_version("other", onnx_file, promote=True)
    make_job(affine, status=BatchJob.Status.PENDING)
    make_job(affine, status=BatchJob.Status.SUCCEEDED)
    make_job(other, status=BatchJob.Status.PENDING)
    pending = client.get("/api/mlapp/jobs/?status=pending").json()
    assert pending["count"] == 2
    mine = client.get("/api/mlapp/jobs/?model=affine").json()
    assert {j["model"] for j in mine["results"]} == {"affine"}
    assert mine["count"] == 2


def test_job_detail_shows_progress(client, affine):
    job = make_job(affine, status=BatchJob.Status.RUNNING, total=200, done=50, failed=10)
    body = client.get(f"/api/mlapp/jobs/{job.pk}/").json()
    assert (body["status"], body["total"], body["done"], body["failed"]) == (
        "running",
        200,
        50,
        10,
    )
    assert body["progress"] == 0.3
    assert body["predictions_url"].endswith(f"/api/mlapp/jobs/{job.pk}/predictions/")


def test_unknown_job_is_a_404(client):
    response = client.get("/api/mlapp/jobs/999/")
    assert response.status_code == 404
    assert response.json() == {"error": "No batch job 999."}


@pytest.mark.parametrize("status", ["pending", "running"])
def test_cancel_stops_an_active_job(client, affine, status):
    job = make_job(affine, status=status)
    response = client.post(f"/api/mlapp/jobs/{job.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.finished_at is not None


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancel_of_a_finished_job_is_a_409(client, affine, status):
    job = make_job(affine, status=status)
    response = client.post(f"/api/mlapp/jobs/{job.pk}/cancel")
    assert response.status_code == 409
    assert f"is {status}" in response.json()["error"]
    job.refresh_from_db()
    assert job.status == status


def test_job_predictions_are_paginated_in_write_order(client, affine, settings):
    job = make_job(affine)
    for i in range(5):
        BatchPrediction.objects.create(
            job=job, model=affine.model, version=affine, key=f"k{i}", outputs={"y": [i]}
        )
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    first = client.get(f"/api/mlapp/jobs/{job.pk}/predictions/").json()
    assert first["count"] == 5
    assert [p["key"] for p in first["results"]] == ["k0", "k1"]
    assert first["results"][0] == {
        "key": "k0",
        "model": "affine",
        "version": 2,
        "outputs": {"y": [0]},
        "error": None,
        "job": job.pk,
        "created_at": first["results"][0]["created_at"],
    }
    last = client.get(f"/api/mlapp/jobs/{job.pk}/predictions/?page=3").json()
    assert [p["key"] for p in last["results"]] == ["k4"]
    one = client.get(f"/api/mlapp/jobs/{job.pk}/predictions/?key=k3").json()
    assert [p["key"] for p in one["results"]] == ["k3"]


def test_predictions_of_an_unknown_job_is_a_404(client):
    assert client.get("/api/mlapp/jobs/5/predictions/").status_code == 404


def test_prediction_by_key_comes_from_the_latest_succeeded_job(affine):
    now = timezone.now()
    older = make_job(affine, finished=now - dt.timedelta(hours=2))
    newer = make_job(affine, finished=now - dt.timedelta(hours=1))
    failed = make_job(affine, status=BatchJob.Status.FAILED, finished=now)
    running = make_job(affine, status=BatchJob.Status.RUNNING)
    for job, value in ((older, 1), (newer, 2), (failed, 3), (running, 4)):
        BatchPrediction.objects.create(
            job=job, model=affine.model, version=affine, key="user-42", outputs={"y": [value]}
        )
    response = APIClient().get("/api/mlapp/models/affine/predictions/user-42")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["outputs"] == {"y": [2]}
    assert (body["model"], body["version"], body["key"], body["job"]) == (
        "affine",
        2,
        "user-42",
        newer.pk,
    )


def test_prediction_by_key_keeps_slashes_in_the_key(affine):
    job = make_job(affine, finished=timezone.now())
    BatchPrediction.objects.create(
        job=job, model=affine.model, version=affine, key="a/b c", outputs={"y": [1]}
    )
    response = APIClient().get("/api/mlapp/models/affine/predictions/a/b%20c")
    assert response.status_code == 200
    assert response.json()["key"] == "a/b c"


def test_prediction_by_unknown_key_is_a_404_naming_it(affine):
    response = APIClient().get("/api/mlapp/models/affine/predictions/nobody")
    assert response.status_code == 404
    assert "'nobody'" in response.json()["error"]


def test_prediction_by_key_of_an_unknown_model_is_a_404():
    response = APIClient().get("/api/mlapp/models/nope/predictions/k")
    assert response.status_code == 404
    assert response.json() == {"error": "No model named 'nope'."}
