"""Hostile and broken gRPC requests: each gets a clean status with a message, never kills
the server, and none allocates what it claims (the REST tests' cases, over gRPC)."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from rest_framework.authtoken.models import Token

from mlapp.api.grpc import messages as pb
from mlapp.api.grpc.server import status_of
from mlapp.exceptions import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
)
from mlapp.models import MLModel
from tests.api.grpc.conftest import MESSAGE_LIMIT

Code = grpc.StatusCode
Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor
IRIS_ROW = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


@pytest.fixture(autouse=True)
def _clean_registry():
    """Overrides the suite's per-test registry reset: this module loads the models once."""


@pytest.fixture
def call(address):
    """``call(method, message, metadata=None)``: the response, or the RpcError raised."""
    channel = grpc.insecure_channel(
        address, options=[("grpc.max_send_message_length", 4 * MESSAGE_LIMIT)]
    )

    def invoke(method: str, message, response=pb.ModelInferResponse, metadata=None):
        rpc = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        return rpc(message, timeout=30, metadata=metadata)

    yield invoke
    channel.close()


def _fails(call, message, code: grpc.StatusCode, *words: str, method="ModelInfer", **kw):
    with pytest.raises(grpc.RpcError) as caught:
        call(method, message, **kw)
    error = caught.value
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details()
    return error.details()


def _iris(**fields) -> pb.ModelInferRequest:
    request = {
        "model_name": "iris",
        "inputs": [Input(name="input", datatype="FP32", shape=[1, 4])],
        "raw_input_contents": [IRIS_ROW.tobytes()],
    }
    request.update(fields)
    return pb.ModelInferRequest(**request)


def _alive(call) -> None:
    assert call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    answer = call("ModelInfer", _iris())
    assert answer.outputs[1].name == "probabilities"


def test_a_well_formed_request_answers_raw(call):
    answer = call("ModelInfer", _iris(id="r1"))
    assert answer.id == "r1"
    assert [o.name for o in answer.outputs] == ["label", "probabilities"]
    assert len(answer.raw_output_contents) == 2
    assert len(answer.raw_output_contents[1]) == 3 * 4


def test_typed_contents_answer_typed(call):
    tensor = Input(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(IRIS_ROW.ravel().tolist())
    answer = call("ModelInfer", pb.ModelInferRequest(model_name="iris", inputs=[tensor]))
    assert not answer.raw_output_contents
    assert len(answer.outputs[1].contents.fp32_contents) == 3
    assert answer.outputs[0].contents.bytes_contents[0] == b"setosa"


def test_typed_bytes_for_minilm(call):
    tensor = Input(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"a guitar", "déjà vu".encode()])
    answer = call("ModelInfer", pb.ModelInferRequest(model_name="minilm", inputs=[tensor]))
    assert list(answer.outputs[0].shape) == [2, 384]
    assert len(answer.outputs[0].contents.fp32_contents) == 2 * 384


@pytest.mark.parametrize(
    ("request_fields", "words"),
    [
        ({"inputs": [Input(name="x", datatype="FP32", shape=[1, 4])]}, ["Unknown input 'x'"]),
        ({"inputs": [Input(name="input", datatype="FP64", shape=[1, 4])]}, ["FP64", "FP32"]),
        ({"inputs": [Input(name="input", datatype="FLOAT", shape=[1, 4])]}, ["'FLOAT'"]),
        ({"inputs": [Input(name="input", datatype="FP32", shape=[3, 4])]}, ["needs 48 bytes"]),
        ({"inputs": [Input(name="input", datatype="FP32", shape=[1, 5])]}, ["shape [1, 5]"]),
        ({"inputs": [Input(name="input", datatype="FP32", shape=[1, -4])]}, ["integers >= 0"]),
        ({"inputs": [Input(name="input", datatype="FP32", shape=[0, 4])]}, ["is empty"]),
        ({"raw_input_contents": [IRIS_ROW.tobytes()[:10]]}, ["needs 16 bytes", "is 10"]),
        ({"raw_input_contents": [IRIS_ROW.tobytes()] * 2}, ["2 raw_input_contents"]),
        ({"inputs": [], "raw_input_contents": []}, ["at least one input"]),
        ({"outputs": [Output(name="logits")]}, ["Unknown output 'logits'"]),
        ({"outputs": [Output(name="label"), Output(name="label")]}, ["requested twice"]),
    ],
    ids=[
        "unknown-input",
        "wrong-datatype",
        "unknown-datatype",
        "lying-shape",
        "shape-off-signature",
        "negative-dim",
        "empty",
        "short-raw-contents",
        "raw-count",
        "no-inputs",
        "unknown-output",
        "output-twice",
    ],
)
def test_bad_inputs_are_invalid_argument(call, request_fields, words):
    _fails(call, _iris(**request_fields), Code.INVALID_ARGUMENT, *words)
    _alive(call)


@pytest.mark.parametrize(
    "shape", [[2**40, 4], [2**62, 2**62, 4], [2**31, 2**31]], ids=["2^42", "2^126", "2^62"]
)
def test_huge_shape_claims_allocate_nothing(call, shape):
    raw = _iris(inputs=[Input(name="input", datatype="FP32", shape=shape)])
    _fails(call, raw, Code.INVALID_ARGUMENT, "input")
    tensor = Input(name="input", datatype="FP32", shape=shape)
    tensor.contents.fp32_contents.extend([1.0] * 4)
    typed = pb.ModelInferRequest(model_name="iris", inputs=[tensor])
    _fails(call, typed, Code.INVALID_ARGUMENT, "input")
    _alive(call)


