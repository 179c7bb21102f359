"""Decoders: how a caller's inputs become arrays checked against the public signature.

The service runs every request through ONE path: it looks up the version that answers, then
hands its public signature to the caller's decoder. V2 decodes its JSON and binary tensors
(:mod:`mlapp.api.v2.protocol`); Python callers, the native API and batch jobs send values
keyed by input name, decoded by :func:`named`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlapp.exceptions import InvalidInput
from mlapp.runtimes.tensors import Signature, TensorSpec, coerce_input

#: Decodes a request against the public signature into validated arrays.
Decoder = Callable[[Signature], dict[str, np.ndarray]]


def named(inputs: Any) -> Decoder:
    """The decoder of values keyed by input name (or a bare value for a one-input model).

    The service checks the rows of what any decoder returns; this one leaves that to it.
    """
    return lambda signature: _arrays(signature, inputs)


def validate_inputs(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    """Check named inputs against a signature and return them as arrays, rows included.

    ``inputs`` is a mapping of input name -> value; a model with one input also accepts
    the bare value.
    """
    arrays = _arrays(signature, inputs)
    check_rows(arrays)
    return arrays


def _arrays(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
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
    return {spec.name: _input(spec, inputs[spec.name]) for spec in signature.inputs}


def _input(spec: TensorSpec, value: Any) -> np.ndarray:
    """One input as a checked array; an empty one is refused here, before any model sees it.

    Models and handlers are not asked to cope with zero rows (a tokenizer's empty batch
    fails inside ONNX Runtime): V2 refuses a 0 in a shape, this is the same rule for values.
    """
    if _is_empty(value):
        raise InvalidInput(f"Input {spec.name!r} is empty: send at least one row.")
    array = coerce_input(spec, value)
    if array.size == 0:
        raise InvalidInput(f"Input {spec.name!r} is empty (shape {list(array.shape)}).")
    return array


def _is_empty(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.size == 0
    return isinstance(value, list | tuple) and not value


def check_rows(arrays: Mapping[str, np.ndarray]) -> None:
    """All inputs of one request must have the same number of rows."""
    if len(arrays) > 1 and len({a.shape[0] for a in arrays.values() if a.ndim}) > 1:
        raise InvalidInput("All inputs must have the same number of rows (first dimension).")
