"""What every batch source shares: items, chunks, plans, the Source interface, key checks.

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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import IO, Any

from mlapp.exceptions import BadSource
from mlapp.runtimes.tensors import Signature

#: The longest key BatchPrediction stores.
MAX_KEY_LENGTH = 255

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


class Source:
    """A batch job's input: planned once, then read one chunk at a time."""

    format = ""

    def plan(self, chunk_size: int) -> Plan:
        raise NotImplementedError("A Source subclass implements plan(chunk_size).")

    def read(self, chunk: Chunk) -> list[Item]:
        raise NotImplementedError("A Source subclass implements read(chunk).")


class FileSource(Source):
    """A source reading one file: ``opener`` opens it (binary); ``path`` is its local path
    when it has one (a remote storage has none)."""

    def __init__(self, opener: Opener, signature: Signature, path: str | None = None) -> None:
        self.opener = opener
        self.signature = signature
        self.path = path


def check_key(key: Any, where: str, seen: set[str]) -> str:
    """``key`` as the string it is stored under; ``BadSource`` if empty, too long or repeated."""
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


class Chunker:
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


class LineReader:
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
