"""The admin's JSON answer and model file behind "Run in this browser too"."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from mlapp.versions.lifecycle import register_version
from tests.admin.tiny_models import IRIS_SIGNATURE, iris_file
from tests.demo_models import register_demo

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("a", password="pw"))
    return client


def test_answer_is_the_services_json_and_bad_requests_are_4xx(staff):
    digits = register_demo("digits")
    url = f"/admin/mlapp/modelversion/{digits.pk}/answer/"
    grid = [[0.0] * 8] * 8
    ok = staff.post(url, {"inputs": [[grid]]}, content_type="application/json")
    assert ok.status_code == 200
    assert ok.json()["version"] == 1
    assert len(ok.json()["outputs"]["probabilities"][0]) == 10
    assert staff.post(url, "not json", content_type="application/json").status_code == 400
    wrong = staff.post(url, {"inputs": [[1, 2]]}, content_type="application/json")
    assert wrong.status_code == 400
    assert "image" in wrong.json()["error"]
    assert staff.get(url).status_code == 405


def test_model_file_is_served_for_onnx_only_and_the_page_offers_the_browser_run(staff):
    digits = register_demo("digits")
    response = staff.get(f"/admin/mlapp/modelversion/{digits.pk}/model.onnx")
    assert response["X-Checksum-SHA256"] == digits.sha256
    page = staff.get(f"/admin/mlapp/modelversion/{digits.pk}/change/").content.decode()
    assert "data-mlapp-edge" in page
    assert "mlapp/ort/ort.wasm.min.js" in page
    iris = register_version("iris", iris_file(), signature=IRIS_SIGNATURE)
    assert staff.get(f"/admin/mlapp/modelversion/{iris.pk}/model.onnx").status_code == 404
    page = staff.get(f"/admin/mlapp/modelversion/{iris.pk}/change/").content.decode()
    assert "data-mlapp-edge" not in page


def test_anonymous_users_get_neither(client):
    digits = register_demo("digits")
    response = client.get(f"/admin/mlapp/modelversion/{digits.pk}/model.onnx")
    assert response.status_code == 302  # to the login page
    assert "/admin/login/" in response["Location"]
