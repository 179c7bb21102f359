"""Versions: list with filters, detail, artifact download with its checksum."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from mlapp.versions.lifecycle import promote_version, register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def staff_client():
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def versions(onnx_file, torchscript_file):
    """affine v1 (onnx, archived), v2 (onnx, production), v3 (torchscript, staging)."""
    v1 = register_version("affine", onnx_file, promote=True, metrics={"mse": 0.5})
    v2 = register_version("affine", onnx_file, promote=True)
    v3 = register_version("affine", torchscript_file, notes="candidate")
    return v1, v2, v3


def results(response):
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_version_list_is_newest_first(client, versions):
    body = results(client.get("/api/mlapp/models/affine/versions/"))
    assert [(v["version"], v["stage"], v["format"]) for v in body] == [
        (3, "staging", "torchscript"),
        (2, "production", "onnx"),
        (1, "archived", "onnx"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stage=production", [2]),
        ("stage=archived", [1]),
        ("format=onnx", [2, 1]),
        ("format=torchscript&stage=staging", [3]),
        ("format=torch_export", []),
    ],
)
def test_version_list_filters_by_stage_and_format(client, versions, query, expected):
    body = results(client.get(f"/api/mlapp/models/affine/versions/?{query}"))
    assert [v["version"] for v in body] == expected


def test_version_list_of_an_unknown_model_is_a_404(client):
    response = client.get("/api/mlapp/models/nope/versions/")
    assert response.status_code == 404
    assert response.json() == {"error": "No model named 'nope'."}


def test_version_detail_describes_the_version(client, versions, onnx_file):
    v1, v2, _ = versions
    v2.parent = v1
    v2.save(update_fields=["parent"])
    body = client.get("/api/mlapp/models/affine/versions/2/").json()
    assert body["version"] == 2
    assert body["model"] == "affine"
    assert body["format"] == "onnx"
    assert body["stage"] == "production"
    assert body["sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert body["size"] == onnx_file.stat().st_size
    assert body["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["artifact_signature"] == body["signature"]
    assert "validation" in body["metrics"]
    assert body["parent"] == 1
    assert body["created_by"] is None
    assert body["promoted_at"] is not None
    assert body["created_at"] is not None
    assert body["filename"].endswith(".onnx")
    assert body["artifact_url"].endswith("/api/mlapp/models/affine/versions/2/artifact")


def test_version_detail_names_who_uploaded_it(client, onnx_file):
    user = get_user_model().objects.create_user("alice")
    register_version("affine", onnx_file, created_by=user)
    assert client.get("/api/mlapp/models/affine/versions/1/").json()["created_by"] == "alice"


def test_version_detail_keeps_metrics_and_notes(client, versions):
    body = client.get("/api/mlapp/models/affine/versions/1/").json()
    assert body["metrics"]["mse"] == 0.5
    assert client.get("/api/mlapp/models/affine/versions/3/").json()["notes"] == "candidate"


def test_version_list_format_filter_is_not_drf_format_override(client, versions):
    # ?format= is DRF's renderer override elsewhere; on this list it filters.
    response = client.get("/api/mlapp/models/affine/versions/?format=onnx")
    assert response["Content-Type"] == "application/json"
    # Links to the versions do not carry the filter along.
    assert [v["url"] for v in response.json()["results"]] == [
        "http://testserver/api/mlapp/models/affine/versions/2/",
        "http://testserver/api/mlapp/models/affine/versions/1/",
    ]
    html = client.get("/api/mlapp/models/affine/versions/?format=onnx", HTTP_ACCEPT="text/html")
    assert html["Content-Type"].startswith("text/html")


def test_unknown_version_detail_is_a_404(client, versions):
    response = client.get("/api/mlapp/models/affine/versions/9/")
    assert response.status_code == 404
    assert response.json() == {"error": "Model 'affine' has no version 9."}


def test_artifact_download_streams_the_file_with_its_checksum(staff_client, versions, onnx_file):
    response = staff_client.get("/api/mlapp/models/affine/versions/2/artifact")
    assert response.status_code == 200
    assert response.streaming
    content = b"".join(response.streaming_content)
    assert content == onnx_file.read_bytes()
    digest = hashlib.sha256(content)
    assert response["X-Checksum-SHA256"] == digest.hexdigest()
    assert response["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    assert response["Content-Disposition"] == 'attachment; filename="affine-v2.onnx"'
    assert int(response["Content-Length"]) == len(content)
    assert response["Content-Type"] == "application/octet-stream"


def test_artifact_download_of_a_missing_file_is_a_404_with_a_message(staff_client, versions):
    _, v2, _ = versions
    v2.artifact.storage.delete(v2.artifact.name)
    response = staff_client.get("/api/mlapp/models/affine/versions/2/artifact")
    assert response.status_code == 404
    assert "missing from storage" in response.json()["error"]


def test_promotion_shows_in_the_list(client, versions):
    _, _, v3 = versions
    promote_version(v3)
    body = results(client.get("/api/mlapp/models/affine/versions/?stage=production"))
    assert [v["version"] for v in body] == [3]
