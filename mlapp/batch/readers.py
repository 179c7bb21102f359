"""Sources of a batch job: files (CSV, JSON Lines, NPY, NPZ) and registered ORM querysets.

A source does two things:

- :meth:`Source.plan` reads it once, end to end, before any work is queued. It checks the
  *structure* (format, header, keys, dtypes, shapes) and raises :class:`BadSource` naming
  what to fix, and it cuts the items into :class:`Chunk` s that say where each chunk starts,
  so a worker reads its own chunk without reading the rows before it.
- :meth:`Source.read` returns the :class:`Item` s of one chunk. A row whose *values* cannot
  become inputs (a CSV cell that is not a number, a row with a missing cell) comes back as an
  item carrying an ``error``: the job records it for that key and goes on.

Every item has a key (a string): the ``key`` column or field when the source has one, else
the item's position, ``0`` for the first.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import IO, Any

import numpy as np
import orjson
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from mlapp.conf import settings
from mlapp.exceptions import BadSource, InvalidInput
from mlapp.runtimes.tensors import Signature, TensorSpec, coerce_input

#: The longest key BatchPrediction stores.
MAX_KEY_LENGTH = 255
#: File extensions a batch job reads, and the format each one means.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npy": "npy", ".npz": "npz"}

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Item:
    """One unit of work: what a native predict body's ``inputs`` would hold, under a key."""

    key: str
    inputs: Any = None
    #: Set when the row's values could not become inputs; the item is recorded as failed.
    error: str = ""
    #: The inputs are already arrays checked against the signature (no need to check again).
    checked: bool = False


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive items, one task's work; JSON-ready for a Celery message."""

    index: int
    #: Position of the chunk's first item in the source.
    start: int
    count: int
    #: Where the reader resumes: a byte offset (CSV, JSON Lines); unused for arrays.
    offset: int = 0
    #: The keys of an ORM chunk (its rows are looked up by key, not by position).
    keys: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        return cls(**data)


@dataclass
class Plan:
    """What planning a source found: the number of items and the chunks to run."""

    format: str
    total: int
    chunks: list[Chunk]


def _check_key(key: Any, where: str, seen: set[str]) -> str:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise BadSource(f"{where}: a key must be a string or an integer, not {key!r}.")
    text = str(key)
    if not text:
        raise BadSource(f"{where}: the key is empty.")
    if len(text) > MAX_KEY_LENGTH:
        raise BadSource(f"{where}: the key is longer than {MAX_KEY_LENGTH} characters.")
    if text in seen:
        raise BadSource(f"{where}: the key {text!r} appears twice; keys must be unique.")
    seen.add(text)
    return text


class _Chunker:
    """Cuts consecutive items into chunks of ``size`` while a source is planned."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise BadSource("The chunk size must be a positive integer.")
        self.size = size
        self.chunks: list[Chunk] = []
        self.total = 0
        self._offset = 0
        self._keys: list[Any] | None = None

    def add(self, offset: int = 0, key: Any = None) -> None:
        """Count one item; ``offset`` is where it starts, ``key`` its ORM key."""
        if self.total % self.size == 0:
            self._offset = offset
            self._keys = [] if key is not None else None
        if self._keys is not None:
            self._keys.append(key)
        self.total += 1
        if self.total % self.size == 0:
            self._close(self.size)

    def finish(self, fmt: str, empty_message: str) -> Plan:
        if self.total % self.size:
            self._close(self.total % self.size)
        if not self.total:
            raise BadSource(empty_message)
        return Plan(format=fmt, total=self.total, chunks=self.chunks)

    def _close(self, count: int) -> None:
        self.chunks.append(
            Chunk(
                index=len(self.chunks),
                start=self.total - count,
                count=count,
                offset=self._offset,
                keys=self._keys,
            )
        )


# -- how flat rows (CSV columns, model fields) fill the inputs -------------------------


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
        raise InvalidInput(f"Input {spec.name!r}: {text!r} is not {what}.") from None
    if stripped.lower() in _TRUE:
        return True
    if stripped.lower() in _FALSE:
        return False
    raise InvalidInput(f"Input {spec.name!r}: {text!r} is not true or false.")


def _plain(spec: TensorSpec, value: Any) -> Any:
    if value is None:
        raise InvalidInput(f"Input {spec.name!r}: a value is empty (NULL).")
    if isinstance(value, Decimal):
        return float(value)
    return value


# -- sources ----------------------------------------------------------------------------


class Source:
    """A batch job's input: planned once, then read one chunk at a time."""

    format = ""

    def plan(self, chunk_size: int) -> Plan:
        raise NotImplementedError("A Source subclass implements plan(chunk_size).")

    def read(self, chunk: Chunk) -> list[Item]:
        raise NotImplementedError("A Source subclass implements read(chunk).")


