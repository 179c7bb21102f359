"""Check an artifact before anything is stored: format, safety, signature, a smoke run.

:func:`validate_artifact` is the one entry of every upload path. The size limit and the format
detection (which reads the archive's directory and members as data, never unpickling,
inflating past declared limits or evaluating anything) run here first, so an obviously bad
file is refused without starting a process. The artifact is then loaded and run on sample
inputs by :mod:`mlapp.versions.inspection` inside the sandbox of :mod:`mlapp.versions.sandbox`
(a separate, limited process), never in the calling process.
"""

from __future__ import annotations

import os
from typing import Any

from mlapp import exceptions
from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.tensors import Signature
from mlapp.serving.loading import runtime_class
from mlapp.versions import sandbox
from mlapp.versions.inspection import ArtifactReport, as_signature, check_size


def validate_artifact(
    path: str,
    *,
    declared: dict[str, Any] | Signature | None = None,
    inherited: dict[str, Any] | None = None,
    timeout: float | None = None,
    memory: int | None = None,
) -> ArtifactReport:
    """Inspect the artifact at ``path`` and return its report, or raise ``ArtifactError``.

    ``declared`` is a signature given with the upload; ``inherited`` the signature of the
    model's production version, used for TorchScript archives that carry none. The load and
    the smoke prediction run in the sandbox, stopped after ``timeout`` seconds (default
    ``MLAPP["VALIDATION_TIMEOUT"]``) or beyond ``memory`` bytes (``MLAPP["VALIDATION_MEMORY"]``).
    """
    check_size(path, settings.MAX_UPLOAD_SIZE)
    fmt = detect_format(path)
    cls = runtime_class(fmt)
    answer = sandbox.run(
        {
            "format": fmt,
            "runtime": f"{cls.__module__}.{cls.__qualname__}",
            "declared": as_signature(declared).to_dict() if declared is not None else None,
            "inherited": inherited,
            "device": settings.DEVICE,
            "options": settings.runtime_options(fmt),
        },
        os.path.abspath(path),
        timeout=settings.VALIDATION_TIMEOUT if timeout is None else timeout,
        memory=settings.VALIDATION_MEMORY if memory is None else memory,
    )
    if "report" in answer:
        return ArtifactReport.from_dict(answer["report"])
    error_class = getattr(exceptions, str(answer.get("error_class")), None)
    if not (isinstance(error_class, type) and issubclass(error_class, MLAppError)):
        error_class = ArtifactError
    raise error_class(str(answer.get("error") or "Validation failed."))
