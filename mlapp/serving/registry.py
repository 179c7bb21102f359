"""The models loaded in this process: production versions by name, plus pinned others.

The web process loads every production version at startup (``mlapp.startup``); other
processes (Celery workers, ``run_batch``, the shell) load a model lazily, on first use,
through the same registry. Lookups on the hot path are one dict access: no database
query once a model is loaded. How a stored version is loaded is :mod:`mlapp.serving.loading`.

Hot swap: a new production version is loaded and warmed while the old one keeps answering,
then swapped in under the lock. The old one is not closed under a running request: the
registry drops its reference and the last request holding it releases it. Changes made in
other processes arrive through the change watcher (:mod:`mlapp.serving.watcher`, a thread
started lazily in each process, after the fork); changes made in this one through
:data:`mlapp.signals.serving_changed`.

A failed load is recorded as a :class:`LoadFailure` (the version and why). What it means for
readiness depends on what still answers:

- nothing (the first load of a model, at startup or later): the model is not ready, and the
  process is not ready (:meth:`Registry.is_ready`) — it cannot answer for that model;
- the previous version (a promotion or a roll forward whose version failed to load): that
  version keeps answering and the model stays ready, the failure beside it. A readiness that
  turned 503 here would take every replica out of a load balancer's rotation at once (they
  all fail on the same artifact) while each could answer with the version it has: an outage
  in place of a stale version. The failure is logged, ``mlapp_model_ready`` is 0 for the
  failed version, and the model's readiness and metadata name the version that answers and
  why the new one does not (:class:`mlapp.serving.service.InferenceService`). The next
  change of the model (a roll back, another promotion) tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from django.dispatch import receiver

from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, ModelNotFound, ModelNotReady
from mlapp.models import MLModel, ModelVersion
from mlapp.serving import metrics
from mlapp.serving.config import BatchingConfig
from mlapp.serving.loading import LoadedModel, attach_batcher, batching_config, load_version, retire
from mlapp.serving.monitorconf import sample_rate
from mlapp.serving.watcher import ChangeWatcher
from mlapp.signals import serving_changed

logger = logging.getLogger("mlapp.serving")


@dataclasses.dataclass(frozen=True)
class LoadFailure:
    """The production version of a model that failed to load in this process, and why."""

    version: int
    message: str


class Registry:
    """Loaded models of this process: production versions by name, plus an LRU of others."""

    def __init__(self) -> None:
        self._production: dict[str, LoadedModel] = {}
        #: Production versions that failed to load, by model name (see the module's doc).
        self._errors: dict[str, LoadFailure] = {}
        self._pinned: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        # One lock per model name, held while that model loads (never while holding _lock):
        # concurrent reloads of one model load it once.
        self._load_locks: dict[str, threading.Lock] = {}
        self.startup_done = False
        self.watcher = ChangeWatcher(self.serves, self._changed)
        #: The PID whose change watcher is started (a forked child starts its own).
        self._watch_pid: int | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # A lock held by a thread of the parent at fork time would stay held forever here.
        self._lock = threading.RLock()
        self._load_locks = {}
        self._watch_pid = None

    def _load_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._load_locks.setdefault(name, threading.Lock())

    # -- loading ---------------------------------------------------------------------

    def load_production(self) -> dict[str, str]:
        """Load the production version of every model; return ``{name: error}`` of failures.

        One model that fails is logged and marked not ready; the others are served.
        """
        # Markers first: a promotion committed during the loading is then seen as a change.
        self.watcher.remember()
        for version in ModelVersion.objects.production().select_related("model"):
            self._load_production_version(version)
        self.startup_done = True
        return {name: failure.message for name, failure in self._errors.items()}

    def _load_production_version(
        self, version: ModelVersion, *, warm: bool = False
    ) -> LoadedModel | None:
        name = version.model.name
        started = time.perf_counter()
        try:
            loaded = load_version(version)
        except Exception as exc:
            message = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._errors[name] = LoadFailure(version.version, message)
                answering = self._production.get(name)
            logger.error(
                "mlapp: %s v%s failed to load: %s%s",
                name,
                version.version,
                message,
                f" (v{answering.version} keeps answering)" if answering is not None else "",
            )
            if answering is None or answering.version != version.version:
                metrics.set_ready(name, version.version, False)
            return None
        if warm:
            loaded.warm_up()
        with self._lock:
            old = self._production.get(name)
            self._production[name] = loaded
            self._errors.pop(name, None)
        metrics.set_ready(name, loaded.version, True)
        if old is not None and old is not loaded:
            if old.version != loaded.version:
                metrics.set_ready(name, old.version, False)
            retire(old)
        logger.info(
            "mlapp: loaded %s v%s (%s) in %.2fs%s",
            name,
            version.version,
            version.format,
            time.perf_counter() - started,
            f", replacing v{old.version}" if old is not None and old is not loaded else "",
        )
        return loaded

    def reload(self, name: str, *, warm: bool = False) -> LoadedModel | None:
        """Load the current production version of ``name`` and swap it in atomically.

        The version that answered so far keeps answering until the new one is loaded (and,
        with ``warm``, has run a sample batch). A model with no production version left is
        dropped. Returns the loaded model, or None.
        """
        with self._load_lock(name):
            return self._reload_locked(name, warm=warm)

    def _reload_locked(self, name: str, *, warm: bool = False) -> LoadedModel | None:
        version = ModelVersion.objects.of(name).production().first()
        if version is None:
            with self._lock:
                dropped = self._production.pop(name, None)
                self._errors.pop(name, None)
            if dropped is not None:
                metrics.set_ready(name, dropped.version, False)
                retire(dropped)
            return None
        current = self._production.get(name)
        if (
            current is not None
            and current.version_id == version.pk
            and current.handler_path == version.model.handler
        ):
            # Back to what is answering (say, a roll back after a version failed to load).
            with self._lock:
                self._errors.pop(name, None)
            current.log_rate = sample_rate(version.model.monitoring)
            config = batching_config(version.model)
            if config != current.batching:
                return self._swap_batcher(current, config)
            return current
        return self._load_production_version(version, warm=warm)

    def _swap_batcher(self, current: LoadedModel, config: BatchingConfig | None) -> LoadedModel:
        """Only the serving config changed: same runtime, a new batcher (or none)."""
        replacement = attach_batcher(dataclasses.replace(current, batcher=None), config)
        with self._lock:
            if self._production.get(current.name) is current:
                self._production[current.name] = replacement
        retire(current)
        logger.info(
            "mlapp: %s v%s batching is now %s",
            current.name,
            current.version,
            "on" if replacement.batcher is not None else "off",
        )
        return replacement

    def _changed(self, name: str) -> None:
        self.reload(name, warm=True)

    def serves(self, name: str) -> bool:
        """Whether a change to ``name`` concerns this process."""
        return self.startup_done or name in self._production or name in self._errors

    # -- change watching ----------------------------------------------------------------

    def _watch(self) -> None:
        """Start this process's change watcher, once per PID, once it serves something."""
        pid = os.getpid()
        with self._lock:
            if self._watch_pid == pid or not (self.startup_done or self._production):
                return
            self._watch_pid = pid
        # A serving process (maybe a worker forked from a preloading parent) catches up at
        # once, so an idle worker does not answer with a version replaced since it started.
        self.watcher.start(catch_up=self.startup_done)

    # -- lookups ----------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model answering for ``name`` (its production version, or ``version``)."""
        if self._watch_pid != os.getpid():
            self._watch()
        loaded = self._production.get(name)
        if version is None:
            if loaded is not None:
                return loaded
            return self._lazy_production(name)
        if loaded is not None and loaded.version == version:
            return loaded
        return self._pinned_version(name, version)

    def peek(self, name: str, version: int | None = None) -> LoadedModel | None:
        """The loaded model for ``name`` (or its ``version``) if this process holds it.

        Loads nothing and queries nothing: readiness probes use it.
        """
        loaded = self._production.get(name)
        if version is None or (loaded is not None and loaded.version == version):
            return loaded
        return self._pinned.get((name, version))

    def _lazy_production(self, name: str) -> LoadedModel:
        with self._load_lock(name):
            if name in self._production:
                return self._production[name]
            if name in self._errors and self.startup_done:
                raise ModelNotReady(f"Model {name!r} failed to load: {self.error(name)}")
            if not MLModel.objects.filter(name=name).exists():
                raise ModelNotFound.no_model(name)
            self.watcher.remember(name)
            loaded = self._reload_locked(name)
            if loaded is None:
                if name in self._errors:
                    raise ModelNotReady(f"Model {name!r} failed to load: {self.error(name)}")
                raise ModelNotReady.no_production(name)
            return loaded

    def _pinned_version(self, name: str, number: int) -> LoadedModel:
        key = (name, number)
        with self._lock:
            if key in self._pinned:
                self._pinned.move_to_end(key)
                return self._pinned[key]
            version = ModelVersion.objects.of(name).filter(version=number).first()
            if version is None:
                raise ModelNotFound.no_version(name, number)
            try:
                loaded = load_version(version)
            except ArtifactError as exc:
                raise ModelNotReady(f"{name} v{number} failed to load: {exc}") from None
            self._pinned[key] = loaded
            evicted = []
            while len(self._pinned) > settings.STAGING_CACHE_SIZE:
                # Dropped, not closed: a request may still be running on it.
                evicted.append(self._pinned.popitem(last=False)[1])
        for old in evicted:
            retire(old)
        return loaded

    # -- state ------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """``{name: {"ready", "version", "error"}}`` for every model this process knows.

        ``ready``: a version of the model answers here (``version``); ``error``: why its
        production version failed to load, if it did — with ``ready`` true an older version
        answers meanwhile.
        """
        with self._lock:
            result: dict[str, dict[str, Any]] = {
                name: {"ready": True, "version": m.version, "error": self.error(name)}
                for name, m in self._production.items()
            }
            for name, failure in self._errors.items():
                if name not in result:
                    result[name] = {"ready": False, "version": None, "error": failure.message}
        return result

    def error(self, name: str) -> str | None:
        """Why the production version of ``name`` failed to load here (None: it did not)."""
        failure = self._errors.get(name)
        return failure.message if failure is not None else None

    def failure(self, name: str) -> LoadFailure | None:
        """The production version of ``name`` that failed to load here, and why."""
        return self._errors.get(name)

    def loaded(self) -> Mapping[str, LoadedModel]:
        return dict(self._production)

    def is_ready(self) -> bool:
        """True once startup loading ran and every model with a production version answers.

        A model whose new production version failed to load while its previous one still
        answers does not make the process unready (see the module's doc).
        """
        with self._lock:
            return self.startup_done and all(name in self._production for name in self._errors)

    def clear(self) -> None:
        """Unload everything and stop watching (tests, and a process that shuts down)."""
        self.watcher.stop()
        self.watcher.seen = {}
        self._watch_pid = None
        with self._lock:
            models = [*self._production.values(), *self._pinned.values()]
            for m in self._production.values():
                metrics.set_ready(m.name, m.version, False)
            self._production.clear()
            self._pinned.clear()
            self._errors.clear()
            self.startup_done = False
        for m in models:
            m.close()


#: The registry of this process.
registry = Registry()


@receiver(serving_changed)
def _swap_here(sender: Any, model_name: str, **kwargs: Any) -> None:
    """A change committed in this process: swap now rather than at the watcher's next poll."""
    if registry.serves(model_name):
        registry.reload(model_name, warm=True)
