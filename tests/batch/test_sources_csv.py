"""CSV sources: header, key column, chunk offsets; bad files refused up front, bad values
recorded per row."""

from __future__ import annotations

import numpy as np
import pytest

from mlapp.batch.sources import (
    CSVSource,
)
from mlapp.batch.sources.csv import MAX_CELL_CHARS
from mlapp.exceptions import BadSource
from tests.batch.signatures import IRIS, TEXT, TWO_INPUTS, opener, read_all


def test_csv_with_key_column_reads_every_row_under_its_key_across_chunks():
    data = b"key,sl,sw,pl,pw\na,5.1,3.5,1.4,0.2\nb,7.0,3.2,4.7,1.4\nc,6.3,3.3,6.0,2.5\n"
    plan, items = read_all(CSVSource(opener(data), IRIS), chunk_size=2)
    assert (plan.total, [c.count for c in plan.chunks]) == (3, [2, 1])
    assert [i.key for i in items] == ["a", "b", "c"]
    np.testing.assert_allclose(items[2].inputs["input"], [[6.3, 3.3, 6.0, 2.5]])
    assert items[2].inputs["input"].dtype == np.float32


def test_csv_without_key_column_keys_rows_by_position_from_zero():
    data = b"sl,sw,pl,pw\n1,2,3,4\n5,6,7,8\n"
    _, items = read_all(CSVSource(opener(data), IRIS), chunk_size=1)
    assert [i.key for i in items] == ["0", "1"]
    np.testing.assert_allclose(items[1].inputs["input"], [[5, 6, 7, 8]])


def test_csv_quoted_field_with_newline_keeps_chunk_offsets_right():
    data = b'text,key\n"line one\nline two",x\nplain,y\n"a, b",z\n'
    plan, items = read_all(CSVSource(opener(data), TEXT), chunk_size=1)
    assert len(plan.chunks) == 3
    assert [(i.key, list(i.inputs["text"])) for i in items] == [
        ("x", ["line one\nline two"]),
        ("y", ["plain"]),
        ("z", ["a, b"]),
    ]


def test_csv_columns_match_several_inputs_by_name():
    data = b"key,b.1,a,b.0\nk,20,0.5,10\n"
    _, items = read_all(CSVSource(opener(data), TWO_INPUTS), chunk_size=10)
    np.testing.assert_allclose(items[0].inputs["a"], [0.5])
    assert items[0].inputs["b"].tolist() == [[10, 20]]
    assert items[0].inputs["b"].dtype == np.int64


def test_csv_blank_lines_and_windows_line_endings_are_fine():
    data = b"\xef\xbb\xbfkey,a,b,c,d\r\nk1,1,2,3,4\r\n\r\nk2,5,6,7,8\r\n"
    _, items = read_all(CSVSource(opener(data), IRIS), chunk_size=1)
    assert [i.key for i in items] == ["k1", "k2"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"key,a,b,c,d\n", "no rows"),
        (b"5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.2\n", "must be a header"),
        (b"key,a,b,c\nx,1,2,3\n", "4 value"),
        (b"key,a,a,b,c\nx,1,2,3,4\n", "repeated"),
        (b"key,a,b,c,d\nx,1,2,3,4\nx,5,6,7,8\n", "appears twice"),
        (b"key,a,b,c,d\n,1,2,3,4\n", "key is empty"),
        (b"key,a,b,c,d\n" + b"k" * 300 + b",1,2,3,4\n", "longer than 255"),
        (b"key,a,b,c,d\nx,1,2,3,4\n\xff\xfe,1,2,3,4\n", "not UTF-8"),
    ],
)
def test_bad_csv_is_refused_before_any_work_with_the_reason(data, message):
    with pytest.raises(BadSource, match=message):
        CSVSource(opener(data), IRIS).plan(10)


def test_csv_with_unknown_column_for_several_inputs_names_the_inputs():
    with pytest.raises(BadSource, match=r"Column 'c' names no input.*a, b"):
        CSVSource(opener(b"a,b.0,b.1,c\n1,2,3,4\n"), TWO_INPUTS).plan(10)


def test_csv_bad_values_become_per_row_errors_and_the_rest_reads():
    data = b"key,a,b,c,d\nok,1,2,3,4\nword,1,n/a,3,4\nshort,1,2\nempty,1,,3,4\nlast,5,6,7,8\n"
    plan, items = read_all(CSVSource(opener(data), IRIS), chunk_size=2)
    assert plan.total == 5
    errors = {i.key: i.error for i in items}
    assert errors["ok"] == errors["last"] == ""
    assert "'n/a' is not a number" in errors["word"]
    assert "3 values" in errors["short"]
    assert "empty" in errors["empty"]


def test_csv_integer_input_refuses_a_fraction_per_row():
    data = b"a,b.0,b.1\n0.5,1,2\n0.5,1.5,2\n"
    _, items = read_all(CSVSource(opener(data), TWO_INPUTS), chunk_size=10)
    assert items[0].error == ""
    assert "'1.5' is not an integer" in items[1].error


def test_csv_row_too_short_to_reach_its_key_fails_alone_under_its_position():
    data = b"a,b,c,d,key\n1,2\n1,2,3,4,k\n"
    plan, items = read_all(CSVSource(opener(data), IRIS), chunk_size=10)
    assert plan.total == 2
    assert [(i.key, i.error) for i in items] == [
        ("0", "The row has 2 values; the header names 5 columns."),
        ("k", ""),
    ]


def test_csv_cell_beyond_the_csv_modules_field_limit_is_read_not_refused():
    text = "x" * 200_000
    data = f"key,text\nlong,{text}\nshort,hi\n".encode()
    _, items = read_all(CSVSource(opener(data), TEXT), chunk_size=10)
    assert [(i.key, i.error) for i in items] == [("long", ""), ("short", "")]
    assert items[0].inputs["text"].tolist() == [text]


def test_csv_cell_over_the_cell_limit_fails_only_its_row():
    data = b"key,a,b,c,d\nhuge,1,2,3," + b"4" * (MAX_CELL_CHARS + 1) + b"\nok,1,2,3,4\n"
    _, items = read_all(CSVSource(opener(data), IRIS), chunk_size=10)
    assert items[0].key == "huge"
    assert items[0].error == (
        f"A value of {MAX_CELL_CHARS + 1} characters is longer than the {MAX_CELL_CHARS} "
        "a CSV cell may hold."
    )
    assert items[1].error == ""


def test_csv_long_bad_value_is_quoted_short_in_its_rows_error():
    data = b"key,a,b.0,b.1\nk,0.5,1," + b"7" * 5000 + b"\n"
    _, items = read_all(CSVSource(opener(data), TWO_INPUTS), chunk_size=10)
    assert items[0].error == (f"Input 'b': {'7' * 40!r}... (5000 characters) is not an integer.")
