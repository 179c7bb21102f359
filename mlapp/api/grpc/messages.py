"""The protobuf message classes of ``open_inference_grpc.proto``, in a descriptor pool of
their own.

Built from the compiled descriptor shipped beside the proto (``open_inference_grpc.pb``,
written by ``protoc --descriptor_set_out``; tests/api/grpc/test_descriptor.py recompiles the
proto and fails when the two differ), not from generated ``_pb2`` modules: those register
their messages in protobuf's default pool, where ``inference.ModelInferRequest`` is already
taken in any process that imports ``tritonclient.grpc`` or KServe (a project that calls
Triton, a test that calls this server), and the import would fail. Serving needs only the
protobuf runtime, no compiler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DESCRIPTOR_FILE = Path(__file__).with_name("open_inference_grpc.pb")

POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_FILE.read_bytes()).file:
    POOL.Add(_file)


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
