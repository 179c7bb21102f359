"""Stored batch predictions beside the host's own rows, in one query.

A registered batch source stores each row's prediction under the row's key as a string (its
primary key, or a named unique field). :func:`annotate_predictions` adds a model's stored
outputs to any queryset of the host's table as annotations, so they can be shown, filtered,
ordered and counted by the database, on SQLite and PostgreSQL alike::

    from mlapp.predictions import annotate_predictions

    flowers = annotate_predictions(
        Flower.objects.all(), "iris", {"label": str, "probabilities.2": float}
    ).filter(prediction_probabilities_2__gte=0.9)

It reads what the batch jobs stored; no model runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from django.db import models
from django.db.models import F, Func, OuterRef, QuerySet, Subquery
from django.db.models.expressions import Combinable
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from mlapp.models import BatchJob, BatchPrediction

__all__ = ["annotate_predictions"]

M = TypeVar("M", bound=models.Model)

#: What a declared Python type becomes in SQL. ``None``: the stored JSON value as it is.
FIELDS: dict[type, type[models.Field]] = {
    str: models.TextField,
    float: models.FloatField,
    int: models.BigIntegerField,
    bool: models.BooleanField,
}

OutputType = type | models.Field | None
_NAME = re.compile(r"^[A-Za-z_][\w-]*(\.\d+)*$")


def annotate_predictions(
    queryset: QuerySet[M],
    model: str,
    outputs: Iterable[str] | Mapping[str, OutputType],
    *,
    key: str | Combinable = "pk",
    job: BatchJob | int | Literal["latest"] | None = None,
    prefix: str = "prediction_",
) -> QuerySet[M]:
    """``queryset`` with each row's stored prediction outputs of ``model`` as annotations.

    Args:
        queryset: rows of the host's table (any model, filtered or not).
        model: the mlapp model's name.
        outputs: the output values to add, named as the CSV download names its columns: an
            output's name (``"label"``) for its value in the item's row, ``"probabilities.2"``
            for one element of it. A list gives the stored JSON values as they are; a mapping
            ``{name: type}`` casts each in SQL: ``str``, ``float``, ``int``, ``bool``, a
            Django field instance, or ``None`` for the JSON value.
        key: what the rows were stored under: a field name or path (``"pk"``,
            ``"customer__username"``) or an expression (``Concat(Value("flower-"), "pk")``);
            compared as text, the way keys are stored.
        job: ``None``: for each row, the latest succeeded job that holds its key (the rule of
            ``batch.latest_prediction`` and the by-key API route); ``"latest"``: only the
            model's latest succeeded job (every value from one run; rows it lacks get
            ``None``); a job or its id: that job's predictions, whatever its status.
        prefix: put before each annotation's name; dots become underscores
            (``"probabilities.2"`` -> ``prediction_probabilities_2``).

    A row with no stored prediction, or whose item failed (its error is stored instead of
    outputs), gets ``None`` for every output. The queryset stays lazy: nothing is queried here.
    Each output is one correlated subquery on the ``(model, key)`` index.

    Raises:
        ValueError: a malformed output name or type, or an annotation name the queryset
            already uses.
    """
    specs = _specs(outputs)
    names = {f"{prefix}{name.replace('.', '_').replace('-', '_')}": name for name in specs}
    key_alias = f"_{prefix}key"
    taken = set(queryset.query.annotations) | {f.name for f in queryset.model._meta.get_fields()}
    clash = sorted(taken & ({*names, key_alias}))
    if clash:
        raise ValueError(
            f"annotate_predictions: {', '.join(clash)} already named on the queryset; "
            f"choose another prefix than {prefix!r}."
        )
    expression = F(key) if isinstance(key, str) else key
    # Keys are stored as text: an integer pk is compared as its text, on the outer side so
    # that the lookup of the key stays on the (model, key) index.
    annotated = queryset.alias(**{key_alias: Cast(expression, models.CharField())})
    stored = _stored(model, job).filter(key=OuterRef(key_alias))
    row = Subquery(stored.values("outputs")[:1], output_field=models.JSONField())
    return annotated.annotate(
        **{alias: _value(row, name, specs[name]) for alias, name in names.items()}
    )


def _stored(model: str, job: BatchJob | int | str | None) -> QuerySet[BatchPrediction]:
    rows = BatchPrediction.objects.filter(model__name=model)
    succeeded = BatchJob.Status.SUCCEEDED
    if job is None:
        return rows.filter(job__status=succeeded).order_by(
            F("job__finished_at").desc(nulls_last=True), "-job_id"
        )
    if job == "latest":
        latest = (
            BatchJob.objects.filter(version__model__name=model, status=succeeded)
            .order_by(F("finished_at").desc(nulls_last=True), "-pk")
            .values("pk")[:1]
        )
        return rows.filter(job=Subquery(latest))
    if isinstance(job, BatchJob | int) and not isinstance(job, bool):
        return rows.filter(job=job)
    raise ValueError(
        f"annotate_predictions: job must be None, 'latest', a job or its id; not {job!r}."
    )


def _specs(outputs: Iterable[str] | Mapping[str, OutputType]) -> dict[str, OutputType]:
    if isinstance(outputs, str):
        raise ValueError(
            "annotate_predictions: outputs is a list or a mapping of names, not a str."
        )
    specs = dict(outputs) if isinstance(outputs, Mapping) else dict.fromkeys(outputs)
    if not specs:
        raise ValueError("annotate_predictions: name at least one output.")
    for name, kind in specs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"annotate_predictions: {name!r} is not an output name like 'label' or "
                "'probabilities.2'."
            )
        if kind is not None and kind not in FIELDS and not isinstance(kind, models.Field):
            raise ValueError(
                f"annotate_predictions: output {name!r}: {kind!r} is not str, float, int, "
                "bool, a Django field or None."
            )
    return specs


def _value(row: Any, name: str, kind: OutputType) -> Any:
    """The SQL for one output value of the item's row (the row axis goes, as in the CSV)."""
    output, *elements = name.split(".")
    path = [output, "0", *elements]
    if kind is None:
        return _Extract(row, path, as_json=True, output_field=models.JSONField())
    field = kind if isinstance(kind, models.Field) else FIELDS[kind]()
    # The value is read once as an SQL scalar (PostgreSQL's text, SQLite's json_extract),
    # then cast: a JSON number and a JSON string holding a number cast alike on both.
    text = _Extract(row, path, as_json=False, output_field=models.TextField())
    if isinstance(field, models.TextField | models.CharField):
        return Cast(text, models.TextField())
    return Cast(text, field)


