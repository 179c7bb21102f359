"""A job's stored predictions as JSON Lines or CSV, streamed: a million rows never sit in memory.

JSON Lines: one object per item, ``{"key": "<key>", "model", "version", "outputs"}`` — the
body native predict answers, with the key in front; an item that failed has ``"error"``
instead of ``"outputs"``. CSV: the same fields flattened, one column per output value
(``label``, ``probabilities.0``, ``probabilities.1`` ...) and an ``error`` column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from mlapp.exceptions import InvalidInput, UnflattenableOutputs

if TYPE_CHECKING:
    from mlapp.models import BatchJob

#: Output formats by file extension, and their media types.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
#: Rows read from the database at a time, and bytes gathered before a block is yielded.
FETCH_SIZE = 2000
BLOCK_SIZE = 64 * 1024


def body(key: str, model: str, version: int, outputs: Any, error: str = "") -> dict[str, Any]:
    """One item as a line of the JSON Lines output."""
    if error:
        return {"key": key, "model": model, "version": version, "error": error}
    return {"key": key, "model": model, "version": version, "outputs": outputs}


def _rows(job: BatchJob) -> Iterator[tuple[str, Any, str]]:
    return (
        job.predictions.order_by("pk")
        .values_list("key", "outputs", "error")
        .iterator(chunk_size=FETCH_SIZE)
    )


def _blocks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= BLOCK_SIZE:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def iter_jsonl(job: BatchJob) -> Iterator[bytes]:
    """The job's predictions as JSON Lines, in blocks of bytes."""
    model, version = job.version.model.name, job.version.version
    return _blocks(
        orjson.dumps(body(key, model, version, outputs, error)) + b"\n"
        for key, outputs, error in _rows(job)
    )


def flatten(outputs: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(column, value)`` pairs of one item's outputs; the row axis of a one-row item goes."""
    pairs: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            pairs.append((prefix, value))

    for name, value in outputs.items():
        walk(name, value[0] if isinstance(value, list) and len(value) == 1 else value)
    return pairs


def _csv_line(values: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().encode("utf-8")


def iter_csv(job: BatchJob) -> Iterator[bytes]:
    """The job's predictions as CSV: key, model, version, flattened outputs, error."""
    model, version = job.version.model.name, job.version.version
    first = job.predictions.filter(error="").order_by("pk").values_list("outputs", flat=True)
    sample = first.first()
    columns = [name for name, _ in flatten(sample)] if sample is not None else []

    def lines() -> Iterator[bytes]:
        yield _csv_line(["key", "model", "version", *columns, "error"])
        for key, outputs, error in _rows(job):
            if error:
                yield _csv_line([key, model, version, *([""] * len(columns)), error])
                continue
            pairs = flatten(outputs)
            if [name for name, _ in pairs] != columns:
                raise UnflattenableOutputs(
                    f"The outputs of key {key!r} do not have the columns of the first item; "
                    "write JSON Lines instead of CSV."
                )
            yield _csv_line([key, model, version, *(v for _, v in pairs), ""])

    return _blocks(lines())


def output_format(name: str) -> str:
    """``"jsonl"`` or ``"csv"`` from a file name, or ``InvalidInput``."""
    for ext, fmt in OUTPUT_FORMATS.items():
        if name.lower().endswith(ext):
            return fmt
    raise InvalidInput(f"{name!r}: write the output to a .jsonl or a .csv file.")


def stream(job: BatchJob, fmt: str) -> Iterator[bytes]:
    """The job's predictions in ``fmt`` (``"jsonl"`` or ``"csv"``)."""
    if fmt == "jsonl":
        return iter_jsonl(job)
    if fmt == "csv":
        return iter_csv(job)
    raise InvalidInput(f"Unknown output format {fmt!r}: use jsonl or csv.")


def streaming_response(job: BatchJob, fmt: str) -> Any:
    """A Django ``StreamingHttpResponse`` downloading the job's predictions as ``fmt``."""
    from django.http import StreamingHttpResponse

    response = StreamingHttpResponse(stream(job, fmt), content_type=MEDIA_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-predictions.{fmt}"'
    return response
