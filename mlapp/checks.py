"""System checks for the MLAPP settings (``manage.py check``) and, on deploy, artifacts."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from mlapp.conf import DEFAULTS, IMPORT_STRINGS, settings

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
    if not isinstance(s.LOAD_ON_STARTUP, bool):
        errors.append(_error("LOAD_ON_STARTUP", "must be True or False.", "Default True."))
    batching = s.BATCHING
    if not isinstance(batching, dict) or set(batching) - set(DEFAULTS["BATCHING"]):
        errors.append(
            _error(
                "BATCHING", "has unknown keys.", f"Known keys: {', '.join(DEFAULTS['BATCHING'])}."
            )
        )
    else:
        if not _positive_int(batching.get("max_batch_size")):
            errors.append(
                _error("BATCHING", "max_batch_size must be a positive integer.", "e.g. 32.")
            )
        delay = batching.get("max_queue_delay_ms")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            errors.append(
                _error("BATCHING", "max_queue_delay_ms must be a number >= 0.", "e.g. 2.0.")
            )
    return errors


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


@register(Tags.database, deploy=True)
def check_production_artifacts(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list:
    """Deploy check: every production artifact exists in storage and matches its sha256."""
    if not databases:
        return []
    from mlapp.models import ModelVersion
    from mlapp.registry import local_artifact
    from mlapp.validation import file_sha256

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
