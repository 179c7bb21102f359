"""Small server-rendered SVG charts for the admin: no JavaScript, no CDN.

Every function returns safe markup; every text that comes from data is escaped. Colours come
from classes in ``mlapp/static/mlapp/admin.css`` (which follow the admin's light and dark
themes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from mlapp.serving.stats import Bucket


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: float, height: float, label: str, body: list[str], css: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated text below is escaped
        f'<svg class="mlapp-chart {css}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def latency_volume_chart(buckets: Sequence[Bucket], *, bucket_seconds: int = 10) -> SafeString:
    """Requests per bucket as bars, mean latency (ms) as a line, oldest bucket on the left."""
    width, height, left, right, top, bottom = 520, 150, 44, 44, 12, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(buckets), 1)
    step = plot_w / n
    max_count = max((b.count for b in buckets), default=0) or 1
    max_ms = max((b.mean_ms for b in buckets), default=0.0) or 1.0
    total = sum(b.count for b in buckets)
    body = [
        f'<line class="mlapp-axis" x1="{left}" y1="{top + plot_h}" '
        f'x2="{left + plot_w}" y2="{top + plot_h}"/>',
        f'<text class="mlapp-label" x="{left - 4}" y="{top + 8}" text-anchor="end">'
        f"{max_count}</text>",
        f'<text class="mlapp-label" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
        f'<text class="mlapp-label mlapp-latency-label" x="{left + plot_w + 4}" y="{top + 8}">'
        f"{_num(max_ms)} ms</text>",
        f'<text class="mlapp-label" x="{left}" y="{height - 6}">'
        f"{len(buckets) * bucket_seconds // 60} min ago</text>",
        f'<text class="mlapp-label" x="{left + plot_w}" y="{height - 6}" '
        f'text-anchor="end">now</text>',
    ]
    points = []
    for i, bucket in enumerate(buckets):
        x = left + i * step
        if bucket.count:
            bar_h = plot_h * bucket.count / max_count
            body.append(
                f'<rect class="mlapp-bar" x="{_num(x + 0.5)}" y="{_num(top + plot_h - bar_h)}" '
                f'width="{_num(max(step - 1, 1))}" height="{_num(bar_h)}">'
                f"<title>{bucket.count} requests, mean {_num(bucket.mean_ms)} ms, "
                f"max {_num(bucket.max_ms)} ms</title></rect>"
            )
            y = top + plot_h - plot_h * bucket.mean_ms / max_ms
            points.append(f"{_num(x + step / 2)},{_num(y)}")
    if len(points) > 1:
        body.append(f'<polyline class="mlapp-line" points="{" ".join(points)}"/>')
    for point in points:
        cx, cy = point.split(",")
        body.append(f'<circle class="mlapp-dot" cx="{cx}" cy="{cy}" r="2"/>')
    if not total:
        body.append(
            f'<text class="mlapp-label" x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
            f'text-anchor="middle">no requests in this process yet</text>'
        )
    label = (
        f"{total} requests in the last {len(buckets) * bucket_seconds // 60} minutes "
        f"(bars: requests per {bucket_seconds} s; line: mean latency, up to {_num(max_ms)} ms)"
    )
    return _svg(width, height, label, body, "mlapp-activity")


def batch_progress_chart(jobs: Sequence[Any]) -> SafeString:
    """One bar per batch job: done (incl. failed items) over total, failed items in red."""
    row_h, width, label_w = 22, 520, 210
    bar_w = width - label_w - 8
    height = row_h * max(len(jobs), 1) + 4
    body = []
    if not jobs:
        body.append(f'<text class="mlapp-label" x="4" y="{row_h - 7}">no batch jobs yet</text>')
    for i, job in enumerate(jobs):
        y = 2 + i * row_h
        total = max(int(job.total or 0), 0)
        done, failed = int(job.done or 0), int(job.failed or 0)
        fraction = min(done / total, 1.0) if total else (1.0 if job.status == "succeeded" else 0.0)
        failed_fraction = min(failed / total, fraction) if total else 0.0
        text = f"#{job.pk} v{job.version.version} {job.status} {done}/{total}"
        body.append(
            f'<text class="mlapp-label" x="4" y="{y + row_h - 8}">{escape(text)}</text>'
            f'<rect class="mlapp-track" x="{label_w}" y="{y + 3}" width="{bar_w}" '
            f'height="{row_h - 8}" rx="3"/>'
            f'<rect class="mlapp-done mlapp-status-{escape(job.status)}" x="{label_w}" '
            f'y="{y + 3}" width="{_num(bar_w * fraction)}" height="{row_h - 8}" rx="3">'
            f"<title>{escape(text)}</title></rect>"
        )
        if failed_fraction:
            failed_x = label_w + bar_w * (fraction - failed_fraction)
            body.append(
                f'<rect class="mlapp-failed" x="{_num(failed_x)}" y="{y + 3}" '
                f'width="{_num(bar_w * failed_fraction)}" height="{row_h - 8}">'
                f"<title>{failed} failed items</title></rect>"
            )
    return _svg(width, height, f"Progress of {len(jobs)} batch jobs", body, "mlapp-jobs")


def confusion_matrix_chart(matrix: Sequence[Sequence[int]], labels: Sequence[Any]) -> SafeString:
    """Rows: true class; columns: predicted class; cell shade: share of the row."""
    n = len(matrix)
    cell = 34 if n <= 6 else 26
    longest = max((len(str(x)) for x in labels), default=1)
    # Row labels are horizontal (left margin); column labels are turned 45 degrees (top).
    left = 30 + 7 * longest
    top = 24 + int(5 * longest)
    width, height = left + n * cell + 4 + 4 * longest, top + n * cell + 4
    body = [
        f'<text class="mlapp-label" x="{left + n * cell / 2}" y="12" text-anchor="middle">'
        "predicted</text>",
        f'<text class="mlapp-label" x="12" y="{top + n * cell / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + n * cell / 2})">true</text>',
    ]
    for j, name in enumerate(labels):
        x = left + j * cell + cell / 2
        body.append(
            f'<text class="mlapp-label" x="{_num(x)}" y="{top - 6}" '
            f'transform="rotate(-45 {_num(x)} {top - 6})">{escape(str(name))}</text>'
        )
    for i, row in enumerate(matrix):
        row_total = sum(row) or 1
        y = top + i * cell
        body.append(
            f'<text class="mlapp-label" x="{left - 6}" y="{_num(y + cell / 2 + 4)}" '
            f'text-anchor="end">{escape(str(labels[i]) if i < len(labels) else i)}</text>'
        )
        for j, value in enumerate(row):
            share = value / row_total
            # Any miss stays visible, however rare.
            opacity = 0.08 if not value else (0.92 * share + 0.08 if i == j else 0.3 + 0.7 * share)
            x = left + j * cell
            css = "mlapp-cell-hit" if i == j else "mlapp-cell-miss"
            text_css = " mlapp-cell-strong" if share > 0.5 else ""
            true_name = labels[i] if i < len(labels) else i
            predicted = labels[j] if j < len(labels) else j
            body.append(
                f'<rect class="mlapp-cell {css}" x="{x}" y="{y}" width="{cell - 1}" '
                f'height="{cell - 1}" fill-opacity="{opacity:.2f}">'
                f"<title>true {escape(str(true_name))}, predicted {escape(str(predicted))}: "
                f"{int(value)}</title></rect>"
            )
            if value:
                body.append(
                    f'<text class="mlapp-cell-text{text_css}" x="{_num(x + cell / 2)}" '
                    f'y="{_num(y + cell / 2 + 4)}" text-anchor="middle">{int(value)}</text>'
                )
    label = f"Confusion matrix of {n} classes (rows: true class, columns: predicted class)"
    return _svg(width, height, label, body, "mlapp-confusion")


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    label: str,
    unit: str = "",
    threshold: float | None = None,
    empty: str = "no data yet",
) -> SafeString:
    """One line per named series of ``(time, value)`` points (UNIX seconds), a dashed
    threshold when given; the legend names the series in their colours."""
    width, height, left, right, top, bottom = 520, 170, 44, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [p for _, values in series for p in values]
    body = [
        f'<line class="mlapp-axis" x1="{left}" y1="{top + plot_h}" '
        f'x2="{left + plot_w}" y2="{top + plot_h}"/>',
    ]
    if not points:
        body.append(
            f'<text class="mlapp-label" x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
            f'text-anchor="middle">{escape(empty)}</text>'
        )
        return _svg(width, height, f"{label}: {empty}", body, "mlapp-lines")
    x0 = min(t for t, _ in points)
    x1 = max(t for t, _ in points)
    top_value = max([v for _, v in points] + ([threshold] if threshold is not None else []))
    top_value = top_value or 1.0
    span = (x1 - x0) or 1.0

    def xy(t: float, v: float) -> str:
        x = left + plot_w * ((t - x0) / span if x1 > x0 else 0.5)
        return f"{_num(x)},{_num(top + plot_h - plot_h * v / top_value)}"

    body += [
        f'<text class="mlapp-label" x="{left - 4}" y="{top + 8}" text-anchor="end">'
        f"{_num(top_value)}{escape(unit)}</text>",
        f'<text class="mlapp-label" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    if threshold is not None:
        y = top + plot_h - plot_h * threshold / top_value
        body.append(
            f'<line class="mlapp-threshold" x1="{left}" y1="{_num(y)}" '
            f'x2="{left + plot_w}" y2="{_num(y)}"><title>threshold {_num(threshold)}</title></line>'
        )
    for index, (name, values) in enumerate(series):
        css = f"mlapp-series-{index % 6}"
        coords = [xy(t, v) for t, v in sorted(values)]
        if len(coords) > 1:
            body.append(f'<polyline class="mlapp-series {css}" points="{" ".join(coords)}"/>')
        for (_, v), coord in zip(sorted(values), coords, strict=True):
            cx, cy = coord.split(",")
            body.append(
                f'<circle class="mlapp-series-dot {css}" cx="{cx}" cy="{cy}" r="2.5">'
                f"<title>{escape(name)}: {v:.4g}</title></circle>"
            )
        legend_x = left + (index % 4) * (plot_w / 4)
        legend_y = height - 22 + (index // 4) * 11
        body.append(
            f'<text class="mlapp-label mlapp-legend {css}" x="{_num(legend_x)}" '
            f'y="{_num(legend_y)}">{escape(name)}</text>'
        )
    return _svg(width, height, label, body, "mlapp-lines")
