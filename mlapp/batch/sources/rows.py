"""How flat rows (CSV columns, a queryset's fields) fill a model's inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from mlapp.exceptions import BadSource, InvalidInput
from mlapp.runtimes.tensors import Signature, TensorSpec, coerce_input


def _row_shape(spec: TensorSpec) -> tuple[int, ...] | None:
    """The shape one row of ``spec`` takes, or None where a variable dim makes it unknown."""
    rest = spec.shape[1:]
    if len(rest) == 1 and rest[0] == -1:
        return None  # a vector of any length: all its columns, in order
    if any(d < 0 for d in rest):
        raise BadSource(
            f"Input {spec.name!r} has shape {list(spec.shape)}: a flat row cannot fill its "
            "variable dimensions; use JSON Lines."
        )
    return tuple(rest)


class RowLayout:
    """Which positions of a flat row fill each input, and the shape each takes per row."""

    def __init__(self, signature: Signature, groups: Mapping[str, Sequence[int]]) -> None:
        self.signature = signature
        self.groups = {name: list(positions) for name, positions in groups.items()}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for spec in signature.inputs:
            positions = self.groups[spec.name]
            shape = _row_shape(spec)
            if shape is None:
                shape = (len(positions),)
            if math.prod(shape) != len(positions):
                raise BadSource(
                    f"Input {spec.name!r} (shape {list(spec.shape)}) takes {math.prod(shape)} "
                    f"value(s) per row; {len(positions)} column(s) or field(s) fill it."
                )
            self.shapes[spec.name] = shape

    @classmethod
    def from_header(cls, signature: Signature, columns: Sequence[str]) -> RowLayout:
        """One input: every column, in order. Several: columns named ``input`` or ``input.N``."""
        if len(signature.inputs) == 1:
            return cls(signature, {signature.inputs[0].name: range(len(columns))})
        names = signature.input_names
        groups: dict[str, list[tuple[int, int]]] = {name: [] for name in names}
        for position, column in enumerate(columns):
            name, _, index = column.partition(".")
            if name not in groups or (index and not index.isdigit()):
                raise BadSource(
                    f"Column {column!r} names no input of the model; its inputs are "
                    f"{', '.join(names)} (one column each, or columns NAME.0, NAME.1, ...)."
                )
            groups[name].append((int(index) if index else 0, position))
        missing = [name for name, found in groups.items() if not found]
        if missing:
            raise BadSource(f"No column fills the input(s) {', '.join(missing)}.")
        return cls(signature, {n: [p for _, p in sorted(found)] for n, found in groups.items()})

    @classmethod
    def from_fields(cls, signature: Signature, mapping: Any) -> tuple[RowLayout, list[str]]:
        """From a registered source's ``inputs``: a list of fields, or ``{input: fields}``."""
        if isinstance(mapping, (list, tuple, str)):
            if len(signature.inputs) != 1:
                raise BadSource(
                    f"The model takes {len(signature.inputs)} inputs "
                    f"({', '.join(signature.input_names)}): map its fields as "
                    '{"input name": ["field", ...]}.'
                )
            mapping = {signature.inputs[0].name: mapping}
        if not isinstance(mapping, Mapping):
            raise BadSource("A source's 'inputs' is a list of field names or {input: fields}.")
        unknown = set(mapping) - set(signature.input_names)
        missing = set(signature.input_names) - set(mapping)
        if unknown or missing:
            raise BadSource(
                f"A source's 'inputs' must map exactly the model's inputs "
                f"({', '.join(signature.input_names)}); got {', '.join(map(str, mapping))}."
            )
        fields: list[str] = []
        groups = {}
        for name, names in mapping.items():
            names = [names] if isinstance(names, str) else list(names)
            groups[name] = range(len(fields), len(fields) + len(names))
            fields.extend(names)
        return cls(signature, groups), fields

    def inputs(self, values: Sequence[Any], parse: bool) -> dict[str, np.ndarray]:
        """The inputs of one row (a batch of one); ``parse`` turns CSV text into numbers.

        Raises ``InvalidInput`` naming the value that does not fit.
        """
        result = {}
        for spec in self.signature.inputs:
            cells = [values[p] for p in self.groups[spec.name]]
            if parse:
                cells = [_parse(spec, cell) for cell in cells]
            else:
                cells = [_plain(spec, cell) for cell in cells]
            dtype = object if spec.datatype == "BYTES" else None
            array = np.asarray(cells, dtype=dtype).reshape((1, *self.shapes[spec.name]))
            result[spec.name] = coerce_input(spec, array)
        return result


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def _parse(spec: TensorSpec, text: str) -> Any:
    if spec.datatype == "BYTES":
        return text
    stripped = text.strip()
    if not stripped:
        raise InvalidInput(f"Input {spec.name!r}: a value is empty.")
    kind = spec.dtype.kind
    try:
        if kind == "f":
            return float(stripped)
        if kind in "iu":
            return int(stripped)
    except ValueError:
        what = "a number" if kind == "f" else "an integer"
        raise InvalidInput(f"Input {spec.name!r}: {_quoted(text)} is not {what}.") from None
    if stripped.lower() in _TRUE:
        return True
    if stripped.lower() in _FALSE:
        return False
    raise InvalidInput(f"Input {spec.name!r}: {_quoted(text)} is not true or false.")


def _quoted(text: str, limit: int = 40) -> str:
    """``text`` as a message quotes it: a long cell is cut, so its row's error stays short."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _plain(spec: TensorSpec, value: Any) -> Any:
    if value is None:
        raise InvalidInput(f"Input {spec.name!r}: a value is empty (NULL).")
    if isinstance(value, Decimal):
        return float(value)
    return value