class _LineReader:
    """Lines of a binary file with the byte offset after each (csv pulls lines from it)."""

    def __init__(self, fh: IO[bytes], offset: int) -> None:
        fh.seek(offset)
        self.fh = fh
        self.offset = offset
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.fh.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSource(f"Line {self.line} is not UTF-8 text.") from None


class CSVSource(Source):
    """A header row, an optional ``key`` column, value columns filling the inputs."""

    format = "csv"

    def __init__(self, opener: Opener, signature: Signature) -> None:
        self.opener = opener
        self.signature = signature

    def _header(self, lines: _LineReader) -> tuple[list[str], int | None, RowLayout]:
        reader = csv.reader(lines)
        header = next(reader, None)
        if not header:
            raise BadSource("The CSV file is empty: it needs a header row naming its columns.")
        header[0] = header[0].removeprefix("\ufeff")
        columns = [c.strip() for c in header]
        if len(set(columns)) != len(columns) or "" in columns:
            raise BadSource(f"The CSV header has empty or repeated column names: {columns}.")
        if all(_is_number(c) for c in columns):
            raise BadSource(
                "The first CSV row holds numbers: it must be a header naming the columns "
                "(an optional 'key', then the inputs' values)."
            )
        key = columns.index("key") if "key" in columns else None
        values = [c for i, c in enumerate(columns) if i != key]
        if not values:
            raise BadSource("The CSV has no value columns besides 'key'.")
        try:
            layout = RowLayout.from_header(self.signature, values)
        except BadSource as exc:
            raise BadSource(f"The CSV columns do not fit the model: {exc.message}") from None
        return columns, key, layout

    def plan(self, chunk_size: int) -> Plan:
        chunker = _Chunker(chunk_size)
        seen: set[str] = set()
        with self.opener() as fh:
            lines = _LineReader(fh, 0)
            _, key, _ = self._header(lines)
            reader = csv.reader(lines)
            while True:
                offset = lines.offset
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    raise BadSource(f"Line {lines.line}: {exc}.") from None
                if row is None:
                    break
                if not any(cell.strip() for cell in row):
                    continue
                if key is not None:
                    cell = row[key].strip() if key < len(row) else ""
                    _check_key(cell, f"Line {lines.line}", seen)
                chunker.add(offset)
        return chunker.finish(self.format, "The CSV file has a header but no rows.")

    def read(self, chunk: Chunk) -> list[Item]:
        items = []
        with self.opener() as fh:
            columns, key, layout = self._header(_LineReader(fh, 0))
            lines = _LineReader(fh, chunk.offset)
            reader = csv.reader(lines)
            position = chunk.start
            while len(items) < chunk.count:
                row = next(reader, None)
                if row is None:
                    raise BadSource("The CSV file ended before the chunk did; was it changed?")
                if not any(cell.strip() for cell in row):
                    continue
                item_key = row[key].strip() if key is not None else str(position)
                values = [cell for i, cell in enumerate(row) if i != key]
                if len(row) != len(columns):
                    items.append(
                        Item(
                            item_key,
                            error=f"The row has {len(row)} values; the header names "
                            f"{len(columns)} columns.",
                        )
                    )
                else:
                    try:
                        items.append(
                            Item(item_key, layout.inputs(values, parse=True), checked=True)
                        )
                    except InvalidInput as exc:
                        items.append(Item(item_key, error=exc.message))
                position += 1
        return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class JSONLSource(Source):
    """One object per line: ``{"key": ..., "inputs": ...}``, ``inputs`` as in native predict."""

    format = "jsonl"

    def __init__(self, opener: Opener, signature: Signature) -> None:
        self.opener = opener
        self.signature = signature

    @staticmethod
    def _parse(line: str, number: int) -> dict[str, Any]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadSource(f"Line {number} is not valid JSON: {exc}.") from None
        if not isinstance(obj, dict) or "inputs" not in obj:
            raise BadSource(
                f'Line {number}: expected an object {{"key": ..., "inputs": ...}} '
                "with the inputs as in a native predict body."
            )
        unknown = set(obj) - {"key", "inputs"}
        if unknown:
            raise BadSource(
                f"Line {number}: unknown field(s) {', '.join(sorted(unknown))}; "
                "a line holds 'key' (optional) and 'inputs'."
            )
        return obj

    def plan(self, chunk_size: int) -> Plan:
        chunker = _Chunker(chunk_size)
        seen: set[str] = set()
        with self.opener() as fh:
            lines = _LineReader(fh, 0)
            while True:
                offset = lines.offset
                line = next(lines, None)
                if line is None:
                    break
                if not line.strip():
                    continue
                obj = self._parse(line, lines.line)
                key = obj.get("key", chunker.total)
                _check_key(key, f"Line {lines.line}", seen)
                chunker.add(offset)
        return chunker.finish(self.format, "The JSON Lines file has no lines.")

    def read(self, chunk: Chunk) -> list[Item]:
        items = []
        with self.opener() as fh:
            lines = _LineReader(fh, chunk.offset)
            position = chunk.start
            while len(items) < chunk.count:
                line = next(lines, None)
                if line is None:
                    raise BadSource("The file ended before the chunk did; was it changed?")
                if not line.strip():
                    continue
                obj = self._parse(line, lines.line)
                items.append(Item(str(obj.get("key", position)), obj["inputs"]))
                position += 1
        return items


