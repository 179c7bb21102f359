"""Sources of a batch job: files (CSV, JSON Lines, NPY, NPZ) and registered ORM querysets.

``FORMATS`` is the one table of the files a batch job reads: file extension -> the
:class:`~mlapp.batch.sources.base.FileSource` class reading it (its ``format`` names the
format). The API, ``run_batch`` and :func:`mlapp.batch.create_job` all accept exactly these.
Each format lives in its own module (``csv``, ``jsonl``, ``npy``); registered sources in
``queryset``; what they share in ``base`` and, for flat rows, ``rows``.
"""

from __future__ import annotations

import os

from mlapp.batch.sources.base import (
    Chunk,
    FileSource,
    Item,
    Opener,
    Plan,
    Source,
)
from mlapp.batch.sources.csv import CSVSource
from mlapp.batch.sources.jsonl import JSONLSource
from mlapp.batch.sources.npy import NPYSource, NPZSource
from mlapp.batch.sources.queryset import QuerySetSource
from mlapp.exceptions import BadSource
from mlapp.runtimes.tensors import Signature

#: File extensions a batch job reads (lower case), and the source class of each.
FORMATS: dict[str, type[FileSource]] = {
    ".csv": CSVSource,
    ".jsonl": JSONLSource,
    ".ndjson": JSONLSource,
    ".npy": NPYSource,
    ".npz": NPZSource,
}
#: The extensions of ``FORMATS`` in the order messages and help texts list them.
EXTENSIONS = tuple(sorted(FORMATS))


def _source_class(name: str) -> type[FileSource]:
    ext = os.path.splitext(name.lower())[1]
    if ext not in FORMATS:
        raise BadSource(
            f"{os.path.basename(name)!r} is not a file a batch job reads: use "
            f"{', '.join(EXTENSIONS)}."
        )
    return FORMATS[ext]


def file_format(name: str) -> str:
    """The format a file name says (by extension), or ``BadSource``."""
    return _source_class(name).format


def file_source(name: str, opener: Opener, signature: Signature, path: str | None = None) -> Source:
    """The source reading a file called ``name`` (its extension says the format)."""
    return _source_class(name)(opener, signature, path)


__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "CSVSource",
    "Chunk",
    "FileSource",
    "Item",
    "JSONLSource",
    "NPYSource",
    "NPZSource",
    "Plan",
    "QuerySetSource",
    "Source",
    "file_format",
    "file_source",
]
