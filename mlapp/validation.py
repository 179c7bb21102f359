"""Check an artifact before anything is stored: format, safety, signature, a smoke run."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.registry import load_runtime
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.tensors import Signature, signatures_compatible


@dataclass
class ArtifactReport:
    """What validation learned about an artifact."""

    format: str
    signature: Signature
    sha256: str
    size: int
    load_seconds: float
    predict_seconds: float


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_inputs(signature: Signature, batch: int = 2) -> dict[str, np.ndarray]:
    """Inputs that fit ``signature``: zeros (or short strings), ``batch`` rows, -1 -> 4."""
    result = {}
    for spec in signature.inputs:
        shape = [
            batch if i == 0 and d == -1 else (4 if d == -1 else d) for i, d in enumerate(spec.shape)
        ]
        if spec.datatype == "BYTES":
            result[spec.name] = np.full(shape, "mlapp", dtype=object)
        else:
            result[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return result


def validate_artifact(
    path: str,
    *,
    declared: dict[str, Any] | Signature | None = None,
    inherited: dict[str, Any] | None = None,
) -> ArtifactReport:
    """Inspect the artifact at ``path`` and return its report, or raise ``ArtifactError``.

    ``declared`` is a signature given with the upload; ``inherited`` the signature of the
    model's production version, used for TorchScript archives that carry none.
    """
    size = os.path.getsize(path)
    if size > settings.MAX_UPLOAD_SIZE:
        raise ArtifactError(
            f"The artifact is {size} bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is "
            f"{settings.MAX_UPLOAD_SIZE}."
        )
    fmt = detect_format(path)
    declared_sig = (
        declared
        if isinstance(declared, Signature) or declared is None
        else Signature.from_dict(declared)
    )
    started = time.perf_counter()
    runtime = load_runtime(path, fmt)
    load_seconds = time.perf_counter() - started
    try:
        own = runtime.signature
        if own is None:
            signature = declared_sig or (Signature.from_dict(inherited) if inherited else None)
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
        sample = sample_inputs(signature)
        started = time.perf_counter()
        try:
            outputs = runtime.run(sample)
        except MLAppError:
            raise
        except Exception as exc:
            raise ArtifactError(f"A smoke prediction on sample inputs failed: {exc}") from None
        predict_seconds = time.perf_counter() - started
        missing = set(signature.output_names) - set(outputs)
        if missing:
            raise ArtifactError(
                f"The artifact did not return the outputs its signature names: {sorted(missing)}."
            )
    finally:
        runtime.close()
    return ArtifactReport(
        format=fmt,
        signature=signature,
        sha256=file_sha256(path),
        size=size,
        load_seconds=load_seconds,
        predict_seconds=predict_seconds,
    )
