"""Registered sources: rows of a host project's queryset, named in ``MLAPP["BATCH_SOURCES"]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet

from mlapp.batch.sources.base import Chunk, Chunker, Item, Plan, Source
from mlapp.batch.sources.rows import RowLayout
from mlapp.conf import settings
from mlapp.exceptions import BadSource, InvalidInput
from mlapp.runtimes.tensors import Signature


class QuerySetSource(Source):
    """A source registered in ``MLAPP["BATCH_SOURCES"]``: rows of a queryset, keyed by a field.

    ``{"queryset": "app.module.function", "inputs": [fields] or {input: fields}, "key": "pk"}``;
    the function takes the job's params as keyword arguments and returns a QuerySet.
    """

    format = "queryset"

    def __init__(self, name: str, params: Mapping[str, Any], signature: Signature) -> None:
        sources = settings.BATCH_SOURCES
        if name not in sources:
            known = ", ".join(sorted(sources)) or "none"
            raise BadSource(f"No batch source named {name!r} (registered: {known}).")
        spec = sources[name]
        self.name = name
        function = spec.queryset
        try:
            queryset = function(**dict(params or {}))
        except TypeError as exc:
            raise BadSource(f"Source {name!r} refused its params {dict(params)}: {exc}") from None
        if not isinstance(queryset, QuerySet):
            raise BadSource(f"Source {name!r} did not return a QuerySet.")
        self.queryset = queryset
        self.key = spec.key
        meta = queryset.model._meta
        key_field = meta.pk if self.key == "pk" else _field(meta, self.key, name)
        if not (key_field.primary_key or key_field.unique):
            raise BadSource(f"Source {name!r}: the key field {self.key!r} must be unique.")
        self.layout, self.fields = RowLayout.from_fields(signature, spec.inputs)
        for field in self.fields:
            _field(meta, field, name)

    def plan(self, chunk_size: int) -> Plan:
        chunker = Chunker(chunk_size)
        try:
            keys = self.queryset.order_by("pk").values_list(self.key, flat=True)
            for key in keys.iterator(chunk_size=10_000):
                chunker.add(key=key if isinstance(key, int) else str(key))
        except TypeError as exc:  # e.g. a sliced queryset cannot be re-ordered
            raise BadSource(f"Source {self.name!r}: {exc}") from None
        return chunker.finish(self.format, f"Source {self.name!r} has no rows.")

    def read(self, chunk: Chunk) -> list[Item]:
        keys = chunk.keys or []
        rows = self.queryset.filter(**{f"{self.key}__in": keys}).values_list(self.key, *self.fields)
        found = {str(row[0]): row[1:] for row in rows}
        items = []
        for key in map(str, keys):
            if key not in found:
                items.append(Item(key, error="The row left the source before it was scored."))
                continue
            try:
                items.append(Item(key, self.layout.inputs(found[key], parse=False), checked=True))
            except InvalidInput as exc:
                items.append(Item(key, error=exc.message))
        return items


def _field(meta: Any, name: str, source: str) -> Any:
    try:
        return meta.get_field(name)
    except FieldDoesNotExist:
        raise BadSource(f"Source {source!r}: {meta.label} has no field {name!r}.") from None
