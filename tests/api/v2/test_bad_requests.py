"""Bad V2 requests over real HTTP: each gets the right 4xx with a message, and the server
keeps answering good requests afterwards.

Requests are built byte by byte (``http.client``), so lying headers and sizes reach the
server exactly as a hostile or broken client would send them.
"""

from __future__ import annotations

import gzip
import http.client
import json
import zlib
from dataclasses import dataclass, field

import pytest
from django.conf import settings

# The live server with the demo models loaded once for the module (see test_clients.py).
from tests.api.v2.test_clients import _clean_registry, demo_rows, server  # noqa: F401

IRIS_ROW = [5.1, 3.4, 1.5, 0.2]


def iris(**tensor) -> bytes:
    item = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": IRIS_ROW}
    item.update(tensor)
    return json.dumps({"inputs": [item]}).encode()


def binary(header: dict, tail: bytes, declared: int | str | None = None) -> tuple[bytes, dict]:
    """A binary-extension body: JSON, then ``tail``; the header length may lie."""
    head = json.dumps(header).encode()
    length = str(len(head)) if declared is None else str(declared)
    return head + tail, {"Inference-Header-Content-Length": length}


def iris_binary(size: int, tail: bytes, shape=(1, 4)) -> tuple[bytes, dict]:
    tensor = {"name": "input", "datatype": "FP32", "shape": list(shape)}
    tensor["parameters"] = {"binary_data_size": size}
    return binary({"inputs": [tensor]}, tail)


def texts(elements: bytes, count: int) -> tuple[bytes, dict]:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [count]}
    tensor["parameters"] = {"binary_data_size": len(elements)}
    return binary({"inputs": [tensor]}, elements)


def prefixed(*items: bytes, lie: int | None = None) -> bytes:
    out = b""
    for item in items:
        out += (len(item) if lie is None else lie).to_bytes(4, "little") + item
    return out


@dataclass
class Bad:
    body: bytes
    status: int
    message: str
    headers: dict = field(default_factory=dict)
    path: str = "/v2/models/iris/infer"
    method: str = "POST"


def framed(pair: tuple[bytes, dict], status: int, message: str, **kwargs) -> Bad:
    """A case whose body comes with its own headers (binary extension bodies)."""
    body, headers = pair
    return Bad(body, status, message, headers, **kwargs)


LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
ZEROS = b"\0" * (LIMIT * 4)  # compresses to a few kB
GOOD = iris()

