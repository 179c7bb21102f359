"""How each ``MLAPP`` key is validated, typed and, for dotted paths, imported.

A bad value raises :class:`InvalidSetting` carrying every :class:`Problem` found, each with
the id ``manage.py check`` reports it under (``mlapp.checks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from mlapp.conf.defaults import (
    BATCH_EXECUTORS,
    DEFAULTS,
    DEVICE_PREFIXES,
    GRAPH_OPTIMIZATION_LEVELS,
)

if TYPE_CHECKING:
    from mlapp.runtimes.base import Runtime

_T = TypeVar("_T")
_R = TypeVar("_R")

BATCHING_HINT = (
    'e.g. {"enabled": True, "max_batch_size": 32, "max_queue_delay_ms": 2.0, '
    '"max_queue_size": 256, "min_call_ms": 0.2}; any key may be left out.'
)
_RUNTIME_HINT = (
    '{"BACKEND": "package.module.RuntimeClass", "OPTIONS": {"threads": 1}}, or a dotted path alone.'
)
_LEVELS_HINT = "One of 'disable', 'basic', 'extended', 'all'."
_SOURCE_HINT = '{"queryset": "app.sources.function", "inputs": ["field", ...], "key": "pk"}'
_PERMISSION_KEYS = (
    "READ_PERMISSION_CLASSES",
    "PREDICT_PERMISSION_CLASSES",
    "MANAGE_PERMISSION_CLASSES",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a setting, as ``manage.py check`` reports it."""

    message: str
    hint: str
    id: str = "mlapp.E002"


class InvalidSetting(ImproperlyConfigured):
    """A value of ``MLAPP`` that mlapp cannot use; ``problems`` say what to fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(" ".join(f"{p.message} ({p.id}: {p.hint})" for p in problems))


class RuntimeEntry(TypedDict):
    """One entry of ``settings.RUNTIMES``."""

    BACKEND: str
    OPTIONS: dict[str, Any]


@dataclass(frozen=True)
class BatchSource:
    """One entry of ``settings.BATCH_SOURCES``, its function imported."""

    queryset: Callable[..., Any]
    inputs: list[str] | dict[str, list[str]] | str
    key: str


def _fail(label: str, message: str, hint: str, id: str = "mlapp.E002") -> NoReturn:
    raise InvalidSetting([Problem(f"{label} {message}", hint, id)])


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _optional_positive_int(value: Any) -> bool:
    return value is None or _positive_int(value)


def _rule(
    test: Callable[[Any], bool],
    message: str,
    hint: str,
    convert: Callable[[Any], Any] | None = None,
) -> Callable[[str, Any], Any]:
    """A validator of one key: ``test`` the value, then ``convert`` it."""

    def validate(key: str, value: Any) -> Any:
        if not test(value):
            _fail(f"MLAPP[{key!r}]", message, hint)
        return convert(value) if convert else value

    return validate


def each(items: Iterable[_T], validate: Callable[[_T], _R]) -> list[_R]:
    """``validate`` every item; every item's problems are raised together."""
    results, problems = [], []
    for item in items:
        try:
            results.append(validate(item))
        except InvalidSetting as exc:
            problems += exc.problems
    if problems:
        raise InvalidSetting(problems)
    return results


def _runtimes(key: str, value: Any) -> dict[str, RuntimeEntry]:
    if not isinstance(value, dict):
        _fail(f"MLAPP[{key!r}]", "must be a dict: format -> runtime.", _RUNTIME_HINT)
    entries = each(value.items(), lambda item: _runtime_entry(*item))
    return dict(zip(value, entries, strict=True))


def _runtime_entry(fmt: str, entry: Any) -> RuntimeEntry:
    label, bad = f"MLAPP['RUNTIMES'][{fmt!r}]", "mlapp.E005"
    if isinstance(entry, str):
        entry = {"BACKEND": entry}
    if not isinstance(entry, dict) or set(entry) - {"BACKEND", "OPTIONS"}:
        _fail(label, "must be a dict with BACKEND and OPTIONS.", _RUNTIME_HINT, bad)
    backend = entry.get("BACKEND", DEFAULTS["RUNTIMES"].get(fmt, {}).get("BACKEND"))
    if not isinstance(backend, str):
        _fail(label, "needs a BACKEND: a dotted path.", _RUNTIME_HINT, bad)
    options = entry.get("OPTIONS", {})
    if not isinstance(options, dict):
        _fail(label, "OPTIONS must be a dict.", _RUNTIME_HINT, bad)
    if not _optional_positive_int(options.get("threads")):
        _fail(label, "OPTIONS['threads'] must be None or a positive integer.", "e.g. 1.", bad)
    if options.get("graph_optimization", "all") not in GRAPH_OPTIMIZATION_LEVELS:
        _fail(label, "OPTIONS['graph_optimization'] is not a known level.", _LEVELS_HINT, bad)
    return {"BACKEND": backend, "OPTIONS": dict(options)}


