"""NumPy files: an ``.npy`` array for a model with one input, an ``.npz`` with one per input.

Rows are keyed by index. Neither is ever unpickled.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np

from mlapp.batch.sources.base import Chunk, FileSource, Item, Plan
from mlapp.exceptions import BadSource, InvalidInput
from mlapp.runtimes.tensors import coerce_input


class _ArraySource(FileSource):
    """Rows of named arrays, keyed by index; subclasses say how to open the arrays."""

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError("An array source implements arrays(): one array per input.")

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
