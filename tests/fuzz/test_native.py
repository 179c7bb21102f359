"""Property-based fuzzing of the native predict endpoint (``POST .../models/<name>/predict``).

Whatever arrives as JSON, as the browsable API's form (url-encoded or multipart), or as any
bytes, the answer is below 500 and an error is a 4xx with ``{"error": "..."}``; valid inputs
in each of the three accepted shapes (bare value, named inputs, records) get what the loaded
model itself returns for them. An empty batch is a 400 that says so, whatever the model.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from django.test.client import MULTIPART_CONTENT, encode_multipart
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlapp.serving.registry import registry
from mlapp.serving.service import to_json_value
from tests.fuzz.common import (
    MODELS,
    assert_error_answer,
    client,
    fuzz_settings,
    json_ints,
    json_values,
    send,
)

pytestmark = pytest.mark.django_db

SUITE = "native predict"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "fuzzboundary"

model_names = st.sampled_from(sorted(MODELS))
numbers = st.floats(width=32, allow_nan=False, allow_infinity=False) | json_ints
#: Values that look like inputs (rows of numbers, texts, records) or any JSON at all.
input_values = st.one_of(
    json_values,
    st.lists(st.lists(numbers, min_size=0, max_size=5), max_size=4),
    st.lists(st.text(max_size=12), max_size=4),
    st.lists(
        st.dictionaries(st.sampled_from(["x", "text", "input", "q"]), json_values), max_size=3
    ),
    st.dictionaries(
        st.sampled_from(["x", "text", "input", "q"]),
        st.lists(st.lists(numbers, max_size=5), max_size=3) | st.lists(st.text(), max_size=3),
        max_size=2,
    ),
)
bodies = st.one_of(
    st.fixed_dictionaries({"inputs": input_values}),
    st.fixed_dictionaries({"inputs": input_values}, optional={"id": json_values}),
    json_values,
)


def _path(model: str) -> str:
    return f"/api/mlapp/models/{model}/predict"


def assert_native_answer(response: Any, model: str) -> None:
    """Below 500; an error is a 4xx with ``{"error"}``; a success names model and outputs."""
    assert response.status_code < 500, (response.status_code, response.content[:300])
    event(f"status {response.status_code}")
    if response.status_code != 200:
        assert_error_answer(response)
        return
    body = response.json()
    assert body["model"] == model
    assert body["version"] == 1
    assert body["outputs"]


# -- properties: no 5xx whatever arrives -------------------------------------------------------


@fuzz_settings
@given(model=model_names, body=bodies)
@example(model="texty", body={"inputs": []})
@example(model="texty", body={"inputs": {"text": []}})
@example(model="affine", body={"inputs": {"x": [[]]}})
def test_any_json_body_is_answered_below_500(models, model, body):
    response = send(client(), SUITE, _path(model), json.dumps(body).encode(), JSON)
    assert_native_answer(response, model)


@fuzz_settings
@given(
    model=model_names,
    value=input_values.map(json.dumps) | st.text(max_size=40),
    multipart=st.booleans(),
)
@example(model="texty", value="[]", multipart=False)
@example(model="texty", value="[]", multipart=True)
def test_any_form_field_is_answered_below_500(models, model, value, multipart):
    """The browsable API's form: ``inputs`` as a JSON text field, url-encoded or multipart."""
    if multipart:
        body = encode_multipart(BOUNDARY, {"inputs": value})
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
    else:
        body, content_type = urlencode({"inputs": value}).encode(), FORM
    response = send(client(), SUITE, _path(model), body, content_type)
    assert_native_answer(response, model)


@fuzz_settings
@given(
    model=model_names,
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["", JSON, FORM, MULTIPART_CONTENT, "text/plain", "x/y; q=1"]),
)
def test_any_bytes_body_is_answered_below_500(models, model, body, content_type):
    response = send(client(), SUITE, _path(model), body, content_type)
    assert_native_answer(response, model)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("form", [True, False], ids=["form", "json"])
def test_an_empty_batch_is_a_400_that_says_so(models, model, form):
    if form:
        body, content_type = urlencode({"inputs": "[]"}).encode(), FORM
    else:
        body, content_type = b'{"inputs": []}', JSON
    response = send(client(), SUITE, _path(model), body, content_type)
    assert response.status_code == 400, response.content
    assert "is empty" in response.json()["error"]


# -- property: valid inputs round-trip ---------------------------------------------------------

fp32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)


def _draw_rows(data: st.DataObject, model: str) -> dict[str, np.ndarray]:
    n = data.draw(st.integers(1, 8))
    inputs = {}
    for name, (datatype, tail) in MODELS[model].items():
        if datatype == "BYTES":
            array = np.empty(n, dtype=object)
            array[:] = data.draw(st.lists(st.text(max_size=30), min_size=n, max_size=n))
        else:
            array = data.draw(arrays(np.float32, (n, *tail), elements=fp32))
        inputs[name] = array
    return inputs


def _as_body(inputs: dict[str, np.ndarray], form: str) -> Any:
    """The three shapes of ``inputs``: the bare value, named inputs, records."""
    named = {name: array.tolist() for name, array in inputs.items()}
    if form == "bare" and len(named) == 1:
        return next(iter(named.values()))
    if form == "records":
        rows = len(next(iter(named.values())))
        return [{name: values[i] for name, values in named.items()} for i in range(rows)]
    return named


@fuzz_settings
@given(
    model=model_names,
    form=st.sampled_from(["bare", "named", "records"]),
    as_form_field=st.booleans(),
    data=st.data(),
)
def test_valid_inputs_get_what_the_model_returns(models, model, form, as_form_field, data):
    inputs = _draw_rows(data, model)
    value = _as_body(inputs, form)
    if as_form_field:
        body, content_type = urlencode({"inputs": json.dumps(value)}).encode(), FORM
    else:
        body, content_type = json.dumps({"inputs": value}).encode(), JSON
    response = send(client(), SUITE, _path(model), body, content_type)
    assert response.status_code == 200, response.content[:300]
    expected = registry.get(model).run({k: v.copy() for k, v in inputs.items()})
    answer = response.json()
    assert answer["model"] == model
    assert answer["outputs"] == {name: to_json_value(array) for name, array in expected.items()}
