"""Batch sources: every file format planned and read by chunk; bad files refused up front,
bad values recorded per row."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from mlapp.batch.readers import (
    Chunk,
    CSVSource,
    JSONLSource,
    NPYSource,
    NPZSource,
    file_format,
    file_source,
)
from mlapp.exceptions import BadSource
from mlapp.runtimes.tensors import Signature

IRIS = Signature.from_dict(
    {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }
)
TWO_INPUTS = Signature.from_dict(
    {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1]},
            {"name": "b", "datatype": "INT64", "shape": [-1, 2]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
)
TEXT = Signature.from_dict(
    {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 2]}],
    }
)


def _opener(data: bytes):
    return lambda: io.BytesIO(data)


def _read_all(source, chunk_size: int):
    plan = source.plan(chunk_size)
    return plan, [item for chunk in plan.chunks for item in source.read(chunk)]


# -- CSV -----------------------------------------------------------------------------------


def test_csv_with_key_column_reads_every_row_under_its_key_across_chunks():
    data = b"key,sl,sw,pl,pw\na,5.1,3.5,1.4,0.2\nb,7.0,3.2,4.7,1.4\nc,6.3,3.3,6.0,2.5\n"
    plan, items = _read_all(CSVSource(_opener(data), IRIS), chunk_size=2)
    assert (plan.total, [c.count for c in plan.chunks]) == (3, [2, 1])
    assert [i.key for i in items] == ["a", "b", "c"]
    np.testing.assert_allclose(items[2].inputs["input"], [[6.3, 3.3, 6.0, 2.5]])
    assert items[2].inputs["input"].dtype == np.float32


def test_csv_without_key_column_keys_rows_by_position_from_zero():
    data = b"sl,sw,pl,pw\n1,2,3,4\n5,6,7,8\n"
    _, items = _read_all(CSVSource(_opener(data), IRIS), chunk_size=1)
    assert [i.key for i in items] == ["0", "1"]
    np.testing.assert_allclose(items[1].inputs["input"], [[5, 6, 7, 8]])


def test_csv_quoted_field_with_newline_keeps_chunk_offsets_right():
    data = b'text,key\n"line one\nline two",x\nplain,y\n"a, b",z\n'
    plan, items = _read_all(CSVSource(_opener(data), TEXT), chunk_size=1)
    assert len(plan.chunks) == 3
    assert [(i.key, list(i.inputs["text"])) for i in items] == [
        ("x", ["line one\nline two"]),
        ("y", ["plain"]),
        ("z", ["a, b"]),
    ]


def test_csv_columns_match_several_inputs_by_name():
    data = b"key,b.1,a,b.0\nk,20,0.5,10\n"
    _, items = _read_all(CSVSource(_opener(data), TWO_INPUTS), chunk_size=10)
    np.testing.assert_allclose(items[0].inputs["a"], [0.5])
    assert items[0].inputs["b"].tolist() == [[10, 20]]
    assert items[0].inputs["b"].dtype == np.int64


def test_csv_blank_lines_and_windows_line_endings_are_fine():
    data = b"\xef\xbb\xbfkey,a,b,c,d\r\nk1,1,2,3,4\r\n\r\nk2,5,6,7,8\r\n"
    _, items = _read_all(CSVSource(_opener(data), IRIS), chunk_size=1)
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
        CSVSource(_opener(data), IRIS).plan(10)


def test_csv_with_unknown_column_for_several_inputs_names_the_inputs():
    with pytest.raises(BadSource, match=r"Column 'c' names no input.*a, b"):
        CSVSource(_opener(b"a,b.0,b.1,c\n1,2,3,4\n"), TWO_INPUTS).plan(10)


def test_csv_bad_values_become_per_row_errors_and_the_rest_reads():
    data = b"key,a,b,c,d\nok,1,2,3,4\nword,1,n/a,3,4\nshort,1,2\nempty,1,,3,4\nlast,5,6,7,8\n"
    plan, items = _read_all(CSVSource(_opener(data), IRIS), chunk_size=2)
    assert plan.total == 5
    errors = {i.key: i.error for i in items}
    assert errors["ok"] == errors["last"] == ""
    assert "'n/a' is not a number" in errors["word"]
    assert "3 values" in errors["short"]
    assert "empty" in errors["empty"]


def test_csv_integer_input_refuses_a_fraction_per_row():
    data = b"a,b.0,b.1\n0.5,1,2\n0.5,1.5,2\n"
    _, items = _read_all(CSVSource(_opener(data), TWO_INPUTS), chunk_size=10)
    assert items[0].error == ""
    assert "'1.5' is not an integer" in items[1].error


# -- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_reads_keys_and_inputs_as_in_native_predict():
    data = (
        b'{"key": "a", "inputs": [[1, 2, 3, 4]]}\n'
        b"\n"
        b'{"key": 7, "inputs": {"input": [[5, 6, 7, 8], [1, 1, 1, 1]]}}\n'
        b'{"inputs": [[0, 0, 0, 0]]}\n'
    )
    plan, items = _read_all(JSONLSource(_opener(data), IRIS), chunk_size=2)
    assert plan.total == 3
    assert [i.key for i in items] == ["a", "7", "2"]
    assert items[1].inputs == {"input": [[5, 6, 7, 8], [1, 1, 1, 1]]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no lines"),
        (b'{"key": "a", "inputs": [[1,2,3,4]]}\n{"key": "b", "inputs": [[1,2\n', "Line 2 is not"),
        (b"[1, 2, 3, 4]\n", "expected an object"),
        (b'{"key": "a", "input": [[1,2,3,4]]}\n', "expected an object"),
        (b'{"key": "a", "inputs": [], "extra": 1}\n', "unknown field"),
        (b'{"key": true, "inputs": []}\n', "string or an integer"),
        (b'{"key": "a", "inputs": []}\n{"key": "a", "inputs": []}\n', "appears twice"),
    ],
)
def test_bad_jsonl_is_refused_before_any_work_with_the_reason(data, message):
    with pytest.raises(BadSource, match=message):
        JSONLSource(_opener(data), IRIS).plan(10)


# -- NPY / NPZ ---------------------------------------------------------------------------


def _npy(array: np.ndarray, tmp_path: Path, name: str = "x.npy") -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


def test_npy_rows_are_keyed_by_index_and_read_from_a_memory_map(tmp_path):
    array = np.arange(20, dtype=np.float64).reshape(5, 4)
    path = _npy(array, tmp_path)
    source = file_source(path.name, lambda: path.open("rb"), IRIS, str(path))
    assert isinstance(source, NPYSource)
    plan, items = _read_all(source, chunk_size=2)
    assert [c.count for c in plan.chunks] == [2, 2, 1]
    assert [i.key for i in items] == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(items[4].inputs["input"], array[4:5])


def test_npy_without_a_local_path_reads_through_the_storage_file(tmp_path):
    path = _npy(np.ones((3, 4), np.float32), tmp_path)
    plan, items = _read_all(NPYSource(lambda: path.open("rb"), IRIS), chunk_size=2)
    assert plan.total == 3
    assert len(items) == 3


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([["a", "b", "c", "d"]]), "numeric"),
        (np.ones((3, 5), np.float32), "shape"),
        (np.ones(4, np.float32), "shape"),
        (np.ones((0, 4), np.float32), "no rows"),
    ],
)
def test_npy_with_wrong_dtype_or_shape_is_refused(tmp_path, array, message):
    path = _npy(array, tmp_path)
    with pytest.raises(BadSource, match=message):
        NPYSource(lambda: path.open("rb"), IRIS, str(path)).plan(10)


def test_npy_of_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[1, 2, 3, {"x": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(BadSource, match="never unpickles"):
        NPYSource(lambda: path.open("rb"), IRIS, str(path)).plan(10)


def test_npy_for_a_model_with_several_inputs_asks_for_npz(tmp_path):
    path = _npy(np.ones((2, 2), np.float32), tmp_path)
    with pytest.raises(BadSource, match=r"send an \.npz"):
        NPYSource(lambda: path.open("rb"), TWO_INPUTS, str(path)).plan(10)


def test_npz_arrays_fill_inputs_by_name(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.array([0.5, 1.5], np.float32), b=np.array([[1, 2], [3, 4]]))
    plan, items = _read_all(NPZSource(lambda: path.open("rb"), TWO_INPUTS, str(path)), 1)
    assert plan.total == 2
    assert items[1].inputs["b"].tolist() == [[3, 4]]
    np.testing.assert_allclose(items[1].inputs["a"], [1.5])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"a": np.ones(2, np.float32), "c": np.ones((2, 2), np.int64)}, "one array per input"),
        ({"a": np.ones(2, np.float32), "b": np.ones((3, 2), np.int64)}, "different numbers"),
        ({"a": np.ones(2, np.float32), "b": np.ones((2, 2), np.float32)}, "INT64"),
    ],
)
def test_npz_with_wrong_names_rows_or_dtypes_is_refused(tmp_path, arrays, message):
    path = tmp_path / "x.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadSource, match=message):
        NPZSource(lambda: path.open("rb"), TWO_INPUTS, str(path)).plan(10)


def test_not_a_numpy_file_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"this is text")
    with pytest.raises(BadSource, match="Not a readable NumPy file"):
        NPYSource(lambda: path.open("rb"), IRIS, str(path)).plan(10)


# -- formats -------------------------------------------------------------------------------


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
