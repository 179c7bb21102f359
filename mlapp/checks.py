"""System checks for the MLAPP settings (``manage.py check``) and, on deploy, artifacts."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from mlapp.conf import DEFAULTS, IMPORT_STRINGS, settings
from mlapp.serving.config import BatchingConfig

_DEVICE_PREFIXES = ("cpu", "cuda", "mps")


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    errors: list = []
    raw = getattr(django_settings, "MLAPP", None)
    if raw is not None and not isinstance(raw, dict):
        return [
            Error(
                f"MLAPP must be a dict, not {type(raw).__name__}.",
                hint='e.g. MLAPP = {"THREADS": 1}',
                id="mlapp.E001",
            )
        ]
    user = settings.user_settings
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            Error(
                f"Unknown MLAPP setting {key!r}.",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="mlapp.E001",
            )
        )
    errors.extend(_check_values())
    errors.extend(_check_imports())
    errors.extend(_check_batch())
    return errors


def _error(key: str, message: str, hint: str) -> Error:
    return Error(f"MLAPP[{key!r}] {message}", hint=hint, id="mlapp.E002")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_values() -> list:
    s = settings
    errors = []
    if not _positive_int(s.MAX_UPLOAD_SIZE):
        errors.append(
            _error("MAX_UPLOAD_SIZE", "must be a positive integer.", "Bytes, e.g. 2**30.")
        )
    if s.THREADS is not None and not _positive_int(s.THREADS):
        errors.append(
            _error("THREADS", "must be None or a positive integer.", "e.g. 1 per worker.")
        )
    if not isinstance(s.DEVICE, str) or not s.DEVICE.startswith(_DEVICE_PREFIXES):
        errors.append(_error("DEVICE", "must name a device.", "'cpu', 'cuda' or 'cuda:N'."))
    if s.ONNX_GRAPH_OPTIMIZATION not in {"disable", "basic", "extended", "all"}:
        errors.append(
            _error(
                "ONNX_GRAPH_OPTIMIZATION",
                "is not a known level.",
                "One of 'disable', 'basic', 'extended', 'all'.",
            )
        )
    if not _positive_int(s.BATCH_CHUNK_SIZE):
        errors.append(_error("BATCH_CHUNK_SIZE", "must be a positive integer.", "e.g. 1000."))
    if not _non_negative_int(s.STAGING_CACHE_SIZE):
        errors.append(_error("STAGING_CACHE_SIZE", "must be an integer >= 0.", "e.g. 2."))
    if not _number(s.POLL_INTERVAL) or s.POLL_INTERVAL <= 0:
        errors.append(_error("POLL_INTERVAL", "must be a positive number of seconds.", "e.g. 1.0."))
    if s.V2_MAX_REQUEST_SIZE is not None and not _positive_int(s.V2_MAX_REQUEST_SIZE):
        errors.append(
            _error(
                "V2_MAX_REQUEST_SIZE",
                "must be None or a positive integer.",
                "Bytes, e.g. 64 * 2**20; None uses DATA_UPLOAD_MAX_MEMORY_SIZE.",
            )
        )
    if not isinstance(s.LOAD_ON_STARTUP, bool):
        errors.append(_error("LOAD_ON_STARTUP", "must be True or False.", "Default True."))
    if not isinstance(s.V2_SKIP_MIDDLEWARE, bool):
        errors.append(_error("V2_SKIP_MIDDLEWARE", "must be True or False.", "Default False."))
    try:
        BatchingConfig.from_dict(s.BATCHING)
    except (TypeError, ValueError) as exc:
        errors.append(_error("BATCHING", f"{exc}.", _BATCHING_HINT))
    return errors


_BATCHING_HINT = (
    'e.g. {"enabled": True, "max_batch_size": 32, "max_queue_delay_ms": 2.0, '
    '"max_queue_size": 256, "min_call_ms": 0.2}; any key may be left out.'
)


def _check_imports() -> list:
    errors = []
    for key in IMPORT_STRINGS:
        value = getattr(settings, key)
        paths = value.values() if isinstance(value, dict) else value
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            errors.append(_error(key, "must hold dotted import paths.", "See the README."))
            continue
        for path in paths:
            try:
                import_string(path)
            except Exception as exc:  # ImportError, or the module itself is broken
                if key == "RUNTIMES":
                    # A missing optional back end is a warning: models of other formats serve.
                    errors.append(
                        Warning(
                            f"MLAPP['RUNTIMES'] entry {path!r} cannot be imported: {exc}",
                            hint="Install the matching extra, e.g. pip install 'mlapp[onnx]'.",
                            id="mlapp.W001",
                        )
                    )
                else:
                    errors.append(
                        Error(
                            f"MLAPP[{key!r}] entry {path!r} cannot be imported: {exc}",
                            hint="Use a dotted path to a class that exists.",
                            id="mlapp.E003",
                        )
                    )
    return errors


def _check_batch() -> list:
    """Batch job settings: executor, retries, the Celery app and registered sources."""
    s = settings
    errors = []
    if s.BATCH_EXECUTOR not in {"auto", "celery", "thread"}:
        errors.append(
            _error("BATCH_EXECUTOR", "is not a known executor.", "'auto', 'celery' or 'thread'.")
        )
    if not _non_negative_int(s.BATCH_MAX_RETRIES):
        errors.append(_error("BATCH_MAX_RETRIES", "must be an integer >= 0.", "e.g. 3."))
    if not _number(s.BATCH_RETRY_DELAY) or s.BATCH_RETRY_DELAY < 0:
        errors.append(_error("BATCH_RETRY_DELAY", "must be a number of seconds >= 0.", "e.g. 5."))
    # (what the message names, dotted path, must be callable)
    paths = [("MLAPP['CELERY_APP']", s.CELERY_APP, False)] if s.CELERY_APP is not None else []
    sources = s.BATCH_SOURCES
    if not isinstance(sources, dict):
        return [*errors, _error("BATCH_SOURCES", "must be a dict.", "name -> {...}.")]
    for name, spec in sources.items():
        hint = '{"queryset": "app.sources.function", "inputs": ["field", ...], "key": "pk"}'
        if (
            not isinstance(spec, dict)
            or set(spec) - {"queryset", "inputs", "key"}
            or not isinstance(spec.get("queryset"), str)
            or not isinstance(spec.get("inputs"), (list, dict, str))
            or not isinstance(spec.get("key", "pk"), str)
        ):
            errors.append(_error("BATCH_SOURCES", f"entry {name!r} is malformed.", hint))
            continue
        paths.append((f"MLAPP['BATCH_SOURCES'][{name!r}]", spec["queryset"], True))
    for label, path, must_call in paths:
        if not isinstance(path, str):
            errors.append(Error(f"{label} must be a dotted import path.", id="mlapp.E002"))
            continue
        try:
            target = import_string(path)
        except Exception as exc:  # ImportError, or the module itself is broken
            errors.append(
                Error(
                    f"{label} {path!r} cannot be imported: {exc}",
                    hint="Use a dotted path to an object that exists.",
                    id="mlapp.E003",
                )
            )
            continue
        if must_call and not callable(target):
            errors.append(
                Error(
                    f"{label} {path!r} is not callable.",
                    hint="A function taking the job's params and returning a QuerySet.",
                    id="mlapp.E002",
                )
            )
    return errors


@register(Tags.database)
def check_serving_configs(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    """Each model's ``serving["batching"]``, merged over ``MLAPP["BATCHING"]``, is valid.

    A database check: ``manage.py check --database default`` and ``migrate`` run it. A model
    with a bad config is served unbatched (and logged) until it is fixed.
    """
    if not databases:
        return []
    from django.db import DatabaseError

    from mlapp.models import MLModel
    from mlapp.serving.config import serving_batching

    try:
        rows = list(MLModel.objects.values_list("name", "serving"))
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    errors = []
    for name, serving in rows:
        try:
            serving_batching(serving)
        except ValueError as exc:
            errors.append(
                Error(
                    f"Model {name!r}, serving config: {exc}.",
                    hint=f'Fix MLModel.serving["batching"] in the admin; {_BATCHING_HINT}',
                    obj=name,
                    id="mlapp.E004",
                )
            )
    return errors


@register(Tags.database, deploy=True)
def check_production_artifacts(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list:
    """Deploy check: every production artifact exists in storage and matches its sha256."""
    if not databases:
        return []
    from mlapp.models import ModelVersion
    from mlapp.serving.loading import local_artifact
    from mlapp.versions.inspection import file_sha256

    errors = []
    for version in ModelVersion.objects.filter(stage="production").select_related("model"):
        try:
            with local_artifact(version) as path:
                digest = file_sha256(path)
        except OSError as exc:
            errors.append(
                Error(
                    f"The artifact of {version} cannot be read: {exc}",
                    hint="Restore the file or promote another version.",
                    id="mlapp.E010",
                )
            )
            continue
        if digest != version.sha256:
            errors.append(
                Error(
                    f"The artifact of {version} does not match its sha256.",
                    hint="The file was changed after upload; upload it again.",
                    id="mlapp.E011",
                )
            )
    return errors
