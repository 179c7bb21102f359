"""Check an artifact before anything is stored: format, safety, signature, a smoke run.

Two ways to run the same checks:

- :func:`validate_artifact` in this process (``manage.py register_model``, tests);
- ``validate_artifact(..., isolated=True)`` loads and runs the artifact in a separate Python
  process (``python -m mlapp.versions.worker``) with a time limit, so an artifact that
  hangs, crashes or eats the interpreter cannot take the web worker down (the admin's
  upload uses this).

The size limit and the format detection (which reads bytes and never unpickles) run here
first in both cases, so an obviously bad file is refused without starting a process.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, overload

from mlapp import exceptions
from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.tensors import Signature, sample_inputs, signatures_compatible

#: Longest error text taken from a validation process's output.
_MAX_ERROR_CHARS = 600


@dataclass
class ArtifactReport:
    """What validation learned about an artifact."""

    format: str
    signature: Signature
    sha256: str
    size: int
    load_seconds: float
    predict_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
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
        )


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def check_size(path: str, limit: int) -> int:
    """The file's size in bytes; ``ArtifactError`` above ``limit``."""
    size = os.path.getsize(path)
    if size > limit:
        raise ArtifactError(
            f"The artifact is {size} bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is {limit}."
        )
    return size


@overload
def _as_signature(value: Mapping[str, Any] | Signature) -> Signature: ...
@overload
def _as_signature(value: Mapping[str, Any] | Signature | None) -> Signature | None: ...
def _as_signature(value: Mapping[str, Any] | Signature | None) -> Signature | None:
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
) -> ArtifactReport:
    """Load the artifact with ``runtime_class``, settle its signature, run a smoke prediction.

    No Django here: the validation process calls this too.
    """
    declared_sig = _as_signature(declared)
    started = time.perf_counter()
    runtime = runtime_class(options or {})
    runtime.load(path, device=device)
    load_seconds = time.perf_counter() - started
    try:
        own = runtime.signature
        if own is None:
            signature = declared_sig or _as_signature(inherited)
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
        size=os.path.getsize(path),
        load_seconds=load_seconds,
        predict_seconds=predict_seconds,
    )


def validate_artifact(
    path: str,
    *,
    declared: dict[str, Any] | Signature | None = None,
    inherited: dict[str, Any] | None = None,
    isolated: bool = False,
    timeout: float | None = None,
) -> ArtifactReport:
    """Inspect the artifact at ``path`` and return its report, or raise ``ArtifactError``.

    ``declared`` is a signature given with the upload; ``inherited`` the signature of the
    model's production version, used for TorchScript archives that carry none. With
    ``isolated``, the artifact is loaded and run in a separate process that is killed after
    ``timeout`` seconds (default ``MLAPP["VALIDATION_TIMEOUT"]``).
    """
    # Here, not at the top: the validation worker imports this module and no Django.
    from mlapp.conf import settings
    from mlapp.serving.loading import runtime_class

    check_size(path, settings.MAX_UPLOAD_SIZE)
    fmt = detect_format(path)
    cls = runtime_class(fmt)
    if isolated:
        return _validate_in_subprocess(
            {
                "path": os.path.abspath(path),
                "format": fmt,
                "runtime": f"{cls.__module__}.{cls.__qualname__}",
                "declared": _as_signature(declared).to_dict() if declared is not None else None,
                "inherited": inherited,
                "device": settings.DEVICE,
                "options": settings.runtime_options(fmt),
            },
            timeout=settings.VALIDATION_TIMEOUT if timeout is None else timeout,
        )
    return inspect_artifact(
        path,
        fmt,
        cls,
        declared=declared,
        inherited=inherited,
        device=settings.DEVICE,
        options=settings.runtime_options(fmt),
    )


def _validate_in_subprocess(request: dict[str, Any], *, timeout: float) -> ArtifactReport:
    env = dict(os.environ)
    # The child imports what this process can: the project's runtimes and handlers.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mlapp.versions.worker"],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"Loading the artifact and running a sample prediction took longer than "
            f"{timeout:g} s (MLAPP['VALIDATION_TIMEOUT']); the validation process was stopped."
        ) from None
    answer = _last_json_line(result.stdout)
    if answer is None:
        raise ArtifactError(
            f"The artifact crashed the validation process ({_exit_reason(result.returncode)})"
            f"{_tail(result.stderr)}."
        )
    if "report" in answer:
        return ArtifactReport.from_dict(answer["report"])
    error_class = getattr(exceptions, str(answer.get("error_class")), None)
    if not (isinstance(error_class, type) and issubclass(error_class, MLAppError)):
        error_class = ArtifactError
    raise error_class(str(answer.get("error") or "Validation failed."))


def _last_json_line(output: bytes) -> dict[str, Any] | None:
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _tail(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return f": {lines[-1][:_MAX_ERROR_CHARS]}" if lines else ""


def run_validation_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The validation process's work: ``{"report": ...}`` or ``{"error", "error_class"}``."""
    try:
        module, _, name = str(request["runtime"]).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        report = inspect_artifact(
            request["path"],
            request["format"],
            cls,
            declared=request.get("declared"),
            inherited=request.get("inherited"),
            device=request.get("device") or "cpu",
            options=request.get("options") or {},
        )
    except MLAppError as exc:
        return {"error": exc.message, "error_class": type(exc).__name__}
    except Exception as exc:
        return {"error": f"Validation failed: {type(exc).__name__}: {exc}"}
    return {"report": report.to_dict()}
