"""Service functions for model versions: register, promote, roll back, archive.

The admin, the management API and ``manage.py register_model`` all call these. Stage
changes run in one transaction with the model's row locked, and the database's conditional
unique constraint guarantees one production version per model even where the lock is a
no-op (SQLite). Saving the change moves the model's change marker in the same transaction
(:mod:`mlapp.signals`), so every process swaps within about a second; a change made by a
user is recorded in Django's admin log (who, when, from which stage to which), whichever way
it came in.
"""

from __future__ import annotations

import logging
import os
from typing import IO, Any

from django.apps import apps
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from mlapp.exceptions import Conflict, MLAppError, StageError, describe
from mlapp.files import as_local_file, save_with_file
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.handling import import_handler
from mlapp.serving.loading import load_version
from mlapp.serving.registry import registry
from mlapp.versions.handler_change import change_message, signature_change, unconfirmed_message
from mlapp.versions.inspection import ArtifactReport
from mlapp.versions.validation import validate_artifact

logger = logging.getLogger("mlapp.versions.lifecycle")


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
    report: ArtifactReport | None = None,
    confirm_handler_change: bool = False,
    parent: ModelVersion | None = None,
) -> ModelVersion:
    """Validate an artifact, then store it as the model's next version (in ``staging``).

    The model is created if it does not exist. Nothing is stored when validation fails:
    the ``ArtifactError`` propagates before any row or file is written. The artifact is
    loaded and run in the validation sandbox (:mod:`mlapp.versions.sandbox`), whoever calls;
    ``report`` is the result of a validation this caller already ran on this very file.
    A ``handler`` path that does not name a handler class raises ``ArtifactError``; the upload
    is validated through the handler that will serve it (``handler``, else the model's own).
    A new ``handler`` that would change the public signature of the production version
    raises ``Conflict`` unless ``confirm_handler_change``; a handler change is written to the
    model's history.
    ``parent`` is the version this one was derived from (int8, ONNX export).
    """
    if handler:
        import_handler(handler)
    existing = MLModel.objects.filter(name=model_name).first()
    handler_change = None
    if handler is not None and existing is not None and handler != existing.handler:
        handler_change = signature_change(existing, handler)
        if handler_change is not None and not confirm_handler_change:
            raise Conflict(unconfirmed_message(existing, handler, handler_change))
    with as_local_file(artifact) as path:
        if report is None:
            report = validate_upload(path, model_name, signature=signature, handler=handler)
        if filename is None:
            filename = os.path.basename(getattr(artifact, "name", None) or os.fspath(path))
        with transaction.atomic():
            model, _ = MLModel.objects.get_or_create(name=model_name)
            model = MLModel.objects.select_for_update().get(pk=model.pk)
            changed = []
            history = None
            if handler is not None and model.handler != handler:
                history = change_message(model, handler, handler_change)
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
            if history is not None and created_by is not None:
                log_change(created_by, model, history)
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
                parent=parent,
                created_by=created_by,
            )
            save_with_file(version, version.artifact, filename, path)
            if created_by is not None:
                log_change(
                    created_by,
                    version,
                    f"Uploaded and validated: stage {version.stage}.",
                    added=True,
                )
            if promote:
                version = promote_version(version, user=created_by)
    logger.info("mlapp: registered %s (%s, sha256 %s)", version, version.format, version.sha256)
    return version


def inherited_signature(model_name: str) -> dict[str, Any] | None:
    """The signature of the model's production version, which a TorchScript upload inherits."""
    production = (
        ModelVersion.objects.filter(model__name=model_name, stage=ModelVersion.Stage.PRODUCTION)
        .values_list("signature", flat=True)
        .first()
    )
    return production or None


def validate_upload(
    path: str,
    model_name: str,
    *,
    signature: dict[str, Any] | None = None,
    handler: str | None = None,
) -> ArtifactReport:
    """Validate the file at ``path`` as a new version of ``model_name`` (stores nothing).

    The smoke prediction runs through ``handler`` (None: the model's current handler).
    """
    if handler is None:
        handler = (
            MLModel.objects.filter(name=model_name).values_list("handler", flat=True).first() or ""
        )
    return validate_artifact(
        path,
        declared=signature,
        inherited=inherited_signature(model_name),
        handler=handler,
        model_name=model_name,
    )


