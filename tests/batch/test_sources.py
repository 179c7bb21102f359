"""The table of batch file formats, its lookups, and chunks as Celery messages."""

from __future__ import annotations

import pytest

from mlapp.batch.sources import (
    EXTENSIONS,
    FORMATS,
    Chunk,
    CSVSource,
    JSONLSource,
    NPYSource,
    NPZSource,
    file_format,
    file_source,
)
from mlapp.exceptions import BadSource
from tests.batch.signatures import IRIS, opener, read_all


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("A.JSONL", "jsonl"), ("b.ndjson", "jsonl"), ("c.npy", "npy")],
)
def test_file_format_comes_from_the_extension(name, fmt):
    assert file_format(name) == fmt


def test_unknown_extension_is_refused_naming_the_known_ones():
    with pytest.raises(BadSource, match=r"\.csv.*\.npz"):
        file_format("data.xlsx")


def test_a_chunk_survives_a_json_round_trip_as_a_celery_message():
    chunk = Chunk(index=3, start=30, count=10, offset=1234, keys=[1, "b"])
    assert Chunk.from_dict(chunk.to_dict()) == chunk


@pytest.mark.parametrize(
    ("name", "source_class"),
    [
        ("rows.csv", CSVSource),
        ("rows.jsonl", JSONLSource),
        ("rows.ndjson", JSONLSource),
        ("rows.NPY", NPYSource),
        ("rows.npz", NPZSource),
    ],
)
def test_file_source_reads_each_extension_of_the_table_with_its_class(name, source_class):
    source = file_source(name, opener(b""), IRIS)
    assert type(source) is source_class
    assert file_format(name) == source_class.format


def test_the_table_lists_lower_case_extensions_in_messages_in_order():
    assert all(ext == ext.lower() and ext.startswith(".") for ext in FORMATS)
    assert EXTENSIONS == (".csv", ".jsonl", ".ndjson", ".npy", ".npz")


def test_an_ndjson_file_reads_like_json_lines():
    data = b'{"key": "a", "inputs": [[1, 2, 3, 4]]}\n{"inputs": [[5, 6, 7, 8]]}\n'
    plan, items = read_all(file_source("rows.ndjson", opener(data), IRIS), 1)
    assert (plan.format, plan.total) == ("jsonl", 2)
    assert [item.key for item in items] == ["a", "1"]
