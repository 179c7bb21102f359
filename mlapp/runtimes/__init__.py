"""Model runtimes: load an artifact, report its signature, run batches of numpy arrays.

This package never imports Django; the Django side picks the runtime class for a format
from ``mlapp.conf.settings.RUNTIMES`` and passes options in.
"""

from __future__ import annotations

from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import ONNX, TORCH_EXPORT, TORCHSCRIPT, detect_format
from mlapp.runtimes.tensors import DATATYPES, Signature, TensorSpec

#: Format key -> dotted path of the runtime class serving it (the default of
#: ``MLAPP["RUNTIMES"]``).
DEFAULT_RUNTIMES = {
    TORCHSCRIPT: "mlapp.runtimes.torchscript.TorchScriptRuntime",
    TORCH_EXPORT: "mlapp.runtimes.torch_export.TorchExportRuntime",
    ONNX: "mlapp.runtimes.onnx.OnnxRuntime",
}

__all__ = [
    "DATATYPES",
    "DEFAULT_RUNTIMES",
    "ONNX",
    "TORCHSCRIPT",
    "TORCH_EXPORT",
    "Runtime",
    "Signature",
    "TensorSpec",
    "detect_format",
]
