"""Traffic policies (canary, shadow, rollback) and what serving them records: the shared
counters, the shadow comparisons and the policy's history."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from mlapp.models.registry import MLModel, ModelVersion


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
    #: Counts per latency bucket (:data:`mlapp.serving.traffic_stats.LATENCY_BOUNDS`).
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
