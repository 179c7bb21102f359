"""Service functions for model versions: register, promote, roll back, archive.

The admin, the management API and ``manage.py register_model`` all call these. Stage
changes run in one transaction with the model's row locked, and the database's conditional
unique constraint guarantees one production version per model even where the lock is a
no-op (SQLite).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from django.core.files import File
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from mlapp.exceptions import StageError
from mlapp.models import MLModel, ModelVersion
from mlapp.validation import validate_artifact

logger = logging.getLogger("mlapp.versions")


@contextmanager
def _as_local_file(source: str | os.PathLike | IO[bytes]) -> Iterator[str]:
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


def register_version(
    model_name: str,
    artifact: str | os.PathLike | IO[bytes],
    *,
    signature: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    handler: str | None = None,
    description: str | None = None,
    task: str | None = None,
    notes: str = "",
    filename: str | None = None,
    created_by: Any = None,
    promote: bool = False,
) -> ModelVersion:
    """Validate an artifact, then store it as the model's next version (in ``staging``).

    The model is created if it does not exist. Nothing is stored when validation fails:
    the ``ArtifactError`` propagates before any row or file is written.
    """
    existing = MLModel.objects.filter(name=model_name).first()
    inherited = None
    if existing is not None and existing.production_version is not None:
        inherited = existing.production_version.signature
    with _as_local_file(artifact) as path:
        report = validate_artifact(path, declared=signature, inherited=inherited)
        if filename is None:
            filename = os.path.basename(getattr(artifact, "name", None) or os.fspath(path))
        with transaction.atomic():
            model, _ = MLModel.objects.get_or_create(name=model_name)
            model = MLModel.objects.select_for_update().get(pk=model.pk)
            changed = []
            for field, value in (
                ("handler", handler),
                ("description", description),
                ("task", task),
            ):
                if value is not None and getattr(model, field) != value:
                    setattr(model, field, value)
                    changed.append(field)
            if changed:
                model.save(update_fields=[*changed, "updated_at"])
            number = (model.versions.aggregate(n=Max("version"))["n"] or 0) + 1
            version = ModelVersion(
                model=model,
                version=number,
                format=report.format,
                sha256=report.sha256,
                size=report.size,
                signature=report.signature.to_dict(),
                metrics={
                    **(metrics or {}),
                    "validation": {
                        "load_seconds": round(report.load_seconds, 4),
                        "predict_seconds": round(report.predict_seconds, 4),
                    },
                },
                notes=notes,
                created_by=created_by,
            )
            with open(path, "rb") as fh:
                version.artifact.save(filename, File(fh), save=False)
            try:
                version.save()
            except Exception:
                # Nothing stored on failure: remove the file the row would have named.
                version.artifact.delete(save=False)
                raise
            if promote:
                promote_version(version, user=created_by)
    logger.info("mlapp: registered %s (%s, sha256 %s)", version, version.format, version.sha256)
    return version


def promote_version(version: ModelVersion, *, user: Any = None) -> ModelVersion:
    """Make ``version`` the production version; the previous one becomes archived."""
    with transaction.atomic():
        MLModel.objects.select_for_update().get(pk=version.model_id)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.stage == ModelVersion.Stage.PRODUCTION:
            return version
        # Archive first: the conditional unique constraint allows one production row.
        ModelVersion.objects.filter(
            model_id=version.model_id, stage=ModelVersion.Stage.PRODUCTION
        ).update(stage=ModelVersion.Stage.ARCHIVED, stage_changed_at=timezone.now())
        version.stage = ModelVersion.Stage.PRODUCTION
        version.stage_changed_at = timezone.now()
        version.promoted_at = timezone.now()
        version.save(update_fields=["stage", "stage_changed_at", "promoted_at"])
        transaction.on_commit(lambda: _stage_changed(version.model.name))
    logger.info("mlapp: promoted %s by %s", version, user)
    return version


def rollback(model: MLModel, *, user: Any = None) -> ModelVersion:
    """Bring back the version that was in production before the current one."""
    with transaction.atomic():
        model = MLModel.objects.select_for_update().get(pk=model.pk)
        current = model.production_version
        previous = (
            model.versions.exclude(pk=getattr(current, "pk", None))
            .filter(promoted_at__isnull=False)
            .order_by("-promoted_at")
            .first()
        )
        if previous is None:
            raise StageError(
                f"Model {model.name!r} has no earlier production version to roll back to."
            )
        return promote_version(previous, user=user)


def archive_version(version: ModelVersion, *, user: Any = None) -> ModelVersion:
    """Archive a staging version; a production version is replaced, never archived alone."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.stage == ModelVersion.Stage.PRODUCTION:
            raise StageError(
                f"{version} is in production: promote another version or roll back first."
            )
        version.stage = ModelVersion.Stage.ARCHIVED
        version.stage_changed_at = timezone.now()
        version.save(update_fields=["stage", "stage_changed_at"])
    logger.info("mlapp: archived %s by %s", version, user)
    return version


def _stage_changed(model_name: str) -> None:
    """Swap the model in this process's registry, if this process serves it."""
    from mlapp.registry import registry

    if model_name in registry.loaded() or registry.startup_done:
        registry.reload(model_name)
