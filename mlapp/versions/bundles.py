"""A version's edge bundle: its artifact, the handler's assets and a manifest, in one zip.

:func:`build_bundle` writes it (the native API's ``GET .../versions/{v}/bundle`` and the
admin's "Edge bundle" link stream it); :mod:`mlapp.edge` reads and verifies it, without
Django. The manifest is signed (HMAC-SHA256) when ``MLAPP["BUNDLE_SIGNING_KEY"]`` is set.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from mlapp.conf import settings
from mlapp.edge.bundle import sha256_of, write_bundle
from mlapp.exceptions import ArtifactError, NotFound
from mlapp.files import as_local_file
from mlapp.handlers import BaseHandler
from mlapp.models import ModelVersion
from mlapp.runtimes.integrity import file_sha256
from mlapp.runtimes.tensors import Signature
from mlapp.serving.handling import load_handler

_ARTIFACT_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "torch_export": "model.pt2"}


def manifest_of(version: ModelVersion, handler: BaseHandler | None) -> dict[str, Any]:
    """The manifest fields of ``version`` (the files and their checksums are added on write)."""
    edge = handler.edge_manifest() if handler is not None else {}
    doc = (type(handler).__doc__ or "").strip().splitlines() if handler else []
    model = version.model
    return {
        "model": model.name,
        "version": version.version,
        "parent": version.parent.version if version.parent else None,
        "format": version.format,
        "task": model.task,
        "artifact": _ARTIFACT_NAMES.get(version.format, "model.bin"),
        "sha256": version.sha256,
        "size": version.size,
        "signature": version.signature,
        "public_signature": (
            handler.signature().to_dict() if handler is not None else version.signature
        ),
        "handler": {
            "path": model.handler,
            "summary": doc[0] if doc else "",
            "labels": edge.get("labels"),
            "scores_output": edge.get("scores_output"),
            "notes": edge.get("notes", ""),
        },
        "preprocessing": edge.get("preprocessing"),
        "metrics": {"derived": (version.metrics or {}).get("derived")},
        "created_at": version.created_at.isoformat() if version.created_at else None,
    }


def build_bundle(version: ModelVersion, out: IO[bytes]) -> dict[str, Any]:
    """Write ``version``'s bundle to ``out``; its manifest. The artifact's sha256 is checked."""
    handler = load_handler(version.model, Signature.from_dict(version.signature))
    manifest = manifest_of(version, handler)
    edge = handler.edge_manifest() if handler is not None else {}
    try:
        handle = version.artifact.open("rb")
    except FileNotFoundError:
        raise NotFound(f"The artifact file of {version} is missing from storage.") from None
    with handle, as_local_file(handle) as path:
        if file_sha256(path) != version.sha256:
            raise ArtifactError(f"The stored artifact of {version} does not match its sha256.")
        members = {manifest["artifact"]: path}
        for name, asset in (edge.get("assets") or {}).items():
            members[f"assets/{name}"] = str(asset)
        return write_bundle(out, manifest, members, key=settings.BUNDLE_SIGNING_KEY)


def bundle_file(version: ModelVersion) -> tuple[IO[bytes], str]:
    """``version``'s bundle in a temporary file (at its start) and the zip's sha256."""
    out = tempfile.TemporaryFile(prefix="mlapp-bundle-")  # noqa: SIM115 - the response closes it
    try:
        build_bundle(version, out)
        out.seek(0)
        digest = sha256_of(out)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, digest
