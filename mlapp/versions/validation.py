"""Check an artifact before anything is stored: format, safety, signature, a smoke run.

Two ways to run the same checks (:mod:`mlapp.versions.inspection`):

- :func:`validate_artifact` in this process (``manage.py register_model``, tests);
- ``validate_artifact(..., isolated=True)`` loads and runs the artifact in a separate Python
  process (``python -m mlapp.versions.worker``) with a time limit, so an artifact that
  hangs, crashes or eats the interpreter cannot take the web worker down (the admin's
  upload uses this).

The size limit and the format detection (which reads bytes and never unpickles) run here
first in both cases, so an obviously bad file is refused without starting a process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from mlapp import exceptions
from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.tensors import Signature
from mlapp.serving.loading import runtime_class
from mlapp.versions.inspection import ArtifactReport, as_signature, check_size, inspect_artifact

#: Longest error text taken from a validation process's output.
_MAX_ERROR_CHARS = 600


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
    check_size(path, settings.MAX_UPLOAD_SIZE)
    fmt = detect_format(path)
    cls = runtime_class(fmt)
    if isolated:
        return _validate_in_subprocess(
            {
                "path": os.path.abspath(path),
                "format": fmt,
                "runtime": f"{cls.__module__}.{cls.__qualname__}",
                "declared": as_signature(declared).to_dict() if declared is not None else None,
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
