"""Bad requests to the native API: each a 4xx with {"error": ...}; the server still works."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from mlapp.models import ModelVersion
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

PREDICT = "/api/mlapp/models/affine/predict"
JSON = "application/json"

# (name, method, url, body, content type, status, words of the message)
BAD_REQUESTS = [
    ("malformed JSON", "post", PREDICT, "{not json", JSON, 400, "JSON parse error"),
    ("NaN is not JSON", "post", PREDICT, '{"inputs": [[NaN, 1, 2]]}', JSON, 400, "JSON parse"),
    ("wrong content type", "post", PREDICT, "inputs=1,2,3", "text/plain", 415, "text/plain"),
    ("empty body", "post", PREDICT, "", JSON, 400, "Missing 'inputs'"),
    ("missing inputs", "post", PREDICT, {"rows": [[1, 2, 3]]}, JSON, 400, "Missing 'inputs'"),
    ("extra field", "post", PREDICT, {"inputs": [[1, 2, 3]], "id": 1}, JSON, 400, "Unknown"),
    ("body not an object", "post", PREDICT, [[1, 2, 3]], JSON, 400, "not an object"),
    ("wrong dtype", "post", PREDICT, {"inputs": [["a", "b", "c"]]}, JSON, 400, "numeric"),
    ("wrong shape", "post", PREDICT, {"inputs": [[1, 2]]}, JSON, 400, "shape [1, 2]"),
    ("wrong rank", "post", PREDICT, {"inputs": [1, 2, 3]}, JSON, 400, "shape"),
    ("empty batch", "post", PREDICT, {"inputs": []}, JSON, 400, "'x' is empty"),
    ("empty named input", "post", PREDICT, {"inputs": {"x": []}}, JSON, 400, "'x' is empty"),
    ("ragged rows", "post", PREDICT, {"inputs": [[1, 2, 3], [1]]}, JSON, 400, "regular array"),
    (
        "unknown input",
        "post",
        PREDICT,
        {"inputs": {"x": [[1, 2, 3]], "q": [[1]]}},
        JSON,
        400,
        ": q;",
    ),
    ("missing named input", "post", PREDICT, {"inputs": {}}, JSON, 400, "Missing input"),
    ("records mixed", "post", PREDICT, {"inputs": [{"x": [1, 2, 3]}, 4]}, JSON, 400, "record"),
    (
        "unknown model",
        "post",
        "/api/mlapp/models/nope/predict",
        {"inputs": [[1, 2, 3]]},
        JSON,
        404,
        "No model named 'nope'",
    ),
    (
        "unknown version",
        "post",
        "/api/mlapp/models/affine/versions/7/predict",
        {"inputs": [[1, 2, 3]]},
        JSON,
        404,
        "no version 7",
    ),
    ("method not allowed", "delete", PREDICT, None, None, 405, '"DELETE" not allowed'),
    ("no DELETE on a model", "delete", "/api/mlapp/models/affine/", None, None, 405, "DELETE"),
    ("unknown route", "get", "/api/mlapp/nothing/here", None, None, 404, "No route"),
    ("missing slash", "get", "/api/mlapp/models", None, None, 404, "did you mean"),
    ("bad page", "get", "/api/mlapp/models/?page=99", None, None, 404, "Invalid page"),
    (
        "bad filter",
        "get",
        "/api/mlapp/models/affine/versions/?stage=gold",
        None,
        None,
        400,
        "stage:",
    ),
]


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def send(client, method, url, body, content_type):
    if body is None:
        return getattr(client, method)(url)
    if not isinstance(body, str):
        body = json.dumps(body)
    return getattr(client, method)(url, body, content_type=content_type)


def assert_still_works(client):
    good = client.post(PREDICT, {"inputs": [[1, 2, 3]]}, format="json")
    assert good.status_code == 200, good.content
    assert good.json()["outputs"] == {"y": [[14.5, 1.5]]}


@pytest.mark.parametrize(
    ("method", "url", "body", "content_type", "status", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_is_a_4xx_with_a_message_and_the_next_request_works(
    client, affine, method, url, body, content_type, status, message
):
    response = send(client, method, url, body, content_type)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()
    assert list(error) == ["error"]
    assert message in error["error"]
    assert_still_works(client)


def test_oversized_body_is_a_413_with_a_message(client, affine):
    rows = {"inputs": [[1.0, 2.0, 3.0]] * 200}
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = client.post(PREDICT, rows, format="json")
        assert response.status_code == 413
        assert "DATA_UPLOAD_MAX_MEMORY_SIZE = 1000" in response.json()["error"]
        assert_still_works(client)


def test_oversized_form_field_in_an_upload_is_a_413(affine, onnx_file):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = client.post(
            "/api/mlapp/models/affine/versions/",
            {"file": SimpleUploadedFile("m.onnx", onnx_file.read_bytes()), "notes": "n" * 5000},
            format="multipart",
        )
    assert response.status_code == 413
    assert ModelVersion.objects.count() == 1
    assert_still_works(client)


def test_upload_sent_as_json_is_a_415(affine):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    response = client.post("/api/mlapp/models/affine/versions/", {"file": "x"}, format="json")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_browsable_form_with_invalid_inputs_is_a_400(client, affine):
    response = client.post(PREDICT, {"inputs": "[[1, 2,"})
    assert response.status_code == 400
    assert "'inputs' is not valid JSON" in response.json()["error"]


def test_browsable_form_with_valid_inputs_predicts(client, affine):
    response = client.post(PREDICT, {"inputs": "[[1, 2, 3]]"})
    assert response.status_code == 200
    assert response.json()["outputs"] == {"y": [[14.5, 1.5]]}