def test_huge_bytes_element_claims_allocate_nothing(call):
    blob = struct.pack("<I", 2**31) + b"abc"
    request = pb.ModelInferRequest(
        model_name="minilm",
        inputs=[Input(name="text", datatype="BYTES", shape=[1])],
        raw_input_contents=[blob],
    )
    _fails(call, request, Code.INVALID_ARGUMENT, "says 2147483648 bytes")
    _alive(call)


def test_typed_values_in_the_wrong_field_or_count(call):
    tensor = Input(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.int64_contents.extend([1, 2, 3, 4])
    wrong = pb.ModelInferRequest(model_name="iris", inputs=[tensor])
    _fails(call, wrong, Code.INVALID_ARGUMENT, "fp32_contents", "int64_contents")
    tensor = Input(name="input", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend([1.0] * 5)
    short = pb.ModelInferRequest(model_name="iris", inputs=[tensor])
    _fails(call, short, Code.INVALID_ARGUMENT, "5 value(s)", "needs 8")


def test_raw_and_typed_contents_together_are_refused(call):
    tensor = Input(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0] * 4)
    _fails(call, _iris(inputs=[tensor]), Code.INVALID_ARGUMENT, "both contents and a raw")


def test_extensions_mlapp_does_not_serve_are_refused(call):
    shm = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    shm.parameters["shared_memory_region"].string_param = "region0"
    _fails(call, _iris(inputs=[shm]), Code.INVALID_ARGUMENT, "shared memory")
    classify = Output(name="label")
    classify.parameters["classification"].int64_param = 2
    _fails(call, _iris(outputs=[classify]), Code.INVALID_ARGUMENT, "classification")


def test_bytes_that_are_no_message_are_invalid_argument(call):
    _fails(call, b"\xff\xff\xff\xff", Code.INVALID_ARGUMENT, "inference.ModelInferRequest")
    _alive(call)


def test_unknown_model_or_version_is_not_found(call):
    _fails(call, _iris(model_name="no-such-model"), Code.NOT_FOUND, "no-such-model")
    _fails(call, _iris(model_version="7"), Code.NOT_FOUND, "no version 7")
    _fails(call, _iris(model_version="../1"), Code.NOT_FOUND, "no version '../1'")
    metadata = pb.ModelMetadataRequest(name="nope")
    _fails(call, metadata, Code.NOT_FOUND, "nope", method="ModelMetadata")


def test_a_model_without_production_version_is_unavailable(call):
    MLModel.objects.create(name="unfinished")
    _fails(call, _iris(model_name="unfinished"), Code.UNAVAILABLE, "no production version")


def test_a_message_over_the_limit_is_resource_exhausted(call):
    rows = MESSAGE_LIMIT // 16 + 1
    big = _iris(
        inputs=[Input(name="input", datatype="FP32", shape=[rows, 4])],
        raw_input_contents=[bytes(16 * rows)],
    )
    _fails(call, big, Code.RESOURCE_EXHAUSTED)
    _alive(call)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInput("bad"), Code.INVALID_ARGUMENT),
        (PayloadTooLarge("big"), Code.RESOURCE_EXHAUSTED),
        (ModelNotFound("none"), Code.NOT_FOUND),
        (ModelNotReady("later"), Code.UNAVAILABLE),
        (Overloaded("busy"), Code.UNAVAILABLE),
    ],
)
def test_errors_map_to_status_codes_with_their_message(exc, code):
    assert status_of(exc) == (code, exc.message)


def test_an_unexpected_error_is_internal_and_echoes_nothing():
    assert status_of(RuntimeError("secret path /etc/x")) == (
        Code.INTERNAL,
        "Internal server error.",
    )


# -- the REST API's permission rule ----------------------------------------------------------


def test_predict_permission_and_tokens_as_rest(call, settings, django_user_model):
    settings.MLAPP = {
        **settings.MLAPP,
        "PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    }
    _fails(call, _iris(), Code.UNAUTHENTICATED, "credentials")
    wrong = [("authorization", "Token wrong")]
    _fails(call, _iris(), Code.UNAUTHENTICATED, "Invalid token", metadata=wrong)
    token = Token.objects.create(user=django_user_model.objects.create_user("svc"))
    answer = call("ModelInfer", _iris(), metadata=[("authorization", f"Token {token.key}")])
    assert answer.model_name == "iris"
    # Reading stays open, as on REST.
    ready = call("ModelReady", pb.ModelReadyRequest(name="iris"), pb.ModelReadyResponse)
    assert ready.ready


def test_a_wrong_token_is_refused_even_where_anyone_may_call(call):
    wrong = [("authorization", "Token wrong")]
    _fails(call, _iris(), Code.UNAUTHENTICATED, "Invalid token", metadata=wrong)


def test_a_user_the_permission_refuses_is_permission_denied(call, settings, django_user_model):
    settings.MLAPP = {
        **settings.MLAPP,
        "PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    }
    token = Token.objects.create(user=django_user_model.objects.create_user("plain"))
    metadata = [("authorization", f"Token {token.key}")]
    _fails(call, _iris(), Code.PERMISSION_DENIED, "permission", metadata=metadata)
