"""The models loaded in this process, and how a version becomes a loaded model.

The web process loads every production version at startup (``mlapp.startup``); other
processes (Celery workers, ``run_batch``, the shell) load a model lazily, on first use,
through the same registry. Lookups on the hot path are one dict access: no database
query once a model is loaded.

Hot swap: a new production version is loaded and warmed while the old one keeps answering,
then swapped in under the lock. The old one is not closed under a running request: the
registry drops its reference and the last request holding it releases it. Promotions made
in other processes arrive through :mod:`mlapp.serving.watcher` (a change marker polled from a thread
started lazily in each process, after the fork).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from django.utils.module_loading import import_string

from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, InferenceError, ModelNotFound, ModelNotReady
from mlapp.handlers import BaseHandler
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.tensors import Signature
from mlapp.serving import metrics
from mlapp.serving.batching import BatchingConfig, MicroBatcher

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlapp.models import MLModel, ModelVersion

logger = logging.getLogger("mlapp.serving.registry")


@dataclass
class LoadedModel:
    """One model version ready to run in this process."""

    name: str
    version: int
    version_id: int
    format: str
    runtime: Runtime
    runtime_signature: Signature
    signature: Signature
    handler: BaseHandler | None = None
    #: The model's handler setting this was loaded with (a change reloads the model).
    handler_path: str = ""
    loaded_at: float = field(default_factory=time.time)
    #: The batching config asked for (None: off); a change swaps the batcher.
    batching: BatchingConfig | None = None
    #: Groups concurrent requests into one call; None when not batched.
    batcher: MicroBatcher | None = None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Handler preprocess, the runtime, handler postprocess, on validated inputs."""
        return run_model(self.runtime, self.handler, self.name, self.version, inputs)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.runtime.close()

    def warm_up(self) -> None:
        """Run one sample batch through the runtime, so the first request is not the slow one."""
        from mlapp.versions.inspection import sample_inputs

        started = time.perf_counter()
        try:
            self.runtime.run(sample_inputs(self.runtime_signature, batch=1))
        except Exception:
            # Validation already ran a smoke prediction; a model that cannot be warmed still
            # serves (and its requests report their own errors).
            logger.warning(
                "mlapp: warm-up of %s v%s failed", self.name, self.version, exc_info=True
            )
            return
        logger.info(
            "mlapp: warmed %s v%s in %.3fs", self.name, self.version, time.perf_counter() - started
        )


