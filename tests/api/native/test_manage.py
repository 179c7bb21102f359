"""Management for pipelines: upload a version, promote, roll back, archive; token clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import register_version
from tests.artifacts import TWO_IN_SIGNATURE

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("ops", password="pw", is_staff=True)


@pytest.fixture
def client(staff):
    client = APIClient()
    client.force_authenticate(staff)
    return client


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def stored_files(settings) -> set[Path]:
    return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}


def test_upload_stores_a_staging_version(client, staff, onnx_file):
    response = client.post(
        "/api/mlapp/models/affine/versions/",
        {
            "file": upload(onnx_file),
            "metrics": json.dumps({"mse": 0.01}),
            "notes": "nightly",
            "task": "regression",
            "description": "an affine map",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["model"], body["version"], body["stage"]) == ("affine", 1, "staging")
    assert body["format"] == "onnx"
    assert body["metrics"]["mse"] == 0.01
    assert body["notes"] == "nightly"
    assert body["created_by"] == "ops"
    assert response["Location"] == body["url"]
    model = MLModel.objects.get(name="affine")
    assert (model.task, model.description) == ("regression", "an affine map")


def test_upload_takes_the_signature_as_text_or_as_a_file(client, torchscript_file):
    as_text = client.post(
        "/api/mlapp/models/ts/versions/",
        {"file": upload(torchscript_file), "signature": json.dumps(TWO_IN_SIGNATURE)},
        format="multipart",
    )
    assert as_text.status_code == 201, as_text.content
    signature_file = SimpleUploadedFile("sig.json", json.dumps(TWO_IN_SIGNATURE).encode())
    as_file = client.post(
        "/api/mlapp/models/ts/versions/",
        {"file": upload(torchscript_file), "signature": signature_file},
        format="multipart",
    )
    assert as_file.status_code == 201, as_file.content
    assert as_file.json()["signature"] == TWO_IN_SIGNATURE


def test_refused_artifact_is_a_400_with_the_reason_and_nothing_stored(
    client, torchscript_file, settings
):
    before = stored_files(settings)
    # A TorchScript archive with no signature, on a model with no production version.
    response = client.post(
        "/api/mlapp/models/fresh/versions/",
        {"file": upload(torchscript_file)},
        format="multipart",
    )
    assert response.status_code == 400
    assert "signature" in response.json()["error"]
    assert not MLModel.objects.filter(name="fresh").exists()
    assert not ModelVersion.objects.exists()
    assert stored_files(settings) == before


def test_upload_of_a_file_that_is_no_model_is_a_400(client, tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"this is not a model")
    response = client.post(
        "/api/mlapp/models/fresh/versions/", {"file": upload(junk)}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["error"]
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"signature": "{not json"}, "signature: Not valid JSON"),
        ({"signature": "[1, 2]"}, "signature: Must be a JSON object"),
        ({"metrics": "3"}, "metrics: Must be a JSON object"),
        ({"task": "astrology"}, "task:"),
        ({"handler": "no.such.Handler"}, "handler: Cannot import"),
        ({"handler": "mlapp.models.MLModel"}, "is not a mlapp.handlers.BaseHandler"),
    ],
)
def test_upload_with_bad_fields_is_a_400_naming_the_field(client, onnx_file, fields, message):
    response = client.post(
        "/api/mlapp/models/affine/versions/",
        {"file": upload(onnx_file), **fields},
        format="multipart",
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not ModelVersion.objects.exists()


def test_upload_without_a_file_is_a_400(client):
    response = client.post("/api/mlapp/models/affine/versions/", {"notes": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"error": "file: No file was submitted."}


def test_upload_over_the_size_limit_is_a_413(client, onnx_file):
    with override_settings(MLAPP={"MAX_UPLOAD_SIZE": 100}):
        response = client.post(
            "/api/mlapp/models/affine/versions/", {"file": upload(onnx_file)}, format="multipart"
        )
    assert response.status_code == 413
    assert "MAX_UPLOAD_SIZE" in response.json()["error"]
    assert not ModelVersion.objects.exists()


def test_upload_declaring_a_body_far_over_the_limit_is_refused_before_reading(client):
    with override_settings(MLAPP={"MAX_UPLOAD_SIZE": 100}):
        response = client.post(
            "/api/mlapp/models/affine/versions/",
            b"x" * 10,
            content_type="multipart/form-data; boundary=zz",
            CONTENT_LENGTH=str(50 * 1024 * 1024),
        )
    assert response.status_code == 413


def test_promote_makes_the_version_production(client, onnx_file):
    register_version("affine", onnx_file, promote=True)
    register_version("affine", onnx_file)
    response = client.post("/api/mlapp/models/affine/versions/2/promote")
    assert response.status_code == 200, response.content
    assert response.json()["stage"] == "production"
    stages = dict(ModelVersion.objects.values_list("version", "stage"))
    assert stages == {1: "archived", 2: "production"}


def test_rollback_brings_back_the_previous_production_version(client, onnx_file):
    register_version("affine", onnx_file, promote=True)
    register_version("affine", onnx_file, promote=True)
    response = client.post("/api/mlapp/models/affine/rollback")
    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["stage"]) == (1, "production")


def test_rollback_without_an_earlier_version_is_a_409(client, onnx_file):
    register_version("affine", onnx_file, promote=True)
    response = client.post("/api/mlapp/models/affine/rollback")
    assert response.status_code == 409
    assert "no earlier production version" in response.json()["error"]


def test_archive_a_staging_version(client, onnx_file):
    register_version("affine", onnx_file)
    response = client.post("/api/mlapp/models/affine/versions/1/archive")
    assert response.status_code == 200
    assert response.json()["stage"] == "archived"


def test_archiving_the_production_version_is_a_409(client, onnx_file):
    register_version("affine", onnx_file, promote=True)
    response = client.post("/api/mlapp/models/affine/versions/1/archive")
    assert response.status_code == 409
    assert "in production" in response.json()["error"]
    assert ModelVersion.objects.get().stage == "production"


@pytest.mark.parametrize(
    "url",
    [
        "/api/mlapp/models/nope/rollback",
        "/api/mlapp/models/nope/versions/1/promote",
        "/api/mlapp/models/nope/versions/1/archive",
    ],
)
def test_stage_change_of_an_unknown_model_is_a_404(client, url):
    response = client.post(url)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_token_client_uploads_then_promotes(staff, onnx_file):
    token = Token.objects.create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    uploaded = client.post(
        "/api/mlapp/models/affine/versions/", {"file": upload(onnx_file)}, format="multipart"
    )
    assert uploaded.status_code == 201, uploaded.content
    assert uploaded.json()["created_by"] == "ops"
    promoted = client.post(f"{uploaded.json()['url']}promote")
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["stage"] == "production"
    predicted = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert predicted.json()["version"] == 1


def test_a_wrong_token_is_refused(onnx_file):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.post(
        "/api/mlapp/models/affine/versions/", {"file": upload(onnx_file)}, format="multipart"
    )
    # 401 with the token scheme's challenge, although the first class (session) has none.
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Invalid token."}


def test_a_token_of_a_user_who_is_not_staff_cannot_upload(onnx_file):
    user = get_user_model().objects.create_user("app")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post(
        "/api/mlapp/models/affine/versions/", {"file": upload(onnx_file)}, format="multipart"
    )
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()
