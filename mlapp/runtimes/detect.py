"""Tell an artifact's format from its content, and refuse what would unpickle code.

TorchScript archives, ``torch.save`` files and ``torch.export`` ``.pt2`` archives are all
zip files with pickles inside, so they are told apart by their member names, never by the
file's extension. Pickles found inside a TorchScript or torch.export archive are scanned
(not loaded) and refused when they reference anything beyond tensors and TorchScript
classes; torch.export archives carrying compiled (AOTInductor) code are refused, and their
serialized program is read as data (:mod:`mlapp.runtimes.export_program`). Every archive's
directory is checked before anything inflates (:mod:`mlapp.runtimes.archives`); TorchScript
code may call ATen operators only, and never reads files.
"""

from __future__ import annotations

import io
import json
import mmap
import re
import zipfile
import zlib
from pathlib import Path

from mlapp.exceptions import ArtifactError, UnsafeArtifact
from mlapp.runtimes.archives import ZIP_ERRORS, check_directory, open_archive, read_member
from mlapp.runtimes.export_program import check_program_json
from mlapp.runtimes.pickles import PICKLE_HINT, check_pickle_globals

TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch_export"
ONNX = "onnx"

# torch.export archives: members torch.export.load reads as text or raw tensor bytes (never
# unpickled). Every other member is unpickled by some path of torch.export.load (sample
# inputs, pickled weights and constants, legacy files, with weights_only=False), so it must
# be a pickle, or a torch.save zip of pickles, naming nothing beyond tensors.
_EXPORT_TEXT_MEMBERS = frozenset(
    {
        "archive_format",
        "archive_version",
        "byteorder",
        "version",
        ".data/version",
        ".data/serialization_id",
        ".format_version",
        ".storage_alignment",
    }
)
_EXPORT_RAW_RECORD = {
    "data/weights/": re.compile(r"weight_\d+"),
    "data/constants/": re.compile(r"tensor_\d+"),
}