class _Extract(Func):
    """One value at ``path`` in the stored outputs, the row's subquery written out once.

    Django's own key transforms repeat their left side three times on SQLite (a CASE over
    JSON_TYPE), which here would run the row's subquery three times per value, and hand
    JSON booleans over as the text ``'true'``, which SQLite casts to 0.
    """

    def __init__(self, row: Any, path: list[str], *, as_json: bool, output_field: Any) -> None:
        super().__init__(row, output_field=output_field)
        self.path = path
        self.as_json = as_json

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        operator = "#>" if self.as_json else "#>>"
        return f"({sql} {operator} %s)", (*params, self.path)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        if self.as_json and connection.Database.sqlite_version_info < (3, 38):
            return self.as_sql(compiler, connection, **extra)  # no -> operator before 3.38
        sql, params = compiler.compile(self.source_expressions[0])
        path = _json_path(self.path)
        if self.as_json:  # the JSON text of the value, whatever its type
            return f"({sql} -> %s)", (*params, path)
        return f"JSON_EXTRACT({sql}, %s)", (*params, path)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        """Other databases: Django's key transforms."""
        value: Any = self.source_expressions[0]
        last = len(self.path) - 1
        for i, step in enumerate(self.path):
            text = i == last and not self.as_json
            value = (KeyTextTransform if text else KeyTransform)(step, value)
        return compiler.compile(value)


def _json_path(steps: list[str]) -> str:
    """SQLite's JSON path for ``["probabilities", "0", "2"]``: ``$."probabilities"[0][2]``."""
    return "$" + "".join(f"[{s}]" if s.isdigit() else f".{json.dumps(s)}" for s in steps)
