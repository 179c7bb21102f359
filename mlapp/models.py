"""Models, their versions, and batch jobs with their stored predictions."""

from __future__ import annotations

import posixpath
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.validators import validate_slug
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from mlapp.conf import settings
from mlapp.jsonenc import FastJSONEncoder
from mlapp.managers import BatchJobQuerySet, ChangeMarkerManager, ModelVersionQuerySet
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


class TrafficPolicy(models.Model):
    """How a model's requests are shared between versions: a canary, a shadow, a rollback.

    Requests that name no version go to the production version, except a ``canary_weight``
    share that the ``canary`` answers (by a caller attribute when ``sticky`` is set, so one
    caller always meets the same version). A ``shadow`` sees a ``shadow_share`` copy of the
    traffic on a thread of its own; its answers are compared, never returned. The canary is
    rolled back when, over ``rollback_window`` seconds in all processes together, its error
    rate exceeds production's by ``rollback_error_rate`` or its p99 latency exceeds
    ``rollback_p99_ratio`` times production's.
    """

    model = models.OneToOneField(MLModel, on_delete=models.CASCADE, related_name="traffic")
    canary = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    canary_weight = models.FloatField(
        default=0.0, help_text=_("Share of requests the canary answers, in percent (0-100).")
    )
    sticky = models.CharField(
        max_length=120,
        blank=True,
        help_text=_(
            'Keep each caller on one version, by "header:<name>", "user" or "field:<name>" '
            '(a key of the request\'s "parameters": native, V2 or gRPC). Empty: an even split.'
        ),
    )
    shadow = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    shadow_share = models.FloatField(
        default=100.0, help_text=_("Share of requests copied to the shadow, in percent.")
    )
    rollback_error_rate = models.FloatField(
        null=True,
        blank=True,
        help_text=_("Roll the canary back when its error rate exceeds production's by this "
                    "(0.05: five points). Empty: never on errors."),
    )  # fmt: skip
    rollback_p99_ratio = models.FloatField(
        null=True,
        blank=True,
        help_text=_("Roll the canary back when its p99 latency exceeds production's times "
                    "this. Empty: never on latency."),
    )  # fmt: skip
    rollback_window = models.PositiveIntegerField(
        default=60, help_text=_("Seconds of traffic the rollback looks at (5-3600).")
    )
    rollback_min_requests = models.PositiveIntegerField(
        default=50, help_text=_("Canary requests in the window before a rollback is decided.")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("traffic policy")
        verbose_name_plural = _("traffic policies")

    def __str__(self) -> str:
        return f"traffic policy of {self.model.name}"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        for field in ("canary_weight", "shadow_share"):
            if not 0 <= getattr(self, field) <= 100:
                errors[field] = _("A percentage: between 0 and 100.")
        for field in ("canary", "shadow"):
            chosen = getattr(self, field)
            if chosen is None:
                continue
            if chosen.model_id != self.model_id:
                errors[field] = _("A version of this model.")
            elif chosen.stage == ModelVersion.Stage.PRODUCTION:
                errors[field] = _("Not the production version: it answers already.")
            elif chosen.stage == ModelVersion.Stage.ARCHIVED:
                errors[field] = _("Not an archived version.")
        if self.sticky and not (
            self.sticky == "user"
            or (self.sticky.startswith(("header:", "field:")) and self.sticky.split(":", 1)[1])
        ):
            errors["sticky"] = _('"header:<name>", "user" or "field:<name>".')
        if self.rollback_error_rate is not None and not 0 <= self.rollback_error_rate <= 1:
            errors["rollback_error_rate"] = _("A fraction: between 0 and 1.")
        if not 5 <= self.rollback_window <= 3600:
            errors["rollback_window"] = _("Between 5 and 3600 seconds.")
        if self.rollback_p99_ratio is not None and self.rollback_p99_ratio < 1:
            errors["rollback_p99_ratio"] = _("At least 1 (the canary's p99 over production's).")
        if errors:
            raise ValidationError(errors)

    def describe(self) -> str:
        """One line for the history: what the policy now says."""
        parts = []
        if self.canary_id is not None and self.canary_weight > 0:
            assert self.canary is not None
            parts.append(f"canary v{self.canary.version} at {self.canary_weight:g}%")
            if self.sticky:
                parts.append(f"sticky by {self.sticky}")
        if self.shadow_id is not None and self.shadow_share > 0:
            assert self.shadow is not None
            parts.append(f"shadow v{self.shadow.version} on {self.shadow_share:g}%")
        return ", ".join(parts) or "production only"


class TrafficWindow(models.Model):
    """Requests, errors and a latency histogram of one version in one time bucket, written
    by one process: the shared counters the automatic rollback and the admin page read."""

    process = models.CharField(max_length=100)
    model_name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    bucket = models.BigIntegerField(help_text=_("Start of the bucket, in Unix seconds."))
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    total_seconds = models.FloatField(default=0.0)
    #: Counts per latency bucket (:data:`mlapp.serving.traffic.LATENCY_BOUNDS`).
    latency = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["process", "model_name", "version", "bucket"],
                name="mlapp_traffic_window_unique",
            )
        ]
        indexes = [models.Index(fields=["model_name", "bucket"], name="mlapp_traffic_model_bucket")]

    def __str__(self) -> str:
        return f"{self.model_name} v{self.version} @{self.bucket} ({self.process})"


class ShadowComparison(models.Model):
    """Running statistics of a shadow version's answers against the answered ones."""

    model_name = models.CharField(max_length=100)
    answered = models.PositiveIntegerField(help_text=_("The version whose answers were sent."))
    shadow = models.PositiveIntegerField()
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    #: Rows compared on label-like outputs, and how many gave the same answer.
    label_rows = models.PositiveBigIntegerField(default=0)
    label_agreed = models.PositiveBigIntegerField(default=0)
    #: Rows compared on float outputs: sum of their cosine similarities, largest abs difference.
    tensor_rows = models.PositiveBigIntegerField(default=0)
    cosine_sum = models.FloatField(default=0.0)
    max_abs_diff = models.FloatField(default=0.0)
    shadow_seconds = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_name", "answered", "shadow"], name="mlapp_shadow_pair_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_name}: v{self.shadow} shadowing v{self.answered}"

    @property
    def agreement(self) -> float | None:
        return self.label_agreed / self.label_rows if self.label_rows else None

    @property
    def mean_cosine(self) -> float | None:
        return self.cosine_sum / self.tensor_rows if self.tensor_rows else None


class TrafficEvent(models.Model):
    """A change of a model's traffic policy: by a person, or the automatic rollback."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="traffic_events")
    created_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32)
    message = models.TextField()
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.model_id} {self.action}: {self.message}"
