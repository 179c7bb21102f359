"""V2 views through Django's test client: readiness, metadata sources, permissions, limits,
and a hot path without database queries. Real clients are in test_clients.py."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from mlapp.checks import check_settings
from mlapp.models import ModelVersion
from mlapp.serving.registry import registry
from mlapp.startup import load_models
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

ROW = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


@pytest.fixture
def client():
    return Client()


def infer(client, path="/v2/models/affine/infer", body=None, **extra):
    payload = json.dumps(body or {"inputs": [ROW]})
    return client.post(path, payload, content_type="application/json", **extra)


# -- readiness ----------------------------------------------------------------------------------


def test_server_ready_is_503_until_startup_loading_ran(client, affine):
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert "load_models()" in response.json()["error"]
    load_models()
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_server_ready_names_a_model_that_failed_to_load(client, affine):
    affine.artifact.storage.delete(affine.artifact.name)
    load_models()
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert "affine failed to load" in response.json()["error"]
    assert client.get("/v2/health/live").json() == {"live": True}


def test_model_ready_says_why_a_model_failed_to_load(client, affine):
    affine.artifact.storage.delete(affine.artifact.name)
    load_models()
    response = client.get("/v2/models/affine/ready")
    assert response.status_code == 503
    body = response.json()
    assert (body["name"], body["ready"]) == ("affine", False)
    assert "failed to load" in body["error"]


def test_model_ready_is_false_until_loaded_and_true_after(client, affine):
    response = client.get("/v2/models/affine/ready")
    assert response.status_code == 503
    assert "not loaded in this process yet" in response.json()["error"]
    assert infer(client).status_code == 200  # loads it lazily: no startup loading here
    assert client.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": True}


def test_staging_version_is_ready_once_its_first_inference_loaded_it(client, affine, onnx_file):
    register_version("affine", onnx_file)
    load_models()
    assert client.get("/v2/models/affine/versions/2/ready").status_code == 503
    response = infer(client, "/v2/models/affine/versions/2/infer")
    assert response.json()["model_version"] == "2"
    assert client.get("/v2/models/affine/versions/2/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope/ready",
        "/v2/models/affine/versions/9/ready",
        "/v2/models/affine/versions/x/ready",
    ],
)
def test_model_ready_of_unknown_model_or_version_is_a_404(client, affine, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_of_a_model_not_loaded_equals_the_loaded_one(client, affine):
    stored = client.get("/v2/models/affine").json()
    assert registry.peek("affine") is None
    load_models()
    assert client.get("/v2/models/affine").json() == stored
    assert stored["platform"] == "onnxruntime_onnx"
    assert stored["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


def test_metadata_versions_leave_out_archived_ones(client, affine, onnx_file):
    register_version("affine", onnx_file)
    v3 = register_version("affine", onnx_file)
    ModelVersion.objects.filter(pk=v3.pk).update(stage=ModelVersion.Stage.ARCHIVED)
    assert client.get("/v2/models/affine").json()["versions"] == ["1", "2"]
    assert client.get("/v2/models/affine/versions/3").status_code == 200


def test_metadata_of_a_model_without_production_version_is_503(client, onnx_file):
    register_version("draft", onnx_file)
    response = client.get("/v2/models/draft")
    assert response.status_code == 503
    assert "no production version" in response.json()["error"]
    assert client.get("/v2/models/draft/versions/1").status_code == 200


# -- the hot path -------------------------------------------------------------------------------


def test_infer_makes_no_database_query_once_loaded(client, affine):
    load_models()
    assert infer(client).status_code == 200  # the first lookup of a process may poll once
    with CaptureQueriesContext(connection) as queries:
        response = infer(client)
    assert response.status_code == 200
    assert queries.captured_queries == []


def test_anonymous_infer_needs_no_csrf_token(affine):
    response = infer(Client(enforce_csrf_checks=True))
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [14.5, 1.5]


def test_get_on_infer_is_a_json_405(client, affine):
    response = client.get("/v2/models/affine/infer")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "use POST" in response.json()["error"]


# -- permissions --------------------------------------------------------------------------------

AUTHENTICATED = ["rest_framework.permissions.IsAuthenticated"]
SESSION = "rest_framework.authentication.SessionAuthentication"
TOKEN = "rest_framework.authentication.TokenAuthentication"


def test_read_permission_setting_guards_metadata_not_health(client, affine, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [SESSION, TOKEN]}
    settings.MLAPP = {"READ_PERMISSION_CLASSES": AUTHENTICATED}
    for path in ("/v2", "/v2/models/affine", "/v2/models/affine/ready"):
        response = client.get(path)
        assert response.status_code == 403, path  # DRF's answer when Session comes first
        assert "credentials were not provided" in response.json()["error"]
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503  # open, and honest
    assert infer(client).status_code == 200


def test_predict_permission_setting_accepts_a_token(client, affine, settings):
    from rest_framework.authtoken.models import Token

    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [TOKEN, SESSION]}
    settings.MLAPP = {"PREDICT_PERMISSION_CLASSES": AUTHENTICATED}
    response = infer(client)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    response = infer(client, HTTP_AUTHORIZATION="Token wrong")
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token."}
    user = get_user_model().objects.create_user("alice", password="pw")
    token = Token.objects.create(user=user)
    assert infer(client, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200


def test_a_wrong_token_is_a_401_even_where_anyone_may_infer(client, affine, settings):
    # Session first (the project's order): DRF alone would answer 403 without a challenge.
    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [SESSION, TOKEN]}
    for path, method in (("/v2/models/affine/infer", "post"), ("/v2/models/affine", "get")):
        if method == "post":
            response = infer(client, HTTP_AUTHORIZATION="Token wrong")
        else:
            response = client.get(path, HTTP_AUTHORIZATION="Token wrong")
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token"
        assert response.json() == {"error": "Invalid token."}
    # Without credentials nothing is looked up, and anyone may infer.
    assert infer(client).status_code == 200


def test_predict_permission_denied_without_challenge_is_a_403(client, affine, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [SESSION]}
    settings.MLAPP = {"PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"]}
    assert infer(client).status_code == 403
    user = get_user_model().objects.create_user("bob", password="pw")
    client.force_login(user)
    response = infer(client)
    assert response.status_code == 403
    assert "permission" in response.json()["error"]
    user.is_staff = True
    user.save()
    assert infer(client).status_code == 200


# -- body size ----------------------------------------------------------------------------------


def test_v2_max_request_size_overrides_djangos_upload_limit(client, affine, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    assert infer(client).status_code == 413
    settings.MLAPP = {"V2_MAX_REQUEST_SIZE": 10_000}
    assert infer(client).status_code == 200


def test_v2_max_request_size_applies_after_decompression(client, affine, settings):
    import gzip

    settings.MLAPP = {"V2_MAX_REQUEST_SIZE": 200}
    rows = {**ROW, "shape": [50, 3], "data": [1, 2, 3] * 50}
    payload = gzip.compress(json.dumps({"inputs": [rows]}).encode())
    assert len(payload) < 200
    response = client.post(
        "/v2/models/affine/infer",
        payload,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 413
    assert "decompresses to more than the limit of 200 bytes" in response.json()["error"]


@pytest.mark.parametrize("value", [0, -1, "big", True])
def test_v2_max_request_size_must_be_a_positive_integer(settings, value):
    settings.MLAPP = {"V2_MAX_REQUEST_SIZE": value}
    errors = [e for e in check_settings() if "V2_MAX_REQUEST_SIZE" in e.msg]
    assert [e.id for e in errors] == ["mlapp.E002"]