def _batch_sources(key: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        _fail(f"MLAPP[{key!r}]", "must be a dict.", "name -> {...}.")
    specs = each(value.items(), lambda item: _batch_source(key, *item))
    return dict(zip(value, specs, strict=True))


def _batch_source(key: str, name: str, spec: Any) -> dict[str, Any]:
    if (
        not isinstance(spec, dict)
        or set(spec) - {"queryset", "inputs", "key"}
        or not isinstance(spec.get("queryset"), str)
        or not isinstance(spec.get("inputs"), (list, dict, str))
        or not isinstance(spec.get("key", "pk"), str)
    ):
        _fail(f"MLAPP[{key!r}]", f"entry {name!r} is malformed.", _SOURCE_HINT)
    return {"key": "pk", **spec}


VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "ARTIFACT_STORAGE": _rule(
        lambda v: isinstance(v, str) and bool(v),
        "must name a storage.",
        'An alias of STORAGES, e.g. "default".',
    ),
    "ARTIFACT_PREFIX": _rule(
        lambda v: isinstance(v, str), "must be a string.", 'A folder, e.g. "mlapp/artifacts".'
    ),
    "MAX_UPLOAD_SIZE": _rule(_positive_int, "must be a positive integer.", "Bytes, e.g. 2**30."),
    "DEVICE": _rule(
        lambda v: isinstance(v, str) and v.startswith(DEVICE_PREFIXES),
        "must name a device.",
        "'cpu', 'cuda' or 'cuda:N'.",
    ),
    "THREADS": _rule(
        _optional_positive_int, "must be None or a positive integer.", "e.g. 1 per worker."
    ),
    "ONNX_GRAPH_OPTIMIZATION": _rule(
        lambda v: v in GRAPH_OPTIMIZATION_LEVELS,
        "is not a known level.",
        _LEVELS_HINT,
    ),
    "LOAD_ON_STARTUP": _rule(
        lambda v: isinstance(v, bool), "must be True or False.", "Default True."
    ),
    # Its keys are BatchingConfig's to check (mlapp.checks): the serving layer reads it.
    "BATCHING": _rule(lambda v: isinstance(v, dict), "must be a dict.", BATCHING_HINT),
    # Its keys are mlapp.serving.monitorconf's to check (mlapp.checks).
    "MONITORING": _rule(
        lambda v: isinstance(v, dict), "must be a dict.", "See docs/monitoring.md for its keys."
    ),
    "BATCH_CHUNK_SIZE": _rule(_positive_int, "must be a positive integer.", "e.g. 1000."),
    "BATCH_EXECUTOR": _rule(
        lambda v: v in BATCH_EXECUTORS, "is not a known executor.", "'auto', 'celery' or 'thread'."
    ),
    "CELERY_APP": _rule(
        lambda v: v is None or isinstance(v, str),
        "must be None or a dotted import path.",
        'e.g. "project.celery.app".',
    ),
    "BATCH_MAX_RETRIES": _rule(_non_negative_int, "must be an integer >= 0.", "e.g. 3."),
    "BATCH_RETRY_DELAY": _rule(_seconds, "must be a number of seconds >= 0.", "e.g. 5.", float),
    "BATCH_SOURCES": _batch_sources,
    "STAGING_CACHE_SIZE": _rule(_non_negative_int, "must be an integer >= 0.", "e.g. 2."),
    "POLL_INTERVAL": _rule(
        lambda v: _seconds(v) and v > 0, "must be a positive number of seconds.", "e.g. 1.0.", float
    ),
    "VALIDATION_TIMEOUT": _rule(
        lambda v: _seconds(v) and v > 0, "must be a positive number of seconds.", "e.g. 60.", float
    ),
    "VALIDATION_MEMORY": _rule(
        lambda v: _positive_int(v) and v >= 256 * 1024**2,
        "must be a number of bytes of at least 256 MiB.",
        "e.g. 4 * 1024**3.",
    ),
    "DERIVE_TIMEOUT": _rule(
        lambda v: _seconds(v) and v > 0, "must be a positive number of seconds.", "e.g. 300.", float
    ),
    "DERIVE_SAMPLES": _rule(
        lambda v: isinstance(v, dict) and all(isinstance(p, str) for p in v.values()),
        "must be a dict of model name -> path of a JSON file.",
        '{"digits": "/srv/samples/digits.json"}.',
    ),
    "BUNDLE_SIGNING_KEY": _rule(
        lambda v: v is None or (isinstance(v, (str, bytes)) and len(v) >= 16),
        "must be None or a key of at least 16 characters.",
        "e.g. os.environ['MLAPP_BUNDLE_KEY'].",
    ),
    "V2_MAX_REQUEST_SIZE": _rule(
        _optional_positive_int,
        "must be None or a positive integer.",
        "Bytes, e.g. 64 * 2**20; None uses DATA_UPLOAD_MAX_MEMORY_SIZE.",
    ),
    "V2_SKIP_MIDDLEWARE": _rule(
        lambda v: isinstance(v, bool), "must be True or False.", "Default False."
    ),
    "GRPC_PORT": _rule(
        lambda v: v is None or (_non_negative_int(v) and v <= 65535),
        "must be None or a port number (0..65535).",
        "e.g. 8001 (Triton's); None serves no gRPC.",
    ),
    "GRPC_HOST": _rule(
        lambda v: isinstance(v, str) and bool(v),
        "must be a host name or address.",
        "e.g. '0.0.0.0'.",
    ),
    "GRPC_MAX_MESSAGE_SIZE": _rule(
        _optional_positive_int,
        "must be None or a positive integer.",
        "Bytes, e.g. 64 * 2**20; None uses the V2 REST limit.",
    ),
    "GRPC_THREADS": _rule(
        _positive_int, "must be a positive integer.", "e.g. 8 (the default) or 2."
    ),
    **{
        key: _rule(
            lambda v: isinstance(v, (list, tuple)) and all(isinstance(p, str) for p in v),
            "must hold dotted import paths.",
            'A list, e.g. ["rest_framework.permissions.IsAuthenticated"].',
            tuple,
        )
        for key in _PERMISSION_KEYS
    },
    "RUNTIMES": _runtimes,
}


