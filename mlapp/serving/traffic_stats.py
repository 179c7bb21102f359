"""The traffic counters every serving process shares, and what is decided from them.

Each process writes its own :class:`~mlapp.models.TrafficWindow` rows
(:meth:`mlapp.serving.traffic.Traffic.flush`); this module reads them summed over every
process: :func:`rollback_reason` decides whether a canary does worse than production over its
window, :func:`roll_back_canary` ends it (once, whichever process decides it first), and
:func:`traffic_summary` / :func:`shadow_summary` are what the admin page and the API show.
(Changing a policy is :mod:`mlapp.versions.traffic`.)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import transaction

from mlapp.models import ShadowComparison, TrafficEvent, TrafficPolicy, TrafficWindow
from mlapp.serving import metrics
from mlapp.signals import announce

if TYPE_CHECKING:
    from mlapp.serving.routes import Rollback

# The rollback's log lines keep the name they had when this was part of the traffic module.
logger = logging.getLogger("mlapp.serving.traffic")

#: Width of one :class:`~mlapp.models.TrafficWindow` bucket, in seconds.
BUCKET_SECONDS = 5
#: Upper bounds (seconds) of the latency histogram's buckets; the last one is open.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, math.inf,
)  # fmt: skip


@dataclass
class Counts:
    """Requests, errors and latency of one version (in one bucket, or over a window)."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS))

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]


def p99(latency: list[int]) -> float:
    """The 99th percentile of a histogram (the upper bound of its bucket); 0 when empty."""
    total = sum(latency)
    if not total:
        return 0.0
    rank = math.ceil(0.99 * total)
    seen = 0
    for bound, count in zip(LATENCY_BOUNDS, latency, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return math.inf


def window_totals(name: str, versions: list[int], seconds: int) -> dict[int, Counts]:
    """Requests, errors and latency of each of ``versions`` over the last ``seconds``, summed
    over every process."""
    since = int((time.time() - seconds) // BUCKET_SECONDS) * BUCKET_SECONDS
    totals = {number: Counts() for number in versions}
    rows = TrafficWindow.objects.filter(
        model_name=name, version__in=versions, bucket__gte=since
    ).values_list("version", "requests", "errors", "total_seconds", "latency")
    for number, requests, errors, total, latency in rows:
        counts = totals[number]
        counts.requests += requests
        counts.errors += errors
        counts.seconds += total
        if latency:
            counts.latency = [a + b for a, b in zip(counts.latency, latency, strict=True)]
    return totals


def rollback_reason(name: str, canary: int, production: int, rule: Rollback) -> str | None:
    """Why the canary should be rolled back now, or None."""
    totals = window_totals(name, [canary, production], rule.window)
    c, p = totals[canary], totals[production]
    if c.requests < rule.min_requests:
        return None
    canary_rate = c.errors / c.requests
    production_rate = p.errors / p.requests if p.requests else 0.0
    if rule.error_rate is not None and canary_rate - production_rate > rule.error_rate:
        return (
            f"error rate {canary_rate:.1%} over {c.requests} requests in {rule.window}s "
            f"against production's {production_rate:.1%} (allowed: +{rule.error_rate:.1%})"
        )
    if rule.p99_ratio is not None and p.requests >= rule.min_requests:
        canary_p99, production_p99 = p99(c.latency), p99(p.latency)
        if canary_p99 > rule.p99_ratio * production_p99:
            return (
                f"p99 latency {canary_p99 * 1000:g} ms in {rule.window}s against "
                f"production's {production_p99 * 1000:g} ms (allowed: x{rule.p99_ratio:g})"
            )
    return None


def roll_back_canary(name: str, canary: int, reason: str, user: Any = None) -> bool:
    """End the canary ``canary`` of ``name`` (once, whoever else decides it too) and record
    why; True when this call did it."""
    with transaction.atomic():
        policy = (
            TrafficPolicy.objects.select_related("model", "canary")
            .filter(model__name=name, canary__version=canary)
            .first()
        )
        if policy is None:
            return False
        done = TrafficPolicy.objects.filter(pk=policy.pk, canary_id=policy.canary_id).update(
            canary=None, canary_weight=0.0
        )
        if not done:
            return False
        TrafficEvent.objects.create(
            model=policy.model,
            action="rolled back",
            message=f"Canary v{canary} rolled back automatically: {reason}.",
            user=user,
        )
        announce(name)  # update() sends no post_save
    metrics.CANARY_ROLLBACKS.labels(name, str(canary)).inc()
    logger.warning("mlapp: canary %s v%s rolled back: %s", name, canary, reason)
    return True


@dataclass(frozen=True)
class VersionTraffic:
    """What one version answered over a window, in all processes together."""

    version: int
    requests: int
    errors: int
    mean_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def traffic_summary(name: str, seconds: int = 600) -> list[VersionTraffic]:
    """Each version's requests, errors and latency over the last ``seconds`` (counted while
    the model had a policy), newest version first."""
    since = int((time.time() - seconds) // BUCKET_SECONDS) * BUCKET_SECONDS
    numbers = sorted(
        set(
            TrafficWindow.objects.filter(model_name=name, bucket__gte=since).values_list(
                "version", flat=True
            )
        ),
        reverse=True,
    )
    totals = window_totals(name, numbers, seconds)
    return [
        VersionTraffic(
            number,
            c.requests,
            c.errors,
            1000 * c.seconds / c.requests if c.requests else 0.0,
            1000 * p99(c.latency) if c.requests else 0.0,
        )
        for number, c in totals.items()
    ]


def shadow_summary(name: str) -> list[ShadowComparison]:
    """The running comparisons of ``name``'s shadow versions, most recent first."""
    return list(ShadowComparison.objects.filter(model_name=name).order_by("-updated_at"))
