"""Inspect an artifact: load it with its runtime, settle its signature, run a smoke prediction.

No Django here: the validation worker (``python -m mlapp.versions.worker``) runs
:func:`run_validation_request` in its own process. :mod:`mlapp.versions.validation` decides
where the inspection runs, with the project's settings.
"""

from __future__ import annotations

import base64
import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from mlapp.exceptions import ArtifactError, MLAppError, describe
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.integrity import file_sha256
from mlapp.runtimes.tensors import Signature, sample_inputs, signatures_compatible


@dataclass
class ArtifactReport:
    """What validation learned about an artifact."""

    format: str
    signature: Signature
    sha256: str
    size: int
    load_seconds: float
    predict_seconds: float
    #: The artifact's outputs on the handler's tensors (when the parent sent some).
    handler_outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        extra = {}
        if self.handler_outputs is not None:
            extra["handler_outputs"] = encode_arrays(self.handler_outputs)
        return {
            **extra,
            "format": self.format,
            "signature": self.signature.to_dict(),
            "sha256": self.sha256,
            "size": self.size,
            "load_seconds": self.load_seconds,
            "predict_seconds": self.predict_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactReport:
        return cls(
            format=str(data["format"]),
            signature=Signature.from_dict(data["signature"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            load_seconds=float(data["load_seconds"]),
            predict_seconds=float(data["predict_seconds"]),
            handler_outputs=(
                decode_arrays(data["handler_outputs"]) if data.get("handler_outputs") else None
            ),
        )


#: Most values an array sent between the parent and the validation worker may hold.
MAX_EXCHANGED_VALUES = 16 * 1024**2
#: Array kinds sent as numbers (booleans, integers, floats); texts and bytes go as base64.
_NUMERIC_KINDS = "biuf"


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Arrays as JSON: dtype, shape and flat values (texts and bytes as base64 strings)."""
    encoded = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.kind in _NUMERIC_KINDS:
            encoded[str(name)] = {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        else:
            encoded[str(name)] = {
                "dtype": "bytes",
                "shape": list(array.shape),
                "data": [base64.b64encode(_as_bytes(v)).decode() for v in array.ravel()],
            }
    return encoded


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def decode_arrays(data: Any) -> dict[str, np.ndarray]:
    """The arrays :func:`encode_arrays` wrote; ``ArtifactError`` on anything else."""
    if not isinstance(data, Mapping):
        raise ArtifactError("Exchanged arrays must be a JSON object.")
    arrays = {}
    for name, item in data.items():
        try:
            shape = tuple(int(d) for d in item["shape"])
            values = item["data"]
            count = int(np.prod(shape)) if shape else 1
            if any(d < 0 for d in shape) or count != len(values) or count > MAX_EXCHANGED_VALUES:
                raise ValueError(f"{len(values)} values for shape {list(shape)}")
            if item["dtype"] == "bytes":
                flat = np.empty(count, dtype=object)
                flat[:] = [base64.b64decode(v, validate=True) for v in values]
            else:
                dtype = np.dtype(str(item["dtype"]))
                if dtype.kind not in _NUMERIC_KINDS:
                    raise ValueError(f"dtype {dtype}")
                flat = np.asarray(values, dtype=dtype)
            arrays[str(name)] = flat.reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"Exchanged array {name!r} cannot be read: {exc}") from None
    return arrays


def check_size(path: str, limit: int) -> int:
    """The file's size in bytes; ``ArtifactError`` above ``limit``."""
    size = os.path.getsize(path)
    if size > limit:
        raise ArtifactError(
            f"The artifact is {size} bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is {limit}."
        )
    return size


@overload
def as_signature(value: Mapping[str, Any] | Signature) -> Signature: ...
@overload
def as_signature(value: Mapping[str, Any] | Signature | None) -> Signature | None: ...
def as_signature(value: Mapping[str, Any] | Signature | None) -> Signature | None:
    if value is None or isinstance(value, Signature):
        return value
    return Signature.from_dict(value)


def inspect_artifact(
    path: str,
    fmt: str,
    runtime_class: type[Runtime],
    *,
    declared: Mapping[str, Any] | Signature | None = None,
    inherited: Mapping[str, Any] | None = None,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
    exchange: Callable[[Signature], Mapping[str, np.ndarray]] | None = None,
) -> ArtifactReport:
    """Load the artifact with ``runtime_class``, settle its signature, run a smoke prediction.

    With ``exchange``, the settled signature is handed to it and the artifact then runs on the
    tensors it returns (the model's handler's preprocess of its example, made by the parent
    process, which runs the handler: the handler never runs here); the outputs are kept in
    the report for the parent's postprocess. No Django here: the validation process calls
    this too.
    """
    declared_sig = as_signature(declared)
    started = time.perf_counter()
    runtime = runtime_class(options or {})
    runtime.load(path, device=device)
    load_seconds = time.perf_counter() - started
    try:
        own = runtime.signature
        if own is None:
            signature = declared_sig or as_signature(inherited)
            if signature is None:
                raise ArtifactError(
                    "A TorchScript archive carries no signature: upload a signature JSON "
                    '({"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}) or '
                    "promote a version with one first."
                )
        elif declared_sig is not None:
            if not signatures_compatible(declared_sig, own):
                raise ArtifactError(
                    f"The declared signature {declared_sig.to_dict()} does not match the "
                    f"artifact's own {own.to_dict()}."
                )
            signature = declared_sig
        else:
            signature = own
        runtime.bind(signature)
        sample = sample_inputs(signature, rows=2)
        started = time.perf_counter()
        try:
            outputs = runtime.run(sample)
        except MLAppError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"A smoke prediction on sample inputs failed: {describe(exc)}"
            ) from None
        predict_seconds = time.perf_counter() - started
        missing = set(signature.output_names) - set(outputs)
        if missing:
            raise ArtifactError(
                f"The artifact did not return the outputs its signature names: {sorted(missing)}."
            )
        handler_outputs = None
        if exchange is not None:
            tensors = exchange(signature)
            try:
                handler_outputs = runtime.run(dict(tensors))
            except MLAppError:
                raise
            except Exception as exc:
                raise ArtifactError(
                    f"A prediction on the model's handler's example failed: {exc}"
                ) from None
    finally:
        runtime.close()
    return ArtifactReport(
        format=fmt,
        signature=signature,
        sha256=file_sha256(path),
        size=os.path.getsize(path),
        load_seconds=load_seconds,
        predict_seconds=predict_seconds,
        handler_outputs=handler_outputs,
    )


def run_validation_request(
    request: Mapping[str, Any],
    exchange: Callable[[Signature], Mapping[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The validation process's work: ``{"report": ...}`` or ``{"error", "error_class"}``.

    ``exchange`` is used when the request says ``"handler": true``.
    """
    path = str(request["runtime"])
    try:
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    except Exception as exc:
        return {
            "error": f"The runtime {path} cannot be imported in the validation sandbox, which "
            f"has no Django settings ({type(exc).__name__}: {exc}); keep runtime classes in a "
            "module that imports no Django."
        }
    try:
        report = inspect_artifact(
            request["path"],
            request["format"],
            cls,
            declared=request.get("declared"),
            inherited=request.get("inherited"),
            device=request.get("device") or "cpu",
            options=request.get("options") or {},
            exchange=exchange if request.get("handler") else None,
        )
    except MLAppError as exc:
        return {"error": exc.message, "error_class": type(exc).__name__}
    except MemoryError:
        raise  # the worker answers with its memory limit
    except Exception as exc:
        return {"error": f"Validation failed: {type(exc).__name__}: {exc}"}
    return {"report": report.to_dict()}
