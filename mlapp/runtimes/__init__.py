"""Model runtimes: load an artifact, report its signature, run batches of numpy arrays.

This package never imports Django; the Django side picks the runtime class for a format
from ``MLAPP["RUNTIMES"]`` (``mlapp.conf``) and passes options in.
"""

from __future__ import annotations

from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import ONNX, TORCH_EXPORT, TORCHSCRIPT, detect_format
from mlapp.runtimes.tensors import DATATYPES, Signature, TensorSpec

__all__ = [
    "DATATYPES",
    "ONNX",
    "TORCHSCRIPT",
    "TORCH_EXPORT",
    "Runtime",
    "Signature",
    "TensorSpec",
    "detect_format",
]
