"""Property-based fuzzing of the Open Inference Protocol V2 infer endpoint.

Whatever a client sends (any JSON, any bytes, the binary tensor extension with any
``Inference-Header-Content-Length``), the answer is below 500 and an error is a 4xx with
``{"error": "..."}``; and valid tensors, sent as JSON or binary, get what the loaded model
itself returns for them. The ``@example`` cases are 500s a fuzzer found before they were fixed.
"""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tritonclient.http import InferResult

from mlapp.runtimes.tensors import DATATYPES
from mlapp.serving.registry import registry
from tests.fuzz import tally
from tests.fuzz.common import (
    MODELS,
    assert_error_answer,
    client,
    fuzz_settings,
    json_ints,
    json_values,
    register_models,
    send,
)

pytestmark = pytest.mark.django_db

SUITE = "V2 infer"
HEADER = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"

# -- what is sent ------------------------------------------------------------------------------

numbers = st.floats(width=32, allow_nan=False, allow_infinity=False) | json_ints
#: What a mutation writes in place of a field: any JSON, or values near what is expected.
hostile = st.one_of(
    json_values,
    st.sampled_from(list(DATATYPES)),
    st.lists(st.integers(-3, 4) | json_ints, max_size=4),
    st.lists(numbers, max_size=8),
    st.lists(st.text(max_size=8), max_size=4),
    st.fixed_dictionaries({"binary_data_size": st.integers(-2, 64) | json_ints}),
)


def _valid_tensor(draw: st.DrawFn, name: str, datatype: str, tail: tuple, rows: int) -> dict:
    shape = [rows, *tail]
    count = rows * int(np.prod(tail))
    elements = st.text(max_size=10) if datatype == "BYTES" else numbers
    data = draw(st.lists(elements, min_size=count, max_size=count))
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _objects(body: dict) -> list[dict]:
    """The objects of a request: itself, its tensors and outputs, and their parameters."""
    found = [body]
    for key in ("inputs", "outputs"):
        items = body.get(key)
        if isinstance(items, list):
            found += [item for item in items if isinstance(item, dict)]
    found += [o["parameters"] for o in found[1:] if isinstance(o.get("parameters"), dict)]
    return found