class _ArraySource(Source):
    """Rows of named arrays, keyed by index; subclasses say how to open the arrays."""

    def __init__(self, opener: Opener, signature: Signature, path: str | None = None) -> None:
        self.opener = opener
        self.signature = signature
        self.path = path

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def plan(self, chunk_size: int) -> Plan:
        arrays = self.arrays()
        rows = {name: (a.shape[0] if a.ndim else 0) for name, a in arrays.items()}
        if len(set(rows.values())) > 1:
            raise BadSource(f"The arrays have different numbers of rows: {rows}.")
        for spec in self.signature.inputs:
            array = arrays[spec.name]
            if array.ndim == 0:
                raise BadSource(f"Array {spec.name!r} is a scalar; it needs one row per item.")
            try:
                coerce_input(spec, array[:1])
            except InvalidInput as exc:
                raise BadSource(f"The array does not fit the model: {exc.message}") from None
        total = next(iter(rows.values()))
        if not total:
            raise BadSource("The arrays have no rows.")
        if chunk_size < 1:
            raise BadSource("The chunk size must be a positive integer.")
        chunks = [
            Chunk(index=i, start=start, count=min(chunk_size, total - start))
            for i, start in enumerate(range(0, total, chunk_size))
        ]
        return Plan(format=self.format, total=total, chunks=chunks)

    def read(self, chunk: Chunk) -> list[Item]:
        arrays = self.arrays()
        stop = chunk.start + chunk.count
        # Cast the chunk's rows once (planning checked that they can be).
        window = {
            spec.name: coerce_input(spec, np.asarray(arrays[spec.name][chunk.start : stop]))
            for spec in self.signature.inputs
        }
        return [
            Item(
                str(chunk.start + i),
                {name: a[i : i + 1] for name, a in window.items()},
                checked=True,
            )
            for i in range(chunk.count)
        ]


def _npy_error(exc: Exception) -> BadSource:
    text = str(exc)
    if "Object arrays" in text or "Python objects" in text:
        return BadSource("The array holds Python objects; mlapp never unpickles: save numbers.")
    if "pickled" in text:
        return BadSource("Not a readable NumPy file (.npy/.npz); mlapp never unpickles.")
    return BadSource(f"Not a readable NumPy file: {text}")


class NPYSource(_ArraySource):
    """One array, one row per item, for a model with one input."""

    format = "npy"

    def arrays(self) -> dict[str, np.ndarray]:
        if len(self.signature.inputs) != 1:
            raise BadSource(
                f"A .npy file holds one array; this model takes {len(self.signature.inputs)} "
                f"inputs ({', '.join(self.signature.input_names)}): send an .npz with one "
                "array per input."
            )
        try:
            if self.path is not None:
                array = np.load(self.path, allow_pickle=False, mmap_mode="r")
            else:
                with self.opener() as fh:
                    array = np.load(io.BytesIO(fh.read()), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _npy_error(exc) from None
        if not isinstance(array, np.ndarray):
            raise BadSource("This is an .npz archive, not an .npy array: name it .npz.")
        return {self.signature.inputs[0].name: array}


class NPZSource(_ArraySource):
    """One array per input (named like it), the same number of rows in each."""

    format = "npz"
    _cache: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    _lock = threading.Lock()

    def arrays(self) -> dict[str, np.ndarray]:
        # Members of an .npz are read whole: keep the last archive of this process, so
        # the chunks of a job do not read it once each.
        cache_key = (self.path, os.path.getmtime(self.path)) if self.path else None
        with self._lock:
            if cache_key is not None and cache_key in self._cache:
                return self._cache[cache_key]
        arrays = self._load()
        if cache_key is not None:
            with self._lock:
                self._cache.clear()
                self._cache[cache_key] = arrays
        return arrays

    def _load(self) -> dict[str, np.ndarray]:
        try:
            with self.opener() as fh:
                archive = np.load(io.BytesIO(fh.read()), allow_pickle=False)
                if not isinstance(archive, np.lib.npyio.NpzFile):
                    raise BadSource("This is not an .npz archive of arrays.")
                with archive:
                    found = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, EOFError) as exc:
            raise _npy_error(exc) from None
        names = self.signature.input_names
        if len(names) == 1 and len(found) == 1:
            return {names[0]: next(iter(found.values()))}
        if set(found) != set(names):
            raise BadSource(
                f"The .npz holds arrays {', '.join(sorted(found)) or 'none'}; the model's inputs "
                f"are {', '.join(names)}: one array per input, named like it."
            )
        return found


