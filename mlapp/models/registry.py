"""The model registry's tables: models, their versions, the change marker, artifact storage."""

from __future__ import annotations

import posixpath

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.validators import validate_slug
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from mlapp.conf import settings
from mlapp.managers import ChangeMarkerManager, ModelVersionQuerySet
from mlapp.serving.config import serving_batching
from mlapp.serving.monitorconf import model_monitoring


def artifact_storage():
    """The storage artifacts live in (``MLAPP["ARTIFACT_STORAGE"]``, an alias of STORAGES)."""
    return storages[settings.ARTIFACT_STORAGE]


def artifact_upload_to(instance: ModelVersion, filename: str) -> str:
    name = posixpath.basename(filename) or "artifact"
    return f"{settings.ARTIFACT_PREFIX}/{instance.model.name}/{instance.version}/{name}"


class MLModel(models.Model):
    """A named model; what it serves is its production :class:`ModelVersion`."""

    class Task(models.TextChoices):
        CLASSIFICATION = "classification", _("classification")
        REGRESSION = "regression", _("regression")
        EMBEDDING = "embedding", _("embedding")
        OTHER = "other", _("other")

    name = models.CharField(max_length=100, unique=True, validators=[validate_slug])
    description = models.TextField(blank=True)
    task = models.CharField(max_length=32, choices=Task.choices, default=Task.OTHER)
    handler = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("Dotted path to a mlapp.handlers.BaseHandler subclass (optional)."),
    )
    serving = models.JSONField(
        default=dict, blank=True, help_text=_('Serving config, e.g. {"batching": {...}}.')
    )
    monitoring = models.JSONField(
        default=dict,
        blank=True,
        help_text=_(
            'Monitoring config, e.g. {"sample_rate": 0.1, "thresholds": {"psi": 0.2}}: the '
            "share of requests logged (0: none) and the drift thresholds."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("model")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A bad serving config is a form error (admin, any ModelForm), never stored."""
        if self.serving is None:  # an emptied form field
            self.serving = {}
        try:
            serving_batching(self.serving)
        except ValueError as exc:
            raise ValidationError(
                {"serving": ValidationError(_("Serving config: %(p)s."), params={"p": str(exc)})}
            ) from None
        if self.monitoring is None:
            self.monitoring = {}
        try:
            model_monitoring(self.monitoring)
        except ValueError as exc:
            message = _("Monitoring config: %(p)s.")
            raise ValidationError(
                {"monitoring": ValidationError(message, params={"p": str(exc)})}
            ) from None

    @property
    def production_version(self) -> ModelVersion | None:
        return self.versions.filter(stage=ModelVersion.Stage.PRODUCTION).first()


class ModelVersion(models.Model):
    """One uploaded artifact of a model, validated, with its signature and stage."""

    class Stage(models.TextChoices):
        STAGING = "staging", _("staging")
        PRODUCTION = "production", _("production")
        ARCHIVED = "archived", _("archived")

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    artifact = models.FileField(
        upload_to=artifact_upload_to, storage=artifact_storage, max_length=500
    )
    format = models.CharField(max_length=32)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    signature = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.STAGING)
    notes = models.TextField(blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived"
    )
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    #: When this version last became the production version (what roll back looks at).
    promoted_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="mlapp_version_unique"),
            # The database itself guarantees one production version per model (SQLite's
            # select_for_update is a no-op, so the lock alone would not).
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(stage="production"),
                name="mlapp_one_production_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"


class ChangeMarker(models.Model):
    """A counter per model, bumped by every change to what that model serves.

    Every process polls these few rows (at most about once a second, from a background
    thread: ``mlapp.serving.watcher``) and reloads a model whose counter moved, so a
    promotion made in one process reaches the others without a database query per request.
    """

    model_name = models.CharField(max_length=100, unique=True)
    counter = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    objects = ChangeMarkerManager()

    class Meta:
        verbose_name = _("change marker")

    def __str__(self) -> str:
        return f"{self.model_name}: {self.counter}"
