"""Drift: a reference per version, and reports of the logged requests against it.

A reference (:class:`~mlapp.models.DriftReference`) comes from a sample given in code
(:func:`set_reference`: e.g. the validation split the version was checked on), a file a
batch job could read (:func:`reference_from_file`: CSV, JSON Lines, NPY, NPZ), or the first
N requests the version logged (:func:`reference_from_log`). Its outputs are the version's own
answers on those inputs (the service runs them when they are not given).

:func:`check_drift` (the Celery task ``mlapp.tasks.check_drift`` on a beat schedule, or
``manage.py check_drift`` from cron) compares each version's logged requests of a window
with its reference: per numeric feature PSI and Kolmogorov-Smirnov, per text input the PSI
of lengths and the out-of-vocabulary rate, the PSI of the predicted classes, output
statistics. Each run stores a :class:`~mlapp.models.DriftReport`, sets the Prometheus gauges
``/metrics`` shows (:class:`DriftCollector`), and sends :data:`drift_detected` when a
threshold of the model (``MLModel.monitoring["thresholds"]``) is crossed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.dispatch import Signal
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from mlapp.exceptions import InvalidInput, NotFound
from mlapp.models import DriftReference, DriftReport, MLModel, ModelVersion, PredictionLog
from mlapp.monitoring import stats
from mlapp.serving.inputs import named
from mlapp.serving.monitorconf import model_monitoring
from mlapp.serving.predlog import encode
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.monitoring")

#: Sent when a drift report crosses a threshold: ``report`` (a DriftReport) and ``alerts``
#: (its lines). Connect a receiver to send an e-mail, a Slack message or a page.
drift_detected = Signal()

#: Rows of a reference or a window read at most (the newest, for a window).
MAX_ROWS = 20000
#: Requests run through the model per call when a reference's outputs are computed.
RUN_BATCH = 256


def _answers(version: ModelVersion, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The version's own outputs for each request (as the prediction log stores them).

    Run on the loaded model itself, a batch of requests per call: these are not requests
    to count in the metrics or to log.
    """
    loaded = service.model(version.model.name, version.version)
    answers: list[dict[str, Any]] = []
    for start in range(0, len(requests), RUN_BATCH):
        part = requests[start : start + RUN_BATCH]
        sizes = [len(np.asarray(next(iter(r.values())), dtype=object)) for r in part]
        stacked = {
            name: np.concatenate([np.asarray(r[name], dtype=object) for r in part]).tolist()
            for name in part[0]
        }
        outputs = loaded.run(named(stacked)(loaded.signature))
        offset = 0
        for size in sizes:
            answers.append(encode({k: v[offset : offset + size] for k, v in outputs.items()}))
            offset += size
    return answers


def _classifier(version: ModelVersion) -> bool:
    """Whether a version's unlabelled outputs are class scores (its model's task says so);
    a ``label`` output is a class whatever the task."""
    return version.model.task == MLModel.Task.CLASSIFICATION


def set_reference(
    version: ModelVersion,
    inputs: Iterable[dict[str, Any]] | dict[str, Any],
    outputs: list[dict[str, Any]] | None = None,
    *,
    source: str = DriftReference.Source.SAMPLE,
) -> DriftReference:
    """Make ``inputs`` (requests as the log stores them, ``{input: rows}`` each, or one
    ``{input: array of rows}``) the reference of ``version``; ``outputs`` default to the
    version's own answers."""
    if isinstance(inputs, dict):
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        count = min((len(a) for a in arrays.values()), default=0)
        requests = [encode({k: v[i : i + 1] for k, v in arrays.items()}) for i in range(count)]
    else:
        requests = list(inputs)
    if not requests:
        raise InvalidInput("A drift reference needs at least one request.")
    if len(requests) > MAX_ROWS:
        requests = requests[:MAX_ROWS]
    if outputs is None:
        outputs = _answers(version, requests)
    profile = stats.profile(requests, outputs, scores=_classifier(version))
    reference, _ = DriftReference.objects.update_or_create(
        version=version,
        defaults={"source": source, "rows": len(requests), "profile": profile},
    )
    return reference


def reference_from_log(version: ModelVersion, rows: int | None = None) -> DriftReference:
    """The first ``rows`` requests ``version`` logged (default: the model's
    ``monitoring["reference_rows"]``) become its reference."""
    if rows is None:
        rows = model_monitoring(version.model.monitoring).reference_rows
    logged = list(
        PredictionLog.objects.filter(version=version, truncated=False)
        .order_by("created_at", "pk")
        .values_list("inputs", "outputs")[:rows]
    )
    if not logged:
        raise NotFound(f"{version} has no logged request to take a reference from.")
    return set_reference(
        version,
        [i for i, _ in logged],
        [o for _, o in logged],
        source=DriftReference.Source.LOG,
    )


def reference_from_file(version: ModelVersion, path: str | Path) -> DriftReference:
    """The requests of a file a batch job reads (CSV, JSON Lines, NPY, NPZ) become the
    reference of ``version``, with its own answers as outputs."""
    from mlapp.batch.sources import file_source

    path = str(path)
    signature = service.public_signature(version)
    source = file_source(path, lambda: open(path, "rb"), signature, path)  # noqa: SIM115
    plan = source.plan(RUN_BATCH)
    requests = []
    for chunk in plan.chunks:
        for item in source.read(chunk):
            if item.error:
                raise InvalidInput(f"Row {item.key} of {Path(path).name}: {item.error}")
            arrays = named(item.inputs)(signature)
            requests.append(encode(arrays))
            if len(requests) >= MAX_ROWS:
                break
    return set_reference(version, requests, source=DriftReference.Source.FILE)