def check_servable(version: ModelVersion) -> None:
    """Load ``version`` here and answer its handler's example, or raise :class:`StageError`.

    Run before a version goes to production, in the process that promotes it: a version its
    handler cannot serve (the handler changed since the upload, or cannot be imported) is
    refused with the reason instead of answering every request with a 500. A copy this
    process already holds (same row, same handler) is used as it is; otherwise the version is
    loaded once with the registry's loading function and released: the registry's own state
    (what answers, what failed) changes only through the swap that follows.
    """
    name, number = version.model.name, version.version
    try:
        held = registry.peek(name, number)
        if (
            held is not None
            and held.version_id == version.pk
            and held.handler_path == version.model.handler
        ):
            held.smoke()
            return
        loaded = load_version(version)
        try:
            loaded.smoke()
        finally:
            loaded.close()
    except MLAppError as exc:
        raise StageError(f"{version} cannot go to production: {exc.message}") from None
    except Exception as exc:
        # Loading runs the host's handler code: whatever it raises, say so.
        logger.exception("mlapp: checking %s before production failed", version)
        raise StageError(f"{version} cannot go to production: {describe(exc)}") from None


def promote_version(version: ModelVersion, *, user: Any = None) -> ModelVersion:
    """Make ``version`` the production version; the previous one becomes archived.

    The version is first loaded and run on its handler's example (:func:`check_servable`);
    :class:`StageError` says why when it cannot answer.
    """
    if version.stage != ModelVersion.Stage.PRODUCTION:
        check_servable(version)
    return _make_production(version, user=user, action="promoted")


def _make_production(version: ModelVersion, *, user: Any, action: str) -> ModelVersion:
    with transaction.atomic():
        MLModel.objects.select_for_update().get(pk=version.model_id)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.stage == ModelVersion.Stage.PRODUCTION:
            return version
        previous_stage = version.stage
        replaced = list(
            ModelVersion.objects.filter(
                model_id=version.model_id, stage=ModelVersion.Stage.PRODUCTION
            )
        )
        # Archive first: the conditional unique constraint allows one production row.
        ModelVersion.objects.filter(pk__in=[v.pk for v in replaced]).update(
            stage=ModelVersion.Stage.ARCHIVED, stage_changed_at=timezone.now()
        )
        version.stage = ModelVersion.Stage.PRODUCTION
        version.stage_changed_at = timezone.now()
        version.promoted_at = timezone.now()
        version.save(update_fields=["stage", "stage_changed_at", "promoted_at"])
        if user is not None:
            for old in replaced:
                log_change(
                    user, old, f"Stage: production → archived (replaced by v{version.version})."
                )
            note = f", replacing v{replaced[0].version}" if replaced else ""
            log_change(user, version, f"Stage: {previous_stage} → production ({action}{note}).")
    logger.info("mlapp: %s %s by %s", action, version, user)
    return version


def rollback_target(model: MLModel) -> ModelVersion | None:
    """The version a roll back of ``model`` would bring back (None: nothing to go back to)."""
    current = model.production_version
    return (
        # Django reads pk=None as IS NULL; the plugin wants a pk value.
        model.versions.exclude(pk=getattr(current, "pk", None))  # type: ignore[misc]
        .filter(promoted_at__isnull=False)
        .order_by("-promoted_at")
        .first()
    )


def required_rollback_target(model: MLModel) -> ModelVersion:
    """:func:`rollback_target`, or :class:`StageError` when there is nothing to go back to."""
    previous = rollback_target(model)
    if previous is None:
        raise StageError(f"Model {model.name!r} has no earlier production version to roll back to.")
    return previous


def rollback(model: MLModel, *, user: Any = None) -> ModelVersion:
    """Bring back the version that was in production before the current one.

    Like a promotion, the version is first run on its handler's example here.
    """
    check_servable(required_rollback_target(model))
    with transaction.atomic():
        model = MLModel.objects.select_for_update().get(pk=model.pk)
        previous = required_rollback_target(model)
        return _make_production(previous, user=user, action="rolled back")


def check_archivable(version: ModelVersion) -> None:
    """Raise :class:`StageError` when ``version`` may not be archived (it is in production)."""
    if version.stage == ModelVersion.Stage.PRODUCTION:
        raise StageError(f"{version} is in production: promote another version or roll back first.")


def archive_version(version: ModelVersion, *, user: Any = None) -> ModelVersion:
    """Archive a staging version; a production version is replaced, never archived alone."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        check_archivable(version)
        if version.stage == ModelVersion.Stage.ARCHIVED:
            return version
        previous_stage = version.stage
        version.stage = ModelVersion.Stage.ARCHIVED
        version.stage_changed_at = timezone.now()
        version.save(update_fields=["stage", "stage_changed_at"])
        if user is not None:
            log_change(user, version, f"Stage: {previous_stage} → archived.")
    logger.info("mlapp: archived %s by %s", version, user)
    return version


def log_change(user: Any, obj: Any, message: str, *, added: bool = False) -> None:
    """Record a change made by ``user`` in Django's admin log (the object's History page)."""
    if not (apps.is_installed("django.contrib.admin") and getattr(user, "pk", None)):
        return
    from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=ADDITION if added else CHANGE,
        change_message=message,
    )
