"""Errors raised by every layer of mlapp.

Plain Python: no Django, no DRF. Each error carries the HTTP status a view should
answer with, so one exception handler (``mlapp.api.errors``) renders them all.
"""

from __future__ import annotations


class MLAppError(Exception):
    """Base class for every error mlapp raises on purpose."""

    status_code = 500
    default_message = "Internal error in mlapp."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(MLAppError):
    """The caller sent inputs that do not match the model's signature."""

    status_code = 400
    default_message = "Invalid inputs."


class ModelNotFound(MLAppError):
    """No model (or no such version of it) exists."""

    status_code = 404
    default_message = "Model not found."

    @classmethod
    def no_model(cls, name: str) -> ModelNotFound:
        return cls(f"No model named {name!r}.")

    @classmethod
    def no_version(cls, name: str, version: object) -> ModelNotFound:
        return cls(f"Model {name!r} has no version {version!r}.")


class ModelNotReady(MLAppError):
    """The model exists but no version of it is loaded and serving."""

    status_code = 503
    default_message = "Model is not ready."


class Overloaded(MLAppError):
    """Too many requests are waiting for this model; the client should retry shortly."""

    status_code = 503
    default_message = "The model is overloaded; retry shortly."


class ArtifactError(MLAppError):
    """An artifact cannot be accepted: unknown format, broken file, bad signature."""

    status_code = 400
    default_message = "The artifact cannot be used."


class UnsafeArtifact(ArtifactError):
    """The artifact would need unpickling arbitrary Python objects to load."""

    default_message = "The artifact would execute arbitrary Python code when loaded."


class RuntimeNotInstalled(MLAppError):
    """The library a runtime needs is missing; the message names the pip extra."""

    status_code = 501
    default_message = "The runtime for this format is not installed."


class InferenceError(MLAppError):
    """The model itself failed while running on valid inputs."""

    status_code = 500
    default_message = "The model failed to run."


class StageError(MLAppError):
    """A stage change that is not allowed (e.g. deleting a production version)."""

    status_code = 409
    default_message = "This stage change is not allowed."
