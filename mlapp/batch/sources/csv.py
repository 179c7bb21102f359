"""CSV: a header row, an optional ``key`` column, value columns filling the inputs."""

from __future__ import annotations

import csv

from mlapp.batch.sources.base import (
    Chunk,
    Chunker,
    FileSource,
    Item,
    LineReader,
    Plan,
    check_key,
)
from mlapp.batch.sources.rows import RowLayout
from mlapp.exceptions import BadSource, InvalidInput


class CSVSource(FileSource):
    """A header row, an optional ``key`` column, value columns filling the inputs."""

    format = "csv"

    def _header(self, lines: LineReader) -> tuple[list[str], int | None, RowLayout]:
        reader = csv.reader(lines)
        header = next(reader, None)
        if not header:
            raise BadSource("The CSV file is empty: it needs a header row naming its columns.")
        header[0] = header[0].removeprefix("\ufeff")
        columns = [c.strip() for c in header]
        if len(set(columns)) != len(columns) or "" in columns:
            raise BadSource(f"The CSV header has empty or repeated column names: {columns}.")
        if all(_is_number(c) for c in columns):
            raise BadSource(
                "The first CSV row holds numbers: it must be a header naming the columns "
                "(an optional 'key', then the inputs' values)."
            )
        key = columns.index("key") if "key" in columns else None
        values = [c for i, c in enumerate(columns) if i != key]
        if not values:
            raise BadSource("The CSV has no value columns besides 'key'.")
        try:
            layout = RowLayout.from_header(self.signature, values)
        except BadSource as exc:
            raise BadSource(f"The CSV columns do not fit the model: {exc.message}") from None
        return columns, key, layout

    def plan(self, chunk_size: int) -> Plan:
        chunker = Chunker(chunk_size)
        seen: set[str] = set()
        with self.opener() as fh:
            lines = LineReader(fh, 0)
            _, key, _ = self._header(lines)
            reader = csv.reader(lines)
            while True:
                offset = lines.offset
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    raise BadSource(f"Line {lines.line}: {exc}.") from None
                if row is None:
                    break
                if not any(cell.strip() for cell in row):
                    continue
                if key is not None:
                    cell = row[key].strip() if key < len(row) else ""
                    check_key(cell, f"Line {lines.line}", seen)
                chunker.add(offset)
        return chunker.finish(self.format, "The CSV file has a header but no rows.")

    def read(self, chunk: Chunk) -> list[Item]:
        items: list[Item] = []
        with self.opener() as fh:
            columns, key, layout = self._header(LineReader(fh, 0))
            lines = LineReader(fh, chunk.offset)
            reader = csv.reader(lines)
            position = chunk.start
            while len(items) < chunk.count:
                row = next(reader, None)
                if row is None:
                    raise BadSource("The CSV file ended before the chunk did; was it changed?")
                if not any(cell.strip() for cell in row):
                    continue
                item_key = row[key].strip() if key is not None else str(position)
                values = [cell for i, cell in enumerate(row) if i != key]
                if len(row) != len(columns):
                    items.append(
                        Item(
                            item_key,
                            error=f"The row has {len(row)} values; the header names "
                            f"{len(columns)} columns.",
                        )
                    )
                else:
                    try:
                        items.append(
                            Item(item_key, layout.inputs(values, parse=True), checked=True)
                        )
                    except InvalidInput as exc:
                        items.append(Item(item_key, error=exc.message))
                position += 1
        return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
