"""What the admin's monitoring page of a model shows, gathered in one place.

Charts are the server-rendered SVG of :mod:`mlapp.admin.charts`: volume and latency of the
logged requests per hour, live accuracy per version, PSI per feature over the latest drift
reports; with the error rate of this process and the last logged requests.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from django.db.models import Count, Max, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from mlapp.admin import charts
from mlapp.models import DriftReport, MLModel, PredictionLog
from mlapp.monitoring import live_metric
from mlapp.serving.metrics import REQUESTS
from mlapp.serving.monitorconf import model_monitoring
from mlapp.serving.stats import Bucket

#: Rows of the log shown, reports drawn, features drawn.
RECENT_ROWS = 20
RECENT_REPORTS = 30
DRAWN_FEATURES = 6


def _volume(model: MLModel, now: Any) -> Any:
    since = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    hours = (
        PredictionLog.objects.filter(model=model, created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("pk"), total=Sum("latency_ms"), longest=Max("latency_ms"))
    )
    found = {row["hour"].timestamp(): row for row in hours}
    buckets = []
    for index in range(24):
        start = (since + timedelta(hours=index)).timestamp()
        row = found.get(start)
        buckets.append(
            Bucket(start, row["n"], row["total"] / 1000, row["longest"] / 1000)
            if row
            else Bucket(start, 0, 0.0, 0.0)
        )
    return charts.latency_volume_chart(buckets, bucket_seconds=3600)


def _errors(model: MLModel) -> dict[str, Any]:
    ok = failed = 0
    for metric in REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("model") == model.name:
                if sample.labels.get("outcome") == "ok":
                    ok += int(sample.value)
                else:
                    failed += int(sample.value)
    total = ok + failed
    return {"ok": ok, "failed": failed, "rate": f"{failed / total:.1%}" if total else "-"}


def _accuracy(model: MLModel, now: Any) -> tuple[str, Any]:
    metric, points = live_metric(model, bucket="hour", since=now - timedelta(days=7))
    by_version: dict[int, list[tuple[float, float]]] = {}
    for point in points:
        by_version.setdefault(point.version, []).append((point.period.timestamp(), point.value))
    series = [(f"v{v}", values) for v, values in sorted(by_version.items())]
    label = f"live {metric} per version and hour, from predictions with feedback"
    chart = charts.line_chart(series, label=label, empty="no feedback yet")
    return metric, chart


def _drift(model: MLModel, threshold: float) -> tuple[Any, DriftReport | None]:
    reports = list(
        DriftReport.objects.filter(model=model)
        .select_related("version")
        .order_by("-created_at")[:RECENT_REPORTS]
    )
    latest = reports[0] if reports else None
    features = latest.result.get("features", {}) if latest else {}
    drawn = sorted(features, key=lambda f: -features[f]["psi"])[:DRAWN_FEATURES]
    series = [
        (
            name,
            [
                (r.created_at.timestamp(), r.result["features"][name]["psi"])
                for r in reports
                if name in r.result.get("features", {})
            ],
        )
        for name in drawn
    ]
    label = f"PSI of the {len(drawn)} most drifted features over the latest reports"
    chart = charts.line_chart(series, label=label, threshold=threshold, empty="no drift report yet")
    return chart, latest


def monitoring_page(model: MLModel) -> dict[str, Any]:
    """The context of the page."""
    now = timezone.now()
    try:
        config = model_monitoring(model.monitoring)
    except ValueError:
        config = model_monitoring({})
    metric, accuracy = _accuracy(model, now)
    drift, latest = _drift(model, config.thresholds["psi"])
    recent = list(PredictionLog.objects.filter(model=model).select_related("version")[:RECENT_ROWS])
    for row in recent:
        row.inputs_text = orjson.dumps(row.inputs).decode()  # type: ignore[attr-defined]
        row.outputs_text = orjson.dumps(row.outputs).decode()  # type: ignore[attr-defined]
    return {
        "config": config,
        "volume": _volume(model, now),
        "errors": _errors(model),
        "metric": metric,
        "accuracy": accuracy,
        "drift": drift,
        "latest_report": latest,
        "recent": recent,
    }
