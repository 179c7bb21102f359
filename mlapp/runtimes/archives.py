"""Open an uploaded zip archive without trusting it.

TorchScript and ``torch.export`` archives are zip files. Before any member is inflated, the
central directory is checked: member count, names (no absolute paths, no ``..``, no
duplicates, no control characters), compression methods (stored or deflated, never
encrypted), and the DECLARED sizes, alone and against the compressed sizes, so a zip bomb is
refused by arithmetic rather than by running out of memory. Reading a member is then bounded
by its declared size (``zipfile`` never returns more bytes than the directory declares).
Every failure of a damaged archive is an :class:`~mlapp.exceptions.ArtifactError` with a
message, never a stray ``zipfile`` or ``zlib`` exception.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlapp.exceptions import ArtifactError, UnsafeArtifact

#: More members than any model archive has (a TorchScript archive of a large model: a few
#: thousand tensors).
MAX_MEMBERS = 20_000
#: A member may inflate to at most this many times its compressed size (once it is above
#: ``RATIO_FLOOR`` bytes). Torch writes its archives stored (ratio 1); deflate reaches about
#: 1000:1 only on degenerate data, which is what zip bombs are made of.
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024
#: All members together may declare at most ``EXPANSION`` times the archive's size, plus
#: ``EXPANSION_SLACK`` bytes.
EXPANSION = 10
EXPANSION_SLACK = 64 * 1024 * 1024
#: Compression methods torch and ordinary zip tools write.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: Everything the standard library may raise on a damaged archive.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,  # includes UnicodeDecodeError of a name flagged UTF-8
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
)


@contextmanager
def open_archive(path: str | Path) -> Iterator[zipfile.ZipFile]:
    """The zip archive at ``path``, its directory checked; ``ArtifactError`` if refused."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise ArtifactError(f"The artifact is a damaged zip archive: {_describe(exc)}") from None
    with zf:
        check_directory(zf, path.stat().st_size)
        yield zf


def check_directory(zf: zipfile.ZipFile, archive_size: int) -> None:
    """Refuse an archive whose directory is hostile or damaged, before inflating anything."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArtifactError(
            f"The archive has {len(infos)} members; more than {MAX_MEMBERS} is not a model."
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        check_member_name(info.filename)
        if info.filename in seen:
            raise UnsafeArtifact(
                f"The archive holds {info.filename!r} twice: a loader could read another "
                "copy than the one inspected."
            )
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise ArtifactError(f"{info.filename} is encrypted: upload an unencrypted archive.")
        if info.compress_type not in _METHODS:
            raise ArtifactError(
                f"{info.filename} uses zip compression method {info.compress_type}; "
                "only stored and deflated members are read."
            )
        if info.file_size < 0 or info.compress_size < 0:
            raise ArtifactError(f"{info.filename} declares a negative size.")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise UnsafeArtifact(
                f"{info.filename} would inflate {info.compress_size} bytes to "
                f"{info.file_size} (more than {MAX_RATIO}:1): the archive looks like a zip bomb."
            )
        total += info.file_size
    limit = EXPANSION * archive_size + EXPANSION_SLACK
    if total > limit:
        raise UnsafeArtifact(
            f"The archive's members declare {total} bytes in all, more than {limit} for an "
            f"archive of {archive_size} bytes: it looks like a zip bomb."
        )


def check_member_name(name: str) -> None:
    """Refuse names a loader could resolve outside the archive, or read ambiguously."""
    bad = (
        not name
        or name.startswith(("/", "\\"))
        or "\\" in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or (len(name) > 1 and name[1] == ":")
        or any(part in {"..", "."} for part in name.split("/"))
        or len(name) > 1024
    )
    if bad:
        raise UnsafeArtifact(f"The archive has a member named {name[:200]!r}, which is refused.")


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The bytes of one member (bounded by its checked, declared size)."""
    try:
        return zf.read(info)
    except ZIP_ERRORS as exc:
        raise ArtifactError(f"{info.filename} cannot be read: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]
