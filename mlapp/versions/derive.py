"""Derive a version from an artifact inside the validation sandbox: int8, or ONNX from TorchScript.

No Django here: the validation worker (``python -m mlapp.versions.worker``) runs
:func:`run_derive_request` when its request carries ``"derive"``. The parent's artifact is
untrusted like any upload, so it is read, quantized or exported, and compared with what came
out of it only in that contained process. :mod:`mlapp.versions.derivation` is the caller's
side: it prepares the sample tensors (through the model's handler, in the trusted process),
then stores the derived file as a new version through the ordinary validated upload.

Kinds:

- ``int8`` (ONNX parent): ONNX Runtime's quantization. ``dynamic`` quantizes the weights and
  each activation as it runs (``quantize_dynamic``); ``static`` calibrates activation ranges
  on the sample (``quantize_static``, QDQ); ``auto`` makes both and keeps the one that agrees
  better with the parent, the faster one on a tie. Every candidate's figures are reported.
- ``onnx`` (TorchScript parent): ``torch.onnx.export`` of the scripted module (the TorchScript
  exporter, ``dynamo=False``) on the sample, with each ``-1`` dimension of the signature left
  dynamic; a module the exporter cannot handle is refused with its message.

Each candidate is loaded with the runtime that will serve it and run on the sample beside the
parent: its size, latency per row (one thread, median of a few runs) and agreement with the
parent (label agreement for classifiers, cosine for embeddings, and the largest difference).
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.tensors import Signature
from mlapp.versions.inspection import decode_arrays

#: The file the worker writes the derived artifact to, in its scratch folder.
OUTPUT = "derived.onnx"
#: The file the parent writes the sample tensors to, in the scratch folder.
SAMPLE = "derive-sample.json"
KINDS = ("int8", "onnx")
METHODS = ("auto", "dynamic", "static")
#: Runs per latency measurement; the median is kept.
TIMED_RUNS = 5
_ONNX_RUNTIME = "mlapp.runtimes.onnx.OnnxRuntime"


def run_derive_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The worker's work: ``{"derived": {...}}`` or ``{"error", "error_class"}``."""
    spec = request["derive"]
    try:
        signature = Signature.from_dict(request["declared"])
        with open(SAMPLE, encoding="utf-8") as source:
            sample = decode_arrays(json.load(source))
        parent_cls = _import(str(request["runtime"]))
        onnx_cls = _import(str(spec.get("onnx_runtime") or _ONNX_RUNTIME))
        parent = Measured(parent_cls, request["path"], signature, sample)
        try:
            if spec["kind"] == "onnx":
                _export_onnx(request["path"], signature, sample, OUTPUT)
                candidates = {"export": parent.compare(onnx_cls, OUTPUT, spec.get("task", ""))}
                chosen = "export"
            else:
                candidates, chosen = _quantize(parent, onnx_cls, spec, sample)
        finally:
            parent.close()
    except MLAppError as exc:
        return {"error": exc.message, "error_class": type(exc).__name__}
    except MemoryError:
        raise
    except Exception as exc:
        return {"error": f"Deriving failed: {type(exc).__name__}: {exc}"}
    return {
        "derived": {
            "kind": spec["kind"],
            "method": chosen,
            "parent": parent.figures(),
            "child": candidates[chosen],
            "candidates": candidates,
            "sample_rows": _rows(sample),
        }
    }


def _import(path: str) -> type[Runtime]:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise ArtifactError(f"{path} is not a mlapp runtime.")
    return cls