# -- dotted paths, imported once validated ----------------------------------------------


def _import(label: str, path: str, hint: str, id: str = "mlapp.E003") -> Any:
    try:
        return import_string(path)
    except Exception as exc:  # ImportError, or the module itself is broken
        _fail(label, f"{path!r} cannot be imported: {exc}", hint, id)


def _permissions(key: str, paths: tuple[str, ...]) -> tuple[Any, ...]:
    def permission(path: str) -> Any:
        label = f"MLAPP[{key!r}]"
        found = _import(label, path, "Use a dotted path to a class that exists.")
        if not (hasattr(found, "has_permission") or _is_operand_holder(found)):
            hint = "A rest_framework.permissions.BasePermission subclass."
            _fail(label, f"entry {path!r} is not a permission class.", hint, "mlapp.E006")
        return found

    return tuple(each(paths, permission))


def _is_operand_holder(value: Any) -> bool:
    """``IsAuthenticated | IsAdminUser``: DRF composes permissions into an OperandHolder."""
    from rest_framework.permissions import OperandHolder

    return isinstance(value, OperandHolder)


def _celery_app(key: str, path: str | None) -> Any:
    hint = "Use a dotted path to the Celery app, e.g. project.celery.app."
    return None if path is None else _import(f"MLAPP[{key!r}]", path, hint)


def _sources(key: str, specs: dict[str, dict[str, Any]]) -> dict[str, BatchSource]:
    def source(name: str) -> BatchSource:
        label, path = f"MLAPP[{key!r}][{name!r}]", specs[name]["queryset"]
        function = _import(label, path, "Use a dotted path to a function that exists.")
        if not callable(function):
            hint = "A function taking the job's params and returning a QuerySet."
            _fail(label, f"{path!r} is not callable.", hint)
        return BatchSource(function, specs[name]["inputs"], specs[name]["key"])

    return dict(zip(specs, each(specs, source), strict=True))


def runtime_class(fmt: str, path: str) -> type[Runtime]:
    label = f"MLAPP['RUNTIMES'][{fmt!r}] BACKEND"
    hint = "Install the matching extra, e.g. pip install 'mlapp[onnx]'."
    found = _import(label, path, hint, "mlapp.W001")
    if not (isinstance(found, type) and callable(getattr(found, "load", None))):
        hint = "A subclass of mlapp.runtimes.Runtime."
        _fail(label, f"{path!r} is not a runtime class.", hint, "mlapp.E006")
    return found


#: Keys whose validated value holds dotted paths: how each is imported.
RESOLVERS: dict[str, Callable[[str, Any], Any]] = {
    "CELERY_APP": _celery_app,
    "BATCH_SOURCES": _sources,
    **dict.fromkeys(_PERMISSION_KEYS, _permissions),
}
