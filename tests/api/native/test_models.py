"""GET /api/mlapp/models/ and /api/mlapp/models/<name>/: list, filters, readiness, signature."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from mlapp.handlers import BaseHandler
from mlapp.models import MLModel
from mlapp.serving.registry import registry
from mlapp.startup import load_models
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


class TextLengthHandler(BaseHandler):
    """Strings in: x = (length, 0, 0) per text, so the affine model answers for text."""

    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def preprocess(self, inputs):
        lengths = [len(t) for t in inputs["text"].tolist()]
        x = np.zeros((len(lengths), 3), dtype=np.float32)
        x[:, 0] = lengths
        return {"x": x}


HANDLER = f"{__name__}.TextLengthHandler"


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def affine(onnx_file):
    return register_version(
        "affine", onnx_file, promote=True, task="regression", description="y = Wx + b"
    )


def results(response):
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_model_list_is_paginated_with_the_page_size_setting(client, onnx_file, settings):
    for name in ("m1", "m2", "m3"):
        register_version(name, onnx_file)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    first = client.get("/api/mlapp/models/").json()
    assert first["count"] == 3
    assert [m["name"] for m in first["results"]] == ["m1", "m2"]
    second = client.get(first["next"]).json()
    assert [m["name"] for m in second["results"]] == ["m3"]
    assert second["next"] is None


def test_model_list_page_size_query_parameter(client, onnx_file):
    for name in ("m1", "m2", "m3"):
        register_version(name, onnx_file)
    body = client.get("/api/mlapp/models/?page_size=1&page=3").json()
    assert [m["name"] for m in body["results"]] == ["m3"]


def test_model_list_filters_by_task(client, affine, onnx_file):
    register_version("embedder", onnx_file, task="embedding")
    names = [m["name"] for m in results(client.get("/api/mlapp/models/?task=embedding"))]
    assert names == ["embedder"]


def test_model_list_refuses_an_unknown_task_with_a_400(client, affine):
    response = client.get("/api/mlapp/models/?task=astrology")
    assert response.status_code == 400
    assert "task" in response.json()["error"]


def test_model_list_searches_by_name(client, affine, onnx_file):
    register_version("iris-small", onnx_file)
    register_version("iris-large", onnx_file)
    names = [m["name"] for m in results(client.get("/api/mlapp/models/?search=iris"))]
    assert names == ["iris-large", "iris-small"]


def test_model_list_reads_in_a_bounded_number_of_queries(
    client, onnx_file, django_assert_max_num_queries
):
    for name in ("m1", "m2", "m3", "m4"):
        register_version(name, onnx_file, promote=True)
    with django_assert_max_num_queries(3):
        body = results(client.get("/api/mlapp/models/"))
    assert [m["production_version"] for m in body] == [1, 1, 1, 1]


def test_model_detail_describes_the_model(client, affine):
    body = client.get("/api/mlapp/models/affine/").json()
    assert body["name"] == "affine"
    assert body["description"] == "y = Wx + b"
    assert body["task"] == "regression"
    assert body["handler"] == ""
    assert body["serving"] == {}
    assert body["production_version"] == 1
    assert body["signature"] == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert body["versions_url"].endswith("/api/mlapp/models/affine/versions/")
    assert body["predict_url"].endswith("/api/mlapp/models/affine/predict")


def test_model_not_loaded_by_this_process_says_so(client, affine):
    body = client.get("/api/mlapp/models/affine/").json()
    assert body["ready"] is False
    assert body["loaded_version"] is None
    assert "not loaded in this process" in body["reason"].lower()
    assert "first predict" in body["reason"]


def test_model_loaded_at_startup_is_ready(client, affine):
    load_models()
    body = client.get("/api/mlapp/models/affine/").json()
    assert (body["ready"], body["reason"], body["loaded_version"]) == (True, None, 1)


def test_model_loaded_by_a_first_predict_is_ready(client, affine):
    client.post("/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json")
    assert client.get("/api/mlapp/models/affine/").json()["ready"] is True


def test_model_without_production_version_says_why(client, onnx_file):
    register_version("staged", onnx_file)
    load_models()
    body = client.get("/api/mlapp/models/staged/").json()
    assert body["ready"] is False
    assert body["production_version"] is None
    assert "No production version" in body["reason"]
    assert body["signature"] is None


def test_model_that_failed_to_load_gives_the_reason(client, affine):
    with open(affine.artifact.path, "wb") as fh:
        fh.write(b"broken")
    load_models()
    body = client.get("/api/mlapp/models/affine/").json()
    assert body["ready"] is False
    assert body["reason"] == registry.status()["affine"]["error"]
    assert body["reason"]


def test_model_with_a_handler_is_described_by_what_clients_send(client, onnx_file):
    register_version("lengths", onnx_file, handler=HANDLER, promote=True)
    body = client.get("/api/mlapp/models/lengths/").json()
    assert body["handler"] == HANDLER
    assert body["signature"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def test_text_model_predicts_from_strings_through_its_handler(client, onnx_file):
    register_version("lengths", onnx_file, handler=HANDLER, promote=True)
    response = client.post(
        "/api/mlapp/models/lengths/predict", {"inputs": ["abc", ""]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["outputs"] == {"y": [[3.5, -3.5], [0.5, -0.5]]}


def test_unknown_model_detail_is_a_404(client):
    response = client.get("/api/mlapp/models/nope/")
    assert response.status_code == 404
    assert response.json() == {"error": "No model named 'nope'."}


def test_model_list_shows_readiness_of_each_model(client, affine, onnx_file):
    register_version("staged", onnx_file)
    load_models()
    by_name = {m["name"]: m for m in results(client.get("/api/mlapp/models/"))}
    assert by_name["affine"]["ready"] is True
    assert by_name["staged"]["ready"] is False
    assert MLModel.objects.count() == 2
