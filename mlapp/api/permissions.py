"""Permission classes for mlapp's views, read from ``MLAPP`` settings.

Three kinds of access, each with its own setting (DRF permission classes as dotted paths):

- ``READ``: models, versions, the schema (``READ_PERMISSION_CLASSES``, open by default);
- ``PREDICT``: running a model, and reading a stored batch prediction by key
  (``PREDICT_PERMISSION_CLASSES``, open by default);
- ``MANAGE``: uploads, stage changes, batch jobs, artifact downloads
  (``MANAGE_PERMISSION_CLASSES``, staff by default).

Settings are read on every request (cached by ``mlapp.conf``), so ``override_settings``
takes effect at once.
"""

from __future__ import annotations

from rest_framework.permissions import AllowAny

from mlapp.conf import settings

READ = "READ"
PREDICT = "PREDICT"
MANAGE = "MANAGE"
KINDS = (READ, PREDICT, MANAGE)


def permission_classes(kind: str) -> tuple[type, ...]:
    """``kind`` is ``"READ"``, ``"PREDICT"`` or ``"MANAGE"``; imported by ``mlapp.conf``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown kind of access {kind!r}; expected one of {KINDS}.")
    return getattr(settings, f"{kind}_PERMISSION_CLASSES")


def open_to_anyone(kind: str) -> bool:
    """True when ``kind``'s classes are all ``AllowAny`` (the default for READ and PREDICT):
    the hot paths then look up no session or token."""
    return all(cls is AllowAny for cls in permission_classes(kind))
