"""Hot swap across processes: a change marker per model, polled from a background thread.

Every change to what a model serves (a promotion, a roll back, a new handler, a new serving
config, a deletion) moves that model's counter in :class:`mlapp.models.ChangeMarker`, in the
same transaction as the change itself, whatever path made it (:mod:`mlapp.signals`). Each
process that serves models runs one :class:`ChangeWatcher` thread, started lazily on the first
lookup after the fork (keyed by PID), which reads those few rows about once a second
(``MLAPP["POLL_INTERVAL"]``) and reloads a model whose counter moved: the new version is
loaded and warmed while the old one keeps answering, then swapped in. Requests never query
the database for this; the pattern is django-celery-beat's ``PeriodicTasks`` row.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.db import connections

from mlapp.conf import settings
from mlapp.models import ChangeMarker
from mlapp.serving import metrics

logger = logging.getLogger("mlapp.serving.watcher")

#: Seconds the first lookup of a process waits for the watcher's first poll.
CATCH_UP_TIMEOUT = 10.0


class ChangeWatcher:
    """Polls the change markers and calls back for every model whose marker moved.

    ``concerns(name)`` says whether this process cares about a model; ``changed(name)``
    reloads it (the registry's). The watcher knows nothing else of the registry.
    """

    def __init__(self, concerns: Callable[[str], bool], changed: Callable[[str], object]) -> None:
        self._concerns = concerns
        self._changed = changed
        #: The marker of every model as this process last saw it.
        self.seen: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning = 0.0

    # -- state shared with the registry ------------------------------------------------

    def remember(self, model_name: str | None = None) -> None:
        """Record the current markers (of every model, or of one) as seen.

        Called before loading, so a change made during the load is seen as a change.
        """
        markers = ChangeMarker.objects.counters(model_name)
        if model_name is None:
            self.seen = markers
        else:
            self.seen[model_name] = markers.get(model_name, 0)

    # -- polling ------------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Check the markers once; reload every served model whose marker moved.

        Returns the names of the models that were reloaded (or found gone).
        """
        markers = ChangeMarker.objects.counters()
        reloaded = []
        for name, counter in markers.items():
            if self.seen.get(name) == counter:
                continue
            if self._concerns(name):
                self._changed(name)
                reloaded.append(name)
            # A load that failed is recorded by the registry (the model is not ready, the
            # old version keeps answering): it is not retried every second. A database
            # error raises before this line, so the next poll tries again.
            self.seen[name] = counter
        return reloaded

    def poll_safely(self) -> None:
        """:meth:`poll`, logging (at most once a minute) instead of raising."""
        try:
            self.poll()
        except Exception:
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                logger.warning("mlapp: checking for promoted versions failed", exc_info=True)
            # Drop this thread's connection if it broke; the next poll reconnects.
            for connection in connections.all(initialized_only=True):
                if connection.connection is not None and not connection.is_usable():
                    connection.close()

    # -- the thread ---------------------------------------------------------------------

    def start(self, *, catch_up: bool = False) -> None:
        """Start the polling thread of this process.

        With ``catch_up``, the thread polls at once and this call waits (a few seconds at
        most) for that first poll: the first request of a freshly forked worker then does
        not answer with a version replaced since the parent loaded it. The database is only
        ever touched from the thread, on its own connection.
        """
        interval = settings.POLL_INTERVAL
        self._stop = threading.Event()
        caught_up = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._stop, interval, catch_up, caught_up),
            name=f"mlapp-change-watcher-{os.getpid()}",
            daemon=True,
        )
        self._thread.start()
        if catch_up:
            caught_up.wait(CATCH_UP_TIMEOUT)

    def stop(self) -> None:
        """Stop the polling thread (tests, and a process that shuts down)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(
        self,
        stop: threading.Event,
        interval: float,
        catch_up: bool,
        caught_up: threading.Event,
    ) -> None:
        try:
            if catch_up:
                self.poll_safely()
            caught_up.set()
            while not stop.wait(interval):
                self.poll_safely()
                # Calls counted by the batchers reach the shared metrics files within a poll.
                metrics.fold_batch_counts()
        finally:
            caught_up.set()
            # This thread's own connection (Django keeps one per thread).
            connections.close_all()
