"""POST /api/mlapp/models/<name>/predict through Django's test client."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from mlapp.versions import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def test_predict_answers_outputs_model_and_version(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": {"x": [[1, 2, 3]]}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"model": "affine", "version": 1, "outputs": {"y": [[14.5, 1.5]]}}


def test_predict_pinned_version(client, affine, onnx_file):
    register_version("affine", onnx_file)
    response = client.post(
        "/api/mlapp/models/affine/versions/2/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2


def test_anonymous_predict_needs_no_csrf_token(affine):
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"inputs": {"x": [[1, 2]]}}, 400, "shape"),
        ({"inputs": {"q": [[1, 2, 3]]}}, 400, "input"),
        ({"wrong": 1}, 400, "inputs"),
        ({"inputs": [["a", "b", "c"]]}, 400, "numeric"),
    ],
)
def test_bad_input_is_a_4xx_with_an_error_message(client, affine, body, status, message):
    response = client.post("/api/mlapp/models/affine/predict", body, format="json")
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_is_a_400(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/predict", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_unknown_model_is_a_404(client):
    response = client.post("/api/mlapp/models/nope/predict", {"inputs": [[1]]}, format="json")
    assert response.status_code == 404
    assert response.json() == {"error": "No model named 'nope'."}


def test_unknown_version_is_a_404(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/versions/7/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 404


def test_model_that_failed_to_load_is_a_503_with_the_reason(client, affine):
    from mlapp.startup import load_models

    with open(affine.artifact.path, "wb") as fh:
        fh.write(b"broken")
    load_models()
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 503
    assert "failed to load" in response.json()["error"]


def test_model_list_reports_readiness(client, affine, onnx_file):
    from mlapp.startup import load_models

    register_version("staged", onnx_file)
    load_models()
    response = client.get("/api/mlapp/models/")
    assert response.status_code == 200
    by_name = {m["name"]: m for m in response.json()}
    assert by_name["affine"]["ready"] is True
    assert by_name["affine"]["production_version"] == 1
    assert by_name["staged"]["ready"] is False
