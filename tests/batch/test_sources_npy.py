"""NPY and NPZ sources: rows keyed by index, arrays checked against the model, never
unpickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlapp.batch.sources import (
    NPYSource,
    NPZSource,
    file_source,
)
from mlapp.exceptions import BadSource
from tests.batch.signatures import IRIS, TWO_INPUTS, read_all


def _npy(array: np.ndarray, tmp_path: Path, name: str = "x.npy") -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


def test_npy_rows_are_keyed_by_index_and_read_from_a_memory_map(tmp_path):
    array = np.arange(20, dtype=np.float64).reshape(5, 4)
    path = _npy(array, tmp_path)
    source = file_source(path.name, lambda: path.open("rb"), IRIS, str(path))
    assert isinstance(source, NPYSource)
    plan, items = read_all(source, chunk_size=2)
    assert [c.count for c in plan.chunks] == [2, 2, 1]
    assert [i.key for i in items] == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(items[4].inputs["input"], array[4:5])


def test_npy_without_a_local_path_reads_through_the_storage_file(tmp_path):
    path = _npy(np.ones((3, 4), np.float32), tmp_path)
    plan, items = read_all(NPYSource(lambda: path.open("rb"), IRIS), chunk_size=2)
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
    plan, items = read_all(NPZSource(lambda: path.open("rb"), TWO_INPUTS, str(path)), 1)
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
