"""A job's predictions streamed out as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from mlapp.batch import writers
from mlapp.exceptions import UnflattenableOutputs
from mlapp.models import BatchJob, BatchPrediction
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(onnx_file):
    version = register_version("affine", onnx_file, promote=True)
    job = BatchJob.objects.create(version=version, total=3, done=2, failed=1, status="succeeded")
    rows = [
        ("b", {"y": [[14.5, 1.5]]}, ""),
        ("a", {"y": [[0.5, 0.5]]}, ""),
        ("c", {}, "Input 'x' has shape [1, 2], expected [-1, 3] (-1 means any size)."),
    ]
    BatchPrediction.objects.bulk_create(
        BatchPrediction(job=job, model=version.model, version=version, key=k, outputs=o, error=e)
        for k, o, e in rows
    )
    return job


def _text(blocks) -> str:
    return b"".join(blocks).decode()


def test_jsonl_is_one_native_predict_body_per_item_with_its_key_in_written_order(job):
    lines = [orjson.loads(line) for line in _text(writers.iter_jsonl(job)).splitlines()]
    assert lines == [
        {"key": "b", "model": "affine", "version": 1, "outputs": {"y": [[14.5, 1.5]]}},
        {"key": "a", "model": "affine", "version": 1, "outputs": {"y": [[0.5, 0.5]]}},
        {
            "key": "c",
            "model": "affine",
            "version": 1,
            "error": "Input 'x' has shape [1, 2], expected [-1, 3] (-1 means any size).",
        },
    ]


def test_csv_flattens_each_output_value_into_its_own_column(job):
    rows = list(csv.reader(io.StringIO(_text(writers.iter_csv(job)))))
    assert rows[0] == ["key", "model", "version", "y.0", "y.1", "error"]
    assert rows[1] == ["b", "affine", "1", "14.5", "1.5", ""]
    assert rows[3][:5] == ["c", "affine", "1", "", ""]
    assert rows[3][5].startswith("Input 'x' has shape")


def test_flatten_names_a_single_value_after_its_output():
    assert writers.flatten({"label": ["setosa"], "p": [[0.25, 0.75]]}) == [
        ("label", "setosa"),
        ("p.0", 0.25),
        ("p.1", 0.75),
    ]


def test_csv_refuses_outputs_whose_shape_changes_between_items(job):
    first = job.predictions.get(key="b")
    BatchPrediction.objects.create(
        job=job, model=first.model, version=first.version, key="d", outputs={"y": [[1, 2, 3]]}
    )
    with pytest.raises(UnflattenableOutputs, match="key 'd'"):
        _text(writers.iter_csv(job))


def test_many_rows_stream_in_blocks_not_one_piece(job):
    first = job.predictions.get(key="b")
    BatchPrediction.objects.bulk_create(
        BatchPrediction(
            job=job, model=first.model, version=first.version, key=f"k{i}", outputs=first.outputs
        )
        for i in range(5000)
    )
    blocks = list(writers.iter_jsonl(job))
    assert len(blocks) > 2
    assert all(len(b) <= writers.BLOCK_SIZE + 200 for b in blocks)
    assert sum(b.count(b"\n") for b in blocks) == 5003


def test_streaming_response_downloads_with_a_file_name(job):
    response = writers.streaming_response(job, "csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="job-{job.pk}-predictions.csv"'
    assert b"".join(response.streaming_content).startswith(b"key,model,version,y.0")


@pytest.mark.parametrize(("name", "fmt"), [("out.jsonl", "jsonl"), ("OUT.CSV", "csv")])
def test_output_format_comes_from_the_file_name(name, fmt):
    assert writers.output_format(name) == fmt


def test_an_unknown_output_file_type_is_refused():
    with pytest.raises(writers.InvalidInput, match=r"\.jsonl or a \.csv"):
        writers.output_format("out.xlsx")
