"""Permission classes for mlapp's views, read from ``MLAPP`` settings."""

from __future__ import annotations

from django.utils.module_loading import import_string

from mlapp.conf import settings


def permission_classes(kind: str) -> list[type]:
    """``kind`` is ``"READ"``, ``"PREDICT"`` or ``"MANAGE"``."""
    return [import_string(path) for path in getattr(settings, f"{kind}_PERMISSION_CLASSES")]
