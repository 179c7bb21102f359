"""What ``MLAPP["MONITORING"]`` and a model's ``MLModel.monitoring`` may say.

One reading of each, for the prediction log's writer (:mod:`mlapp.serving.predlog`), the
registry (the sampling rate a loaded model carries), the drift job, :meth:`MLModel.clean`
(a form error) and ``manage.py check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlapp.conf import settings
from mlapp.conf.defaults import DEFAULTS

#: The drift measures a threshold can be set for.
THRESHOLD_KEYS = ("psi", "ks", "classes", "length", "oov")
#: The keys an ``MLModel.monitoring`` config may hold.
MODEL_KEYS = ("sample_rate", "thresholds", "reference_rows")
#: The keys of ``MLAPP["MONITORING"]``.
SETTING_KEYS = (
    "BUFFER_SIZE",
    "FLUSH_INTERVAL",
    "FLUSH_ROWS",
    "MAX_PAYLOAD_BYTES",
    "REDACT",
    "THRESHOLDS",
    "REFERENCE_ROWS",
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _unknown(data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ValueError(f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")


def _thresholds(data: Any, base: Mapping[str, float] | None = None) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise ValueError("thresholds must be a JSON object")
    _unknown(data, THRESHOLD_KEYS)
    merged = {**(base or {}), **data}
    for key, value in merged.items():
        if not _number(value) or value <= 0:
            raise ValueError(f"thresholds: {key} must be a number > 0, not {value!r}")
    return {key: float(value) for key, value in merged.items()}


@dataclass(frozen=True)
class LogSettings:
    """``MLAPP["MONITORING"]``, checked."""

    buffer_size: int = 10000
    flush_interval: float = 1.0
    flush_rows: int = 1000
    max_payload_bytes: int = 16384
    #: Dotted path of the host's redaction function, or None.
    redact: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    reference_rows: int = 500

    @classmethod
    def from_setting(cls, data: Mapping[str, Any]) -> LogSettings:
        """Build from the setting; raise ``ValueError`` naming the first bad key."""
        _unknown(data, SETTING_KEYS)
        for key in ("BUFFER_SIZE", "FLUSH_ROWS", "MAX_PAYLOAD_BYTES", "REFERENCE_ROWS"):
            if not _count(data[key]):
                raise ValueError(f"{key} must be an integer >= 1, not {data[key]!r}")
        if not _number(data["FLUSH_INTERVAL"]) or data["FLUSH_INTERVAL"] <= 0:
            raise ValueError(f"FLUSH_INTERVAL must be seconds > 0, not {data['FLUSH_INTERVAL']!r}")
        if data["REDACT"] is not None and not isinstance(data["REDACT"], str):
            raise ValueError("REDACT must be None or a dotted import path")
        return cls(
            buffer_size=data["BUFFER_SIZE"],
            flush_interval=float(data["FLUSH_INTERVAL"]),
            flush_rows=data["FLUSH_ROWS"],
            max_payload_bytes=data["MAX_PAYLOAD_BYTES"],
            redact=data["REDACT"],
            thresholds=_thresholds(data["THRESHOLDS"], DEFAULTS["MONITORING"]["THRESHOLDS"]),
            reference_rows=data["REFERENCE_ROWS"],
        )


def log_settings() -> LogSettings:
    """``MLAPP["MONITORING"]`` as read now (raises ``ValueError`` when it is wrong)."""
    return LogSettings.from_setting(settings.MONITORING)


@dataclass(frozen=True)
class MonitoringConfig:
    """A model's monitoring config over the defaults of ``MLAPP["MONITORING"]``."""

    #: Share of requests logged, 0 (off) to 1 (all).
    sample_rate: float = 0.0
    thresholds: dict[str, float] = field(default_factory=dict)
    #: Logged rows a reference taken from the log uses (the first N after it starts).
    reference_rows: int = 500


def model_monitoring(monitoring: object) -> MonitoringConfig:
    """What a model's ``monitoring`` JSON asks for, over ``MLAPP["MONITORING"]``.

    Raises ``ValueError`` saying what is wrong.
    """
    if not isinstance(monitoring, dict):
        raise ValueError("must be a JSON object")
    _unknown(monitoring, MODEL_KEYS)
    defaults = log_settings()
    rate = monitoring.get("sample_rate", 0.0)
    if not _number(rate) or not 0 <= rate <= 1:
        raise ValueError(f"sample_rate must be a number from 0 to 1, not {rate!r}")
    rows = monitoring.get("reference_rows", defaults.reference_rows)
    if not _count(rows):
        raise ValueError(f"reference_rows must be an integer >= 1, not {rows!r}")
    return MonitoringConfig(
        sample_rate=float(rate),
        thresholds=_thresholds(monitoring.get("thresholds", {}), defaults.thresholds),
        reference_rows=rows,
    )


def sample_rate(monitoring: object) -> float:
    """The sampling rate of a model's prediction log; 0 when its config is unreadable."""
    try:
        return model_monitoring(monitoring).sample_rate
    except ValueError:
        return 0.0
