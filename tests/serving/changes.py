"""Stage changes made as if by another process, for the swap tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlapp.serving.registry import _swap_here
from mlapp.signals import serving_changed


@contextmanager
def elsewhere() -> Iterator[None]:
    """Stage changes made inside are not told to this process on commit: it sees them at its
    watcher's next poll, as a process that did not make them would."""
    serving_changed.disconnect(_swap_here)
    try:
        yield
    finally:
        serving_changed.connect(_swap_here)