class QuerySetSource(Source):
    """A source registered in ``MLAPP["BATCH_SOURCES"]``: rows of a queryset, keyed by a field.

    ``{"queryset": "app.module.function", "inputs": [fields] or {input: fields}, "key": "pk"}``;
    the function takes the job's params as keyword arguments and returns a QuerySet.
    """

    format = "queryset"

    def __init__(self, name: str, params: Mapping[str, Any], signature: Signature) -> None:
        sources = settings.BATCH_SOURCES
        if name not in sources:
            known = ", ".join(sorted(sources)) or "none"
            raise BadSource(f"No batch source named {name!r} (registered: {known}).")
        spec = sources[name]
        self.name = name
        function = import_string(spec["queryset"])
        try:
            queryset = function(**dict(params or {}))
        except TypeError as exc:
            raise BadSource(f"Source {name!r} refused its params {dict(params)}: {exc}") from None
        if not isinstance(queryset, QuerySet):
            raise BadSource(f"Source {name!r} did not return a QuerySet.")
        self.queryset = queryset
        self.key = spec.get("key", "pk")
        meta = queryset.model._meta
        key_field = meta.pk if self.key == "pk" else _field(meta, self.key, name)
        if not (key_field.primary_key or key_field.unique):
            raise BadSource(f"Source {name!r}: the key field {self.key!r} must be unique.")
        self.layout, self.fields = RowLayout.from_fields(signature, spec["inputs"])
        for field in self.fields:
            _field(meta, field, name)

    def plan(self, chunk_size: int) -> Plan:
        chunker = _Chunker(chunk_size)
        try:
            keys = self.queryset.order_by("pk").values_list(self.key, flat=True)
            for key in keys.iterator(chunk_size=10_000):
                chunker.add(key=key if isinstance(key, int) else str(key))
        except TypeError as exc:  # e.g. a sliced queryset cannot be re-ordered
            raise BadSource(f"Source {self.name!r}: {exc}") from None
        return chunker.finish(self.format, f"Source {self.name!r} has no rows.")

    def read(self, chunk: Chunk) -> list[Item]:
        keys = chunk.keys or []
        rows = self.queryset.filter(**{f"{self.key}__in": keys}).values_list(self.key, *self.fields)
        found = {str(row[0]): row[1:] for row in rows}
        items = []
        for key in map(str, keys):
            if key not in found:
                items.append(Item(key, error="The row left the source before it was scored."))
                continue
            try:
                items.append(Item(key, self.layout.inputs(found[key], parse=False), checked=True))
            except InvalidInput as exc:
                items.append(Item(key, error=exc.message))
        return items


def _field(meta: Any, name: str, source: str) -> Any:
    try:
        return meta.get_field(name)
    except Exception:
        raise BadSource(f"Source {source!r}: {meta.label} has no field {name!r}.") from None


def file_format(name: str) -> str:
    """The format a file name says (by extension), or ``BadSource``."""
    ext = os.path.splitext(name.lower())[1]
    if ext not in FORMATS:
        raise BadSource(
            f"{os.path.basename(name)!r} is not a file a batch job reads: use "
            f"{', '.join(sorted(FORMATS))}."
        )
    return FORMATS[ext]


def file_source(name: str, opener: Opener, signature: Signature, path: str | None = None) -> Source:
    """The source reading a file called ``name`` (its extension says the format)."""
    fmt = file_format(name)
    if fmt == "csv":
        return CSVSource(opener, signature)
    if fmt == "jsonl":
        return JSONLSource(opener, signature)
    if fmt == "npy":
        return NPYSource(opener, signature, path)
    return NPZSource(opener, signature, path)
