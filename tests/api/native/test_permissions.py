"""Who may do what: READ, PREDICT and MANAGE access from MLAPP settings, per kind of user."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from mlapp.models import BatchJob, BatchPrediction
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

IS_AUTHENTICATED = ["rest_framework.permissions.IsAuthenticated"]
ALLOW_ANY = ["rest_framework.permissions.AllowAny"]


@pytest.fixture
def world(onnx_file):
    """affine v1 (production), v2 (staging); one succeeded job with a stored prediction."""
    v1 = register_version("affine", onnx_file, promote=True)
    register_version("affine", onnx_file)
    job = BatchJob.objects.create(version=v1, status="succeeded", finished_at=timezone.now())
    BatchPrediction.objects.create(job=job, model=v1.model, version=v1, key="k", outputs={})
    pending = BatchJob.objects.create(version=v1, source_name="s")
    return {"job": job.pk, "pending": pending.pk, "onnx": onnx_file}


def client_for(who: str) -> APIClient:
    client = APIClient()
    if who != "anonymous":
        user = get_user_model().objects.create_user(who, is_staff=who == "staff")
        client.force_authenticate(user)
    return client


def request(client: APIClient, route: str, world: dict):
    """Send the request named ``route``: one that succeeds for a user allowed to make it."""
    onnx = world["onnx"]
    requests = {
        "models": ("get", "/api/mlapp/models/", None, None),
        "model": ("get", "/api/mlapp/models/affine/", None, None),
        "versions": ("get", "/api/mlapp/models/affine/versions/", None, None),
        "version": ("get", "/api/mlapp/models/affine/versions/1/", None, None),
        "schema": ("get", "/api/mlapp/schema/", None, None),
        "predict": ("post", "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, "json"),
        "predict-info": ("get", "/api/mlapp/models/affine/predict", None, None),
        "predict-v2": (
            "post",
            "/api/mlapp/models/affine/versions/2/predict",
            {"inputs": [[1, 2, 3]]},
            "json",
        ),
        "prediction-by-key": ("get", "/api/mlapp/models/affine/predictions/k", None, None),
        "artifact": ("get", "/api/mlapp/models/affine/versions/1/artifact", None, None),
        "upload": (
            "post",
            "/api/mlapp/models/affine/versions/",
            {"file": SimpleUploadedFile("m.onnx", onnx.read_bytes())},
            "multipart",
        ),
        "promote": ("post", "/api/mlapp/models/affine/versions/2/promote", None, None),
        "archive": ("post", "/api/mlapp/models/affine/versions/2/archive", None, None),
        "rollback": ("post", "/api/mlapp/models/affine/rollback", None, None),
        "jobs": ("get", "/api/mlapp/jobs/", None, None),
        "job": ("get", f"/api/mlapp/jobs/{world['job']}/", None, None),
        "job-predictions": ("get", f"/api/mlapp/jobs/{world['job']}/predictions/", None, None),
        "job-create": (
            "post",
            "/api/mlapp/jobs/",
            {"model": "affine", "file": SimpleUploadedFile("rows.csv", b"a,b,c\n1,2,3\n")},
            "multipart",
        ),
        "job-cancel": ("post", f"/api/mlapp/jobs/{world['pending']}/cancel", None, None),
    }
    method, url, data, fmt = requests[route]
    if route == "rollback":
        register_version("affine", onnx, promote=True)  # something to roll back from
    return getattr(client, method)(url, data, format=fmt)


READ_ROUTES = ["models", "model", "versions", "version", "schema"]
PREDICT_ROUTES = ["predict", "predict-info", "predict-v2", "prediction-by-key"]
MANAGE_ROUTES = [
    "artifact",
    "upload",
    "promote",
    "archive",
    "rollback",
    "jobs",
    "job",
    "job-predictions",
    "job-create",
    "job-cancel",
]
USERS = ["anonymous", "user", "staff"]


@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("route", READ_ROUTES + PREDICT_ROUTES)
def test_reads_and_predict_are_open_by_default(world, route, who):
    response = request(client_for(who), route, world)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("route", MANAGE_ROUTES)
def test_management_needs_staff_by_default(world, route):
    response = request(client_for("staff"), route, world)
    assert response.status_code in (200, 201), response.content


@pytest.mark.parametrize("who", ["anonymous", "user"])
@pytest.mark.parametrize("route", MANAGE_ROUTES)
def test_management_is_refused_to_others_by_default(world, route, who):
    response = request(client_for(who), route, world)
    assert response.status_code == 403
    assert response.json()["error"]


@pytest.mark.parametrize("route", READ_ROUTES)
def test_tightened_read_setting_takes_effect(world, route):
    with override_settings(MLAPP={"READ_PERMISSION_CLASSES": IS_AUTHENTICATED}):
        assert request(client_for("anonymous"), route, world).status_code == 403
        assert request(client_for("user"), route, world).status_code == 200
        # Predict has its own setting, still open.
        assert request(client_for("anonymous"), "predict", world).status_code == 200


@pytest.mark.parametrize("route", PREDICT_ROUTES)
def test_tightened_predict_setting_takes_effect(world, route):
    with override_settings(MLAPP={"PREDICT_PERMISSION_CLASSES": IS_AUTHENTICATED}):
        denied = request(client_for("anonymous"), route, world)
        assert denied.status_code == 403
        assert denied.json() == {"error": "Authentication credentials were not provided."}
        assert request(client_for("user"), route, world).status_code == 200
        assert request(client_for("anonymous"), "models", world).status_code == 200


def test_loosened_manage_setting_takes_effect(world):
    with override_settings(MLAPP={"MANAGE_PERMISSION_CLASSES": IS_AUTHENTICATED}):
        assert request(client_for("user"), "promote", world).status_code == 200
        assert request(client_for("anonymous"), "jobs", world).status_code == 403


def test_setting_back_to_the_default_takes_effect_again(world):
    with override_settings(MLAPP={"PREDICT_PERMISSION_CLASSES": IS_AUTHENTICATED}):
        assert request(client_for("anonymous"), "predict", world).status_code == 403
    with override_settings(MLAPP={"PREDICT_PERMISSION_CLASSES": ALLOW_ANY}):
        assert request(client_for("anonymous"), "predict", world).status_code == 200


def test_browsable_page_hides_the_upload_form_from_non_staff(world):
    anonymous = client_for("anonymous").get(
        "/api/mlapp/models/affine/versions/", HTTP_ACCEPT="text/html"
    )
    staff = client_for("staff").get("/api/mlapp/models/affine/versions/", HTTP_ACCEPT="text/html")
    assert 'name="file"' not in anonymous.content.decode()
    assert 'name="file"' in staff.content.decode()


def test_a_wrong_token_is_a_401_with_the_token_challenge_even_where_anyone_may_predict(world):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    for response in (
        client.post("/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"),
        client.get("/api/mlapp/models/"),
        client.get("/api/mlapp/jobs/"),
    ):
        assert response.status_code == 401, response.content
        assert response["WWW-Authenticate"] == "Token"
        assert response.json() == {"error": "Invalid token."}


def test_anonymous_is_still_a_403_where_staff_is_needed_and_predicts_without_a_lookup(world):
    client = APIClient()
    assert client.get("/api/mlapp/jobs/").status_code == 403
    answer = client.post("/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json")
    assert answer.status_code == 200