CASES = {
    "malformed-json": Bad(b'{"inputs": [', 400, "not valid JSON"),
    "json-not-an-object": Bad(b"[1, 2, 3]", 400, "must be a JSON object"),
    "nan-is-not-json": Bad(GOOD.replace(b"5.1", b"NaN"), 400, "not valid JSON"),
    "no-inputs": Bad(b'{"id": "x"}', 400, "non-empty 'inputs'"),
    "empty-body": Bad(b"", 400, "body is empty"),
    "wrong-datatype": Bad(iris(datatype="FP64"), 400, "datatype FP64; this model takes FP32"),
    "unknown-datatype": Bad(iris(datatype="FLOAT"), 400, "datatype 'FLOAT'"),
    "data-size-vs-shape": Bad(iris(data=[1.0, 2.0, 3.0]), 400, "has 3 value(s) in 'data'"),
    "shape-vs-signature": Bad(
        iris(shape=[1, 5], data=[1, 2, 3, 4, 5]), 400, "shape [1, 5], expected [-1, 4]"
    ),
    "ragged-data": Bad(
        iris(shape=[2, 4], data=[[1, 2, 3, 4], [5, 6, 7]]), 400, "not a regular array"
    ),
    "empty-tensor": Bad(iris(shape=[0, 4], data=[]), 400, "is empty"),
    "non-numeric-data": Bad(iris(data=["a", "b", "c", "d"]), 400, "must be numeric"),
    "unknown-input": Bad(iris(name="petals"), 400, "Unknown input 'petals'"),
    "missing-input": Bad(b'{"inputs": []}', 400, "non-empty 'inputs'"),
    "input-twice": Bad(
        json.dumps({"inputs": [json.loads(GOOD)["inputs"][0]] * 2}).encode(), 400, "given twice"
    ),
    "unknown-output": Bad(
        json.dumps({**json.loads(GOOD), "outputs": [{"name": "species"}]}).encode(),
        400,
        "Unknown output 'species'",
    ),
    "shared-memory": Bad(
        iris(parameters={"shared_memory_region": "r0"}), 400, "shared memory extensions"
    ),
    "oversized-body": Bad(b"x" * (LIMIT + 1), 413, f"the limit is {LIMIT} bytes"),
    "form-content-type": Bad(
        GOOD,
        415,
        "application/x-www-form-urlencoded",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "multipart-content-type": Bad(
        GOOD, 415, "multipart/form-data", {"Content-Type": "multipart/form-data; boundary=x"}
    ),
    "unknown-content-encoding": Bad(GOOD, 415, "Content-Encoding 'br'", {"Content-Encoding": "br"}),
    "lying-binary-data-size": framed(
        iris_binary(64, b"\0" * 16), 400, "binary_data_size 64, but only 16 byte(s)"
    ),
    "binary-size-vs-shape": framed(iris_binary(12, b"\0" * 12), 400, "needs 16 bytes"),
    "huge-shape-small-binary": framed(
        iris_binary(16, b"\0" * 16, shape=(10**9, 4)), 400, "needs 16000000000 bytes"
    ),
    "bytes-element-length-lies": framed(
        texts(prefixed(b"hello", lie=1000), 1),
        400,
        "says 1000 bytes",
        path="/v2/models/minilm/infer",
    ),
    "bytes-count-vs-shape": framed(
        texts(prefixed(b"a", b"b"), 10**9), 400, "need at least", path="/v2/models/minilm/infer"
    ),
    "unclaimed-trailing-bytes": Bad(
        GOOD + b"\0" * 8,
        400,
        "8 byte(s) after the tensors",
        {"Inference-Header-Content-Length": str(len(GOOD))},
    ),
    "lying-header-length": Bad(
        GOOD, 400, "the whole body is", {"Inference-Header-Content-Length": str(len(GOOD) + 100)}
    ),
    "header-length-not-a-number": Bad(
        GOOD, 400, "must be a byte count", {"Inference-Header-Content-Length": "-5"}
    ),
    "header-length-cuts-the-json": Bad(
        GOOD, 400, "not valid JSON", {"Inference-Header-Content-Length": "10"}
    ),
    "gzip-bomb": Bad(
        gzip.compress(ZEROS), 413, "decompresses to more than", {"Content-Encoding": "gzip"}
    ),
    "deflate-bomb": Bad(
        zlib.compress(ZEROS), 413, "decompresses to more than", {"Content-Encoding": "deflate"}
    ),
    "corrupt-gzip": Bad(
        b"\x1f\x8b" + b"junk" * 10, 400, "cannot be decompressed", {"Content-Encoding": "gzip"}
    ),
    "truncated-gzip": Bad(
        gzip.compress(GOOD)[:-12], 400, "truncated", {"Content-Encoding": "gzip"}
    ),
    "unknown-model": Bad(GOOD, 404, "No model named 'nope'", path="/v2/models/nope/infer"),
    "unknown-version": Bad(GOOD, 404, "has no version 9", path="/v2/models/iris/versions/9/infer"),
    "version-not-a-number": Bad(
        GOOD, 404, "has no version 'latest'", path="/v2/models/iris/versions/latest/infer"
    ),
    "get-on-infer": Bad(b"", 405, "use POST", method="GET"),
    "unknown-v2-endpoint": Bad(
        GOOD, 404, "No Open Inference Protocol endpoint", path="/v2/models/iris/explain"
    ),
}


@pytest.fixture
def address(live_server, request) -> str:
    """host:port of the live server, demo models loaded (``server``, imported above).

    ``live_server`` is named here so that pytest-django gives the test database access.
    """
    return request.getfixturevalue("server")


def request(address: str, method: str, path: str, body: bytes = b"", headers=None):
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_still_serving(address: str) -> None:
    status, _, content = request(address, "POST", "/v2/models/iris/infer", GOOD)
    assert status == 200, content
    outputs = {o["name"]: o["data"] for o in json.loads(content)["outputs"]}
    assert outputs["label"] == ["setosa"]
    assert request(address, "GET", "/v2/health/ready")[0] == 200


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_v2_bad_request_gets_a_4xx_with_a_message(address, case):
    status, headers, content = request(address, case.method, case.path, case.body, case.headers)
    assert status == case.status, content[:500]
    assert headers["Content-Type"] == "application/json"
    assert case.message in json.loads(content)["error"]
    assert_still_serving(address)


def test_v2_good_request_answers_in_the_same_form(address):
    status, headers, content = request(address, "POST", "/v2/models/iris/infer", GOOD)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["model_name"] == "iris"
