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

#: The longest cell a row may hold; a longer one fails its row, not the file.
MAX_CELL_CHARS = 1_000_000
# The csv module refuses a field over 128 KiB with an error that cannot be tied to a row
# (it stops mid-row, before the key is read): lift that process-wide limit (only ever
# raised, never lowered) and check cells against MAX_CELL_CHARS per row instead.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


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
                    check_key(_row_key(row, key, chunker.total), f"Line {lines.line}", seen)
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
                item_key = _row_key(row, key, position)
                values = [cell for i, cell in enumerate(row) if i != key]
                longest = max(map(len, row))
                if len(row) != len(columns):
                    items.append(
                        Item(
                            item_key,
                            error=f"The row has {len(row)} values; the header names "
                            f"{len(columns)} columns.",
                        )
                    )
                elif longest > MAX_CELL_CHARS:
                    items.append(
                        Item(
                            item_key,
                            error=f"A value of {longest} characters is longer than the "
                            f"{MAX_CELL_CHARS} a CSV cell may hold.",
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


def _row_key(row: list[str], key: int | None, position: int) -> str:
    """The key a row is stored under: its key cell, or its position when it has no key
    column or is too short to reach it (the row then fails for its length)."""
    if key is None or key >= len(row):
        return str(position)
    return row[key].strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