def take_references(model: str | None = None) -> list[DriftReference]:
    """Give a reference to every version without one that has logged its model's
    ``reference_rows`` requests: its first ones (the "first N requests" reference)."""
    taken = []
    versions = ModelVersion.objects.select_related("model").filter(drift_reference__isnull=True)
    if model is not None:
        versions = versions.filter(model__name=model)
    for version in versions.exclude(stage=ModelVersion.Stage.ARCHIVED):
        try:
            config = model_monitoring(version.model.monitoring)
        except ValueError:
            continue
        logged = PredictionLog.objects.filter(version=version, truncated=False)
        if logged[config.reference_rows - 1 : config.reference_rows].exists():
            taken.append(reference_from_log(version, config.reference_rows))
    return taken


# -- reports ------------------------------------------------------------------------------


def drift_report(
    version: ModelVersion,
    *,
    since: datetime,
    until: datetime | None = None,
    notify: bool = True,
) -> DriftReport | None:
    """Compare what ``version`` logged from ``since`` (to ``until``) with its reference;
    store and return the report (None: no reference, or nothing logged)."""
    reference = DriftReference.objects.filter(version=version).first()
    if reference is None:
        return None
    until = until or timezone.now()
    logged = list(
        PredictionLog.objects.filter(
            version=version, truncated=False, created_at__gte=since, created_at__lt=until
        )
        .order_by("-created_at")
        .values_list("inputs", "outputs")[:MAX_ROWS]
    )
    if not logged:
        return None
    result = stats.compare(
        reference.profile,
        [i for i, _ in logged],
        [o for _, o in logged],
        scores=_classifier(version),
    )
    thresholds = model_monitoring(version.model.monitoring).thresholds
    found = stats.alerts(result, thresholds)
    report = DriftReport.objects.create(
        model=version.model,
        version=version,
        window_start=since,
        window_end=until,
        rows=len(logged),
        result={**result, "thresholds": thresholds},
        alerts=found,
        drifted=bool(found),
    )
    if found and notify:
        logger.warning("mlapp: %s drifted: %s", version, "; ".join(found))
        drift_detected.send(sender=DriftReport, report=report, alerts=found)
    return report


def check_drift(
    model: str | None = None, *, hours: float = 24.0, now: datetime | None = None
) -> list[DriftReport]:
    """A report per version with a reference and logged requests in the last ``hours``
    (of ``model``, or of every model), after :func:`take_references`. What the periodic job
    runs."""
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    if model is not None and not MLModel.objects.filter(name=model).exists():
        raise NotFound(f"No model named {model!r}.")
    take_references(model)
    versions = ModelVersion.objects.select_related("model").filter(drift_reference__isnull=False)
    if model is not None:
        versions = versions.filter(model__name=model)
    reports = []
    for version in versions.order_by("model__name", "version"):
        report = drift_report(version, since=since, until=now)
        if report is not None:
            reports.append(report)
    return reports


# -- Prometheus -----------------------------------------------------------------------------


def latest_reports() -> Iterator[DriftReport]:
    """The newest report of each version that has one."""
    newest: dict[int, DriftReport] = {}
    recent = DriftReport.objects.select_related("model", "version").order_by("-created_at")
    for report in recent[:1000]:
        newest.setdefault(report.version_id, report)
    return iter(newest.values())


class DriftCollector:
    """Gauges of the latest drift report of each version, read from the database when
    ``/metrics`` is scraped (the job that computed them may run in another process)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        psi = GaugeMetricFamily(
            "mlapp_drift_psi", "PSI of a numeric feature in the latest drift report.",
            labels=["model", "version", "feature"],
        )  # fmt: skip
        ks = GaugeMetricFamily(
            "mlapp_drift_ks", "Kolmogorov-Smirnov statistic of a numeric feature.",
            labels=["model", "version", "feature"],
        )  # fmt: skip
        classes = GaugeMetricFamily(
            "mlapp_drift_classes_psi", "PSI of the predicted classes.", labels=["model", "version"]
        )
        oov = GaugeMetricFamily(
            "mlapp_drift_oov_rate", "Out-of-vocabulary rate of a text input.",
            labels=["model", "version", "feature"],
        )  # fmt: skip
        drifted = GaugeMetricFamily(
            "mlapp_drift_alerts", "Thresholds crossed in the latest drift report.",
            labels=["model", "version"],
        )  # fmt: skip
        for report in latest_reports():
            labels = [report.model.name, str(report.version.version)]
            for feature, measured in report.result.get("features", {}).items():
                psi.add_metric([*labels, feature], measured["psi"])
                ks.add_metric([*labels, feature], measured["ks"])
            for feature, measured in report.result.get("text", {}).items():
                oov.add_metric([*labels, feature], measured["oov_rate"])
            if "classes" in report.result:
                classes.add_metric(labels, report.result["classes"]["psi"])
            drifted.add_metric(labels, len(report.alerts))
        yield from (psi, ks, classes, oov, drifted)

    def describe(self) -> list[Any]:
        return []  # no collect() at registration (no database query then)


def exposition() -> bytes:
    """The drift gauges in the Prometheus text format (appended to ``/metrics``)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(DriftCollector())
    return generate_latest(registry)
