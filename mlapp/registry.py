"""The models loaded in this process, and how a version becomes a loaded model.

The web process loads every production version at startup (``mlapp.startup``); other
processes (Celery workers, ``run_batch``, the shell) load a model lazily, on first use,
through the same registry. Lookups on the hot path are one dict access: no database
query once a model is loaded.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlapp.models import MLModel, ModelVersion

logger = logging.getLogger("mlapp.registry")


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
    loaded_at: float = field(default_factory=time.time)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Handler preprocess, the runtime, handler postprocess, on validated inputs."""
        tensors = self.handler.preprocess(inputs) if self.handler else inputs
        try:
            outputs = self.runtime.run(tensors)
        except Exception as exc:
            logger.exception("%s v%s failed to run", self.name, self.version)
            raise InferenceError(f"Model {self.name} v{self.version} failed to run.") from exc
        return self.handler.postprocess(outputs, inputs) if self.handler else outputs

    def close(self) -> None:
        self.runtime.close()


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


def load_version(version: ModelVersion) -> LoadedModel:
    """Load a stored version (artifact, signature, handler) into a :class:`LoadedModel`."""
    signature = Signature.from_dict(version.signature)
    with local_artifact(version) as path:
        if not os.path.exists(path):
            raise ArtifactError(f"The artifact file of {version} is missing from storage.")
        runtime = load_runtime(path, version.format, signature)
    handler = handler_for(version.model, signature)
    return LoadedModel(
        name=version.model.name,
        version=version.version,
        version_id=version.pk,
        format=version.format,
        runtime=runtime,
        runtime_signature=signature,
        signature=handler.signature() if handler else signature,
        handler=handler,
    )


class Registry:
    """Loaded models of this process: production versions by name, plus an LRU of others."""

    def __init__(self) -> None:
        self._production: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._pinned: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        self.startup_done = False

    # -- loading ---------------------------------------------------------------------

    def load_production(self) -> dict[str, str]:
        """Load the production version of every model; return ``{name: error}`` of failures.

        One model that fails is logged and marked not ready; the others are served.
        """
        from mlapp.models import ModelVersion

        versions = ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
        for version in versions.select_related("model"):
            self._load_production_version(version)
        self.startup_done = True
        return dict(self._errors)

    def _load_production_version(self, version: ModelVersion) -> LoadedModel | None:
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
        with self._lock:
            old = self._production.get(name)
            self._production[name] = loaded
            self._errors.pop(name, None)
        if old is not None and old is not loaded:
            old.close()
        logger.info(
            "mlapp: loaded %s v%s (%s) in %.2fs",
            name,
            version.version,
            version.format,
            time.perf_counter() - started,
        )
        return loaded

    def reload(self, name: str) -> LoadedModel | None:
        """Load the current production version of ``name`` and swap it in atomically."""
        from mlapp.models import ModelVersion

        version = (
            ModelVersion.objects.select_related("model")
            .filter(model__name=name, stage=ModelVersion.Stage.PRODUCTION)
            .first()
        )
        if version is None:
            with self._lock:
                old = self._production.pop(name, None)
                self._errors.pop(name, None)
            if old is not None:
                old.close()
            return None
        current = self._production.get(name)
        if current is not None and current.version_id == version.pk:
            return current
        return self._load_production_version(version)

    # -- lookups ----------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model answering for ``name`` (its production version, or ``version``)."""
        loaded = self._production.get(name)
        if version is None:
            if loaded is not None:
                return loaded
            return self._lazy_production(name)
        if loaded is not None and loaded.version == version:
            return loaded
        return self._pinned_version(name, version)

    def _lazy_production(self, name: str) -> LoadedModel:
        from mlapp.models import MLModel

        with self._lock:
            if name in self._production:
                return self._production[name]
            if name in self._errors and self.startup_done:
                raise ModelNotReady(f"Model {name!r} failed to load: {self._errors[name]}")
            if not MLModel.objects.filter(name=name).exists():
                raise ModelNotFound(f"No model named {name!r}.")
            loaded = self.reload(name)
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
            while len(self._pinned) > max(int(settings.STAGING_CACHE_SIZE), 0):
                _, evicted = self._pinned.popitem(last=False)
                evicted.close()
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
        """Unload everything (tests, and a process that shuts down)."""
        with self._lock:
            models = [*self._production.values(), *self._pinned.values()]
            self._production.clear()
            self._pinned.clear()
            self._errors.clear()
            self.startup_done = False
        for m in models:
            m.close()


#: The registry of this process.
registry = Registry()
