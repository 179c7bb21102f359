"""The validation sandbox: what an artifact being validated can see and how long it may run.

The probe runtime (tests/importable/probe_runtime.py) runs where an artifact's loader runs and
reports what it finds there."""

from __future__ import annotations

import json
import os
import time

import onnxruntime
import pytest

from mlapp.exceptions import ArtifactError
from mlapp.versions.validation import validate_artifact
from tests.artifacts import TWO_IN_SIGNATURE
from tests.hostile.corpus import build

PROBE = {"THREADS": 1, "RUNTIMES": {"onnx": "tests.importable.probe_runtime.ProbeRuntime"}}


def _probe(path, settings, monkeypatch) -> dict:
    settings.MLAPP = PROBE
    monkeypatch.setenv("MLAPP_TEST_SECRET", "do-not-leak")
    with pytest.raises(ArtifactError) as refused:
        validate_artifact(str(path))
    message = refused.value.message
    assert message.startswith("PROBE "), message
    return json.loads(message.removeprefix("PROBE "))


def test_the_artifact_is_loaded_alone_in_a_scratch_folder(onnx_file, settings, monkeypatch):
    seen = _probe(onnx_file, settings, monkeypatch)
    scratch = seen["cwd"]
    assert scratch != os.getcwd()
    assert os.path.dirname(seen["path"]) == scratch
    assert seen["neighbours"] == [os.path.basename(seen["path"])]
    assert not os.path.exists(scratch), "the scratch folder outlives its validation"


def test_no_secret_or_setting_of_the_server_is_inherited(onnx_file, settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://user:password@db/prod")
    environ = _probe(onnx_file, settings, monkeypatch)["environ"]
    assert "MLAPP_TEST_SECRET" not in environ
    assert "DATABASE_URL" not in environ
    assert "DJANGO_SETTINGS_MODULE" not in environ
    assert set(environ) <= {
        "PATH",
        "PYTHONPATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "LC_CTYPE",  # set by the interpreter itself under the C.UTF-8 locale
    }
    assert environ["HOME"] == environ["TMPDIR"]


def test_memory_and_core_files_are_limited(onnx_file, settings, monkeypatch):
    seen = _probe(onnx_file, settings, monkeypatch)
    assert seen["address_space"] == 4 * 1024**3  # MLAPP["VALIDATION_MEMORY"]'s default
    assert seen["core"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root or user namespaces")
def test_the_network_is_out_of_reach_where_the_kernel_allows(onnx_file, settings, monkeypatch):
    # CI runs as root, where unshare(CLONE_NEWNET) succeeds: PostgreSQL, which the test
    # database is on, cannot be reached from the sandbox.
    seen = _probe(onnx_file, settings, monkeypatch)
    assert seen["database"].startswith("unreachable"), seen["database"]


def test_a_loader_that_never_returns_is_killed_at_the_time_limit(onnx_file, settings):
    settings.MLAPP = {
        "THREADS": 1,
        "RUNTIMES": {"onnx": "tests.importable.probe_runtime.SleepingRuntime"},
    }
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="took longer than 2 s"):
        validate_artifact(str(onnx_file), timeout=2)
    assert time.monotonic() - started < 10


def test_memory_bomb_and_external_data_are_refused_with_their_reason(tmp_path, settings):
    settings.MLAPP = {"THREADS": 1}
    items = {item.name: item for item in build(tmp_path, tmp_path / "MARKER")}
    with pytest.raises(ArtifactError, match=r"MLAPP\['VALIDATION_MEMORY'\]"):
        validate_artifact(str(items["onnx-memory-bomb"].path), memory=1024**3)
    external = items["onnx-external-data"].path
    # Where it lies, ONNX Runtime reads the file beside it; validation runs it elsewhere.
    onnxruntime.InferenceSession(str(external), providers=["CPUExecutionProvider"])
    with pytest.raises(ArtifactError, match=r"neighbour\.bin"):
        validate_artifact(str(external))


def test_a_server_on_a_gpu_validates_its_uploads_on_the_cpu(torchscript_file, settings):
    """CUDA cannot start under the sandbox's address-space limit (seen on an H200: "torch.cuda
    .is_available() is False" inside, every upload refused); the sandbox loads on the CPU
    whatever MLAPP["DEVICE"] says, and the registry moves the version to the device. Here, on
    a machine with no CUDA at all, a "cuda" load would fail the same way."""
    settings.MLAPP = {"DEVICE": "cuda"}
    report = validate_artifact(str(torchscript_file), declared=TWO_IN_SIGNATURE)
    assert report.format == "torchscript"
    assert report.signature.to_dict() == TWO_IN_SIGNATURE
