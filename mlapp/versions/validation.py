"""Check an artifact before anything is stored: format, safety, signature, a smoke run.

:func:`validate_artifact` is the one entry of every upload path. The size limit and the format
detection (which reads the archive's directory and members as data, never unpickling,
inflating past declared limits or evaluating anything) run here first, so an obviously bad
file is refused without starting a process. The artifact is then loaded and run on sample
inputs by :mod:`mlapp.versions.inspection` inside the sandbox of :mod:`mlapp.versions.sandbox`
(a separate, limited process), never in the calling process.

With the model's handler, the upload is checked the way it will serve: the handler (the host
project's trusted code, which may import Django) runs HERE, the artifact only in the sandbox.
Once the worker has loaded the artifact it sends its signature; this process builds the
handler over it, preprocesses the handler's example and sends the tensors back; the worker runs
the artifact on them and returns the outputs, which the handler postprocesses here.
"""

from __future__ import annotations

import os
from typing import Any

from mlapp import exceptions
from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, MLAppError
from mlapp.handlers import BaseHandler
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.tensors import Signature
from mlapp.serving.handling import check_outputs, handler_tensors, import_handler
from mlapp.serving.loading import runtime_class
from mlapp.versions import sandbox
from mlapp.versions.inspection import ArtifactReport, as_signature, check_size, encode_arrays


def validate_artifact(
    path: str,
    *,
    declared: dict[str, Any] | Signature | None = None,
    inherited: dict[str, Any] | None = None,
    timeout: float | None = None,
    memory: int | None = None,
    handler: str = "",
    model_name: str = "",
) -> ArtifactReport:
    """Inspect the artifact at ``path`` and return its report, or raise ``ArtifactError``.

    ``declared`` is a signature given with the upload; ``inherited`` the signature of the
    model's production version, used for TorchScript archives that carry none. The load and
    the smoke prediction run in the sandbox, stopped after ``timeout`` seconds (default
    ``MLAPP["VALIDATION_TIMEOUT"]``) or beyond ``memory`` bytes (``MLAPP["VALIDATION_MEMORY"]``).
    ``handler`` is the dotted path of the handler that will serve it (as a model named
    ``model_name``): the smoke prediction then runs through it, and a version the handler
    cannot serve is refused with the reason.
    """
    check_size(path, settings.MAX_UPLOAD_SIZE)
    handler_cls = import_handler(handler) if handler else None
    fmt = detect_format(path)
    cls = runtime_class(fmt)
    through = _ThroughHandler(handler_cls, model_name) if handler_cls else None
    answer = sandbox.run(
        {
            "format": fmt,
            "runtime": f"{cls.__module__}.{cls.__qualname__}",
            "declared": as_signature(declared).to_dict() if declared is not None else None,
            "inherited": inherited,
            # Always the CPU: CUDA cannot start under the sandbox's address-space limit (it
            # maps far more virtual memory than any model needs), and containment comes first.
            # The registry loads the version onto MLAPP["DEVICE"] once it is accepted.
            "device": "cpu",
            "options": settings.runtime_options(fmt),
        },
        os.path.abspath(path),
        timeout=settings.VALIDATION_TIMEOUT if timeout is None else timeout,
        memory=settings.VALIDATION_MEMORY if memory is None else memory,
        respond=through.respond if through else None,
    )
    if "report" in answer:
        report = ArtifactReport.from_dict(answer["report"])
        if through is not None:
            through.finish(report)
        return report
    error_class = getattr(exceptions, str(answer.get("error_class")), None)
    if not (isinstance(error_class, type) and issubclass(error_class, MLAppError)):
        error_class = ArtifactError
    raise error_class(str(answer.get("error") or "Validation failed."))


class _ThroughHandler:
    """The parent's side of a validation through the model's handler."""

    def __init__(self, cls: type[BaseHandler], model_name: str) -> None:
        self.cls = cls
        self.model_name = model_name
        self.handler: BaseHandler | None = None
        self.inputs: dict[str, Any] = {}

    def respond(self, signature: dict[str, Any]) -> dict[str, Any]:
        """The handler's example, preprocessed, for an artifact of ``signature``."""
        runtime_signature = Signature.from_dict(signature)  # ArtifactError if malformed
        try:
            self.handler = self.cls(self.model_name, runtime_signature)
        except Exception as exc:
            raise ArtifactError(
                f"The handler {self.cls.__module__}.{self.cls.__qualname__} cannot be made for "
                f"this artifact: {type(exc).__name__}: {exc}"
            ) from None
        self.inputs, tensors = handler_tensors(self.handler, runtime_signature)
        return encode_arrays(tensors)

    def finish(self, report: ArtifactReport) -> None:
        """Postprocess the artifact's outputs on the handler's tensors (checked here)."""
        if self.handler is None or report.handler_outputs is None:
            raise ArtifactError("The validation process did not run the handler's example.")
        check_outputs(self.handler, report.signature, self.inputs, report.handler_outputs)
        report.handler_outputs = None
