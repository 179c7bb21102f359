"""Every load verifies the artifact: its sha256 against the one recorded at upload, and the
format checks again. A file changed in storage is never handed to torch or ONNX Runtime; the
model is not ready and says why."""

from __future__ import annotations

import pytest

from mlapp.exceptions import ModelNotReady
from mlapp.runtimes.integrity import file_sha256
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.startup import load_models
from mlapp.versions.lifecycle import register_version
from tests import artifacts
from tests.hostile.corpus import build

pytestmark = pytest.mark.django_db


def test_a_swapped_artifact_file_is_refused_at_load_with_the_reason(onnx_file, tmp_path):
    version = register_version("swapped", onnx_file, promote=True)
    other = tmp_path / "other.onnx"
    # A valid model of the same format: only the checksum can tell.
    artifacts.onnx(other)
    data = bytearray(other.read_bytes())
    data[-1] ^= 0x01 if data[-1] else 0x02
    with open(version.artifact.path, "wb") as fh:
        fh.write(bytes(data))
    errors = load_models()
    assert "sha256" in errors["swapped"]
    ready, reason = service.model_ready("swapped")
    assert not ready
    assert "changed in storage" in reason
    with pytest.raises(ModelNotReady):
        registry.get("swapped")


def test_a_payload_stored_before_the_checks_existed_never_reaches_torch(
    torch_export_file, tmp_path
):
    # A version stored by an older mlapp, whose artifact carries Python in its program: even
    # with a matching checksum, the format checks refuse it before torch.export.load runs it.
    items = {i.name: i for i in build(tmp_path / "corpus", tmp_path / "PAYLOAD-RAN")}
    hostile = items["export-expr-str"].path
    version = register_version("legacy", torch_export_file, promote=True)
    with open(version.artifact.path, "wb") as fh:
        fh.write(hostile.read_bytes())
    type(version).objects.filter(pk=version.pk).update(sha256=file_sha256(str(hostile)))
    errors = load_models()
    assert "not plain arithmetic" in errors["legacy"]
    assert not (tmp_path / "PAYLOAD-RAN").exists()
    assert service.model_ready("legacy")[0] is False
