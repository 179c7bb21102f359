"""Files callers hand in: a local path for a path, an upload or any file object; storing one
with the row that names it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from django.core.files import File
from django.db.models.fields.files import FieldFile


@contextmanager
def as_local_file(source: str | os.PathLike | IO[bytes]) -> Iterator[str]:
    """A path to ``source`` on local disk: the path itself, an upload's temporary file, or a
    temporary copy removed on exit."""
    if isinstance(source, (str, os.PathLike)):
        yield os.fspath(source)
        return
    temporary_path = getattr(source, "temporary_file_path", None)
    if temporary_path is not None:
        yield temporary_path()
        return
    fd, tmp = tempfile.mkstemp(prefix="mlapp-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            if hasattr(source, "chunks"):
                for chunk in source.chunks():
                    out.write(chunk)
            else:
                source.seek(0)
                shutil.copyfileobj(source, out)
        yield tmp
    finally:
        os.unlink(tmp)


def save_with_file(row: Any, field_file: FieldFile, name: str, path: str) -> None:
    """Store the file at ``path`` as ``name`` in ``field_file``, then save ``row``.

    Nothing stays stored on failure: a row that cannot be saved takes its file away with it.
    """
    with open(path, "rb") as fh:
        field_file.save(name, File(fh), save=False)
    try:
        row.save()
    except Exception:
        field_file.delete(save=False)
        raise
