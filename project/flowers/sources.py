"""The batch source this app registers in ``MLAPP["BATCH_SOURCES"]`` (see settings).

mlapp calls the function with the job's params as keyword arguments; the rows' ``inputs``
fields fill the iris model's input row by row, and the key is the flower's primary key.
"""

from __future__ import annotations

from django.db.models import QuerySet

from project.flowers.models import Flower


def flowers(species: str | None = None) -> QuerySet[Flower]:
    """Every flower, or those a botanist named ``species``."""
    queryset = Flower.objects.all()
    return queryset.filter(species=species) if species else queryset
