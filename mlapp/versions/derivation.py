"""Derived versions: an int8 version of an ONNX version, an ONNX version of a TorchScript one.

:func:`derive_version` is the one entry (the admin's button, the native API's ``derive``
route and ``manage.py derive_version`` call it). The parent's artifact is untrusted like any
upload: it is quantized or exported, and the result measured against it, only in the
validation sandbox (:mod:`mlapp.versions.derive` runs there). This process prepares the
sample the two are compared on (through the model's handler, which is the host's trusted
code) and stores the result through :func:`mlapp.versions.lifecycle.register_version`, so the
derived file is validated exactly as an upload is, and lands in ``staging`` with ``parent``
set and the figures of both in its ``metrics["derived"]``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlapp import exceptions
from mlapp.conf import settings
from mlapp.exceptions import ArtifactError, CannotDerive, MLAppError
from mlapp.files import as_local_file
from mlapp.models import ModelVersion
from mlapp.runtimes.integrity import file_sha256
from mlapp.runtimes.tensors import Signature, sample_inputs
from mlapp.serving.handling import example_inputs, example_signature, load_handler
from mlapp.serving.inputs import validate_inputs
from mlapp.serving.loading import runtime_class
from mlapp.versions import derive, sandbox
from mlapp.versions.inspection import encode_arrays
from mlapp.versions.lifecycle import register_version

logger = logging.getLogger("mlapp.versions.derivation")

#: Which parent format each kind is derived from.
PARENT_FORMAT = {"int8": "onnx", "onnx": "torchscript"}
#: Most sample rows a derivation is measured on.
MAX_SAMPLE_ROWS = 2048


def derivable(version: ModelVersion) -> list[str]:
    """The kinds that can be derived from ``version`` (empty: none)."""
    return [kind for kind, fmt in PARENT_FORMAT.items() if version.format == fmt]


def derive_version(
    version: ModelVersion,
    *,
    kind: str = "int8",
    method: str = "auto",
    samples: Sequence[Mapping[str, Any]] | None = None,
    user: Any = None,
) -> ModelVersion:
    """Derive a version of ``kind`` from ``version``; the new version (in ``staging``).

    ``samples``: rows keyed by the model's public input names, to measure (and calibrate)
    on; None takes ``MLAPP["DERIVE_SAMPLES"][model name]``, else the handler's example.
    :class:`~mlapp.exceptions.CannotDerive` when the kind does not apply to this format or
    the model cannot be converted, with the reason.
    """
    if kind not in PARENT_FORMAT:
        raise CannotDerive(f"Unknown kind {kind!r}: use one of {', '.join(PARENT_FORMAT)}.")
    if method not in derive.METHODS:
        raise CannotDerive(f"Unknown method {method!r}: use one of {', '.join(derive.METHODS)}.")
    if version.format != PARENT_FORMAT[kind]:
        hint = (
            " Derive an ONNX version from the TorchScript one first."
            if kind == "int8" and version.format == "torchscript"
            else ""
        )
        raise CannotDerive(
            f"{version} is {version.format}: {kind} versions are derived from "
            f"{PARENT_FORMAT[kind]} versions only.{hint}"
        )
    model = version.model
    signature = Signature.from_dict(version.signature)
    rows, origin = _sample_rows(version, samples)
    tensors = _sample_tensors(version, signature, rows)
    scratch = tempfile.mkdtemp(prefix="mlapp-derive-")
    try:
        target = os.path.join(scratch, f"{model.name}-v{version.version}-{kind}.onnx")
        with version.artifact.open("rb") as handle, as_local_file(handle) as path:
            if file_sha256(path) != version.sha256:
                raise ArtifactError(f"The stored artifact of {version} does not match its sha256.")
            cls = runtime_class(version.format)
            answer = sandbox.run(
                {
                    "format": version.format,
                    "runtime": f"{cls.__module__}.{cls.__qualname__}",
                    "declared": signature.to_dict(),
                    "derive": {"kind": kind, "method": method, "task": model.task},
                },
                os.path.abspath(path),
                timeout=settings.DERIVE_TIMEOUT,
                memory=settings.VALIDATION_MEMORY,
                files={derive.SAMPLE: encode_arrays(tensors)},
                output=(derive.OUTPUT, target),
            )
        if "derived" not in answer:
            _raise(answer)
        figures = {**answer["derived"], "sample": origin}
        child = figures["child"]
        notes = f"{kind} ({figures['method']}) derived from v{version.version}: " + _summary(child)
        derived = register_version(
            model.name,
            target,
            metrics={"derived": figures},
            notes=notes,
            filename=os.path.basename(target),
            created_by=user,
            parent=version,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("mlapp: derived %s from %s (%s)", derived, version, notes)
    return derived


def _summary(child: Mapping[str, Any]) -> str:
    if "label_agreement" in child:
        agree = f"label agreement {100 * child['label_agreement']:.1f} %"
    else:
        agree = f"lowest cosine {child.get('cosine_min', 0.0):.4f}"
    return f"{agree}, {child['size']} bytes, {child['ms_per_row']} ms per row."


def _raise(answer: Mapping[str, Any]) -> None:
    error_class = getattr(exceptions, str(answer.get("error_class")), None)
    if not (isinstance(error_class, type) and issubclass(error_class, MLAppError)):
        error_class = CannotDerive
    if error_class is ArtifactError:
        error_class = CannotDerive
    raise error_class(str(answer.get("error") or "Deriving failed."))


def _sample_rows(
    version: ModelVersion, samples: Sequence[Mapping[str, Any]] | None
) -> tuple[list[Mapping[str, Any]] | None, str]:
    """The rows to measure on and where they came from."""
    if samples is not None:
        return _checked_rows(samples, "the request's samples"), "given with the request"
    path = settings.DERIVE_SAMPLES.get(version.model.name)
    if path:
        try:
            with open(path, encoding="utf-8") as source:
                loaded = json.load(source)
        except (OSError, ValueError) as exc:
            raise CannotDerive(
                f"MLAPP['DERIVE_SAMPLES'][{version.model.name!r}] cannot be read: {exc}"
            ) from None
        return _checked_rows(loaded, path), f"MLAPP['DERIVE_SAMPLES']: {os.path.basename(path)}"
    return None, "the handler's example"


def _checked_rows(rows: Any, where: str) -> list[Mapping[str, Any]]:
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, Mapping) for r in rows)
        or len(rows) > MAX_SAMPLE_ROWS
    ):
        raise CannotDerive(
            f"The sample in {where} must be a list of 1 to {MAX_SAMPLE_ROWS} objects keyed by "
            "the model's input names."
        )
    return rows


def _sample_tensors(
    version: ModelVersion, signature: Signature, rows: list[Mapping[str, Any]] | None
) -> dict[str, np.ndarray]:
    """The artifact's input tensors for ``rows``, through the model's handler when it has one."""
    handler = load_handler(version.model, signature)
    if rows is None:
        public = example_inputs(handler, signature) if handler else sample_inputs(signature, 4)
    else:
        public_signature = example_signature(handler) if handler else signature
        names = public_signature.input_names
        missing = [n for n in names if any(n not in row for row in rows)]
        if missing:
            raise CannotDerive(f"Every sample row needs the inputs {missing}.")
        columns = {spec.name: _column(spec, rows) for spec in public_signature.inputs}
        try:
            public = validate_inputs(public_signature, columns)
        except MLAppError as exc:
            raise CannotDerive(
                f"The sample does not fit the model's inputs: {exc.message}"
            ) from None
    return handler.preprocess(public) if handler else public


def _column(spec: Any, rows: list[Mapping[str, Any]]) -> Any:
    """One input's values over the rows; a numeric row holding exactly the values of one row
    of a fixed shape is reshaped to it (an 8x8 grid for a [-1, 1, 8, 8] input)."""
    values = [row[spec.name] for row in rows]
    row_shape = tuple(spec.shape[1:])
    if spec.datatype == "BYTES" or any(d < 0 for d in row_shape):
        return values
    try:
        array = np.asarray(values, dtype=spec.dtype)
    except (TypeError, ValueError):
        return values
    if array.size == len(rows) * int(np.prod(row_shape)):
        return array.reshape((len(rows), *row_shape))
    return values
