"""The inference service validates inputs against the signature before running."""

from __future__ import annotations

import numpy as np
import pytest

import mlapp
from mlapp.exceptions import InvalidInput
from mlapp.service import service
from mlapp.versions import register_version
from tests.artifacts import expected

pytestmark = pytest.mark.django_db


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def test_predict_returns_outputs_and_the_version_that_answered(affine):
    x = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    prediction = service.predict("affine", {"x": x})
    assert prediction.model == "affine"
    assert prediction.version == 1
    np.testing.assert_allclose(prediction.outputs["y"], expected(np.array(x, np.float32)))


def test_public_predict_function_uses_the_same_service(affine):
    result = mlapp.predict("affine", [[1, 2, 3]])
    np.testing.assert_allclose(result.outputs["y"], [[14.5, 1.5]])
    assert result.to_dict() == {"model": "affine", "version": 1, "outputs": {"y": [[14.5, 1.5]]}}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "Missing input"),
        ({"x": [[1, 2, 3]], "z": [1]}, "Unknown input"),
        ({"x": [[1, 2]]}, "shape"),
        ({"x": [1, 2, 3]}, "shape"),
        ({"x": [["a", "b", "c"]]}, "numeric"),
        ({"x": [[1, 2, 3], [1, 2]]}, "regular array"),
    ],
)
def test_bad_inputs_raise_invalid_input_with_a_message(affine, inputs, message):
    with pytest.raises(InvalidInput, match=message):
        service.predict("affine", inputs)


def test_pinned_version_answers_with_its_own_number(affine, onnx_file):
    register_version("affine", onnx_file)
    assert service.predict("affine", [[1, 2, 3]], version=2).version == 2
    assert service.predict("affine", [[1, 2, 3]]).version == 1