def _rows(arrays: Mapping[str, np.ndarray]) -> int:
    first = next(iter(arrays.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


class Measured:
    """The parent artifact, loaded once, its outputs and latency on the sample kept."""

    def __init__(
        self,
        cls: type[Runtime],
        path: str,
        signature: Signature,
        sample: Mapping[str, np.ndarray],
    ) -> None:
        self.path = path
        self.signature = signature
        self.sample = dict(sample)
        self.runtime = _load(cls, path, signature)
        self.outputs, self.seconds = _timed(self.runtime, self.sample)

    def figures(self) -> dict[str, Any]:
        return {"size": os.path.getsize(self.path), **_latency(self.seconds, self.sample)}

    def compare(self, cls: type[Runtime], path: str, task: str) -> dict[str, Any]:
        """Load ``path`` with ``cls``, run the sample, measure it against the parent."""
        runtime = _load(cls, path, self.signature)
        try:
            outputs, seconds = _timed(runtime, self.sample)
        finally:
            runtime.close()
        return {
            "size": os.path.getsize(path),
            **_latency(seconds, self.sample),
            **agreement(self.outputs, outputs, self.signature.output_names[0], task),
        }

    def close(self) -> None:
        self.runtime.close()


def _load(cls: type[Runtime], path: str, signature: Signature) -> Runtime:
    runtime = cls({"threads": 1})  # latency on one thread: comparable across machines
    runtime.load(path, device="cpu")
    runtime.bind(signature)
    return runtime


def _timed(
    runtime: Runtime, sample: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[float]]:
    outputs = runtime.run(dict(sample))  # also the warm-up
    seconds = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        runtime.run(dict(sample))
        seconds.append(time.perf_counter() - started)
    return outputs, seconds


def _latency(seconds: list[float], sample: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {"ms_per_row": round(1000 * statistics.median(seconds) / max(_rows(sample), 1), 4)}


def agreement(
    reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], output: str, task: str
) -> dict[str, Any]:
    """How ``other`` agrees with ``reference`` on ``output``.

    Classifiers: the share of rows whose highest score is the same class. Embeddings: the
    cosine of each row to the reference (mean and lowest). Always: the largest difference.
    """
    ref = np.asarray(reference[output], dtype=np.float64)
    got = np.asarray(other[output], dtype=np.float64)
    if ref.shape != got.shape:
        raise ArtifactError(
            f"The derived artifact's {output!r} has shape {list(got.shape)}, the parent's "
            f"{list(ref.shape)}."
        )
    result: dict[str, Any] = {
        "output": output,
        "max_abs_diff": float(np.max(np.abs(ref - got))) if ref.size else 0.0,
    }
    rows_ref = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref.reshape(-1, 1)
    rows_got = got.reshape(rows_ref.shape)
    if task == "classification" and ref.ndim > 1:
        same = np.argmax(rows_ref, axis=-1) == np.argmax(rows_got, axis=-1)
        result["label_agreement"] = float(np.mean(same))
    else:
        norms = np.linalg.norm(rows_ref, axis=1) * np.linalg.norm(rows_got, axis=1)
        cosine = np.sum(rows_ref * rows_got, axis=1) / np.where(norms == 0, 1.0, norms)
        result["cosine_mean"] = float(np.mean(cosine))
        result["cosine_min"] = float(np.min(cosine))
    return result


def score(figures: Mapping[str, Any]) -> tuple[float, float]:
    """Order candidates: agreement first (higher is better), then speed."""
    agree = figures.get("label_agreement", figures.get("cosine_min", 0.0))
    return float(agree), -float(figures["ms_per_row"])


def _quantize(
    parent: Measured, onnx_cls: type[Runtime], spec: Mapping[str, Any], sample: Any
) -> tuple[dict[str, Any], str]:
    method = spec.get("method") or "auto"
    if method not in METHODS:
        raise ArtifactError(f"Unknown quantization method {method!r}; use one of {METHODS}.")
    task = str(spec.get("task", ""))
    candidates: dict[str, Any] = {}
    errors: list[str] = []
    for name in ("dynamic", "static") if method == "auto" else (method,):
        path = f"candidate-{name}.onnx"
        try:
            (_dynamic if name == "dynamic" else _static)(parent.path, path, sample)
            candidates[name] = parent.compare(onnx_cls, path, task)
        except MLAppError as exc:
            errors.append(f"{name}: {exc.message}")
        except MemoryError:
            raise
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if not candidates:
        raise ArtifactError("ONNX Runtime could not quantize this model: " + "; ".join(errors))
    chosen = max(candidates, key=lambda n: score(candidates[n]))
    os.replace(f"candidate-{chosen}.onnx", OUTPUT)
    for name, error in (e.split(": ", 1) for e in errors):
        candidates[name] = {"error": error[:300]}
    return candidates, chosen


def _dynamic(source: str, target: str, sample: Any) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: on MiniLM, per-tensor int8 weights gave a lowest cosine of
    # 0.926 to the fp32 embeddings, per-channel 0.991, at the same speed (bench/edge.py).
    # Convolutions get uint8 weights: the ConvInteger types ONNX Runtime Web was proven with
    # (tests/edge/test_browser.py).
    weights = QuantType.QUInt8 if _has_op(source, "Conv") else QuantType.QInt8
    quantize_dynamic(source, target, weight_type=weights, per_channel=True)


def _static(source: str, target: str, sample: Mapping[str, np.ndarray]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rows = _rows(sample)

    class Reader(CalibrationDataReader):  # one row at a time, as the calibrator expects
        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= rows:
                return None
            i, self.index = self.index, self.index + 1
            return {name: value[i : i + 1] for name, value in sample.items()}

    quantize_static(
        source,
        target,
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _has_op(path: str, op_type: str) -> bool:
    import onnx

    model = onnx.load(path, load_external_data=False)
    return any(node.op_type == op_type for node in model.graph.node)


def _export_onnx(
    source: str, signature: Signature, sample: Mapping[str, np.ndarray], target: str
) -> None:
    """TorchScript -> ONNX with the signature's names; dynamic where it says ``-1``."""
    import torch

    module = torch.jit.load(source, map_location="cpu")
    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[n])) for n in signature.input_names)
    dynamic = {
        spec.name: {i: f"{spec.name}_{i}" for i, d in enumerate(spec.shape) if d == -1}
        for spec in (*signature.inputs, *signature.outputs)
    }
    try:
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                target,
                input_names=list(signature.input_names),
                output_names=list(signature.output_names),
                dynamic_axes={k: v for k, v in dynamic.items() if v},
                dynamo=False,
            )
    except Exception as exc:
        raise ArtifactError(
            f"This TorchScript model cannot be exported to ONNX: {type(exc).__name__}: "
            f"{str(exc)[:400]}"
        ) from None
