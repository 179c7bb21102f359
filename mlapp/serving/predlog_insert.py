"""Writing the prediction log's prepared rows: one transaction, the fastest statement each
database has (``COPY`` on PostgreSQL, one prepared ``INSERT`` on SQLite, multi-row
``INSERT`` elsewhere).

:class:`~mlapp.serving.predlog.PredictionRecorder` prepares the rows (a tuple per row, in
:data:`COLUMNS` order, dates as :func:`stamper` makes them) and hands them to
:func:`insert_rows`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connections, router, transaction

from mlapp.models import PredictionLog


def stamper(connection: Any) -> Callable[[float], Any]:
    """A function of a UNIX time to what ``connection`` stores for a DateTimeField."""
    if connection.vendor == "sqlite" and connection.timezone_name == "UTC":
        # What the backend's adapter makes of it (naive UTC, str()), a third of its cost.
        return lambda ts: str(datetime.fromtimestamp(ts, UTC).replace(tzinfo=None))
    adapt = connection.ops.adapt_datetimefield_value
    return lambda ts: adapt(datetime.fromtimestamp(ts, UTC))


#: The columns of a prepared row (:meth:`~mlapp.serving.predlog.PredictionRecorder._row`),
#: by field name.
COLUMNS = (
    "model",
    "version",
    "request_id",
    "key",
    "protocol",
    "inputs",
    "outputs",
    "truncated",
    "latency_ms",
    "created_at",
)


def write_connection() -> Any:
    """The connection prediction-log rows are written on (the router's choice)."""
    return connections[router.db_for_write(PredictionLog)]


def insert_rows(rows: list[tuple[Any, ...]]) -> None:
    """Multi-row ``INSERT`` statements (``COPY`` on PostgreSQL) of prepared rows, in one
    transaction.

    Not ``bulk_create``: building a model instance and preparing each field through the ORM
    cost several times the insert itself (bench/predlog.py), and the writer shares the
    worker's CPU (and GIL) with its requests. The JSON columns take the text orjson wrote
    (SQLite stores text; PostgreSQL casts the untyped parameter to jsonb).
    """
    connection = write_connection()
    meta = PredictionLog._meta
    quote = connection.ops.quote_name
    by_name = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = ", ".join(quote(by_name[name]) for name in COLUMNS)
    head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608
    mark = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    limit = connection.features.max_query_params
    per = max(1, limit // len(COLUMNS)) if limit else len(rows)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql" and hasattr(cursor.cursor, "copy"):
            # psycopg 3: COPY streams the rows, no statement to parse (3-4x the INSERTs).
            with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        if connection.vendor == "sqlite":
            # One statement prepared once, bound per row in C.
            cursor.executemany(head + mark, rows)
            return
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            cursor.execute(head + ", ".join([mark] * len(part)), [v for row in part for v in row])