@st.composite
def v2_bodies(draw: st.DrawFn, model: str) -> Any:
    """A valid inference request for ``model`` with up to three parts made wrong (a field
    replaced by a hostile value or removed), or now and then any JSON value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    rows = draw(st.integers(0, 3))
    body: dict[str, Any] = {
        "inputs": [
            _valid_tensor(draw, name, datatype, tail, rows)
            for name, (datatype, tail) in MODELS[model].items()
        ]
    }
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        names = st.sampled_from(["y", "label", "probabilities"])
        body["outputs"] = [{"name": draw(names)}]
        if draw(st.booleans()):
            body["outputs"][0]["parameters"] = {"binary_data": draw(st.booleans())}
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(_objects(body)))
        extra = ["data", "parameters", "binary_data_size", "binary_data"]
        key = draw(st.sampled_from([*sorted(target), *extra]))
        if target is body and key == "inputs":
            continue  # the list the other targets live in; any JSON replaces it below
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(hostile)
    if draw(st.integers(0, 9)) == 0:
        body["inputs"] = draw(json_values)
    return body


model_names = st.sampled_from(sorted(MODELS))
#: (model, body): a request body drawn for the model it is sent to.
requests = model_names.flatmap(lambda model: st.tuples(st.just(model), v2_bodies(model)))
#: Inference-Header-Content-Length values: any text (non-ASCII included), any integer.
header_lengths = st.text(max_size=12) | json_ints.map(str) | st.sampled_from(["é", "٣", "1 2"])


def _infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def assert_v2_answer(response: Any) -> None:
    """Below 500; an error is a 4xx with ``{"error"}``; a success carries outputs."""
    assert response.status_code < 500, (response.status_code, response.content[:300])
    event(f"status {response.status_code}")
    if response.status_code != 200:
        assert_error_answer(response)
        return
    length = response.get("Inference-Header-Content-Length")
    header = json.loads(response.content[: int(length)] if length else response.content)
    assert isinstance(header["outputs"], list)
    assert header["outputs"]


# -- properties: no 5xx whatever arrives -------------------------------------------------------


def _tensor(datatype: Any, shape: Any = (1, 3), data: Any = (1, 2, 3)) -> dict:
    return {"name": "x", "datatype": datatype, "shape": list(shape), "data": list(data)}


@fuzz_settings
@given(case=requests)
@example(case=("affine", {"inputs": [_tensor(["FP32"])]}))
@example(case=("affine", {"inputs": [_tensor({"FP32": 1})]}))
@example(case=("texty", {"inputs": [{**_tensor([]), "name": "text"}]}))
@example(case=("affine", {"inputs": [_tensor({}, shape=[2**64, -3])]}))
@example(case=("iris", {"inputs": [{**_tensor([1], shape=[-1]), "name": "input"}]}))
def test_any_json_body_is_answered_below_500(models, case):
    model, body = case
    response = send(client(), SUITE, _infer_path(model), json.dumps(body).encode(), "")
    assert_v2_answer(response)


@fuzz_settings
@given(
    model=model_names,
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["", "application/json", "application/octet-stream"]),
    encoding=st.sampled_from(["", "gzip", "deflate"]),
)
@example(model="affine", body=b"\xff\xfe{", content_type="", encoding="")
@example(model="affine", body=b"\x1f\x8b\x08\x00garbage", content_type="", encoding="gzip")
def test_any_bytes_body_is_answered_below_500(models, model, body, content_type, encoding):
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = send(client(), SUITE, _infer_path(model), body, content_type, **headers)
    assert_v2_answer(response)


@fuzz_settings
@given(case=requests, encoding=st.sampled_from(["gzip", "deflate"]))
def test_any_json_body_compressed_is_answered_below_500(models, case, encoding):
    model, body = case
    raw = json.dumps(body).encode()
    packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    response = send(client(), SUITE, _infer_path(model), packed, "", HTTP_CONTENT_ENCODING=encoding)
    assert_v2_answer(response)


@fuzz_settings
@given(case=requests, tail=st.binary(max_size=64), declared=st.none() | header_lengths)
@example(case=("affine", {"inputs": []}), tail=b"\0" * 12, declared="é")
@example(case=("affine", {"inputs": []}), tail=b"\0" * 12, declared="-1")
@example(case=("affine", {"inputs": []}), tail=b"\0" * 12, declared="9" * 40)
@example(case=("affine", {"inputs": []}), tail=b"\0" * 12, declared="٣")
def test_binary_extension_with_any_header_length_is_answered_below_500(
    case, models, tail, declared
):
    """``declared`` None: the true length of the JSON part."""
    model, body = case
    head = json.dumps(body).encode()
    length = str(len(head)) if declared is None else declared
    response = send(
        client(),
        SUITE,
        _infer_path(model),
        head + tail,
        "application/octet-stream",
        **{HEADER: length},
    )
    assert_v2_answer(response)


# -- property: valid tensors round-trip --------------------------------------------------------

rows = st.integers(min_value=1, max_value=8)
#: Finite FP32 values small enough that the models' outputs stay finite (JSON has no inf).
fp32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)
texts = st.text(max_size=30)


def _draw_inputs(data: st.DataObject, model: str, binary: bool) -> dict[str, np.ndarray]:
    """Valid public inputs of ``model``: float rows, or texts (bytes when sent binary)."""
    n = data.draw(rows)
    inputs = {}
    for name, (datatype, tail) in MODELS[model].items():
        if datatype == "BYTES":
            values = data.draw(st.lists(texts, min_size=n, max_size=n))
            elements = [v.encode() for v in values] if binary else values
            array = np.empty(n, dtype=object)
            array[:] = elements
        else:
            array = data.draw(arrays(np.float32, (n, *tail), elements=fp32))
        inputs[name] = array
    return inputs


def _encode_bytes(array: np.ndarray) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in array.reshape(-1).tolist())


def _request(
    inputs: dict[str, np.ndarray], binary_in: bool, binary_out: bool, nested: bool
) -> tuple[bytes, dict[str, str]]:
    """A V2 body as a client builds it: JSON data (flat or nested) or binary tensors."""
    items, blobs = [], []
    for name, array in inputs.items():
        datatype = "BYTES" if array.dtype == object else "FP32"
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary_in:
            blob = _encode_bytes(array) if datatype == "BYTES" else array.astype("<f4").tobytes()
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = array.tolist() if nested else array.reshape(-1).tolist()
        items.append(item)
    head = json.dumps({"inputs": items, "parameters": {"binary_data_output": binary_out}})
    headers = {HEADER: str(len(head))} if binary_in else {}
    return head.encode() + b"".join(blobs), headers


@fuzz_settings
@given(
    model=model_names,
    binary_in=st.booleans(),
    binary_out=st.booleans(),
    nested=st.booleans(),
    data=st.data(),
)
def test_valid_tensors_get_what_the_model_returns(
    models, model, binary_in, binary_out, nested, data
):
    inputs = _draw_inputs(data, model, binary_in)
    body, headers = _request(inputs, binary_in, binary_out, nested)
    response = send(client(), SUITE, _infer_path(model), body, "", **headers)
    assert response.status_code == 200, response.content[:300]

    expected = registry.get(model).run({k: v.copy() for k, v in inputs.items()})
    length = response.get("Inference-Header-Content-Length")
    result = InferResult.from_response_body(
        response.content, header_length=int(length) if length else None
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == list(expected)
    for name, want in expected.items():
        got = result.as_numpy(name)
        if want.dtype == object:
            got_text = [v.decode() if isinstance(v, bytes) else v for v in got.tolist()]
            assert got_text == [str(v) for v in want.tolist()]
        else:
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@fuzz_settings
@given(model=model_names, data=st.data())
def test_binary_tensors_cut_padded_or_lying_are_answered_below_500(models, model, data):
    """Valid binary tensors, then one lie: a size, the header length, or the bytes."""
    inputs = _draw_inputs(data, model, binary=True)
    body, headers = _request(
        inputs, binary_in=True, binary_out=data.draw(st.booleans()), nested=False
    )
    head_length = int(headers[HEADER])
    lie = data.draw(st.sampled_from(["size", "header", "cut", "pad", "none"]))
    if lie == "size":
        header = json.loads(body[:head_length])
        tensor = data.draw(st.sampled_from(header["inputs"]))
        tensor["parameters"]["binary_data_size"] = data.draw(
            st.integers(-2, 2 * len(body)) | json_ints | json_values
        )
        head = json.dumps(header).encode()
        body, headers = head + body[head_length:], {HEADER: str(len(head))}
    elif lie == "header":
        headers = {HEADER: data.draw(header_lengths | st.integers(0, len(body) + 2).map(str))}
    elif lie == "cut":
        body = body[: data.draw(st.integers(0, len(body)))]
    elif lie == "pad":
        body += data.draw(st.binary(min_size=1, max_size=16))
    response = send(
        client(), SUITE, _infer_path(model), body, "application/octet-stream", **headers
    )
    assert_v2_answer(response)
    if lie == "none":
        assert response.status_code == 200, response.content[:300]


# -- over a real socket: header bytes as a server reads them ---------------------------------


@pytest.fixture
def live_models(transactional_db, live_server, onnx_file) -> tuple[str, int]:
    """The models registered where the live server (another thread) sees them."""
    register_models(onnx_file)
    host, port = live_server.url.removeprefix("http://").split(":")
    return host, int(port)


def _raw_post(address: tuple[str, int], path: str, header_value: bytes, body: bytes) -> bytes:
    """One request written byte by byte (no client library re-encodes the header)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address[0]}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n"
    ).encode()
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(
            head + b"Inference-Header-Content-Length: " + header_value + b"\r\n\r\n" + body
        )
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@fuzz_settings
@given(header_value=st.binary(min_size=1, max_size=12).filter(lambda b: not set(b) & {10, 13}))
@example(header_value="é".encode())
@example(header_value=b"\xe9")
@example(header_value="٣".encode())
@example(header_value=b"-1")
@example(header_value=b"9" * 40)
def test_header_length_of_any_bytes_over_a_socket_gets_a_whole_answer(live_models, header_value):
    """Non-ASCII, negative, huge: a complete HTTP answer below 500, never a dropped connection."""
    body = json.dumps({"inputs": [_valid_row()]}).encode()
    answer = _raw_post(live_models, _infer_path("affine"), header_value, body)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(status_line.split()[1])
    tally.record(SUITE, status)
    _, _, content = rest.partition(b"\r\n\r\n")
    assert status < 500, answer[:300]
    if status != 200:
        assert 400 <= status < 500
        assert list(json.loads(content)) == ["error"]


def _valid_row() -> dict:
    return {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
