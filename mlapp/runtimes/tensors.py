"""The one table between Open Inference Protocol datatypes and numpy, and signatures.

Every layer above the runtimes speaks numpy arrays described by a :class:`Signature`;
the datatype names are those of the Open Inference Protocol V2 (``FP32``, ``INT64``,
``BYTES`` ...), so what a runtime reports is what V2 clients see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlapp.exceptions import ArtifactError, InvalidInput

#: OIP V2 datatype name -> numpy dtype. BYTES tensors are object arrays of str/bytes.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_NUMPY_TO_DATATYPE = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    """Return the OIP datatype name of a numpy array."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _NUMPY_TO_DATATYPE[array.dtype]
    except KeyError:
        raise InvalidInput(f"Unsupported array dtype {array.dtype}.") from None


@dataclass(frozen=True)
class TensorSpec:
    """Name, OIP datatype and shape of one tensor; ``-1`` marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        try:
            name, datatype, shape = data["name"], data["datatype"], data["shape"]
        except (KeyError, TypeError):
            raise ArtifactError(
                "Each tensor of a signature needs 'name', 'datatype' and 'shape'."
            ) from None
        if not isinstance(name, str) or not name:
            raise ArtifactError("A tensor name must be a non-empty string.")
        if datatype not in DATATYPES:
            raise ArtifactError(
                f"Tensor {name!r} has unknown datatype {datatype!r}; "
                f"expected one of {', '.join(DATATYPES)}."
            )
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise ArtifactError(
                f"Tensor {name!r} needs a shape as a list of integers (-1 for a variable size)."
            )
        return cls(name=name, datatype=datatype, shape=tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @property
    def dtype(self) -> np.dtype:
        return DATATYPES[self.datatype]

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` fits this spec (same rank, fixed dims equal)."""
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True)
class Signature:
    """The named input and output tensors of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        if not isinstance(data, Mapping):
            raise ArtifactError("A signature must be an object with 'inputs' and 'outputs'.")
        inputs = data.get("inputs")
        outputs = data.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs:
            raise ArtifactError(
                "A signature needs a non-empty 'inputs' list and an 'outputs' list."
            )
        sig = cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in inputs),
            outputs=tuple(TensorSpec.from_dict(t) for t in outputs),
        )
        for group in (sig.inputs, sig.outputs):
            names = [t.name for t in group]
            if len(set(names)) != len(names):
                raise ArtifactError(f"Tensor names must be unique in a signature: {names}.")
        return sig

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def _fits(values: Iterable[TensorSpec], other: Iterable[TensorSpec]) -> bool:
    return [(t.name, t.datatype, len(t.shape)) for t in values] == [
        (t.name, t.datatype, len(t.shape)) for t in other
    ]


def signatures_compatible(declared: Signature, actual: Signature) -> bool:
    """True when a declared signature agrees with what the artifact reports.

    Names, datatypes and ranks must match; a declared fixed dim may refine a variable one.
    """
    if not (_fits(declared.inputs, actual.inputs) and _fits(declared.outputs, actual.outputs)):
        return False
    pairs = zip(declared.inputs + declared.outputs, actual.inputs + actual.outputs, strict=True)
    return all(
        a == -1 or d == a for dec, act in pairs for d, a in zip(dec.shape, act.shape, strict=True)
    )


def coerce_input(spec: TensorSpec, value: Any) -> np.ndarray:
    """Turn one JSON-ish value (nested lists, scalars, an array) into a checked array.

    Raises ``InvalidInput`` with a message naming the tensor on a dtype or shape mismatch.
    Integers are accepted for float tensors; floats for integer tensors are refused, as
    silently truncating them would change the answer.
    """
    if spec.datatype == "BYTES":
        try:
            array = np.asarray(value, dtype=object)
        except ValueError as exc:
            raise InvalidInput(f"Input {spec.name!r} is not a regular array: {exc}") from None
        flat = array.reshape(-1)
        if not all(isinstance(v, (str, bytes)) for v in flat):
            raise InvalidInput(f"Input {spec.name!r} must hold strings (datatype BYTES).")
    else:
        try:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"Input {spec.name!r} is not a regular array: {exc}") from None
        array = _cast(spec, array)
    shape = tuple(array.shape)
    if not spec.accepts_shape(shape):
        raise InvalidInput(
            f"Input {spec.name!r} has shape {list(shape)}, expected {list(spec.shape)} "
            "(-1 means any size)."
        )
    return array


def _cast(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    want = spec.dtype
    kind = array.dtype.kind
    if array.dtype == want:
        return array
    if kind in "OUSV" or kind == "c":
        raise InvalidInput(
            f"Input {spec.name!r} must be numeric ({spec.datatype}), got non-numeric values."
        )
    if want.kind == "f" and kind in "biuf":
        return array.astype(want)
    if want.kind in "iu" and kind in "biu":
        if array.size and (array.min() < np.iinfo(want).min or array.max() > np.iinfo(want).max):
            raise InvalidInput(f"Input {spec.name!r} has values out of range for {spec.datatype}.")
        return array.astype(want)
    if want.kind == "b" and kind == "b":
        return array
    raise InvalidInput(
        f"Input {spec.name!r} must be {spec.datatype}, got values of type {array.dtype}."
    )


def sample_inputs(signature: Signature, rows: int = 1) -> dict[str, np.ndarray]:
    """Inputs that fit ``signature``: ``rows`` rows of zeros (or a short text), -1 -> 4.

    The one example builder: the validation's smoke prediction, the warm-up, the example
    bodies of the native API and the admin's "try it" (unless the handler declares its own
    ``example``).
    """
    result = {}
    for spec in signature.inputs:
        shape = [
            rows if i == 0 and d == -1 else (4 if d == -1 else d) for i, d in enumerate(spec.shape)
        ]
        if spec.datatype == "BYTES":
            result[spec.name] = np.full(shape, "Hello, world.", dtype=object)
        else:
            result[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return result
