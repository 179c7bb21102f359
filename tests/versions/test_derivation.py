"""Derived versions: int8 from ONNX, ONNX from TorchScript, made and measured in the sandbox."""

from __future__ import annotations

import numpy as np
import pytest

from mlapp.exceptions import CannotDerive
from mlapp.models import ModelVersion
from mlapp.runtimes.onnx import OnnxRuntime
from mlapp.serving.loading import load_runtime
from mlapp.versions.derivation import derive_version
from tests.demo_models import register_demo
from tests.demo_models import samples as _samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def digits():
    return register_demo("digits")


def test_int8_digits_is_a_staging_child_measured_against_its_parent(digits):
    child = derive_version(digits, kind="int8", method="dynamic", samples=_samples("digits"))
    assert (child.stage, child.parent_id, child.format) == ("staging", digits.pk, "onnx")
    assert child.version == digits.version + 1
    figures = child.metrics["derived"]
    assert figures["kind"] == "int8"
    assert figures["method"] == "dynamic"
    assert figures["sample_rows"] == 10
    assert figures["sample"] == "given with the request"
    assert figures["parent"]["size"] == digits.size
    assert figures["child"]["size"] == child.size < digits.size / 2
    assert figures["child"]["label_agreement"] == 1.0
    assert "validation" in child.metrics  # validated like any upload
    # The stored file holds integer operators: it is really quantized.
    import onnx

    with child.artifact.open("rb") as handle:
        ops = {node.op_type for node in onnx.load_model(handle).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}, ops


def test_auto_measures_both_methods_and_keeps_the_better(digits):
    child = derive_version(digits, kind="int8", method="auto", samples=_samples("digits"))
    candidates = child.metrics["derived"]["candidates"]
    assert set(candidates) == {"dynamic", "static"}
    chosen = child.metrics["derived"]["method"]
    assert all(
        candidates[chosen]["label_agreement"] >= c["label_agreement"] for c in candidates.values()
    )


def test_torchscript_iris_exports_to_an_onnx_child_that_answers_the_same():
    iris = register_demo("iris")
    assert iris.format == "torchscript"
    child = derive_version(iris, kind="onnx", samples=_samples("iris"))
    assert (child.format, child.parent_id) == ("onnx", iris.pk)
    assert child.signature == iris.signature
    assert child.metrics["derived"]["child"]["max_abs_diff"] < 1e-5
    rows = np.asarray([r["input"] for r in _samples("iris")], dtype=np.float32)
    # A batch size the export never saw: the first dimension stayed dynamic.
    runtime = load_runtime(child.artifact.path, "onnx")
    assert isinstance(runtime, OnnxRuntime)
    assert runtime.run({"input": rows[:7]})["probabilities"].shape == (7, 3)

    # int8 is made from the ONNX child, never the TorchScript parent: the refusal says so.
    with pytest.raises(CannotDerive, match="Derive an ONNX version from the TorchScript one"):
        derive_version(iris, kind="int8")
    assert ModelVersion.objects.filter(model=iris.model).count() == 2


def test_a_sample_that_does_not_fit_is_refused_before_any_work(digits):
    with pytest.raises(CannotDerive, match="needs the inputs"):
        derive_version(digits, samples=[{"pixels": [0] * 64}])
    with pytest.raises(CannotDerive, match="list of 1 to"):
        derive_version(digits, samples=[])
