"""POST /api/mlapp/models/<name>/predict through Django's test client."""

from __future__ import annotations

import pytest
import torch
from rest_framework.test import APIClient

from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


class Pairs(torch.nn.Module):
    """Two inputs: out = sum(a) * b per row."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.sum(dim=1) * b


@pytest.fixture
def two_input_model(tmp_path):
    path = tmp_path / "pairs.onnx"
    torch.onnx.export(
        Pairs().eval(),
        (torch.zeros(2, 2), torch.zeros(2)),
        str(path),
        input_names=["a", "b"],
        output_names=["out"],
        dynamic_axes={"a": {0: "n"}, "b": {0: "n"}, "out": {0: "n"}},
        dynamo=False,
    )
    return register_version("pairs", path, promote=True)


def test_predict_answers_outputs_model_and_version(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": {"x": [[1, 2, 3]]}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"model": "affine", "version": 1, "outputs": {"y": [[14.5, 1.5]]}}


def test_predict_pinned_version(client, affine, onnx_file):
    register_version("affine", onnx_file)
    response = client.post(
        "/api/mlapp/models/affine/versions/2/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2


def test_anonymous_predict_needs_no_csrf_token(affine):
    client = APIClient(enforce_csrf_checks=True)
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"inputs": {"x": [[1, 2]]}}, 400, "shape"),
        ({"inputs": {"q": [[1, 2, 3]]}}, 400, "input"),
        ({"wrong": 1}, 400, "inputs"),
        ({"inputs": [["a", "b", "c"]]}, 400, "numeric"),
    ],
)
def test_bad_input_is_a_4xx_with_an_error_message(client, affine, body, status, message):
    response = client.post("/api/mlapp/models/affine/predict", body, format="json")
    assert response.status_code == status
    assert message in response.json()["error"]


def test_malformed_json_is_a_400(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/predict", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_unknown_model_is_a_404(client):
    response = client.post("/api/mlapp/models/nope/predict", {"inputs": [[1]]}, format="json")
    assert response.status_code == 404
    assert response.json() == {"error": "No model named 'nope'."}


def test_unknown_version_is_a_404(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/versions/7/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 404


def test_model_that_failed_to_load_is_a_503_with_the_reason(client, affine):
    from mlapp.startup import load_models

    with open(affine.artifact.path, "wb") as fh:
        fh.write(b"broken")
    load_models()
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
    )
    assert response.status_code == 503
    assert "failed to load" in response.json()["error"]


def test_model_list_reports_readiness(client, affine, onnx_file):
    from mlapp.startup import load_models

    register_version("staged", onnx_file)
    load_models()
    response = client.get("/api/mlapp/models/")
    assert response.status_code == 200
    by_name = {m["name"]: m for m in response.json()["results"]}
    assert by_name["affine"]["ready"] is True
    assert by_name["affine"]["production_version"] == 1
    assert by_name["staged"]["ready"] is False


def test_predict_takes_records_one_per_row(client, affine):
    body = {"inputs": [{"x": [1, 2, 3]}, {"x": [0, 0, 0]}]}
    response = client.post("/api/mlapp/models/affine/predict", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["outputs"] == {"y": [[14.5, 1.5], [0.5, -0.5]]}


def test_records_and_named_inputs_give_the_same_answer(client, affine):
    rows = [[1, 2, 3], [4, 5, 6], [-1, 0, 1]]
    named = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": {"x": rows}}, format="json"
    ).json()
    records = client.post(
        "/api/mlapp/models/affine/predict",
        {"inputs": [{"x": row} for row in rows]},
        format="json",
    ).json()
    assert records == named


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"x": [1, 2, 3]}, {"z": [1, 2, 3]}], "every record names the same inputs"),
        ([{"x": [1, 2, 3]}, [1, 2, 3]], "not a record"),
        ([{}], "Record 0 is empty"),
        ([{"z": [1, 2, 3]}], "Missing input"),
        ([{"x": [1, 2]}], "shape"),
    ],
)
def test_bad_records_are_a_400_naming_the_problem(client, affine, inputs, message):
    response = client.post("/api/mlapp/models/affine/predict", {"inputs": inputs}, format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_records_of_a_model_with_several_inputs(client, two_input_model):
    body = {"inputs": [{"a": [1, 2], "b": 3}, {"a": [0.5, 0.5], "b": -2}]}
    response = client.post("/api/mlapp/models/pairs/predict", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["outputs"] == {"out": [9.0, -2.0]}


def test_predict_makes_no_database_query_once_the_model_is_loaded(
    client, affine, django_assert_num_queries
):
    warm = client.post("/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json")
    assert warm.status_code == 200
    with django_assert_num_queries(0):
        response = client.post(
            "/api/mlapp/models/affine/predict", {"inputs": [[1, 2, 3]]}, format="json"
        )
    assert response.status_code == 200


def test_pinned_version_predict_makes_no_query_once_loaded(
    client, affine, onnx_file, django_assert_num_queries
):
    register_version("affine", onnx_file)
    url = "/api/mlapp/models/affine/versions/2/predict"
    assert client.post(url, {"inputs": [[1, 2, 3]]}, format="json").status_code == 200
    with django_assert_num_queries(0):
        response = client.post(url, {"inputs": [[1, 2, 3]]}, format="json")
    assert response.json()["version"] == 2


def test_get_on_predict_shows_the_signature_and_an_example_body(client, affine):
    body = client.get("/api/mlapp/models/affine/predict").json()
    assert body["model"] == "affine"
    assert body["version"] == 1
    assert body["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["example"] == {"inputs": {"x": [[0, 0, 0]]}}
    # The example is a body the model takes.
    response = client.post("/api/mlapp/models/affine/predict", body["example"], format="json")
    assert response.status_code == 200


def test_predict_output_overflowing_to_infinity_is_null_not_a_500(client, affine):
    response = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": [[1e38, 1e38, 1e38]]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["outputs"]["y"][0][0] is None
