"""Helpers shared by the two PyTorch runtimes."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlapp.exceptions import ArtifactError, RuntimeNotInstalled


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise RuntimeNotInstalled(
            "PyTorch is not installed: pip install 'mlapp[torch]' (install torch==2.13.0 "
            "first to get the CPU build)."
        ) from None
    return torch


def torch_datatype(dtype: Any) -> str:
    torch = import_torch()
    table = {
        torch.bool: "BOOL",
        torch.uint8: "UINT8",
        torch.int8: "INT8",
        torch.int16: "INT16",
        torch.int32: "INT32",
        torch.int64: "INT64",
        torch.float16: "FP16",
        torch.float32: "FP32",
        torch.float64: "FP64",
    }
    try:
        return table[dtype]
    except KeyError:
        raise ArtifactError(
            f"Tensors of dtype {dtype} have no Open Inference Protocol datatype; "
            "export the model with one of bool, (u)int8-64, float16/32/64."
        ) from None


def apply_threads(options: dict[str, Any]) -> None:
    """Set torch's intra-op thread count when configured (it is process-wide)."""
    threads = options.get("threads")
    if threads:
        torch = import_torch()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(int(threads))


def to_numpy_outputs(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Map a module's return value (tensor, tuple, list or dict) to named arrays."""
    torch = import_torch()
    if isinstance(result, dict):
        return {k: v.detach().cpu().numpy() for k, v in result.items()}
    if isinstance(result, torch.Tensor):
        result = (result,)
    values = [v.detach().cpu().numpy() for v in result]
    if names and len(names) == len(values):
        return dict(zip(names, values, strict=True))
    return {f"output_{i}": v for i, v in enumerate(values)}
