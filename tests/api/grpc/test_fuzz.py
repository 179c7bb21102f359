"""Property-based fuzzing of ModelInfer over gRPC: whatever a client sends (any field of any
value the message can carry, or bytes that are no message at all), the answer is OK or a
client status (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, RESOURCE_EXHAUSTED) with a message,
never INTERNAL or UNKNOWN, and the server keeps answering."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlapp.api.grpc import messages as pb
from mlapp.runtimes.tensors import DATATYPES

CLIENT_STATUSES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
EXAMPLES = 250
tally = {"tried": 0, "bad": 0}

INT64 = st.integers(-(2**63), 2**63 - 1)
small = st.integers(-2, 5)
names = st.sampled_from(["input", "image", "text", "x", ""]) | st.text(max_size=6)
datatypes = st.sampled_from(list(DATATYPES)) | st.text(max_size=6)
shapes = st.lists(small | st.sampled_from([4, 8, 2**31, 2**40, 2**62]) | INT64, max_size=4)
CONTENTS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": INT64,
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=12),
}


@st.composite
def tensors(draw: st.DrawFn) -> pb.ModelInferRequest.InferInputTensor:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=draw(names), datatype=draw(datatypes), shape=draw(shapes)
    )
    for field in draw(st.lists(st.sampled_from(list(CONTENTS)), max_size=2, unique=True)):
        getattr(tensor.contents, field).extend(draw(st.lists(CONTENTS[field], max_size=10)))
    if draw(st.booleans()):
        tensor.parameters[draw(st.text(max_size=20))].int64_param = draw(INT64)
    return tensor


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["iris", "digits", "minilm"]) | st.text(max_size=6)),
        model_version=draw(st.sampled_from(["", "1", "2", "01"]) | st.text(max_size=4)),
        id=draw(st.text(max_size=8)),
        inputs=draw(st.lists(tensors(), max_size=3)),
    )
    if draw(st.booleans()):
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=64), max_size=3)))
    for name in draw(st.lists(names | st.sampled_from(["label", "probabilities"]), max_size=2)):
        output = request.outputs.add(name=name)
        if draw(st.booleans()):
            output.parameters[draw(st.sampled_from(["classification", "binary_data", "x"]))]
    return request


@pytest.fixture(autouse=True)
def _clean_registry():
    """Overrides the suite's per-test registry reset: this module loads the models once."""


@pytest.fixture
def infer(address):
    channel = grpc.insecure_channel(address)
    rpc = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    yield rpc
    channel.close()


def _check(infer, message) -> None:
    tally["tried"] += 1
    try:
        infer(message, timeout=30)
    except grpc.RpcError as error:
        if error.code() not in CLIENT_STATUSES or not error.details():
            tally["bad"] += 1
            raise AssertionError(f"{error.code()}: {error.details()} for {message!r}") from None


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(message=requests())
def test_any_model_infer_request_gets_ok_or_a_client_status(infer, message):
    _check(infer, message)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_get_ok_or_a_client_status(infer, raw):
    _check(infer, raw)


def test_the_server_still_answers_and_the_ledger_records_it(address, reliability):
    channel = grpc.insecure_channel(address)
    live = channel.unary_unary(
        "/inference.GRPCInferenceService/ServerLive",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.ServerLiveResponse.FromString,
    )
    assert live(pb.ServerLiveRequest(), timeout=10).live
    channel.close()
    reliability.add(
        "gRPC",
        "fuzzed ModelInfer requests (hypothesis: any field values, any bytes)",
        tried=tally["tried"],
        bad=tally["bad"],
        unit="answered INTERNAL or UNKNOWN",
    )
    assert tally["tried"] >= 2 * EXAMPLES
