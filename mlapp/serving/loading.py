"""How a stored version becomes a loaded model: the one place that does it.

Artifact file from storage, runtime, handler, public signature, micro-batcher: everything a
version needs to answer, apart from the in-memory registry that keeps it
(:mod:`mlapp.serving.registry`). The admin, the APIs and batch jobs describe a stored version
through :func:`public_signature` here, whether it is loaded or not.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, InferenceError, InvalidInput, MLAppError
from mlapp.handlers import BaseHandler
from mlapp.runtimes.base import Runtime
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.integrity import file_sha256
from mlapp.runtimes.tensors import Signature
from mlapp.serving import metrics
from mlapp.serving.batching import MicroBatcher
from mlapp.serving.config import BatchingConfig, serving_batching
from mlapp.serving.handling import (
    HANDLER_INPUT_ERRORS,
    handler_path,
    handler_tensors,
    load_handler,
    smoke_run,
)
from mlapp.serving.monitorconf import sample_rate

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlapp.models import MLModel, ModelVersion

logger = logging.getLogger("mlapp.serving")


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
    #: Share of its requests the prediction log keeps (``MLModel.monitoring``); 0: none.
    log_rate: float = 0.0

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Handler preprocess, the runtime, handler postprocess, on validated inputs."""
        return run_model(self.runtime, self.handler, self.name, self.version, inputs)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.runtime.close()

    def warm_up(self) -> None:
        """Run the handler's example through the model, so the first request is not the slow one.

        Validation and the promotion already ran it; a model that cannot be warmed here still
        serves (and its requests report their own errors).
        """
        started = time.perf_counter()
        try:
            self.smoke()
        except Exception:
            logger.warning(
                "mlapp: warm-up of %s v%s failed", self.name, self.version, exc_info=True
            )
            return
        logger.info(
            "mlapp: warmed %s v%s in %.3fs", self.name, self.version, time.perf_counter() - started
        )

    def smoke(self) -> dict[str, np.ndarray]:
        """Answer the handler's example (or one built row) the way a request is answered.

        Raises :class:`ArtifactError` with the reason when the version cannot answer it.
        """
        return smoke_run(self.handler, self.runtime_signature, self.runtime.run)


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
    if handler is None:
        tensors = inputs
    else:
        try:
            tensors = handler.preprocess(inputs)
        except HANDLER_INPUT_ERRORS as exc:
            # The handler refused what the client sent (bad text encoding, a missing key):
            # the client's mistake, told as the handler said it.
            raise InvalidInput(
                f"The handler {handler_path(handler)} of {name} refused these inputs: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except MLAppError:
            raise
        except Exception as exc:
            logger.exception("%s v%s: the handler's preprocess failed", name, version)
            raise InferenceError(f"Model {name} v{version} failed to run.") from exc
    try:
        outputs = runtime.run(tensors)
    except Exception as exc:
        logger.exception("%s v%s failed to run", name, version)
        raise InferenceError(f"Model {name} v{version} failed to run.") from exc
    if handler is None:
        return outputs
    try:
        return handler.postprocess(outputs, inputs)
    except MLAppError:
        raise
    except Exception as exc:
        logger.exception("%s v%s: the handler's postprocess failed", name, version)
        raise InferenceError(f"Model {name} v{version} failed to run.") from exc


def runtime_class(fmt: str) -> type[Runtime]:
    try:
        return settings.runtime_class(fmt)
    except KeyError:
        raise ArtifactError(f"No runtime is configured for format {fmt!r}.") from None


def load_runtime(path: str, fmt: str, signature: Signature | None = None) -> Runtime:
    """Load the artifact at ``path`` with the runtime of ``fmt``, bound to ``signature``."""
    runtime = runtime_class(fmt)(settings.runtime_options(fmt))
    runtime.load(path, device=settings.DEVICE)
    if signature is not None:
        runtime.bind(signature)
    return runtime


@contextmanager
def local_artifact(version: ModelVersion) -> Iterator[str]:
    """A local file path for the version's artifact, downloading it if the storage is remote."""
    storage, name = version.artifact.storage, version.artifact.name
    assert name is not None  # the artifact is a required file field
    try:
        yield storage.path(name)
        return
    except NotImplementedError:
        pass
    fd, tmp = tempfile.mkstemp(prefix="mlapp-", suffix=os.path.splitext(name)[1])
    try:
        with os.fdopen(fd, "wb") as out, storage.open(name, "rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
        yield tmp
    finally:
        os.unlink(tmp)


def batching_config(model: MLModel) -> BatchingConfig | None:
    """The model's batching config (``serving["batching"]`` over ``MLAPP["BATCHING"]``).

    None when batching is off for it. A bad config (reported by ``manage.py check``) is
    logged and leaves the model unbatched: it still answers.
    """
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


def verify_artifact(version: ModelVersion, path: str) -> None:
    """Refuse to load a file that is not the one validated at upload.

    The bytes must hash to the sha256 recorded at upload, and the format checks (which read
    the archive as data) must pass again: a file swapped in storage, or a version stored
    before a check existed, is never handed to torch or ONNX Runtime.
    """
    if not os.path.exists(path):
        raise ArtifactError(f"The artifact file of {version} is missing from storage.")
    digest = file_sha256(path)
    if digest != version.sha256:
        raise ArtifactError(
            f"The artifact file of {version} has sha256 {digest}, not the {version.sha256} "
            "recorded when it was validated: it was changed in storage; refusing to load it."
        )
    fmt = detect_format(path)
    if fmt != version.format:
        raise ArtifactError(
            f"The artifact file of {version} is {fmt}, not the {version.format} it was "
            "validated as; refusing to load it."
        )


def load_version(version: ModelVersion) -> LoadedModel:
    """Load a stored version (artifact, signature, handler) into a :class:`LoadedModel`.

    The artifact is verified first (:func:`verify_artifact`).
    """
    signature = Signature.from_dict(version.signature)
    with local_artifact(version) as path:
        verify_artifact(version, path)
        runtime = load_runtime(path, version.format, signature)
    try:
        handler = load_handler(version.model, signature)
        if handler is not None:
            # No inference here (startup loads before the server forks): the handler's
            # example is preprocessed and checked to name the artifact's inputs.
            handler_tensors(handler, signature)
    except BaseException:
        runtime.close()
        raise
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
        log_rate=sample_rate(version.model.monitoring),
    )
    return attach_batcher(loaded, batching_config(version.model))
