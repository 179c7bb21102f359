"""mlapp's settings: one ``MLAPP`` dict in the host project's settings.

Read them through ``mlapp.conf.settings``::

    from mlapp.conf import settings
    settings.MAX_UPLOAD_SIZE             # an int
    settings.PREDICT_PERMISSION_CLASSES  # the classes, imported
    settings.runtime_class("onnx")       # the runtime class of a format, imported

Each value is validated on first access and handed back typed (seconds as floats, dotted
paths imported), then cached; ``override_settings(MLAPP=...)`` reloads. A bad value raises
:class:`InvalidSetting` naming the key and how to fix it; ``manage.py check`` reports the same
problems up front, each with its id (``mlapp.checks``).

The bottom layer: this package imports nothing else of mlapp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from mlapp.conf.defaults import DEFAULTS
from mlapp.conf.rules import (
    RESOLVERS,
    VALIDATORS,
    BatchSource,
    InvalidSetting,
    Problem,
    RuntimeEntry,
    each,
    runtime_class,
)

if TYPE_CHECKING:
    from mlapp.runtimes.base import Runtime


class MLAppSettings:
    """Attribute access to ``settings.MLAPP`` merged over :data:`DEFAULTS`: validated, typed,
    dotted paths imported, each key once (until :meth:`reload`)."""

    ARTIFACT_STORAGE: str
    ARTIFACT_PREFIX: str
    MAX_UPLOAD_SIZE: int
    DEVICE: str
    THREADS: int | None
    ONNX_GRAPH_OPTIMIZATION: str
    LOAD_ON_STARTUP: bool
    BATCHING: dict[str, Any]
    MONITORING: dict[str, Any]
    BATCH_CHUNK_SIZE: int
    BATCH_EXECUTOR: str
    #: The Celery app object, or None.
    CELERY_APP: Any
    BATCH_MAX_RETRIES: int
    BATCH_RETRY_DELAY: float
    BATCH_SOURCES: dict[str, BatchSource]
    STAGING_CACHE_SIZE: int
    POLL_INTERVAL: float
    VALIDATION_TIMEOUT: float
    VALIDATION_MEMORY: int
    DERIVE_TIMEOUT: float
    DERIVE_SAMPLES: dict[str, str]
    BUNDLE_SIGNING_KEY: str | bytes | None
    V2_MAX_REQUEST_SIZE: int | None
    V2_SKIP_MIDDLEWARE: bool
    GRPC_PORT: int | None
    GRPC_HOST: str
    GRPC_MAX_MESSAGE_SIZE: int | None
    GRPC_THREADS: int
    #: The permission classes (or DRF's composed permissions), imported.
    READ_PERMISSION_CLASSES: tuple[Any, ...]
    PREDICT_PERMISSION_CLASSES: tuple[Any, ...]
    MANAGE_PERMISSION_CLASSES: tuple[Any, ...]
    RUNTIMES: dict[str, RuntimeEntry]

    def __init__(self) -> None:
        self._cached: set[str] = set()
        self._runtime_classes: dict[str, type[Runtime]] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, "MLAPP", None) or {}
        # A non-dict MLAPP is reported by mlapp.E001; read it as empty meanwhile.
        return dict(value) if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        # Only reached on a first read: the value is then set on the instance.
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown mlapp setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        if isinstance(DEFAULTS[name], dict) and isinstance(value, dict):
            value = {**DEFAULTS[name], **value}
        value = VALIDATORS[name](name, value)
        if name in RESOLVERS:
            value = RESOLVERS[name](name, value)
        setattr(self, name, value)
        self._cached.add(name)
        return value

    def runtime_class(self, fmt: str) -> type[Runtime]:
        """The runtime class serving ``fmt``, imported once; ``KeyError`` when none does."""
        if fmt not in self._runtime_classes:
            self._runtime_classes[fmt] = runtime_class(fmt, self.RUNTIMES[fmt]["BACKEND"])
        return self._runtime_classes[fmt]

    def runtime_options(self, fmt: str) -> dict[str, Any]:
        """Options for the runtime of ``fmt``: its ``OPTIONS`` over the global ones."""
        return {
            "threads": self.THREADS,
            "graph_optimization": self.ONNX_GRAPH_OPTIMIZATION,
            **self.RUNTIMES[fmt]["OPTIONS"],
        }

    def problems(self) -> list[Problem]:
        """Everything wrong with the known keys (``manage.py check``), every path imported."""
        found: list[Problem] = []
        for key in DEFAULTS:
            try:
                getattr(self, key)
            except InvalidSetting as exc:
                found += exc.problems
        if "RUNTIMES" in self._cached:
            try:
                each(self.RUNTIMES, self.runtime_class)
            except InvalidSetting as exc:
                found += exc.problems
        return found

    def reload(self) -> None:
        cached, self._cached = self._cached, set()
        for name in cached:
            self.__dict__.pop(name, None)
        self._runtime_classes = {}


settings = MLAppSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "MLAPP":
        settings.reload()
