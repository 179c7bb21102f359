"""The hostile corpus through every upload path: each artifact refused with a message, nothing
stored, no payload run. The Python API, ``manage.py register_model``, the native API and the
admin's add page all validate in the same sandbox (:mod:`mlapp.versions.sandbox`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from mlapp.exceptions import ArtifactError
from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import register_version
from tests.hostile.corpus import Hostile, build

pytestmark = pytest.mark.django_db

# Short limits: the corpus's endless loop is stopped after this, its memory bomb beyond that.
LIMITS = {"THREADS": 1, "VALIDATION_TIMEOUT": 6, "VALIDATION_MEMORY": 1024**3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Hostile], Path]:
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "PAYLOAD-RAN"
    return build(folder, marker), marker


def _python(item: Hostile, model: MLModel, user) -> str:
    with pytest.raises(ArtifactError) as refused:
        register_version(model.name, item.path)
    return refused.value.message


def _command(item: Hostile, model: MLModel, user) -> str:
    with pytest.raises(CommandError) as refused:
        call_command("register_model", model.name, str(item.path))
    return str(refused.value)


def _api(item: Hostile, model: MLModel, user) -> str:
    client = APIClient()
    client.force_authenticate(user)
    upload = SimpleUploadedFile(item.path.name, item.path.read_bytes())
    response = client.post(
        f"/api/mlapp/models/{model.name}/versions/", {"file": upload}, format="multipart"
    )
    assert 400 <= response.status_code < 500, (item.name, response.status_code, response.content)
    return response.json()["error"]


def _admin(item: Hostile, model: MLModel, user) -> str:
    client = Client()
    client.force_login(user)
    upload = SimpleUploadedFile(item.path.name, item.path.read_bytes())
    response = client.post(
        "/admin/mlapp/modelversion/add/", {"model": model.pk, "artifact_file": upload}
    )
    assert response.status_code == 200, (item.name, response.status_code)
    errors = response.context["adminform"].form.errors
    assert "artifact_file" in errors, (item.name, errors)
    return str(errors["artifact_file"][0])


@pytest.mark.parametrize("upload", [_python, _command, _api, _admin], ids=lambda f: f.__name__[1:])
def test_every_hostile_artifact_is_refused_on_every_upload_path(
    upload, corpus, settings, reliability
):
    items, marker = corpus
    settings.MLAPP = LIMITS
    model = MLModel.objects.create(name="target")
    user = get_user_model().objects.create_superuser("root", password="pw")
    refusals = {}
    for item in items:
        message = upload(item, model, user)
        assert message.strip(), item.name
        refusals[item.name] = message
        assert not marker.exists(), f"{item.name}: its payload ran through {upload.__name__}"
    assert ModelVersion.objects.count() == 0
    # The sandbox's refusals say why, in words an operator can act on.
    assert "took longer than 6 s" in refusals["onnx-endless-loop"]
    assert "MLAPP['VALIDATION_MEMORY']" in refusals["onnx-memory-bomb"]
    assert "neighbour.bin" in refusals["onnx-external-data"]
    assert "guards code" in refusals["export-guards-code"]
    assert "zip bomb" in refusals["zip-bomb-ratio"]
    reliability.add(
        "artifacts",
        "hostile artifacts (30) x upload paths (Python, register_model, API, admin)",
        tried=len(items),
        bad=0,  # every assertion above held: refused with a message, no payload ran
        unit="accepted or payload run",
    )
