"""The inference service: the one entry point every caller uses to run a model.

Views (native and V2), the admin's "try it", batch jobs and ``mlapp.predict`` all call
:data:`service`, so the same input gets the same answer whichever way it came in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlapp.exceptions import InvalidInput
from mlapp.runtimes.tensors import Signature, coerce_input
from mlapp.serving import metrics
from mlapp.serving.registry import LoadedModel, Registry, registry
from mlapp.serving.stats import record_request

#: The ``protocol`` label of calls from Python code (``mlapp.predict``, the admin, jobs).
PYTHON = "python"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

#: Decodes a request body against the public signature into validated arrays.
Decoder = Callable[[Signature], dict[str, np.ndarray]]


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


def validate_inputs(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    """Check named inputs against a signature and return them as arrays.

    ``inputs`` is a mapping of input name -> value; a model with one input also accepts
    the bare value.
    """
    if not isinstance(inputs, Mapping):
        if len(signature.inputs) != 1:
            raise InvalidInput(
                f"This model takes {len(signature.inputs)} named inputs "
                f"({', '.join(signature.input_names)}): send an object keyed by name."
            )
        inputs = {signature.inputs[0].name: inputs}
    missing = [n for n in signature.input_names if n not in inputs]
    if missing:
        raise InvalidInput(f"Missing input(s): {', '.join(missing)}.")
    extra = [n for n in inputs if n not in signature.input_names]
    if extra:
        raise InvalidInput(
            f"Unknown input(s): {', '.join(map(str, extra))}; "
            f"this model takes {', '.join(signature.input_names)}."
        )
    arrays = {spec.name: coerce_input(spec, inputs[spec.name]) for spec in signature.inputs}
    check_rows(arrays)
    return arrays


def check_rows(arrays: Mapping[str, np.ndarray]) -> None:
    """All inputs of one request must have the same number of rows."""
    if len(arrays) > 1 and len({a.shape[0] for a in arrays.values() if a.ndim}) > 1:
        raise InvalidInput("All inputs must have the same number of rows (first dimension).")


class InferenceService:
    """Validates inputs against the signature, routes to a version, runs it, records metrics."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def model(self, name: str, version: int | None = None) -> LoadedModel:
        """The loaded model that would answer (raises ModelNotFound / ModelNotReady)."""
        return self.registry.get(name, version)

    def predict(
        self,
        name: str,
        inputs: Any = None,
        *,
        version: int | None = None,
        protocol: str = PYTHON,
        decode: Decoder | None = None,
    ) -> Prediction:
        """Run model ``name`` (its production version, or ``version``) on ``inputs``.

        ``protocol`` labels the request in the metrics (``v2``, ``native``, ``python``).
        ``decode``, when given, replaces the validation of ``inputs``: it turns the request
        body into arrays checked against the signature in one pass (the V2 codec does).
        Concurrent calls meet in the version's micro-batcher when batching is on for it.
        """
        started = time.perf_counter()
        try:
            loaded = self.registry.get(name, version)
        except Exception as exc:
            metrics.unrouted_failure(name, protocol, exc)
            raise
        observed = metrics.request_metrics(loaded.name, loaded.version, protocol)
        try:
            if decode is not None:
                arrays = decode(loaded.signature)
                check_rows(arrays)
            else:
                arrays = validate_inputs(loaded.signature, inputs)
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
            raise
        elapsed = time.perf_counter() - started
        observed.answered(elapsed)
        record_request(loaded.name, elapsed)
        return Prediction(loaded.name, loaded.version, outputs, loaded.signature)


#: The service of this process, over its registry.
service = InferenceService(registry)