def run_model(
    runtime: Runtime,
    handler: BaseHandler | None,
    name: str,
    version: int,
    inputs: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Handler preprocess, the runtime, handler postprocess (what :meth:`LoadedModel.run` does).

    A function of the parts rather than a method, so that a batcher holding it does not hold
    its :class:`LoadedModel` (a retired version is released with its last request).
    """
    tensors = handler.preprocess(inputs) if handler else inputs
    try:
        outputs = runtime.run(tensors)
    except Exception as exc:
        logger.exception("%s v%s failed to run", name, version)
        raise InferenceError(f"Model {name} v{version} failed to run.") from exc
    return handler.postprocess(outputs, inputs) if handler else outputs


def runtime_class(fmt: str) -> type[Runtime]:
    try:
        path = settings.RUNTIMES[fmt]
    except KeyError:
        raise ArtifactError(f"No runtime is configured for format {fmt!r}.") from None
    return import_string(path)


def load_runtime(path: str, fmt: str, signature: Signature | None = None) -> Runtime:
    """Load the artifact at ``path`` with the runtime of ``fmt``, bound to ``signature``."""
    runtime = runtime_class(fmt)(settings.runtime_options())
    runtime.load(path, device=settings.DEVICE)
    if signature is not None:
        runtime.bind(signature)
    return runtime


def handler_for(model: MLModel, runtime_signature: Signature) -> BaseHandler | None:
    if not model.handler:
        return None
    try:
        cls = import_string(model.handler)
    except ImportError as exc:
        raise ArtifactError(f"Handler {model.handler!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseHandler)):
        raise ArtifactError(f"Handler {model.handler!r} is not a mlapp.handlers.BaseHandler.")
    return cls(model.name, runtime_signature)


@contextmanager
def local_artifact(version: ModelVersion) -> Iterator[str]:
    """A local file path for the version's artifact, downloading it if the storage is remote."""
    storage = version.artifact.storage
    try:
        yield storage.path(version.artifact.name)
        return
    except NotImplementedError:
        pass
    fd, tmp = tempfile.mkstemp(prefix="mlapp-", suffix=os.path.splitext(version.artifact.name)[1])
    try:
        with os.fdopen(fd, "wb") as out, storage.open(version.artifact.name, "rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
        yield tmp
    finally:
        os.unlink(tmp)


def batching_config(model: MLModel) -> BatchingConfig | None:
    """The model's batching config (``serving["batching"]`` over ``MLAPP["BATCHING"]``).

    None when batching is off for it. A bad config (reported by ``manage.py check``) is
    logged and leaves the model unbatched: it still answers.
    """
    from mlapp.models import serving_batching

    try:
        config = serving_batching(model.serving)
    except ValueError as exc:
        logger.error("mlapp: %s is served unbatched: its serving config %s", model.name, exc)
        return None
    return config if config.enabled else None


def batchable(signature: Signature) -> bool:
    """True when every input and output has a variable first dimension (the rows)."""
    return all(spec.shape[:1] == (-1,) for spec in (*signature.inputs, *signature.outputs))


def attach_batcher(loaded: LoadedModel, config: BatchingConfig | None) -> LoadedModel:
    """Give ``loaded`` a micro-batcher when ``config`` asks for one and its signature allows."""
    loaded.batching = config
    if config is None:
        return loaded
    if not batchable(loaded.signature):
        logger.info(
            "mlapp: %s v%s is not batched: its signature has no variable first dimension",
            loaded.name,
            loaded.version,
        )
        return loaded
    observer = metrics.BatchObserver(loaded.name)
    loaded.batcher = MicroBatcher(
        functools.partial(run_model, loaded.runtime, loaded.handler, loaded.name, loaded.version),
        max_batch_size=config.max_batch_size,
        max_queue_delay_ms=config.max_queue_delay_ms,
        max_queue_size=config.max_queue_size,
        min_call_ms=config.min_call_ms,
        name=f"{loaded.name} v{loaded.version}",
        on_batch=observer.batch,
        on_alone=observer.alone,
    )
    return loaded


def retire(loaded: LoadedModel) -> None:
    """A version the registry no longer hands out: stop batching it, finishing what waits.

    Its runtime is not closed: a request that looked it up just before may still run on it.
    """
    if loaded.batcher is not None:
        loaded.batcher.close()
        metrics.fold_batch_counts()


def load_version(version: ModelVersion) -> LoadedModel:
    """Load a stored version (artifact, signature, handler) into a :class:`LoadedModel`."""
    signature = Signature.from_dict(version.signature)
    with local_artifact(version) as path:
        if not os.path.exists(path):
            raise ArtifactError(f"The artifact file of {version} is missing from storage.")
        runtime = load_runtime(path, version.format, signature)
    handler = handler_for(version.model, signature)
    loaded = LoadedModel(
        name=version.model.name,
        version=version.version,
        version_id=version.pk,
        format=version.format,
        runtime=runtime,
        runtime_signature=signature,
        signature=handler.signature() if handler else signature,
        handler=handler,
        handler_path=version.model.handler,
    )
    return attach_batcher(loaded, batching_config(version.model))


class Registry:
    """Loaded models of this process: production versions by name, plus an LRU of others."""

    def __init__(self) -> None:
        from mlapp.serving.watcher import ChangeWatcher

        self._production: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._pinned: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        # One lock per model name, held while that model loads (never while holding _lock):
        # concurrent reloads of one model load it once.
        self._load_locks: dict[str, threading.Lock] = {}
        self.startup_done = False
        self.watcher = ChangeWatcher(self)
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
        from mlapp.models import ModelVersion

        # Markers first: a promotion committed during the loading is then seen as a change.
        self.watcher.remember()
        versions = ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
        for version in versions.select_related("model"):
            self._load_production_version(version)
        self.startup_done = True
        return dict(self._errors)

    def _load_production_version(
        self, version: ModelVersion, *, warm: bool = False
    ) -> LoadedModel | None:
        name = version.model.name
        started = time.perf_counter()
        try:
            loaded = load_version(version)
        except Exception as exc:
            message = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
            logger.error("mlapp: %s v%s failed to load: %s", name, version.version, message)
            with self._lock:
                self._errors[name] = message
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
        from mlapp.models import ModelVersion

        version = (
            ModelVersion.objects.select_related("model")
            .filter(model__name=name, stage=ModelVersion.Stage.PRODUCTION)
            .first()
        )
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
        from mlapp.models import MLModel

        with self._load_lock(name):
            if name in self._production:
                return self._production[name]
            if name in self._errors and self.startup_done:
                raise ModelNotReady(f"Model {name!r} failed to load: {self._errors[name]}")
            if not MLModel.objects.filter(name=name).exists():
                raise ModelNotFound(f"No model named {name!r}.")
            self.watcher.remember(name)
            loaded = self._reload_locked(name)
            if loaded is None:
                if name in self._errors:
                    raise ModelNotReady(f"Model {name!r} failed to load: {self._errors[name]}")
                raise ModelNotReady(f"Model {name!r} has no production version.")
            return loaded

    def _pinned_version(self, name: str, number: int) -> LoadedModel:
        from mlapp.models import ModelVersion

        key = (name, number)
        with self._lock:
            if key in self._pinned:
                self._pinned.move_to_end(key)
                return self._pinned[key]
            version = (
                ModelVersion.objects.select_related("model")
                .filter(model__name=name, version=number)
                .first()
            )
            if version is None:
                raise ModelNotFound(f"Model {name!r} has no version {number}.")
            try:
                loaded = load_version(version)
            except ArtifactError as exc:
                raise ModelNotReady(f"{name} v{number} failed to load: {exc}") from None
            self._pinned[key] = loaded
            evicted = []
            while len(self._pinned) > max(int(settings.STAGING_CACHE_SIZE), 0):
                # Dropped, not closed: a request may still be running on it.
                evicted.append(self._pinned.popitem(last=False)[1])
        for old in evicted:
            retire(old)
        return loaded

    # -- state ------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """``{name: {"ready", "version", "error"}}`` for every model this process knows."""
        with self._lock:
            result = {
                name: {"ready": True, "version": m.version, "error": None}
                for name, m in self._production.items()
            }
            for name, error in self._errors.items():
                result[name] = {"ready": False, "version": None, "error": error}
        return result

    def loaded(self) -> Mapping[str, LoadedModel]:
        return dict(self._production)

    def is_ready(self) -> bool:
        """True once startup loading ran and no production version failed to load."""
        return self.startup_done and not self._errors

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
