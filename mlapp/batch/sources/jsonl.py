"""JSON Lines: one object per line, ``{"key": ..., "inputs": ...}`` as in native predict."""

from __future__ import annotations

import json
from typing import Any

import orjson

from mlapp.batch.sources.base import (
    Chunk,
    Chunker,
    FileSource,
    Item,
    LineReader,
    Plan,
    check_key,
)
from mlapp.exceptions import BadSource


class JSONLSource(FileSource):
    """One object per line: ``{"key": ..., "inputs": ...}``, ``inputs`` as in native predict."""

    format = "jsonl"

    @staticmethod
    def _parse(line: str, number: int) -> dict[str, Any]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # NaN, Infinity and numbers beyond a double are not JSON, but Python writes
            # them (json.dumps(float("nan"))): read such a line, so that its item fails
            # alone for its non-finite values (mlapp.batch.runner) instead of the file.
            try:
                obj = json.loads(line)
            except ValueError:
                raise BadSource(f"Line {number} is not valid JSON: {exc}.") from None
        if not isinstance(obj, dict) or "inputs" not in obj:
            raise BadSource(
                f'Line {number}: expected an object {{"key": ..., "inputs": ...}} '
                "with the inputs as in a native predict body."
            )
        unknown = set(obj) - {"key", "inputs"}
        if unknown:
            raise BadSource(
                f"Line {number}: unknown field(s) {', '.join(sorted(unknown))}; "
                "a line holds 'key' (optional) and 'inputs'."
            )
        return obj

    def plan(self, chunk_size: int) -> Plan:
        chunker = Chunker(chunk_size)
        seen: set[str] = set()
        with self.opener() as fh:
            lines = LineReader(fh, 0)
            while True:
                offset = lines.offset
                line = next(lines, None)
                if line is None:
                    break
                if not line.strip():
                    continue
                obj = self._parse(line, lines.line)
                key = obj.get("key", chunker.total)
                check_key(key, f"Line {lines.line}", seen)
                chunker.add(offset)
        return chunker.finish(self.format, "The JSON Lines file has no lines.")

    def read(self, chunk: Chunk) -> list[Item]:
        items: list[Item] = []
        with self.opener() as fh:
            lines = LineReader(fh, chunk.offset)
            position = chunk.start
            while len(items) < chunk.count:
                line = next(lines, None)
                if line is None:
                    raise BadSource("The file ended before the chunk did; was it changed?")
                if not line.strip():
                    continue
                obj = self._parse(line, lines.line)
                items.append(Item(str(obj.get("key", position)), obj["inputs"]))
                position += 1
        return items
