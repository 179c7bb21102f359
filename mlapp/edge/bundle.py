"""The edge bundle: one zip with a model's artifact, its assets and a manifest of checksums.

Written by the server (:func:`write_bundle`, called by :mod:`mlapp.versions.bundles`), read
by the edge client (:func:`open_bundle`). No Django, no torch: the client needs only the
standard library, numpy and ONNX Runtime.

Layout::

    manifest.json        what the bundle holds (below), UTF-8 JSON
    manifest.sig         optional: {"algorithm": "hmac-sha256", "signature": hex} over the
                         exact bytes of manifest.json, with a key the host configures
    model.onnx           the artifact (model.pt / model.pt2 for other formats)
    assets/...           preprocessing files the handler names (a tokenizer.json)

The manifest names the model, the version and its parent, the format, the artifact's sha256,
both signatures (the artifact's tensors and what clients send and get), the handler's notes
(labels, preprocessing) and ``files``: every other member with its size and sha256.
:func:`open_bundle` refuses a bundle whose members are not exactly those files plus the
manifest (and signature), whose sizes or checksums differ, or whose signature does not
verify with the given key — before anything is loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import posixpath
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ALGORITHM = "hmac-sha256"
BUNDLE_VERSION = 1
#: Largest manifest or signature member read.
MAX_MANIFEST = 4 * 1024**2
#: Most a member may inflate relative to its compressed size (zip bombs).
MAX_RATIO = 200
_CHUNK = 1024 * 1024


class BundleError(Exception):
    """The bundle cannot be trusted or used; the message says why."""


def sha256_of(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def sign(manifest: bytes, key: str | bytes) -> bytes:
    """The ``manifest.sig`` member for these exact manifest bytes."""
    mac = hmac.new(_key_bytes(key), manifest, hashlib.sha256).hexdigest()
    return json.dumps({"algorithm": ALGORITHM, "signature": mac}).encode()


def write_bundle(
    out: IO[bytes],
    manifest: Mapping[str, Any],
    members: Mapping[str, str],
    *,
    key: str | bytes | None = None,
) -> dict[str, Any]:
    """Write a bundle to ``out``: ``members`` maps names in the zip to local files.

    Each member's size and sha256 go into the manifest's ``files``; the manifest is signed
    when ``key`` is given. Returns the manifest written.
    """
    files = {}
    for name, path in members.items():
        _check_name(name)
        with open(path, "rb") as handle:
            files[name] = {"size": os.path.getsize(path), "sha256": sha256_of(handle)}
    full = {"mlapp_bundle": BUNDLE_VERSION, **manifest, "files": files}
    data = json.dumps(full, indent=2, sort_keys=True).encode("utf-8")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, data)
        if key is not None:
            archive.writestr(SIGNATURE, sign(data, key))
        for name, path in members.items():
            archive.write(path, name)
    return full


def _check_name(name: str) -> None:
    clean = posixpath.normpath(name)
    if (
        not name
        or clean != name
        or name.startswith(("/", "../"))
        or "\\" in name
        or name in {MANIFEST, SIGNATURE}
    ):
        raise BundleError(f"Bad member name {name!r} in the bundle.")


@dataclass
class Bundle:
    """A verified bundle: its manifest and where its members were extracted."""

    manifest: dict[str, Any]
    folder: str
    signed: bool

    def path(self, name: str) -> str:
        return os.path.join(self.folder, *name.split("/"))

    @property
    def artifact(self) -> str:
        return self.path(str(self.manifest["artifact"]))


def open_bundle(source: str | IO[bytes], folder: str, *, key: str | bytes | None = None) -> Bundle:
    """Verify the bundle at ``source`` and extract it into ``folder``; :class:`BundleError`.

    With ``key``, the manifest must carry a signature made with it. Without, the checksums
    still prove the members are those the manifest lists (not who wrote the manifest).
    """
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"Not a bundle (not a zip file): {exc}") from None
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        if MANIFEST not in infos:
            raise BundleError("The bundle has no manifest.json: refused.")
        data = _read_small(archive, infos[MANIFEST])
        signed = _check_signature(archive, infos, data, key)
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise BundleError(f"The bundle's manifest.json is not JSON: {exc}") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or manifest.get("mlapp_bundle") != BUNDLE_VERSION:
            raise BundleError("The bundle's manifest is not an mlapp bundle manifest (version 1).")
        expected = {*files, MANIFEST} | ({SIGNATURE} if SIGNATURE in infos else set())
        if set(infos) != expected:
            extra, missing = sorted(set(infos) - expected), sorted(expected - set(infos))
            raise BundleError(
                f"The bundle's members differ from its manifest (extra {extra}, missing "
                f"{missing}): refused."
            )
        if manifest.get("artifact") not in files:
            raise BundleError("The manifest does not name its artifact among its files.")
        for name, entry in files.items():
            _extract(archive, infos[name], name, entry, folder)
        artifact_entry = files[manifest["artifact"]]
        if artifact_entry.get("sha256") != manifest.get("sha256"):
            raise BundleError(
                "The manifest's artifact checksum differs from the version's sha256: refused."
            )
    return Bundle(manifest=manifest, folder=folder, signed=signed)


def _read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MANIFEST:
        raise BundleError(f"{info.filename} is {info.file_size} bytes: too large, refused.")
    with archive.open(info) as handle:
        return handle.read(MAX_MANIFEST + 1)[:MAX_MANIFEST]


def _check_signature(
    archive: zipfile.ZipFile,
    infos: Mapping[str, zipfile.ZipInfo],
    manifest: bytes,
    key: str | bytes | None,
) -> bool:
    if key is None:
        return False
    if SIGNATURE not in infos:
        raise BundleError(
            "The bundle is not signed, but a key was given: refused (the server signs bundles "
            "when MLAPP['BUNDLE_SIGNING_KEY'] is set)."
        )
    try:
        declared = json.loads(_read_small(archive, infos[SIGNATURE]))
        algorithm, given = declared["algorithm"], str(declared["signature"])
    except (ValueError, KeyError, TypeError):
        raise BundleError("The bundle's manifest.sig cannot be read: refused.") from None
    if algorithm != ALGORITHM:
        raise BundleError(f"Unknown signature algorithm {algorithm!r}: refused.")
    wanted = json.loads(sign(manifest, key))["signature"]
    if not hmac.compare_digest(wanted, given):
        raise BundleError(
            "The manifest's signature does not match: the manifest was changed after it was "
            "signed, or the key differs. Refused."
        )
    return True


def _extract(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, entry: Any, folder: str
) -> None:
    _check_name(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("size"), int):
        raise BundleError(f"The manifest's entry for {name} is malformed: refused.")
    size = entry["size"]
    if info.file_size != size:
        raise BundleError(
            f"{name} is {info.file_size} bytes in the bundle, {size} in its manifest: refused."
        )
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise BundleError(f"{name} inflates more than {MAX_RATIO}x: refused.")
    target = os.path.join(folder, *name.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                written += len(chunk)
                if written > size:
                    raise BundleError(f"{name} holds more than its declared size: refused.")
                digest.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        os.unlink(target)
        raise BundleError(
            f"{name} is damaged in the bundle ({exc}): the bundle was changed. Refused."
        ) from None
    if digest.hexdigest() != entry.get("sha256"):
        os.unlink(target)
        raise BundleError(
            f"{name} does not match its sha256 in the manifest: the bundle was changed. Refused."
        )


def bundle_bytes(manifest: Mapping[str, Any], members: Mapping[str, str], **kw: Any) -> bytes:
    """:func:`write_bundle` into memory (small models, tests)."""
    out = io.BytesIO()
    write_bundle(out, manifest, members, **kw)
    return out.getvalue()
