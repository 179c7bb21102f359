"""The gRPC codec alone: typed contents of every datatype family, raw FP16, responses."""

from __future__ import annotations

import numpy as np
import pytest

from mlapp.api.grpc import codec
from mlapp.api.grpc import messages as pb
from mlapp.api.v2.protocol import InferenceRequest
from mlapp.exceptions import InvalidInput
from mlapp.runtimes.tensors import Signature


def _signature(datatype: str) -> Signature:
    return Signature.from_dict(
        {
            "inputs": [{"name": "x", "datatype": datatype, "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        }
    )


def _typed(datatype: str, field: str, values: list) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, field).extend(values)
    return pb.ModelInferRequest(model_name="m", inputs=[tensor])


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("BOOL", "bool_contents", [True, False]),
        ("INT8", "int_contents", [-128, 127]),
        ("INT16", "int_contents", [-3, 30000]),
        ("INT32", "int_contents", [-(2**31), 2**31 - 1]),
        ("INT64", "int64_contents", [-(2**63), 2**63 - 1]),
        ("UINT8", "uint_contents", [0, 255]),
        ("UINT32", "uint_contents", [0, 2**32 - 1]),
        ("UINT64", "uint64_contents", [0, 2**64 - 1]),
        ("FP32", "fp32_contents", [0.5, -1.25]),
        ("FP64", "fp64_contents", [0.1, 1e300]),
    ],
)
def test_typed_contents_of_each_datatype(datatype, field, values):
    inputs = codec.decode_request(_typed(datatype, field, values), _signature(datatype)).inputs
    expected = np.array([values], dtype=_signature(datatype).input("x").dtype)
    np.testing.assert_array_equal(inputs["x"], expected)
    assert inputs["x"].dtype == expected.dtype


@pytest.mark.parametrize(
    ("datatype", "values"), [("INT8", [0, 128]), ("INT16", [-40000, 0]), ("UINT8", [256, 0])]
)
def test_narrow_integers_out_of_range_are_refused(datatype, values):
    field = "uint_contents" if datatype.startswith("U") else "int_contents"
    with pytest.raises(InvalidInput, match=f"outside the range of {datatype}"):
        codec.decode_request(_typed(datatype, field, values), _signature(datatype))


def test_fp16_travels_raw_only():
    with pytest.raises(InvalidInput, match="raw_input_contents"):
        codec.decode_request(_typed("FP16", "fp32_contents", [1.0, 2.0]), _signature("FP16"))
    x = np.array([[1.5, -2.0]], dtype=np.float16)
    raw = pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP16", shape=[1, 2])],
        raw_input_contents=[x.tobytes()],
    )
    np.testing.assert_array_equal(codec.decode_request(raw, _signature("FP16")).inputs["x"], x)


def test_response_raw_for_a_raw_request_typed_otherwise_in_the_order_asked():
    outputs = {"y": np.array([1.0, 2.0], dtype=np.float32), "label": np.array([b"a", b"bc"])}
    raw = InferenceRequest(inputs={}, id="r", binary_output=True)
    response = codec.encode_response(
        model_name="m", model_version="3", request=raw, outputs=outputs, output_names=["label", "y"]
    )
    assert (response.id, response.model_version) == ("r", "3")
    assert [o.name for o in response.outputs] == ["label", "y"]
    assert response.raw_output_contents[0] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"
    assert np.frombuffer(response.raw_output_contents[1], "<f4").tolist() == [1.0, 2.0]
    typed = InferenceRequest(inputs={})
    response = codec.encode_response(
        model_name="m", model_version="3", request=typed, outputs=outputs, output_names=["y"]
    )
    assert [o.name for o in response.outputs] == ["y"]
    assert list(response.outputs[0].contents.fp32_contents) == [1.0, 2.0]
    assert not response.raw_output_contents
