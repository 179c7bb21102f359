"""ONNX models, run by ONNX Runtime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlapp.exceptions import ArtifactError, RuntimeNotInstalled
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import ONNX
from mlapp.runtimes.tensors import Signature, TensorSpec

# ONNX Runtime's type strings -> OIP datatypes.
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeNotInstalled(
            "ONNX Runtime is not installed: pip install 'mlapp[onnx]'."
        ) from None
    return onnxruntime


class OnnxRuntime(Runtime):
    """Options: ``threads`` (intra-op threads), ``graph_optimization`` (disable, basic,
    extended, all)."""

    format = ONNX
    extra = "onnx"

    def load(self, path: str, device: str = "cpu") -> None:
        ort = _import_ort()
        so = ort.SessionOptions()
        threads = self.options.get("threads")
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        level = self.options.get("graph_optimization") or "all"
        if level not in _OPT_LEVELS:
            raise ArtifactError(
                f"Unknown ONNX graph optimisation {level!r}; use one of {', '.join(_OPT_LEVELS)}."
            )
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"ONNX Runtime could not load the model: {exc}") from None
        self.device = device
        self._signature = Signature(
            inputs=tuple(_spec(a) for a in self._session.get_inputs()),
            outputs=tuple(_spec(a) for a in self._session.get_outputs()),
        )
        self._output_names = self._signature.output_names

    def bind(self, signature: Signature) -> None:
        """ONNX names its tensors itself; a declared signature may only refine shapes."""
        self._signature = signature

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, dict(inputs))
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self._session = None


def _spec(arg: Any) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise ArtifactError(f"Tensor {arg.name!r} has an unsupported type {arg.type}.")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)
