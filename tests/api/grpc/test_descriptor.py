"""The compiled descriptor shipped in mlapp/api/grpc is the proto beside it, compiled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings

from mlapp.api.grpc import messages

ROOT = Path(settings.BASE_DIR)
PROTO = "mlapp/api/grpc/open_inference_grpc.proto"


def test_shipped_descriptor_is_the_proto_compiled(tmp_path):
    out = tmp_path / "open_inference_grpc.pb"
    # grpcio-tools (the dev extra) bundles protoc: the command the proto's header gives.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--descriptor_set_out={out}",
            PROTO,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == messages.DESCRIPTOR_FILE.read_bytes(), (
        "mlapp/api/grpc/open_inference_grpc.pb is stale: recompile it (see the proto's header)."
    )


def test_messages_live_in_a_pool_of_their_own():
    """tritonclient's messages have the same full names: both must load in one process."""
    import tritonclient.grpc.service_pb2 as triton_messages

    ours = messages.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * 4])
    theirs = triton_messages.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.model_name == "iris"
    assert ours.DESCRIPTOR.full_name == theirs.DESCRIPTOR.full_name == "inference.ModelInferRequest"
    assert ours.DESCRIPTOR.file.pool is messages.POOL


def test_service_methods_are_the_open_inference_protocols():
    service = messages.POOL.FindServiceByName("inference.GRPCInferenceService")
    assert [m.name for m in service.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
