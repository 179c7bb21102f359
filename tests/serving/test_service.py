"""The inference service validates inputs against the signature before running."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlapp
from mlapp.exceptions import InvalidInput
from mlapp.serving.inputs import named
from mlapp.serving.service import service, to_json_value
from mlapp.versions.lifecycle import register_version
from tests.artifacts import expected

pytestmark = pytest.mark.django_db


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def test_predict_returns_outputs_and_the_version_that_answered(affine):
    x = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]
    prediction = service.predict("affine", named({"x": x}))
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
        service.predict("affine", named(inputs))


def test_pinned_version_answers_with_its_own_number(affine, onnx_file):
    register_version("affine", onnx_file)
    assert service.predict("affine", named([[1, 2, 3]]), version=2).version == 2
    assert service.predict("affine", named([[1, 2, 3]])).version == 1


def test_float32_outputs_become_the_shortest_decimals_of_the_same_float32():
    rng = np.random.default_rng(3)
    array = np.concatenate([rng.standard_normal(200), [0.1, 1e-8, 3e38, -0.0]]).astype(np.float32)
    values = to_json_value(array)
    assert values[200:] == [0.1, 1e-8, 3e38, -0.0]  # not 0.10000000149011612 ...
    assert all(type(v) is float for v in values)
    np.testing.assert_array_equal(np.array(values, np.float32), array)  # bit for bit
    assert len(json.dumps(values)) < 0.7 * len(json.dumps(array.tolist()))


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array(0.1, np.float32), 0.1),  # a 0-d array
        (np.array(0.1, ">f4"), 0.1),
        (np.array([[0.5, 0.1]], dtype=">f4"), [[0.5, 0.1]]),  # big-endian
        (np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2] / 10, [[0.0, 0.2], [0.3, 0.5]]),
        (np.array([np.nan, np.inf, 1.5], np.float32), [None, None, 1.5]),
        (np.array([0.1, 0.25]), [0.1, 0.25]),  # float64 as before
        (np.array([[1, 2]], np.int64), [[1, 2]]),
        (np.array(["a", b"b"], dtype=object), ["a", "b"]),
    ],
)
def test_to_json_value_handles_every_layout_and_dtype(array, expected):
    assert to_json_value(array) == expected
