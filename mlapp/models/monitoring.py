"""Monitoring's tables: logged requests, feedback, drift references and drift reports."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from mlapp.jsonenc import FastJSONEncoder
from mlapp.models.registry import MLModel, ModelVersion


class PredictionLog(models.Model):
    """One logged request: what a model version was asked and answered, when, how fast.

    Written in bulk by a background thread of each serving process
    (:mod:`mlapp.serving.predlog`), for the requests its model samples.
    """

    # Its own index would duplicate the (model, ...) ones: every index costs each insert.
    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    #: The caller's request id (``X-Request-ID``), or one made up for the row.
    request_id = models.CharField(max_length=64)
    #: The caller's key for the item (``X-MLApp-Key``): what feedback may name later.
    key = models.CharField(max_length=255, blank=True)
    protocol = models.CharField(max_length=16)
    inputs = models.JSONField(default=dict, encoder=FastJSONEncoder)
    outputs = models.JSONField(default=dict, encoder=FastJSONEncoder)
    #: Inputs or outputs over ``MAX_PAYLOAD_BYTES``, stored as their shapes only.
    truncated = models.BooleanField(default=False)
    latency_ms = models.FloatField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["model", "created_at"], name="mlapp_log_model_time"),
            models.Index(fields=["model", "key"], name="mlapp_log_model_key"),
            models.Index(fields=["request_id"], name="mlapp_log_request"),
        ]
        verbose_name = _("logged prediction")

    def __str__(self) -> str:
        return f"{self.model_id} request {self.request_id}"


class Feedback(models.Model):
    """The ground truth of one request or item, attached after the prediction.

    ``key`` is what the prediction was logged or stored under: the request id or the caller's
    key of a logged request, or the key of a batch prediction. One value per model and key
    (sending it again replaces it).
    """

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    #: The true value: a label, a number, or a list of them (one per row of the request).
    value = models.JSONField(encoder=FastJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "key"], name="mlapp_feedback_model_key"),
        ]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")

    def __str__(self) -> str:
        return f"{self.model_id}:{self.key}"


class DriftReference(models.Model):
    """What a version's inputs and outputs looked like when it was known to be right.

    ``profile`` summarises the sample (:func:`mlapp.monitoring.stats.profile`): quantile bins
    and a sorted sub-sample per numeric feature, lengths and vocabulary per text input,
    predicted class shares, output statistics.
    """

    class Source(models.TextChoices):
        LOG = "log", _("first logged requests")
        FILE = "file", _("a file")
        SAMPLE = "sample", _("a sample given in code")

    version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, related_name="drift_reference"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    rows = models.PositiveIntegerField()
    profile = models.JSONField(encoder=FastJSONEncoder)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("drift reference")

    def __str__(self) -> str:
        return f"reference of {self.version}"


class DriftReport(models.Model):
    """The drift of one version's logged requests over a window, against its reference."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField()
    #: Per measure: features (PSI, KS), text (length PSI, OOV rate), classes, outputs.
    result = models.JSONField(encoder=FastJSONEncoder)
    #: What crossed a threshold, one line each.
    alerts = models.JSONField(default=list)
    drifted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["model", "created_at"], name="mlapp_drift_model_time")]
        verbose_name = _("drift report")

    def __str__(self) -> str:
        return f"drift of {self.version_id} at {self.created_at:%Y-%m-%d %H:%M}"
