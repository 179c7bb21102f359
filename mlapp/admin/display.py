"""What the admin pages show of a version: stage badges, links, metrics, tables, examples.

What clients send and get comes from the inference service (``service.public_signature``,
``service.example_inputs``), as for the APIs.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mlapp.admin import charts
from mlapp.exceptions import MLAppError
from mlapp.models import ModelVersion
from mlapp.runtimes.tensors import Signature
from mlapp.serving.service import service

#: Metrics shown first in lists, when a version has them.
KEY_METRICS = ("accuracy", "f1", "precision", "recall", "auc", "r2", "mae", "mse", "rmse", "loss")
#: Metrics drawn or shown elsewhere on the version page, not in its metrics table.
NOT_IN_METRICS_TABLE = {"confusion_matrix", "labels", "validation"}


class MLAppMedia:
    css = {"all": ["mlapp/admin.css"]}


def stage_badge(stage: str) -> SafeString:
    label = ModelVersion.Stage(stage).label if stage in ModelVersion.Stage.values else stage
    return format_html('<span class="mlapp-stage mlapp-stage-{}">{}</span>', stage, label)


def version_url(version: ModelVersion) -> str:
    return reverse("admin:mlapp_modelversion_change", args=[version.pk])


def version_link(version: ModelVersion | None) -> SafeString | str:
    if version is None:
        return "—"
    return format_html('<a href="{}">v{}</a>', version_url(version), version.version)


def key_metrics(version: ModelVersion, limit: int = 3) -> str:
    metrics = version.metrics or {}
    shown = [
        f"{name} {metrics[name]:.3g}"
        for name in KEY_METRICS
        if isinstance(metrics.get(name), (int, float)) and not isinstance(metrics[name], bool)
    ][:limit]
    predict = (metrics.get("validation") or {}).get("predict_seconds")
    if isinstance(predict, (int, float)):
        shown.append(f"smoke predict {1000 * predict:.1f} ms")
    return " · ".join(shown) or "—"


def metrics_table(version: ModelVersion) -> SafeString | str:
    rows = [
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in sorted((version.metrics or {}).items())
        if name not in NOT_IN_METRICS_TABLE
    ]
    if not rows:
        return "—"
    return format_html(
        '<table class="mlapp-table"><tbody>{}</tbody></table>',
        format_html_join("", "<tr><th>{}</th><td><code>{}</code></td></tr>", rows),
    )


def validation_summary(version: ModelVersion) -> str:
    report = (version.metrics or {}).get("validation") or {}
    if not report:
        return "—"
    return _("loaded in %(load).1f ms, smoke prediction (2 rows) in %(predict).2f ms") % {
        "load": 1000 * float(report.get("load_seconds", 0)),
        "predict": 1000 * float(report.get("predict_seconds", 0)),
    }


def confusion_matrix_of(version: ModelVersion | None) -> SafeString | str:
    metrics = (version.metrics or {}) if version else {}
    matrix, labels = metrics.get("confusion_matrix"), metrics.get("labels")
    if not (
        isinstance(matrix, list)
        and matrix
        and all(isinstance(row, list) and len(row) == len(matrix) for row in matrix)
        and all(isinstance(v, int) for row in matrix for v in row)
    ):
        return "—"
    if not (isinstance(labels, list) and len(labels) == len(matrix)):
        labels = [str(i) for i in range(len(matrix))]
    return charts.confusion_matrix_chart(matrix, labels)


# -- what clients send and get -------------------------------------------------------------


def example_request(version: ModelVersion) -> dict[str, Any]:
    """A predict body for ``version`` (the service's example; empty when it has none)."""
    try:
        return {"inputs": service.example_inputs(version)}
    except MLAppError:
        return {"inputs": {}}


def signature_table(signature: Signature) -> SafeString:
    rows = [
        (direction, spec.name, spec.datatype, json.dumps(list(spec.shape)))
        for direction, group in (("input", signature.inputs), ("output", signature.outputs))
        for spec in group
    ]
    return format_html(
        '<table class="mlapp-table"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        _("direction"),
        _("name"),
        _("datatype"),
        _("shape"),
        format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            rows,
        ),
    )


def signatures_of(version: ModelVersion) -> SafeString | str:
    """The public signature, and the artifact's own below it when a handler changes it."""
    try:
        signature = service.public_signature(version)
    except MLAppError as exc:
        return exc.message
    table = signature_table(signature)
    if not version.model.handler:
        return table
    return format_html(
        '{}<p class="help">{}</p>{}',
        table,
        _("Clients send and get the handler's tensors above; the artifact itself runs:"),
        signature_table(Signature.from_dict(version.signature)),
    )


class VersionColumns:
    """Columns of a version shared by its list and the versions inline of a model's page."""

    @admin.display(description=_("stage"), ordering="stage")
    def stage_display(self, obj: ModelVersion) -> SafeString:
        return stage_badge(obj.stage)

    @admin.display(description=_("size"), ordering="size")
    def size_display(self, obj: ModelVersion) -> str:
        return filesizeformat(obj.size)

    @admin.display(description=_("sha256"))
    def sha256_short(self, obj: ModelVersion) -> SafeString:
        return format_html('<code title="{}">{}</code>', obj.sha256, obj.sha256[:12])

    @admin.display(description=_("key metrics"))
    def metrics_summary(self, obj: ModelVersion) -> str:
        return key_metrics(obj)
