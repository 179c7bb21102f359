"""mlapp's settings: one ``MLAPP`` dict in the host project's settings.

Read them through ``mlapp.conf.settings``::

    from mlapp.conf import settings
    settings.MAX_UPLOAD_SIZE

Unknown keys and bad values are reported by ``manage.py check`` (``mlapp.checks``), not
by a crash at the first request. Values are cached; ``override_settings(MLAPP=...)``
reloads them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from mlapp.runtimes import DEFAULT_RUNTIMES

DEFAULTS: dict[str, Any] = {
    # Alias in Django's STORAGES that holds uploaded artifacts (local media by default;
    # any django-storages back end works).
    "ARTIFACT_STORAGE": "default",
    # Folder (inside that storage) artifacts are written to: <prefix>/<model>/<version>/.
    "ARTIFACT_PREFIX": "mlapp/artifacts",
    # Largest artifact accepted on upload, in bytes.
    "MAX_UPLOAD_SIZE": 1024 * 1024 * 1024,
    # Device models are loaded onto: "cpu", "cuda", "cuda:1" ...
    "DEVICE": "cpu",
    # Intra-op threads of torch / ONNX Runtime per process; None leaves the library default.
    "THREADS": None,
    # ONNX Runtime graph optimisation: "disable", "basic", "extended" or "all".
    "ONNX_GRAPH_OPTIMIZATION": "all",
    # Load every production version when the web process starts (mlapp.startup).
    "LOAD_ON_STARTUP": True,
    # Micro-batching defaults; a model overrides any of them in MLModel.serving["batching"].
    # enabled: group concurrent requests into one model call (models whose signature has no
    # variable first dimension are never batched); max_batch_size: most rows in one batched
    # call (a bigger request is cut into parts); max_queue_delay_ms: extra wait for more
    # requests once batches are forming (0: greedy, a call takes what queued while the
    # previous one ran; an idle model always answers at once); max_queue_size: requests
    # waiting beyond this get 503 with Retry-After; min_call_ms: requests queue behind a
    # running call only when the model's calls take at least this long (sampled), else they
    # run side by side, whole, as with batching off (0: always queue).
    "BATCHING": {
        "enabled": False,
        "max_batch_size": 32,
        "max_queue_delay_ms": 0.0,
        "max_queue_size": 256,
        "min_call_ms": 0.2,
    },
    # Rows per chunk (one Celery task) of a batch job.
    "BATCH_CHUNK_SIZE": 1000,
    # Where batch jobs run: "celery" (one task per chunk), "thread" (a background thread of
    # the process that submits them), or "auto": Celery when its app has a broker URL.
    "BATCH_EXECUTOR": "auto",
    # Dotted path to the project's Celery app (e.g. "project.celery.app"); None: Celery's
    # current app.
    "CELERY_APP": None,
    # Times a failed chunk runs again before its job fails, and seconds between the tries.
    "BATCH_MAX_RETRIES": 3,
    "BATCH_RETRY_DELAY": 5.0,
    # Registered batch sources: name -> {"queryset": dotted path of a function taking the
    # job's params as keyword arguments and returning a QuerySet, "inputs": [fields] (one
    # input) or {input: [fields]}, "key": a unique field (default "pk")}.
    "BATCH_SOURCES": {},
    # Non-production versions kept loaded for pinned-version requests (LRU).
    "STAGING_CACHE_SIZE": 2,
    # Seconds between checks of the change marker that signals a promotion elsewhere.
    "POLL_INTERVAL": 1.0,
    # Seconds an uploaded artifact may take to load and run a sample in its validation process.
    "VALIDATION_TIMEOUT": 60,
    # Largest Open Inference Protocol V2 request body, in bytes, before and after
    # decompression (413 beyond); None: Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
    "V2_MAX_REQUEST_SIZE": None,
    # Send V2 inference requests from mlapp.wsgi straight to their view, skipping URL
    # resolving and MIDDLEWARE (mlapp.api.v2.fastpath), while predicting is open to anyone.
    "V2_SKIP_MIDDLEWARE": False,
    # DRF permission classes (dotted paths) per kind of access.
    "READ_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "MANAGE_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Format key -> runtime class (dotted path). Add a key to serve a new format.
    "RUNTIMES": dict(DEFAULT_RUNTIMES),
}

#: Keys whose value is a dotted path (or a list/dict of them), checked by mlapp.checks.
IMPORT_STRINGS = (
    "READ_PERMISSION_CLASSES",
    "PREDICT_PERMISSION_CLASSES",
    "MANAGE_PERMISSION_CLASSES",
    "RUNTIMES",
)


class MLAppSettings:
    """Attribute access to ``settings.MLAPP`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, "MLAPP", None) or {}
        # A non-dict MLAPP is reported by mlapp.E001; read it as empty meanwhile.
        return dict(value) if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown mlapp setting: {name!r}")
        if name not in self._cache:
            value = self.user_settings.get(name, DEFAULTS[name])
            if isinstance(DEFAULTS[name], dict) and isinstance(value, dict):
                value = {**DEFAULTS[name], **value}
            self._cache[name] = value
        return self._cache[name]

    def runtime_options(self) -> dict[str, Any]:
        """Options handed to every runtime's constructor."""
        return {"threads": self.THREADS, "graph_optimization": self.ONNX_GRAPH_OPTIMIZATION}

    def reload(self) -> None:
        self._cache.clear()


settings = MLAppSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "MLAPP":
        settings.reload()
