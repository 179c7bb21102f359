"""The V2 codec on its own: JSON and binary tensors in, responses out, sizes never trusted.

Round trips use the real clients' own codecs (``tritonclient.utils``, ``InferResult``), so
"what tritonclient sends" is what tritonclient actually sends.
"""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
from tritonclient.http import InferResult
from tritonclient.utils import serialize_byte_tensor

from mlapp.api.v2.protocol import (
    InferenceRequest,
    RequestedOutput,
    decode_request,
    decompress,
)
from mlapp.api.v2.responses import encode_response
from mlapp.exceptions import InvalidInput, PayloadTooLarge
from mlapp.runtimes.tensors import Signature

SIGNATURE = Signature.from_dict(
    {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "ids", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
        ],
    }
)
TEXT = Signature.from_dict(
    {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 2]}],
    }
)
X = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
IDS = {"name": "ids", "datatype": "INT64", "shape": [2], "data": [7, 8]}


def body(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def framed(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), str(len(head))


def binary_input(name: str, datatype: str, shape: list[int], raw: bytes) -> dict:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": len(raw)},
    }


# -- decoding JSON ----------------------------------------------------------------------------


def test_decode_json_turns_flat_data_into_typed_arrays():
    request = decode_request(body(X, IDS, id="r1"), None, SIGNATURE)
    assert request.id == "r1"
    assert request.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(request.inputs["x"], [[1, 2, 3], [4, 5, 6]])
    assert request.inputs["ids"].dtype == np.int64
    assert request.outputs is None
    assert request.binary_output is False


def test_decode_accepts_nested_data_as_the_same_elements():
    nested = {**X, "data": [[1, 2, 3], [4, 5, 6]]}
    flat = decode_request(body(X, IDS), None, SIGNATURE).inputs["x"]
    np.testing.assert_array_equal(
        decode_request(body(nested, IDS), None, SIGNATURE).inputs["x"], flat
    )


def test_decode_refuses_floats_for_an_integer_tensor():
    with pytest.raises(InvalidInput, match="'ids' must be INT64"):
        decode_request(body(X, {**IDS, "data": [7.5, 8]}), None, SIGNATURE)


def test_decode_names_a_missing_input():
    with pytest.raises(InvalidInput, match=r"Missing input\(s\): ids"):
        decode_request(body(X), None, SIGNATURE)


def test_decode_checks_data_length_against_the_shape():
    with pytest.raises(
        InvalidInput, match=r"has 5 value\(s\) in 'data', but its shape \[2, 3\] needs 6"
    ):
        decode_request(body({**X, "data": [1, 2, 3, 4, 5]}, IDS), None, SIGNATURE)


def test_decode_reads_request_and_output_binary_flags():
    raw = body(
        X,
        IDS,
        parameters={"binary_data_output": True},
        outputs=[{"name": "scores", "parameters": {"binary_data": False}}, {"name": "label"}],
    )
    request = decode_request(raw, None, SIGNATURE)
    assert request.binary_output is True
    assert request.outputs == [RequestedOutput("scores", False), RequestedOutput("label", None)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"id": 5}, "'id' must be a string"),
        ({"parameters": []}, "must be a JSON object"),
        ({"parameters": {"binary_data_output": "yes"}}, "must be true or false"),
        ({"outputs": [{"name": "scores"}, {"name": "scores"}]}, "requested twice"),
        ({"outputs": [{"name": "label", "parameters": {"classification": 2}}]}, "classification"),
    ],
)
def test_decode_refuses_malformed_request_fields(extra, message):
    with pytest.raises(InvalidInput, match=message):
        decode_request(body(X, IDS, **extra), None, SIGNATURE)


# -- decoding binary tensors -------------------------------------------------------------------


def test_binary_inputs_are_writable_views_not_per_element_copies():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([7, 8], dtype=np.int64)
    # 4 + 8 bytes after a JSON part of any length: at least one tensor is not 8-aligned.
    raw, length = framed(
        {
            "inputs": [
                binary_input("x", "FP32", [2, 3], x.tobytes()),
                binary_input("ids", "INT64", [2], ids.tobytes()),
            ]
        },
        x.tobytes(),
        ids.tobytes(),
    )
    request = decode_request(raw, length, SIGNATURE)
    np.testing.assert_array_equal(request.inputs["x"], x)
    np.testing.assert_array_equal(request.inputs["ids"], ids)
    for array in request.inputs.values():
        assert array.flags.writeable
        assert array.flags.aligned
        assert array.dtype.isnative
    assert not request.inputs["x"].flags.owndata


def test_binary_bytes_tensor_as_tritonclient_serializes_it():
    texts = np.array(["héllo", "", "wörld"], dtype=object)
    raw_texts = serialize_byte_tensor(texts).item()
    raw, length = framed({"inputs": [binary_input("text", "BYTES", [3], raw_texts)]}, raw_texts)
    request = decode_request(raw, length, TEXT)
    assert request.inputs["text"].tolist() == ["héllo".encode(), b"", "wörld".encode()]


def test_json_and_binary_inputs_mix_in_one_request():
    ids = np.array([7, 8], dtype=np.int64)
    raw, length = framed(
        {"inputs": [X, binary_input("ids", "INT64", [2], ids.tobytes())]}, ids.tobytes()
    )
    request = decode_request(raw, length, SIGNATURE)
    np.testing.assert_array_equal(request.inputs["ids"], ids)


