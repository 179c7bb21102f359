"""The inference service: the data plane every front door calls.

Views (native and V2), the admin, batch jobs and ``mlapp.predict`` all ask :data:`service`
whether the server and a model are ready, what a model takes and gives, and for predictions
(one input path: each caller supplies a decoder), so the same input gets the same answer
whichever way it came in. The front doors import neither the registry nor the ORM to serve.
MLServer's ``DataPlane`` and KServe's ``V2Endpoints`` have the same shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlapp.exceptions import MLAppError, ModelNotFound, ModelNotReady
from mlapp.models import ModelVersion
from mlapp.runtimes.tensors import Signature, sample_inputs
from mlapp.serving import metrics
from mlapp.serving.handling import handler_class, load_handler
from mlapp.serving.inputs import Decoder, check_rows
from mlapp.serving.predlog import recorder
from mlapp.serving.registry import LoadedModel, Registry, registry
from mlapp.serving.routes import Caller, Route, counts_against
from mlapp.serving.stats import record_request
from mlapp.serving.traffic import Traffic

#: The ``protocol`` label of calls from Python code (``mlapp.predict``, the admin, jobs).
PYTHON = "python"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

#: Why a server that did not load its models at startup is not ready.
NOT_STARTED = (
    "Models have not been loaded in this process: the WSGI entry point must call "
    "mlapp.startup.load_models() (mlapp.wsgi.get_wsgi_application does) with "
    "MLAPP['LOAD_ON_STARTUP'] on."
)


@dataclass(frozen=True)
class ModelMetadata:
    """A model (one of its versions) as clients see it."""

    name: str
    #: The versions that can be asked for by number: all but archived ones.
    versions: list[str]
    format: str
    signature: Signature
    #: The version described, when this process has it loaded (for the model's name alone:
    #: the version that answers).
    version: int | None = None
    #: Why the model's production version does not answer here while ``version`` does (its
    #: load failed: see :meth:`InferenceService.model_ready`); None otherwise.
    reason: str | None = None


@dataclass
class Prediction:
    """Outputs of one call, with the model and version that answered."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    #: The public signature of the version that answered (output order, datatypes).
    signature: Signature | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays become nested lists, bytes become text."""
        return {
            "model": self.model,
            "version": self.version,
            "outputs": {name: to_json_value(value) for name, value in self.outputs.items()},
        }


def to_json_value(array: np.ndarray) -> Any:
    """Nested lists of plain Python values, as JSON writes them.

    float32 values become the shortest decimals that read back as the same float32 (what
    numpy prints and the V2 API writes: ``0.1``), not the float64 expansion ``tolist()``
    gives (``0.10000000149011612``): the same numbers, half the text to write and store.
    """
    if array.dtype == object:
        return (
            [_text(v) for v in array.reshape(-1)]
            if array.ndim == 1
            else [to_json_value(row) for row in array]
        )
    if array.dtype.kind == "f" and array.dtype.itemsize == 4:
        if array.ndim == 0:
            return orjson.loads(orjson.dumps(np.float32(array), option=_NUMPY))
        native = np.ascontiguousarray(array, dtype=np.float32)  # orjson reads C order only
        return orjson.loads(orjson.dumps(native, option=_NUMPY))
    return array.tolist()


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class InferenceService:
    """Readiness, metadata and predictions over the registry of this process."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        #: The models' traffic policies (canary, shadow) as this process applies them.
        self.traffic = Traffic(registry)

    # -- health ----------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> tuple[bool, str | None]:
        """Whether startup loading ran and every model with a production version answers;
        else why not.

        Names the models that cannot answer, not why: :meth:`model_ready` says that. A model
        whose newly promoted version failed to load while the previous one still answers
        keeps the server ready (every replica would fail the same way: readiness turning 503
        would take them all out of rotation while each can answer); its :meth:`model_ready`
        says which version answers and why the new one does not.
        """
        if not self.registry.startup_done:
            return False, NOT_STARTED
        if not self.registry.is_ready():
            failed = sorted(n for n, s in self.registry.status().items() if not s["ready"])
            return False, (
                f"Not ready: {', '.join(failed)} failed to load; "
                "GET /v2/models/<name>/ready says why."
            )
        return True, None

    def model_ready(self, name: str, version: int | None = None) -> tuple[bool, str | None]:
        """Whether this process has ``name`` (or its ``version``) loaded; else why not.

        A production version is loaded at startup; another version on its first request.
        When the production version failed to load while the previous one still answers,
        the model (and that version) is ready, with a reason that names the version that
        answers and why the production one does not; the failed version is not ready.
        Raises :class:`ModelNotFound` for a model or version that does not exist.
        """
        loaded = self.registry.peek(name, version)
        if loaded is not None:
            answering = self.registry.peek(name)
            return True, (self.stale_reason(name) if loaded is answering else None)
        stored = self._stored(name)
        if version is not None and not any(v.version == version for v in stored):
            raise ModelNotFound.no_version(name, version)
        production = next((v for v in stored if v.stage == ModelVersion.Stage.PRODUCTION), None)
        error = self.load_error(name)
        if error and (version is None or (production and production.version == version)):
            answering_version = self.loaded_version(name)
            meanwhile = f" v{answering_version} answers meanwhile." if answering_version else ""
            return False, f"Model {name!r} failed to load: {error}{meanwhile}"
        if version is None and production is None:
            return False, ModelNotReady.no_production(name).message
        if version is None:
            return False, f"Model {name!r} is not loaded in this process yet."
        return False, f"Version {version} of {name!r} is not loaded in this process yet."

    def load_error(self, name: str) -> str | None:
        """Why the production version of ``name`` failed to load here (None: it did not).

        The model may still answer with the version it had before: :meth:`stale_reason`.
        """
        return self.registry.error(name)

    def stale_reason(self, name: str) -> str | None:
        """Why ``name`` answers with a version other than its production one here (its
        load failed and the previous version kept answering); None when it does not."""
        failure = self.registry.failure(name)
        answering = self.registry.peek(name)
        if failure is None or answering is None:
            return None
        if failure.version == answering.version:
            return (
                f"Model {name!r} answers with v{answering.version} as loaded before: "
                f"reloading it failed: {failure.message}"
            )
        return (
            f"Model {name!r} answers with v{answering.version}: its production version "
            f"v{failure.version} failed to load: {failure.message}"
        )

    def loaded_version(self, name: str) -> int | None:
        """The production version of ``name`` this process answers with (None: none)."""
        loaded = self.registry.peek(name)
        return loaded.version if loaded is not None else None

    @property
    def loads_at_startup(self) -> bool:
        """Whether this process loaded its models at startup (else on first use)."""
        return self.registry.startup_done

    # -- metadata ----------------------------------------------------------------------------

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        """``name`` (its production version, or ``version``) as clients see it.

        For the name alone, the version that answers: the previous one while a newly
        promoted version failed to load (``reason`` then says why).
        """
        stored = self._stored(name)
        available = [str(v.version) for v in stored if v.stage != ModelVersion.Stage.ARCHIVED]
        loaded = self.registry.peek(name, version)
        if loaded is not None:
            reason = self.stale_reason(name) if loaded is self.registry.peek(name) else None
            return ModelMetadata(
                name, available, loaded.format, loaded.signature, loaded.version, reason
            )
        if version is None:
            row = next((v for v in stored if v.stage == ModelVersion.Stage.PRODUCTION), None)
            if row is None:
                raise ModelNotReady.no_production(name)
        else:
            row = next((v for v in stored if v.version == version), None)
            if row is None:
                raise ModelNotFound.no_version(name, version)
        return ModelMetadata(name, available, row.format, self.public_signature(row))

    def public_signature(self, version: ModelVersion) -> Signature:
        """What clients send to and get from a stored ``version``: its handler's signature.

        No weights are loaded: the handler describes itself from the stored signature.
        Raises :class:`ModelNotReady` when the handler cannot be imported or describe itself.
        """
        loaded = self.registry.peek(version.model.name, version.version)
        if loaded is not None and loaded.version_id == version.pk:
            return loaded.signature
        signature = Signature.from_dict(version.signature)
        try:
            handler = load_handler(version.model, signature)
            return handler.signature() if handler else signature
        except Exception as exc:
            # The handler is the host project's code: whatever it raises, say so.
            reason = exc.message if isinstance(exc, MLAppError) else f"{type(exc).__name__}: {exc}"
            raise ModelNotReady(f"{version} cannot be described: {reason}") from exc

    def example_inputs(self, version: ModelVersion) -> dict[str, Any]:
        """A body ``version`` takes, as JSON: its handler's ``example``, or one built row."""
        signature = self.public_signature(version)
        cls = handler_class(version.model)
        if cls is not None and cls.example is not None:
            return dict(cls.example)
        return {name: to_json_value(a) for name, a in sample_inputs(signature).items()}

    def _stored(self, name: str) -> list[ModelVersion]:
        versions = list(ModelVersion.objects.of(name).order_by("version"))
        if not versions:
            ModelVersion.objects.resolve(name)  # raises: no such model, or no version yet
        return versions

    # -- inference ---------------------------------------------------------------------------

    def model(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model that would answer (raises ModelNotFound / ModelNotReady)."""
        return self.registry.get(name, version)

    def predict(
        self,
        name: str,
        decode: Decoder,
        *,
        version: int | None = None,
        protocol: str = PYTHON,
        caller: Caller | None = None,
        request_id: str | Callable[[], str | None] | None = None,
        key: str | Callable[[], str | None] | None = None,
    ) -> Prediction:
        """Run model ``name`` (its production version, or ``version``) on a request.

        ``decode`` turns the request into arrays checked against the public signature of
        the version that answers (:func:`mlapp.serving.inputs.named` for values keyed by
        input name). ``protocol`` labels the request in the metrics (``v2``, ``native``,
        ``python``). Concurrent calls meet in the version's micro-batcher when batching is
        on for it. Without a ``version``, the model's traffic policy may choose its canary
        (by ``caller`` when the policy is sticky) and copy the request to its shadow.
        ``request_id`` and ``key`` (the caller's, when sent) go to the prediction log when the
        model samples this request (either may be a callable, called only then).
        """
        started = time.perf_counter()
        # One dictionary lookup for a model without a policy; a pinned version bypasses it.
        route = self.traffic.route(name) if version is None else None
        try:
            loaded = self._routed(name, version, route, caller, started)
        except Exception as exc:
            metrics.unrouted_failure(name, protocol, exc)
            raise
        observed = metrics.request_metrics(loaded.name, loaded.version, protocol)
        try:
            arrays = decode(loaded.signature)
            check_rows(arrays)
            batcher = loaded.batcher
            if batcher is not None:
                # The batcher records queue wait, compute time and batch size itself.
                outputs = batcher.submit(arrays)
            else:
                computing = time.perf_counter()
                outputs = loaded.run(arrays)
                observed.compute.observe(time.perf_counter() - computing)
        except Exception as exc:
            observed.failed(exc)
            if route is not None:
                elapsed = time.perf_counter() - started
                self.traffic.record(loaded.name, loaded.version, elapsed, counts_against(exc))
            raise
        elapsed = time.perf_counter() - started
        observed.answered(elapsed)
        record_request(loaded.name, elapsed)
        if loaded.log_rate:
            if callable(request_id):
                request_id = request_id()
            if callable(key):
                key = key()
            recorder.offer(loaded, arrays, outputs, elapsed, protocol, request_id, key)
        if route is not None:
            self.traffic.record(loaded.name, loaded.version, elapsed)
            self.traffic.shadow(route, loaded, arrays, outputs)
        return Prediction(loaded.name, loaded.version, outputs, loaded.signature)

    def _routed(
        self,
        name: str,
        version: int | None,
        route: Route | None,
        caller: Caller | None,
        started: float,
    ) -> LoadedModel:
        """The loaded version that answers: the one asked for, or the policy's choice.

        A canary that cannot be loaded counts as its failure and production answers.
        """
        if route is None:
            return self.registry.get(name, version)
        chosen = route.choose(caller)
        if chosen is None:
            return self.registry.get(name)
        try:
            return self.registry.get(name, chosen)
        except Exception:
            self.traffic.record(name, chosen, time.perf_counter() - started, True)
            return self.registry.get(name)


#: The service of this process, over its registry.
service = InferenceService(registry)
