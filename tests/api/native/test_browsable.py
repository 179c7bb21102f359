"""The native API in DRF's browsable HTML pages."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def page(client: APIClient, url: str, status: int = 200) -> str:
    response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_api_root_page_links_the_routes(affine):
    text = page(APIClient(), "/api/mlapp/")
    for route in ("/api/mlapp/models/", "/api/mlapp/jobs/", "/api/mlapp/schema/swagger/"):
        assert route in text


def test_model_list_page_shows_the_models(affine):
    text = page(APIClient(), "/api/mlapp/models/")
    assert "Model List" in text
    assert "&quot;affine&quot;" in text or '"affine"' in text


def test_model_detail_and_version_pages_render(affine):
    assert "Model Detail" in page(APIClient(), "/api/mlapp/models/affine/")
    version = page(APIClient(), "/api/mlapp/models/affine/versions/1/")
    assert "Version Detail" in version
    assert affine.sha256 in version


def test_predict_page_shows_a_form_filled_with_a_body_that_fits(affine):
    text = page(APIClient(), "/api/mlapp/models/affine/predict")
    assert "<form" in text
    textareas = re.findall(r"<textarea[^>]*>(.*?)</textarea>", text, re.DOTALL)
    bodies = [json.loads(html.unescape(t)) for t in textareas if "inputs" in t]
    assert {"inputs": {"x": [[0, 0, 0]]}} in bodies


def test_predict_page_form_posts_and_answers(affine):
    client = APIClient()
    response = client.post(
        "/api/mlapp/models/affine/predict",
        {"inputs": '{"x": [[1, 2, 3]]}'},
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 200
    assert "14.5" in response.content.decode()


def test_predict_page_of_an_unknown_model_is_a_404_page_not_a_500():
    text = page(APIClient(), "/api/mlapp/models/nope/predict", status=404)
    assert "No model named" in text


def test_job_list_page_renders_for_staff(affine):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    text = page(client, "/api/mlapp/jobs/")
    assert "Job List" in text
    assert 'name="model"' in text  # the create form