def ids_binary(shape: list[int], size) -> dict:
    """An ``ids`` input that declares binary data of ``size`` bytes."""
    return {
        "name": "ids",
        "datatype": "INT64",
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    ("inputs", "tail", "length", "message"),
    [
        # binary_data_size beyond the body: refused before anything is allocated.
        ([X, ids_binary([2], 10**12)], b"\0" * 16, None, "only 16 byte"),
        # A size that does not fit the shape and datatype.
        ([X, ids_binary([2], 12)], b"\0" * 12, None, "needs 16 bytes"),
        # A shape of a billion rows over 16 bytes.
        ([X, ids_binary([10**9], 16)], b"\0" * 16, None, "needs 8000000000 bytes"),
        ([X, ids_binary([2], True)], b"", None, "integer >= 0"),
        ([X, ids_binary([2], -16)], b"", None, "integer >= 0"),
        # data and binary_data_size together.
        ([X, {**IDS, "parameters": {"binary_data_size": 16}}], b"\0" * 16, None, "both 'data' and"),
        # Bytes after the last tensor.
        ([X, IDS], b"\0" * 3, None, r"3 byte\(s\) after the tensors"),
        # The header length says more than the body has, or is no plain byte count.
        ([X, IDS], b"", "99999", "the whole body is"),
        ([X, IDS], b"", "+12", "must be a byte count"),
        ([X, IDS], b"", "1_0", "must be a byte count"),
    ],
)
def test_decode_never_trusts_declared_sizes(inputs, tail, length, message):
    raw, own_length = framed({"inputs": inputs}, tail)
    with pytest.raises(InvalidInput, match=message):
        decode_request(raw, length or own_length, SIGNATURE)


@pytest.mark.parametrize(
    ("elements", "count", "message"),
    [
        ((5).to_bytes(4, "little") + b"abc", 1, "says 5 bytes, but only 3 remain"),
        ((1).to_bytes(4, "little") + b"a" + b"\0\0", 1, r"2 byte\(s\) after its 1 BYTES"),
        ((8).to_bytes(4, "little") + b"abcdefgh", 2, "element 1 has no length prefix"),
        (b"\0" * 8, 10**9, "need at least 4000000000 bytes"),
    ],
)
def test_decode_checks_every_bytes_element_length(elements, count, message):
    raw, length = framed({"inputs": [binary_input("text", "BYTES", [count], elements)]}, elements)
    with pytest.raises(InvalidInput, match=message):
        decode_request(raw, length, TEXT)


# -- decompression -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, no zlib header
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw"],
)
def test_decompress_reads_what_clients_send(encoding, compress):
    data = body(X, IDS) * 10
    assert decompress(compress(data), encoding, limit=len(data)) == data


def test_decompress_reads_every_gzip_member():
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", limit=10) == b"abcd"


def test_decompress_stops_a_bomb_at_the_limit():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="more than the limit of 1000000 bytes"):
        decompress(bomb, "gzip", limit=1_000_000)


def test_decompress_counts_every_member_against_the_limit():
    members = gzip.compress(b"\0" * 600) * 2
    with pytest.raises(PayloadTooLarge):
        decompress(members, "gzip", limit=1000)


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        (gzip.compress(b"x" * 100)[:-10], "gzip", "truncated"),
        (b"not compressed", "gzip", "cannot be decompressed"),
        (zlib.compress(b"abc") + b"junk", "deflate", "data after its end"),
    ],
)
def test_decompress_refuses_broken_bodies(data, encoding, message):
    with pytest.raises(InvalidInput, match=message):
        decompress(data, encoding, limit=10_000)


# -- encoding responses ---------------------------------------------------------------------------

OUTPUTS = {
    "label": np.array(["setosa", "virginica"], dtype=object),
    "scores": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
}


def encode(request: InferenceRequest) -> tuple[bytes, int | None]:
    return encode_response(
        model_name="m",
        model_version="3",
        request=request,
        outputs=OUTPUTS,
        output_names=["label", "scores"],
    )


def test_encode_json_response_with_flat_data_and_the_echoed_id():
    content, length = encode(InferenceRequest(inputs={}, id="r1"))
    assert length is None
    assert json.loads(content) == {
        "model_name": "m",
        "model_version": "3",
        "id": "r1",
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]},
            {"name": "scores", "datatype": "FP32", "shape": [2, 2], "data": [0.25, 0.75, 0.5, 0.5]},
        ],
    }


def test_encode_binary_response_reads_back_with_tritonclient():
    content, length = encode(InferenceRequest(inputs={}, binary_output=True))
    result = InferResult.from_response_body(content, header_length=length)
    assert result.as_numpy("label").tolist() == [b"setosa", b"virginica"]
    np.testing.assert_array_equal(result.as_numpy("scores"), OUTPUTS["scores"])


def test_encode_honours_requested_outputs_and_their_own_binary_flag():
    request = InferenceRequest(
        inputs={}, outputs=[RequestedOutput("scores", binary=True)], binary_output=False
    )
    content, length = encode(request)
    header = json.loads(content[:length])
    assert [o["name"] for o in header["outputs"]] == ["scores"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert content[length:] == OUTPUTS["scores"].tobytes()


def test_encode_refuses_non_utf8_bytes_as_json_text():
    outputs = {"label": np.array([b"\xff\xfe"], dtype=object)}
    with pytest.raises(InvalidInput, match="binary_data = true"):
        encode_response(
            model_name="m",
            model_version="1",
            request=InferenceRequest(inputs={}),
            outputs=outputs,
            output_names=["label"],
        )
