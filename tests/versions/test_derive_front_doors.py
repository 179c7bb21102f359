"""Deriving from the three front doors: the native API, the admin's button, the command."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from mlapp.models import ModelVersion
from tests.demo_models import FIXTURES, register_demo, samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return get_user_model().objects.create_superuser("ops", password="pw")


def test_api_derives_int8_and_answers_the_new_version(staff):
    register_demo("digits")
    client = APIClient()
    client.force_authenticate(staff)
    response = client.post(
        "/api/mlapp/models/digits/versions/1/derive",
        {"method": "dynamic", "samples": samples("digits")},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["parent"], body["stage"]) == (2, 1, "staging")
    assert body["metrics"]["derived"]["child"]["label_agreement"] == 1.0
    assert response["Location"].endswith("/models/digits/versions/2/")


def test_api_refuses_what_cannot_be_derived_with_400_and_the_reason(staff):
    register_demo("digits")
    client = APIClient()
    client.force_authenticate(staff)
    url = "/api/mlapp/models/digits/versions/1/derive"
    response = client.post(url, {"kind": "onnx"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == (
        "digits v1 is onnx: onnx versions are derived from torchscript versions only."
    )
    bad = client.post(url, {"kind": "fp4"}, format="json")
    assert bad.status_code == 400
    assert "fp4" in bad.json()["error"]
    assert ModelVersion.objects.count() == 1


def test_api_derive_needs_staff():
    register_demo("digits")
    response = APIClient().post("/api/mlapp/models/digits/versions/1/derive", {}, format="json")
    assert response.status_code in (401, 403)


def test_admin_button_exports_iris_and_the_page_shows_it_beside_its_parent(client, staff):
    iris = register_demo("iris")
    client.force_login(staff)
    page = client.get(f"/admin/mlapp/modelversion/{iris.pk}/change/")
    assert b"Export to ONNX" in page.content
    form = client.get(f"/admin/mlapp/modelversion/{iris.pk}/derive/")
    assert form.status_code == 200
    upload = SimpleUploadedFile("rows.json", json.dumps(samples("iris")).encode())
    response = client.post(
        f"/admin/mlapp/modelversion/{iris.pk}/derive/",
        {"kind": "onnx", "method": "auto", "samples": upload},
        follow=True,
    )
    child = ModelVersion.objects.get(model=iris.model, version=2)
    assert response.redirect_chain[-1][0].endswith(f"/{child.pk}/change/")
    html = response.content.decode()
    assert "stored in staging" in html
    assert 'class="mlapp-derived"' in html
    assert "label agreement" in html
    assert "100.00 %" in html
    assert "Derive int8" in html  # the ONNX child can be quantized in turn


def test_admin_derive_refusal_is_a_message_on_the_parent_page(client, staff):
    digits = register_demo("digits")
    client.force_login(staff)
    response = client.post(
        f"/admin/mlapp/modelversion/{digits.pk}/derive/",
        {"kind": "int8", "method": "dynamic", "samples": SimpleUploadedFile("s.json", b"[{}]")},
        follow=True,
    )
    assert "Nothing was derived" in response.content.decode()
    assert ModelVersion.objects.count() == 1


def test_command_derives_on_the_sample_the_settings_name(tmp_path, settings):
    register_demo("digits")
    rows = FIXTURES / "digits" / "samples.json"
    settings.MLAPP = {**settings.MLAPP, "DERIVE_SAMPLES": {"digits": str(rows)}}
    call_command("derive_version", "digits", "1", "--method", "static")
    child = ModelVersion.objects.get(version=2)
    figures = child.metrics["derived"]
    assert figures["method"] == "static"
    assert figures["sample"] == "MLAPP['DERIVE_SAMPLES']: samples.json"
    assert figures["sample_rows"] == 10
    with pytest.raises(CommandError, match="No version 9"):
        call_command("derive_version", "digits", "9")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("derive_version", "digits", "1", "--samples", str(tmp_path / "none.json"))
