"""Load the flowers of fixtures/iris/flowers.csv into the table (idempotent, by id)."""

from __future__ import annotations

import csv
from pathlib import Path

from django.conf import settings
from django.core.management.color import no_style
from django.db import connection, transaction

from project.flowers.models import Flower

FLOWERS_CSV = Path(settings.BASE_DIR) / "fixtures/iris/flowers.csv"
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def load_flowers(path: Path = FLOWERS_CSV) -> int:
    """Insert the flowers whose ids are not in the table yet; return how many were added."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with transaction.atomic():
        present = set(Flower.objects.values_list("pk", flat=True))
        new = [
            Flower(
                pk=int(row["id"]),
                species=row["species"],
                **{field: float(row[field]) for field in FIELDS},
            )
            for row in rows
            if int(row["id"]) not in present
        ]
        Flower.objects.bulk_create(new)
        # Explicit ids leave PostgreSQL's sequence behind: move it past them.
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Flower]):
                cursor.execute(statement)
    return len(new)