def detect_format(path: str | Path) -> str:
    """Return ``"torchscript"``, ``"torch_export"`` or ``"onnx"`` for the file at ``path``.

    Raises ``UnsafeArtifact`` for pickles (plain, joblib, ``torch.save``) and
    ``ArtifactError`` for anything else that is not a known model format.
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise ArtifactError("The artifact file is empty.")
    if _is_zip(path):
        return _detect_zip(path)
    if _is_pickle(head):
        raise UnsafeArtifact(f"This file is a Python pickle (e.g. pickle, joblib). {PICKLE_HINT}")
    if _is_compressed(head):
        if _is_pickle(_decompressed_head(path)):
            raise UnsafeArtifact(
                f"This file is a compressed Python pickle (as joblib writes). {PICKLE_HINT}"
            )
        raise ArtifactError(
            "This file is compressed (gzip/zlib/lz4): upload the model file itself, uncompressed."
        )
    if _looks_like_onnx(path):
        return ONNX
    raise ArtifactError(
        "Unknown artifact format: expected a TorchScript archive, a torch.export .pt2 "
        "archive or an ONNX model."
    )


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except ZIP_ERRORS as exc:  # a damaged end-of-archive record (e.g. "multiple disks")
        raise ArtifactError(f"The artifact is a damaged zip archive: {exc}") from None


def _is_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles open with PROTO n; older protocols are refused as unknown formats.
    return head[:1] == b"\x80" and 2 <= head[1:2][0] <= 5 if len(head) >= 2 else False


def _is_compressed(head: bytes) -> bool:
    gzip = head[:2] == b"\x1f\x8b"
    # A zlib stream: CMF 0x78 (deflate, 32K window) and a header checksum divisible by 31.
    zlib_stream = len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0
    lz4 = head[:4] == b"\x04\x22\x4d\x18"
    return gzip or zlib_stream or lz4


def _decompressed_head(path: Path) -> bytes:
    """The first bytes of a gzip or zlib file once inflated (b"" when that fails)."""
    with path.open("rb") as fh:
        data = fh.read(64 * 1024)
    wbits = 16 + zlib.MAX_WBITS if data[:2] == b"\x1f\x8b" else zlib.MAX_WBITS
    try:
        return zlib.decompressobj(wbits).decompress(data, 16)
    except zlib.error:
        return b""


def _detect_zip(path: Path) -> str:
    with open_archive(path) as zf:
        members = {_strip_root(n) for n in zf.namelist()}
        if "archive_format" in members or "models/model.json" in members:
            _check_export_archive(zf)
            return TORCH_EXPORT
        if "data.pkl" in members and any(m.startswith("code/") for m in members):
            _check_torchscript_archive(zf)
            return TORCHSCRIPT
        if "data.pkl" in members:
            raise UnsafeArtifact(
                "This file was written by torch.save (a pickled module or state dict), "
                f"which can run arbitrary code when loaded. {PICKLE_HINT}"
            )
    raise ArtifactError(
        "This zip archive is neither a TorchScript archive nor a torch.export .pt2 archive."
    )


#: Operator namespaces TorchScript code may call: ATen, TorchScript's primitives and the
#: quantized kernels. Others come from extensions loaded into the process (anything goes).
_TORCHSCRIPT_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized"})
_TORCHSCRIPT_OPS = re.compile(rb"\bops\.([A-Za-z_][A-Za-z0-9_]*)")
#: TorchScript functions that read or map files (``torch.from_file``).
_TORCHSCRIPT_FILE_ACCESS = re.compile(rb"\bfrom_file\b")


def _check_torchscript_archive(zf: zipfile.ZipFile) -> None:
    """Scan a TorchScript archive's pickles (never loaded) and its code's operator calls."""
    for info in zf.infolist():
        name = info.filename
        member = _strip_root(name)
        if name.endswith(".pkl") and not name.endswith(".debug_pkl"):
            check_pickle_globals(read_member(zf, info), member=name)
        elif member.startswith("code/") and name.endswith(".py"):
            code = read_member(zf, info)
            if _TORCHSCRIPT_FILE_ACCESS.search(code):
                raise UnsafeArtifact(
                    f"{name} reads files (from_file), which a model never needs. {PICKLE_HINT}"
                )
            for namespace in _TORCHSCRIPT_OPS.findall(code):
                if namespace.decode() not in _TORCHSCRIPT_NAMESPACES:
                    raise UnsafeArtifact(
                        f"{name} calls operators of the {namespace.decode()!r} namespace; "
                        "mlapp serves TorchScript that uses ATen operators only."
                    )


def _check_export_archive(zf: zipfile.ZipFile) -> None:
    """Scan every member of a torch.export archive that torch.export.load interprets."""
    raw = _raw_tensor_records(zf)
    for info in zf.infolist():
        member = _strip_root(info.filename)
        if info.is_dir() or member.startswith("extra/") or member in _EXPORT_TEXT_MEMBERS:
            continue
        if member.startswith("data/aotinductor/"):
            raise UnsafeArtifact(
                "This torch.export archive carries AOTInductor compiled code "
                f"({info.filename}), which would run as native code when loaded. {PICKLE_HINT}"
            )
        if member in raw:
            continue
        data = read_member(zf, info)
        if member.startswith("models/"):
            # The serialized program: torch evaluates parts of it (guards, sizes, targets).
            check_program_json(data, info.filename)
        elif _is_json(data):
            continue
        elif data[:4] == b"PK\x03\x04":
            _check_saved_zip(data, info.filename)
        else:
            check_pickle_globals(data, member=info.filename)


def _raw_tensor_records(zf: zipfile.ZipFile) -> set[str]:
    """Members the payload configs declare as raw tensor bytes (read, never unpickled)."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for info in zf.infolist():
        member = _strip_root(info.filename)
        folder = next((d for d in _EXPORT_RAW_RECORD if member.startswith(d)), None)
        if folder is None or not member.endswith("_config.json"):
            continue
        try:
            entries = json.loads(read_member(zf, info))["config"].values()
            for entry in entries:
                path_name, use_pickle = entry["path_name"], entry["use_pickle"]
                target = (
                    raw
                    if (
                        use_pickle is False
                        and isinstance(path_name, str)
                        and _EXPORT_RAW_RECORD[folder].fullmatch(path_name)
                    )
                    else pickled
                )
                target.add(f"{folder}{path_name}")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ArtifactError(f"{info.filename} is not a valid payload config.") from None
    return raw - pickled


def _is_json(data: bytes) -> bool:
    # No JSON document is a pickle that does anything: its first byte is no pickle opcode
    # that could start one.
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _check_saved_zip(data: bytes, member: str) -> None:
    """Scan the pickles of a torch.save zip nested in an archive (torch.load reads them)."""
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except ZIP_ERRORS as exc:
        raise ArtifactError(f"{member} is a damaged zip archive: {exc}") from None
    with inner:
        check_directory(inner, len(data))
        for info in inner.infolist():
            if info.filename.endswith(".pkl"):
                check_pickle_globals(read_member(inner, info), member=f"{member}:{info.filename}")


def _strip_root(name: str) -> str:
    # Torch archives put every member under one top-level folder named after the file.
    return name.split("/", 1)[1] if "/" in name else name


# --- ONNX: a protobuf ModelProto. Walk its top-level fields without a protobuf library.

# ModelProto field number -> wire type (0 varint, 2 length-delimited).
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _looks_like_onnx(path: Path) -> bool:
    # Mapped, not read: the walk touches the top-level field headers only, so a large model
    # (MiniLM: 88 MB) costs a few pages rather than a copy of the whole file.
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _walk_onnx_fields(data)


def _walk_onnx_fields(data: mmap.mmap) -> bool:
    pos, seen = 0, set()
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if _ONNX_FIELDS.get(field) != wire:
                return False
            if wire == 0:
                _, pos = _varint(data, pos)
            else:
                length, pos = _varint(data, pos)
                pos += length
                if pos > len(data):
                    return False
            seen.add(field)
    except IndexError:
        return False
    # ir_version (1) and graph (7) are required by every ONNX model.
    return {1, 7} <= seen


def _varint(data: mmap.mmap, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
