"""Batch jobs and the predictions they store."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mlapp.jsonenc import FastJSONEncoder
from mlapp.managers import BatchJobQuerySet
from mlapp.models.registry import MLModel, ModelVersion


class BatchJob(models.Model):
    """A batch prediction run over many inputs; results land in BatchPrediction rows."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    source_file = models.FileField(upload_to="mlapp/batch/", blank=True, max_length=500)
    source_name = models.CharField(max_length=100, blank=True)
    source_params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = BatchJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"batch job {self.pk} ({self.version})"


class BatchPrediction(models.Model):
    """The outputs for one item of a batch job, found by its key."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="predictions")
    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    outputs = models.JSONField(default=dict, encoder=FastJSONEncoder)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="mlapp_prediction_job_key"),
        ]
        indexes = [models.Index(fields=["model", "key"], name="mlapp_pred_model_key")]

    def __str__(self) -> str:
        return f"{self.model_id}:{self.key}"
