"""Ground truth attached after the prediction, and the live accuracy it gives per version.

Feedback names what it is about by key: the request id or the caller's key of a logged
request (:class:`~mlapp.models.PredictionLog`), or the key of a batch prediction
(:class:`~mlapp.models.BatchPrediction`). It may arrive one at a time (the API,
:func:`record_feedback`), or in bulk from a CSV (:func:`feedback_from_csv`) or from the
host's own table (:func:`feedback_from_queryset`). :func:`joined` pairs every prediction
that has feedback with its truth; :func:`live_metric` turns the pairs into accuracy (the
model's task: mean absolute error for a regression) per version and period.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from mlapp.exceptions import InvalidInput, ModelNotFound
from mlapp.models import BatchPrediction, Feedback, MLModel, PredictionLog

#: Rows per statement when writing feedback and when joining it.
CHUNK = 1000
#: Periods :func:`live_metric` groups by.
BUCKETS = ("hour", "day")


def _model(model: str | MLModel) -> MLModel:
    if isinstance(model, MLModel):
        return model
    found = MLModel.objects.filter(name=model).first()
    if found is None:
        raise ModelNotFound.no_model(model)
    return found


def record_feedback(
    model: str | MLModel, truths: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> int:
    """Store the true value of each key (``{key: value}`` or pairs); returns how many.

    A key sent again replaces its value. Keys are strings of at most 255 characters; a value
    is any JSON value (a label, a number, or a list of them, one per row of the request).
    """
    found = _model(model)
    items = truths.items() if isinstance(truths, Mapping) else truths
    now = timezone.now()
    count = 0
    batch: dict[str, Any] = {}

    def write() -> None:
        Feedback.objects.bulk_create(
            [Feedback(model=found, key=k, value=v, updated_at=now) for k, v in batch.items()],
            update_conflicts=True,
            unique_fields=["model", "key"],
            update_fields=["value", "updated_at"],
        )
        batch.clear()

    for key, value in items:
        key = str(key)
        if not key or len(key) > 255:
            raise InvalidInput(f"A feedback key must have 1 to 255 characters, not {key[:40]!r}.")
        if value is None:
            raise InvalidInput(f"The feedback of key {key!r} has no value.")
        batch[key] = value
        count += 1
        if len(batch) >= CHUNK:
            write()
    if batch:
        write()
    return count


def feedback_from_csv(
    model: str | MLModel, file: IO[bytes] | IO[str], *, key: str = "key", value: str | None = None
) -> int:
    """Store the feedback of a CSV file with a ``key`` column and a value column (``value``
    or ``label`` unless named, or the only other column). Numbers stay text: labels are
    compared as text, and a regression's truth is read as a number when it is compared."""
    raw = file.read()
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if key not in columns:
        raise InvalidInput(f"The CSV has no {key!r} column (columns: {', '.join(columns)}).")
    if value is None:
        others = [c for c in columns if c != key]
        value = next((c for c in ("value", "label") if c in columns), None)
        if value is None and len(others) == 1:
            value = others[0]
        if value is None:
            raise InvalidInput(
                "Name the CSV's value column: 'value', 'label', or the only other column."
            )
    elif value not in columns:
        raise InvalidInput(f"The CSV has no {value!r} column (columns: {', '.join(columns)}).")
    column = value
    return record_feedback(model, ((row[key], row[column]) for row in reader if row[column]))


def feedback_from_queryset(
    model: str | MLModel, queryset: QuerySet, value: str, *, key: str = "pk"
) -> int:
    """Store the feedback held by the host's own rows: ``value`` is the field with the truth,
    ``key`` the field the predictions were keyed by (the primary key for a batch source)."""
    rows = queryset.exclude(**{f"{value}__isnull": True}).values_list(key, value)
    return record_feedback(model, ((str(k), v) for k, v in rows.iterator(chunk_size=CHUNK)))


# -- joining --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One prediction with its truth."""

    version: int
    at: datetime
    predicted: list[Any]
    truth: list[Any]
    #: "log" or "batch".
    source: str


def predicted_values(outputs: Any, regression: bool = False) -> list[Any]:
    """What a prediction says, one value per row: its ``label`` output, else its first
    output (the index of the highest score of a row of scores; the first value of a row of
    a regression)."""
    if not isinstance(outputs, dict) or not outputs or "shapes" in outputs:
        return []
    values = outputs.get("label", next(iter(outputs.values())))
    if not isinstance(values, list):
        return [values]
    rows = []
    for row in values:
        if isinstance(row, list) and row:
            rows.append(row[0] if regression else max(range(len(row)), key=row.__getitem__))
        else:
            rows.append(row)
    return rows


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def joined(
    model: str | MLModel, *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[Pair]:
    """Every logged or batch prediction of ``model`` that has feedback, with its truth."""
    found = _model(model)
    regression = found.task == MLModel.Task.REGRESSION
    feedback = Feedback.objects.filter(model=found).values_list("key", "value").order_by("pk")
    window = Q()
    if since is not None:
        window &= Q(created_at__gte=since)
    if until is not None:
        window &= Q(created_at__lt=until)
    start = 0
    while True:
        chunk = dict(feedback[start : start + CHUNK])
        if not chunk:
            return
        start += CHUNK
        logged = (
            PredictionLog.objects.filter(window, model=found)
            .filter(Q(key__in=list(chunk)) | Q(request_id__in=list(chunk)))
            .values_list("version__version", "created_at", "key", "request_id", "outputs")
        )
        for version, at, key, request_id, outputs in logged:
            truth = chunk.get(key) if key in chunk else chunk.get(request_id)
            yield Pair(version, at, predicted_values(outputs, regression), _rows(truth), "log")
        stored = BatchPrediction.objects.filter(
            window, model=found, key__in=list(chunk), error=""
        ).values_list("version__version", "created_at", "key", "outputs")
        for version, at, key, outputs in stored:
            truth = _rows(chunk[key])
            yield Pair(version, at, predicted_values(outputs, regression), truth, "batch")


# -- the metric -----------------------------------------------------------------------------


@dataclass
class Point:
    """The metric of one version over one period."""

    version: int
    period: datetime
    #: Rows compared (a request of several rows counts each).
    count: int
    #: Accuracy (share of rows whose prediction equals the truth), or mean absolute error.
    value: float


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _period(at: datetime, bucket: str) -> datetime:
    at = at.astimezone(UTC) if timezone.is_aware(at) else at
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def live_metric(
    model: str | MLModel,
    *,
    bucket: str = "day",
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[str, list[Point]]:
    """``("accuracy" | "mae", points)``: the model's metric per version and period (UTC
    hours or days), oldest first, from every prediction with feedback."""
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}.")
    found = _model(model)
    regression = found.task == MLModel.Task.REGRESSION
    sums: dict[tuple[int, datetime], list[float]] = defaultdict(lambda: [0, 0.0])
    for pair in joined(found, since=since, until=until):
        total = sums[(pair.version, _period(pair.at, bucket))]
        for predicted, truth in zip(pair.predicted, pair.truth, strict=False):
            if regression:
                p, t = _number(predicted), _number(truth)
                if p is None or t is None:
                    continue
                total[1] += abs(p - t)
            else:
                total[1] += str(predicted) == str(truth)
            total[0] += 1
    points = [
        Point(version, period, int(count), score / count)
        for (version, period), (count, score) in sorted(sums.items(), key=lambda i: i[0][::-1])
        if count
    ]
    return ("mae" if regression else "accuracy"), points
