"""The three runtimes on tiny real artifacts: load, signature, run, options, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mlapp.exceptions import ArtifactError, RuntimeNotInstalled
from mlapp.runtimes import _torch
from mlapp.runtimes.onnx import OnnxRuntime
from mlapp.runtimes.tensors import Signature, TensorSpec
from mlapp.runtimes.torch_export import TorchExportRuntime
from mlapp.runtimes.torchscript import TorchScriptRuntime
from tests import artifacts

RUNTIMES = [
    (TorchScriptRuntime, "torchscript_file"),
    (TorchExportRuntime, "torch_export_file"),
    (OnnxRuntime, "onnx_file"),
]
IDS = ["torchscript", "torch_export", "onnx"]


def batch(rows: int) -> np.ndarray:
    return np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) / 7 - 1


def loaded(runtime_cls, request, fixture):
    runtime = runtime_cls()
    runtime.load(str(request.getfixturevalue(fixture)))
    if runtime.signature is None:
        runtime.bind(Signature.from_dict(artifacts.TWO_IN_SIGNATURE))
    return runtime


@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize(("runtime_cls", "fixture"), RUNTIMES, ids=IDS)
def test_runtime_output_equals_the_affine_map(request, runtime_cls, fixture, rows):
    runtime = loaded(runtime_cls, request, fixture)
    x = batch(rows)
    outputs = runtime.run({"x": x})
    (name,) = runtime.signature.output_names
    assert set(outputs) == {name}
    assert outputs[name].shape == (rows, 2)
    np.testing.assert_allclose(outputs[name], artifacts.expected(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("runtime_cls", "fixture"), RUNTIMES, ids=IDS)
def test_runtime_reports_cpu_and_its_format(request, runtime_cls, fixture):
    runtime = loaded(runtime_cls, request, fixture)
    assert runtime.device == "cpu"
    assert runtime.format in fixture
    assert repr(runtime) == f"<{runtime_cls.__name__} format={runtime.format!r} device='cpu'>"


def test_torch_export_reports_its_signature(torch_export_file):
    runtime = TorchExportRuntime()
    runtime.load(str(torch_export_file))
    assert runtime.signature == Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 3)),),
        outputs=(TensorSpec("output", "FP32", (-1, 2)),),
    )


def test_onnx_reports_its_signature(onnx_file):
    runtime = OnnxRuntime()
    runtime.load(str(onnx_file))
    assert runtime.signature == Signature(
        inputs=(TensorSpec("x", "FP32", (-1, 3)),),
        outputs=(TensorSpec("y", "FP32", (-1, 2)),),
    )


def test_torch_export_adopts_bound_output_names(torch_export_file):
    runtime = TorchExportRuntime()
    runtime.load(str(torch_export_file))
    runtime.bind(Signature.from_dict(artifacts.TWO_IN_SIGNATURE))
    outputs = runtime.run({"x": batch(2)})
    assert list(outputs) == ["y"]
    np.testing.assert_allclose(outputs["y"], artifacts.expected(batch(2)), rtol=1e-6)


def test_torchscript_reports_no_signature_until_bound(torchscript_file):
    runtime = TorchScriptRuntime()
    runtime.load(str(torchscript_file))
    assert runtime.signature is None
    signature = Signature.from_dict(artifacts.TWO_IN_SIGNATURE)
    runtime.bind(signature)
    assert runtime.signature is signature


def test_torchscript_counts_the_inputs_of_forward(torchscript_file):
    runtime = TorchScriptRuntime()
    runtime.load(str(torchscript_file))
    assert runtime.n_inputs == 1


def test_torchscript_bind_refuses_the_wrong_number_of_inputs(torchscript_file):
    runtime = TorchScriptRuntime()
    runtime.load(str(torchscript_file))
    two_inputs = Signature.from_dict(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "z", "datatype": "FP32", "shape": [-1, 3]},
            ],
            "outputs": artifacts.TWO_IN_SIGNATURE["outputs"],
        }
    )
    with pytest.raises(ArtifactError, match=r"takes 1 input\(s\) but the signature declares 2"):
        runtime.bind(two_inputs)
    assert runtime.signature is None


def test_torchscript_names_outputs_by_position_when_unbound(torchscript_file):
    runtime = TorchScriptRuntime()
    runtime.load(str(torchscript_file))
    outputs = runtime.run({"x": batch(3)})
    assert list(outputs) == ["output_0"]
    np.testing.assert_allclose(outputs["output_0"], artifacts.expected(batch(3)), rtol=1e-6)


def test_torch_runtimes_accept_non_contiguous_inputs(torchscript_file):
    runtime = TorchScriptRuntime()
    runtime.load(str(torchscript_file))
    x = np.asfortranarray(batch(4))
    assert not x.flags["C_CONTIGUOUS"]
    outputs = runtime.run({"x": x})
    np.testing.assert_allclose(outputs["output_0"], artifacts.expected(x), rtol=1e-6)


# --- ONNX options


def test_onnx_applies_the_threads_option(onnx_file):
    runtime = OnnxRuntime({"threads": 2})
    runtime.load(str(onnx_file))
    options = runtime._session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1


def test_onnx_leaves_the_library_thread_default_without_threads(onnx_file):
    runtime = OnnxRuntime({"threads": None})
    runtime.load(str(onnx_file))
    assert runtime._session.get_session_options().intra_op_num_threads == 0


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("disable", "ORT_DISABLE_ALL"),
        ("basic", "ORT_ENABLE_BASIC"),
        ("extended", "ORT_ENABLE_EXTENDED"),
        ("all", "ORT_ENABLE_ALL"),
    ],
)
def test_onnx_applies_the_graph_optimization_option(onnx_file, level, expected):
    import onnxruntime

    runtime = OnnxRuntime({"graph_optimization": level})
    runtime.load(str(onnx_file))
    got = runtime._session.get_session_options().graph_optimization_level
    assert got == getattr(onnxruntime.GraphOptimizationLevel, expected)


def test_onnx_optimises_fully_by_default(onnx_file):
    import onnxruntime

    runtime = OnnxRuntime()
    runtime.load(str(onnx_file))
    got = runtime._session.get_session_options().graph_optimization_level
    assert got == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_runtime_close_releases_the_model(onnx_file, torchscript_file):
    onnx = OnnxRuntime()
    onnx.load(str(onnx_file))
    onnx.close()
    assert onnx._session is None
    script = TorchScriptRuntime()
    script.load(str(torchscript_file))
    script.close()
    assert script._module is None


# --- broken files


@pytest.mark.parametrize("runtime_cls", [TorchScriptRuntime, TorchExportRuntime, OnnxRuntime])
def test_runtime_load_of_a_broken_file_raises_artifact_error(tmp_path, runtime_cls):
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"this is not a model at all")
    runtime = runtime_cls()
    with pytest.raises(ArtifactError, match="could not"):
        runtime.load(str(path))


@pytest.mark.parametrize(
    ("runtime_cls", "fixture"),
    [
        (TorchScriptRuntime, "onnx_file"),
        (TorchExportRuntime, "torchscript_file"),
        (OnnxRuntime, "torch_export_file"),
    ],
    ids=["torchscript-given-onnx", "torch_export-given-torchscript", "onnx-given-pt2"],
)
def test_runtime_load_of_another_format_raises_artifact_error(request, runtime_cls, fixture):
    with pytest.raises(ArtifactError):
        runtime_cls().load(str(request.getfixturevalue(fixture)))


# --- missing libraries


def test_onnx_runtime_not_installed_names_the_extra(monkeypatch, onnx_file):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeNotInstalled, match=r"mlapp\[onnx\]"):
        OnnxRuntime().load(str(onnx_file))


def test_import_torch_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(RuntimeNotInstalled, match=r"mlapp\[torch\]"):
        _torch.import_torch()


@pytest.mark.parametrize(
    ("runtime_cls", "fixture"),
    [(TorchScriptRuntime, "torchscript_file"), (TorchExportRuntime, "torch_export_file")],
    ids=["torchscript", "torch_export"],
)
def test_torch_runtime_not_installed_names_the_extra(monkeypatch, request, runtime_cls, fixture):
    path = str(request.getfixturevalue(fixture))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(RuntimeNotInstalled, match=r"mlapp\[torch\]"):
        runtime_cls().load(path)


def test_onnx_unknown_graph_optimization_is_an_artifact_error(onnx_file):
    with pytest.raises(ArtifactError, match="Unknown ONNX graph optimisation 'max'"):
        OnnxRuntime({"graph_optimization": "max"}).load(str(onnx_file))


def test_torch_dtype_without_an_oip_datatype_is_refused():
    import torch

    with pytest.raises(ArtifactError, match="no Open Inference Protocol datatype"):
        _torch.torch_datatype(torch.bfloat16)
