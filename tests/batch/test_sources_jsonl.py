"""JSON Lines sources: keys and inputs as in native predict; bad lines refused up front."""

from __future__ import annotations

import math

import pytest

from mlapp.batch.sources import (
    JSONLSource,
)
from mlapp.exceptions import BadSource
from tests.batch.signatures import IRIS, opener, read_all


def test_jsonl_reads_keys_and_inputs_as_in_native_predict():
    data = (
        b'{"key": "a", "inputs": [[1, 2, 3, 4]]}\n'
        b"\n"
        b'{"key": 7, "inputs": {"input": [[5, 6, 7, 8], [1, 1, 1, 1]]}}\n'
        b'{"inputs": [[0, 0, 0, 0]]}\n'
    )
    plan, items = read_all(JSONLSource(opener(data), IRIS), chunk_size=2)
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
        JSONLSource(opener(data), IRIS).plan(10)


def test_jsonl_line_with_python_nan_or_a_number_beyond_a_double_is_read_not_refused():
    # json.dumps writes NaN and Infinity; the runner then fails those items alone.
    data = (
        b'{"key": "nan", "inputs": [[NaN, 1, 2, 3]]}\n'
        b'{"key": "big", "inputs": [[1e999, 1, 2, 3]]}\n'
        b'{"key": "ok", "inputs": [[1, 2, 3, 4]]}\n'
    )
    plan, items = read_all(JSONLSource(opener(data), IRIS), chunk_size=2)
    assert plan.total == 3
    assert [i.key for i in items] == ["nan", "big", "ok"]
    assert math.isnan(items[0].inputs[0][0])
    assert items[1].inputs[0][0] == math.inf
