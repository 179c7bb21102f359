"""Errors raised by every layer of mlapp.

Plain Python: no Django, no DRF. Each error carries what a front door answers with: the
HTTP ``status_code``, a ``message`` for the client, a short snake_case ``code`` (as DRF's
``default_code``) and, for a condition that passes, ``retry_after`` in seconds. One renderer
(``mlapp.api.errors.render_error``) turns them into responses for every API.
"""

from __future__ import annotations


class MLAppError(Exception):
    """Base class for every error mlapp raises on purpose."""

    status_code = 500
    default_message = "Internal error in mlapp."
    code = "error"
    #: Seconds a client should wait before trying again (``Retry-After``); None: no header.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


def describe(exc: BaseException) -> str:
    """What went wrong, in one line, for a message: an mlapp error's message; otherwise
    ``Type: text``, except that a multi-line text (TorchScript's errors carry the
    interpreter's whole traceback) gives its last line, which says what failed. Log the
    exception itself where the whole of it matters."""
    if isinstance(exc, MLAppError):
        return exc.message
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:
        return lines[-1]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# -- 4xx: the client can fix it ---------------------------------------------------------


class InvalidInput(MLAppError):
    """The caller sent inputs that do not match the model's signature."""

    status_code = 400
    default_message = "Invalid inputs."
    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """The request body, an upload, or what a body decompresses to is over its limit."""

    status_code = 413
    default_message = "The request body is too large."
    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    """A Content-Type or Content-Encoding this API does not read."""

    status_code = 415
    default_message = "Unsupported media type."
    code = "unsupported_media_type"


class BadSource(InvalidInput):
    """A batch source cannot be read as a whole; nothing was queued."""

    default_message = "The batch source cannot be read."
    code = "bad_source"


class UnflattenableOutputs(InvalidInput):
    """Items whose outputs differ in shape cannot share one CSV header."""

    default_message = "These outputs differ in shape between items; download JSON Lines."
    code = "unflattenable_outputs"


class ArtifactError(MLAppError):
    """An artifact cannot be accepted: unknown format, broken file, bad signature."""

    status_code = 400
    default_message = "The artifact cannot be used."
    code = "invalid_artifact"


class UnsafeArtifact(ArtifactError):
    """The artifact would need unpickling arbitrary Python objects to load."""

    default_message = "The artifact would execute arbitrary Python code when loaded."
    code = "unsafe_artifact"


class CannotDerive(ArtifactError):
    """A derived version (int8, ONNX export) cannot be made from this version."""

    default_message = "No version of this kind can be derived from this version."
    code = "cannot_derive"


class NotFound(MLAppError):
    """The thing asked for does not exist (a batch job, a stored prediction, a file)."""

    status_code = 404
    default_message = "Not found."
    code = "not_found"


class ModelNotFound(NotFound):
    """No model (or no such version of it) exists."""

    default_message = "Model not found."
    code = "model_not_found"

    @classmethod
    def no_model(cls, name: str) -> ModelNotFound:
        """No model of this name exists."""
        return cls(f"No model named {name!r}.")

    @classmethod
    def no_version(cls, name: str, version: object) -> ModelNotFound:
        """The model exists but has no such version (``version`` as the client wrote it)."""
        return cls(f"Model {name!r} has no version {version!r}.")


class Conflict(MLAppError):
    """The request conflicts with the current state (e.g. cancelling a finished job)."""

    status_code = 409
    default_message = "The request conflicts with the current state."
    code = "conflict"


class StageError(Conflict):
    """A stage change that is not allowed (e.g. deleting a production version)."""

    default_message = "This stage change is not allowed."
    code = "stage_not_allowed"


# -- 5xx: the server cannot answer (now) ----------------------------------------------------


class ModelNotReady(MLAppError):
    """The model exists but no version of it is loaded and serving."""

    status_code = 503
    default_message = "Model is not ready."
    code = "model_not_ready"
    retry_after = 1

    @classmethod
    def no_production(cls, name: str) -> ModelNotReady:
        """The model exists but no version of it is in production."""
        return cls(f"Model {name!r} has no production version.")


class Overloaded(MLAppError):
    """Too many requests are waiting for this model; the client should retry shortly."""

    status_code = 503
    default_message = "The model is overloaded; retry shortly."
    code = "overloaded"
    retry_after = 1


class QueueUnavailable(MLAppError):
    """The broker refused a batch job's chunks; the job is marked failed."""

    status_code = 503
    default_message = "The batch queue is unavailable; try again later."
    code = "queue_unavailable"
    retry_after = 1


class RuntimeNotInstalled(MLAppError):
    """The library a runtime needs is missing; the message names the pip extra."""

    status_code = 501
    default_message = "The runtime for this format is not installed."
    code = "runtime_not_installed"


class InferenceError(MLAppError):
    """The model itself failed while running on valid inputs."""

    status_code = 500
    default_message = "The model failed to run."
    code = "inference_error"
