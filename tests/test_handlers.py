"""A model's handler while serving: its errors on client input are 400s that name it, its bugs
500s; a handler that cannot be imported or does not fit the artifact makes the model not ready
with the reason (not a 500 on every request); the APIs refuse a bad handler path (400) and a
promotion the handler cannot serve (409)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from mlapp.exceptions import InferenceError, InvalidInput
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.inputs import named
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.startup import load_models
from mlapp.versions.lifecycle import register_version
from tests.admin.tiny_models import IRIS_SIGNATURE, iris_file

pytestmark = pytest.mark.django_db

HANDLERS = "tests.importable.handlers"
MEASUREMENTS = f"{HANDLERS}.MeasurementsHandler"


@pytest.fixture
def iris():
    """Iris served as text rows through MeasurementsHandler, loaded as at startup."""
    version = register_version(
        "iris", iris_file(), signature=IRIS_SIGNATURE, handler=MEASUREMENTS, promote=True
    )
    load_models(force=True)
    return version


@pytest.fixture
def staff_client():
    staff = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    return client


# -- handler errors on client input ---------------------------------------------------------


def test_the_handler_serves_its_public_inputs(iris):
    answer = service.predict("iris", named({"text": ["5.1,3.5,1.4,0.2", "6.3,3.3,6.0,2.5"]}))
    assert np.argmax(answer.outputs["probabilities"], axis=1).tolist() == [0, 2]


def test_text_that_is_not_utf8_is_a_400_naming_the_handler(iris):
    bad = np.array([b"\xff\xfe1,2,3,4"], dtype=object)
    with pytest.raises(InvalidInput) as caught:
        service.predict("iris", named({"text": bad}))
    assert caught.value.status_code == 400
    assert MEASUREMENTS in caught.value.message
    assert "UnicodeDecodeError" in caught.value.message


def test_a_bug_in_the_handler_is_a_500_that_does_not_echo_it(iris):
    with pytest.raises(InferenceError) as caught:
        service.predict("iris", named({"text": ["crash"]}))
    assert caught.value.status_code == 500
    assert "a bug in the handler" not in caught.value.message


def test_native_predict_answers_a_handlers_value_error_with_a_400(iris):
    response = APIClient().post(
        "/api/mlapp/models/iris/predict", {"inputs": {"text": ["a,b,c,d"]}}, format="json"
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert MEASUREMENTS in error
    assert "could not convert string to float" in error


def test_v2_infer_answers_a_handlers_value_error_with_a_400_and_its_bug_with_a_500(iris):
    def infer(text: str):
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
        return Client().post(
            "/v2/models/iris/infer", json.dumps(body), content_type="application/json"
        )

    refused = infer("1,2")
    assert refused.status_code == 400, refused.content
    assert MEASUREMENTS in refused.json()["error"]
    failed = infer("crash")
    assert failed.status_code == 500
    assert failed.json() == {"error": "The model failed to run."}


# -- readiness ------------------------------------------------------------------------------


def test_a_handler_that_cannot_be_imported_makes_the_model_not_ready_with_the_reason(iris):
    MLModel.objects.filter(name="iris").update(handler=f"{HANDLERS}.Renamed")
    registry.reload("iris")
    # A process that served v1 keeps answering with it, and says why it did not reload.
    ready, reason = service.model_ready("iris")
    assert ready
    assert f"Cannot import handler '{HANDLERS}.Renamed'" in reason
    # A process that starts now cannot answer at all.
    registry.clear()
    load_models(force=True)
    ready, reason = service.model_ready("iris")
    assert not ready
    assert f"Cannot import handler '{HANDLERS}.Renamed'" in reason
    response = Client().get("/v2/models/iris/ready")
    assert response.status_code == 503


def test_a_handler_that_does_not_fit_the_artifact_makes_the_model_not_ready(iris):
    # Set behind the checks' back (say, the handler's code changed in a deploy).
    MLModel.objects.filter(name="iris").update(handler=f"{HANDLERS}.FeaturesHandler")
    registry.clear()
    errors = load_models(force=True)
    assert "features" in errors["iris"]
    ready, reason = service.model_ready("iris")
    assert not ready
    assert "FeaturesHandler does not fit this artifact" in reason
    assert "['input']" in reason
    assert service.ready()[0] is False
    response = Client().get("/v2/models/iris/ready")
    assert response.status_code == 503


# -- the native API -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (f"{HANDLERS}.Typo", "Cannot import handler"),
        (f"{HANDLERS}.NotAHandler", "is not a mlapp.handlers.BaseHandler"),
    ],
)
def test_upload_with_a_bad_handler_path_is_a_400(staff_client, onnx_file, handler, reason):
    response = staff_client.post(
        "/api/mlapp/models/affine/versions/",
        {"file": SimpleUploadedFile("m.onnx", onnx_file.read_bytes()), "handler": handler},
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert reason in json.dumps(response.json())
    assert not ModelVersion.objects.exists()


def test_upload_its_handler_cannot_serve_is_a_400_with_the_reason(staff_client, onnx_file):
    response = staff_client.post(
        "/api/mlapp/models/affine/versions/",
        {
            "file": SimpleUploadedFile("m.onnx", onnx_file.read_bytes()),
            "handler": f"{HANDLERS}.FeaturesHandler",
        },
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert "FeaturesHandler does not fit this artifact" in response.json()["error"]
    assert not ModelVersion.objects.exists()


def test_promoting_a_version_its_handler_cannot_serve_is_a_409(staff_client, onnx_file):
    register_version("affine", onnx_file)
    MLModel.objects.filter(name="affine").update(handler=f"{HANDLERS}.FeaturesHandler")
    response = staff_client.post("/api/mlapp/models/affine/versions/1/promote")
    assert response.status_code == 409, response.content
    assert "affine v1 cannot go to production" in response.json()["error"]
    assert "features" in response.json()["error"]
    assert ModelVersion.objects.get().stage == "staging"
