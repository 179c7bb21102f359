"""Query rules that belong to the tables: finding a version, active jobs, a change marker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from mlapp.exceptions import ModelNotFound, ModelNotReady

if TYPE_CHECKING:
    from mlapp.models import BatchJob, ModelVersion  # noqa: F401 (BatchJob: a base's string)


class ModelVersionQuerySet(models.QuerySet["ModelVersion"]):
    def production(self) -> ModelVersionQuerySet:
        return self.filter(stage="production")

    def of(self, name: str) -> ModelVersionQuerySet:
        """The versions of the model named ``name``, with their model row."""
        return self.filter(model__name=name).select_related("model")

    def resolve(self, name: str, version: int | None = None) -> ModelVersion:
        """The version of ``name`` that answers: its production version, or ``version``.

        Raises :class:`ModelNotFound` (no such model or version) or :class:`ModelNotReady`
        (the model exists but has no production version), with the messages clients see.
        """
        rows = self.of(name)
        found = (
            rows.production().first() if version is None else rows.filter(version=version).first()
        )
        if found is not None:
            return found
        models_table = self.model._meta.get_field("model").related_model
        assert models_table is not None  # a foreign key always has a related model
        if not models_table._default_manager.filter(name=name).exists():
            raise ModelNotFound.no_model(name)
        if version is not None:
            raise ModelNotFound.no_version(name, version)
        raise ModelNotReady.no_production(name)


class BatchJobQuerySet(models.QuerySet["BatchJob"]):
    """``BatchJob.objects``: which jobs still run and which have ended."""

    def active(self) -> BatchJobQuerySet:
        """Jobs pending or running: they may still write predictions, and can be cancelled."""
        status = self.model.Status
        return self.filter(status__in=(status.PENDING, status.RUNNING))

    def finished(self) -> BatchJobQuerySet:
        """Jobs that ended: succeeded, failed or cancelled."""
        status = self.model.Status
        return self.filter(status__in=(status.SUCCEEDED, status.FAILED, status.CANCELLED))


class ChangeMarkerManager(models.Manager):
    """A counter per model name, moved by every change to what that model serves."""

    def bump(self, model_name: str) -> None:
        """Move the marker of ``model_name``.

        Called inside the transaction that makes the change (by :mod:`mlapp.signals`): other
        processes see the marker move only once the change itself is committed.
        """
        markers = self.filter(model_name=model_name)
        if markers.update(counter=F("counter") + 1, changed_at=timezone.now()):
            return
        try:
            # First change of this model. A concurrent first change wins the unique
            # constraint; this one then moves the row that the other one created.
            with transaction.atomic(using=self.db):
                self.create(model_name=model_name, counter=1)
        except IntegrityError:
            markers.update(counter=F("counter") + 1, changed_at=timezone.now())

    def counters(self, model_name: str | None = None) -> dict[str, int]:
        """``{model name: counter}`` of every model (or of one): a single indexed query."""
        markers = self.all() if model_name is None else self.filter(model_name=model_name)
        return dict(markers.values_list("model_name", "counter"))
