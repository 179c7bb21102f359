"""A model's serving config: what ``MLModel.serving`` and ``MLAPP["BATCHING"]`` may say.

One reading of it for the registry (a bad config is logged and served unbatched),
:meth:`mlapp.models.MLModel.clean` (a form error) and check ``mlapp.E004``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlapp.conf import settings


@dataclass(frozen=True)
class BatchingConfig:
    """What ``MLAPP["BATCHING"]`` and a model's ``serving["batching"]`` may set."""

    #: Group concurrent requests of this model into one call.
    enabled: bool = False
    #: Most rows in one model call; a request with more rows is cut into parts this size.
    max_batch_size: int = 32
    #: Extra wait for more requests once batches are forming (0: greedy).
    max_queue_delay_ms: float = 0.0
    #: Requests waiting beyond this are answered 503 with Retry-After (backpressure).
    max_queue_size: int = 256
    #: Queue behind a running call only when the model's calls take this long (0: always).
    min_call_ms: float = 0.2

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchingConfig:
        """Build from a settings dict; raise ``ValueError`` naming the first bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a dict, not {type(data).__name__}")
        known = cls.__dataclass_fields__
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        config = cls(**data)
        if not isinstance(config.enabled, bool):
            raise ValueError("enabled must be true or false")
        for key in ("max_batch_size", "max_queue_size"):
            value = getattr(config, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, not {value!r}")
        for key in ("max_queue_delay_ms", "min_call_ms"):
            value = getattr(config, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, not {value!r}")
        return config


#: The keys an ``MLModel.serving`` config may hold.
SERVING_KEYS = ("batching",)


def _json_type(value: object) -> str:
    """What JSON calls the type of ``value`` (forms hand over str subclasses)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (str, "a string"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def serving_batching(serving: object) -> BatchingConfig:
    """The batching config a model's ``serving`` asks for, merged over ``MLAPP["BATCHING"]``.

    Raises ``ValueError`` saying what is wrong. The one reading of a serving config: the
    registry (a bad one is logged and served unbatched), :meth:`MLModel.clean` (a form error)
    and check ``mlapp.E004`` all go through it.
    """
    if not isinstance(serving, dict):
        raise ValueError(f"must be a JSON object, not {_json_type(serving)}")
    unknown = sorted(str(key) for key in serving if key not in SERVING_KEYS)
    if unknown:
        raise ValueError(
            f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(SERVING_KEYS)}"
        )
    override = serving.get("batching", {})
    if not isinstance(override, dict):
        raise ValueError(f"batching must be a JSON object, not {_json_type(override)}")
    try:
        return BatchingConfig.from_dict({**settings.BATCHING, **override})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batching: {exc}") from None
