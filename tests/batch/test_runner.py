"""The batch runner in this process: every source kind, idempotent chunks, per-row errors,
cancel, bounded retries, and batch answers equal to online ones."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient

from mlapp import batch
from mlapp.batch import runner
from mlapp.exceptions import BadSource, ModelNotFound, ModelNotReady
from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob, BatchPrediction
from mlapp.serving.service import service
from mlapp.versions.lifecycle import promote_version, register_version
from project.flowers.loading import load_flowers
from project.flowers.models import Flower
from tests.artifacts import expected

pytestmark = pytest.mark.django_db

FIXTURES = Path(django_settings.BASE_DIR) / "fixtures"
POLICY = {"max_retries": 2, "retry_delay": 0.0}
FLOWER_FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SOURCES = {
    "flowers": {"queryset": "project.flowers.sources.flowers", "inputs": FLOWER_FIELDS},
    "users": {
        "queryset": "tests.batch.test_runner.active_users",
        "inputs": {"x": ["id", "id", "id"]},
        "key": "username",
    },
    "by-species": {
        "queryset": "project.flowers.sources.flowers",
        "inputs": FLOWER_FIELDS,
        "key": "species",
    },
}


def active_users(active: bool = True):
    return get_user_model().objects.filter(is_active=active)


class FailingHandler(BaseHandler):
    """Fails every call: a model that is broken, not an input that is bad."""

    calls = 0

    def preprocess(self, inputs):
        type(self).calls += 1
        raise RuntimeError("the model's own code failed")


class FlakyHandler(BaseHandler):
    """Fails its ``fail_on``-th call only: a passing hiccup a retry gets over."""

    calls = 0
    fail_on = 1

    def preprocess(self, inputs):
        type(self).calls += 1
        if type(self).calls == self.fail_on:
            raise RuntimeError("a passing hiccup")
        return inputs


@pytest.fixture
def iris():
    return register_version(
        "iris",
        FIXTURES / "iris/model.pt",
        signature=json.loads((FIXTURES / "iris/signature.json").read_text()),
        handler="project.demo.handlers.IrisHandler",
        promote=True,
    )


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def _iris_csv(tmp_path: Path, rows: int = 150, key: bool = True) -> Path:
    with (FIXTURES / "iris/flowers.csv").open() as fh:
        flowers = list(csv.DictReader(fh))[:rows]
    path = tmp_path / "iris.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow((["key"] if key else []) + FLOWER_FIELDS)
        for f in flowers:
            writer.writerow(([f"flower-{f['id']}"] if key else []) + [f[c] for c in FLOWER_FIELDS])
    return path


def _run(model: str, **kwargs) -> BatchJob:
    job, plan = batch.prepare_job(model, **kwargs)
    runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    return job


def _stored(job: BatchJob) -> dict[str, BatchPrediction]:
    return {p.key: p for p in job.predictions.all()}


# -- every source kind, end to end ---------------------------------------------------------


def test_job_over_a_csv_stores_every_key_and_succeeds(iris, tmp_path):
    job = _run("iris", file=_iris_csv(tmp_path), chunk_size=40)
    assert (job.status, job.total, job.done, job.failed) == ("succeeded", 150, 150, 0)
    assert job.started_at is not None
    assert job.finished_at >= job.started_at
    stored = _stored(job)
    assert len(stored) == 150
    assert stored["flower-1"].outputs["label"] == ["setosa"]
    assert stored["flower-150"].outputs["label"] == ["virginica"]
    assert (stored["flower-1"].model.name, stored["flower-1"].version.version) == ("iris", 1)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "npy", "npz"])
def test_every_file_format_gives_the_models_answers(affine, tmp_path, fmt):
    x = np.array([[1, 2, 3], [0, 0, 1], [4, 5, 6], [-1, 0, 2], [7, 7, 7]], np.float32)
    path = tmp_path / f"input.{fmt}"
    if fmt == "csv":
        path.write_text("a,b,c\n" + "".join(",".join(map(str, r)) + "\n" for r in x.tolist()))
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps({"key": i, "inputs": [r]}) + "\n" for i, r in enumerate(x.tolist()))
        )
    elif fmt == "npy":
        np.save(path, x)
    else:
        np.savez(path, x=x)
    job = _run("affine", file=path, chunk_size=2)
    assert (job.status, job.done, job.total) == ("succeeded", 5, 5)
    stored = _stored(job)
    for i, row in enumerate(x):
        np.testing.assert_allclose(stored[str(i)].outputs["y"], expected(row[None, :]), rtol=1e-6)


def test_registered_source_scores_the_hosts_rows_keyed_by_primary_key(iris):
    load_flowers()
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        job = _run("iris", source="flowers", chunk_size=64)
    assert (job.status, job.total, job.done) == ("succeeded", 150, 150)
    stored = _stored(job)
    assert set(stored) == {str(pk) for pk in Flower.objects.values_list("pk", flat=True)}
    agree = sum(stored[str(f.pk)].outputs["label"] == [f.species] for f in Flower.objects.all())
    assert agree >= 145


def test_registered_source_takes_params_and_a_named_unique_key_field(affine):
    users = get_user_model().objects
    users.create(username="ann")
    users.create(username="bob")
    users.create(username="cid", is_active=False)
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        job = _run("affine", source="users", params={"active": True})
    stored = _stored(job)
    assert sorted(stored) == ["ann", "bob"]
    ann = users.get(username="ann").pk
    np.testing.assert_allclose(
        stored["ann"].outputs["y"], expected(np.full((1, 3), ann, np.float32))
    )


def test_a_source_row_deleted_before_its_chunk_runs_is_recorded_as_failed(iris):
    load_flowers()
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        job, plan = batch.prepare_job("iris", source="flowers", chunk_size=50)
        Flower.objects.filter(pk=120).delete()
        runner.run_job(job.pk, plan.chunks, **POLICY)
    job.refresh_from_db()
    assert (job.status, job.done, job.failed) == ("succeeded", 149, 1)
    assert "left the source" in job.predictions.get(key="120").error


@pytest.mark.parametrize(
    ("source", "params", "message"),
    [
        ("nope", None, "No batch source named 'nope'"),
        ("flowers", {"colour": "blue"}, "refused its params"),
        ("by-species", None, "must be unique"),
    ],
)
def test_bad_registered_source_is_refused_before_a_job_exists(iris, source, params, message):
    load_flowers()
    with (
        override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}),
        pytest.raises(BadSource, match=message),
    ):
        batch.prepare_job("iris", source=source, params=params)
    assert not BatchJob.objects.exists()


# -- bad files: refused whole, or recorded per row ---------------------------------------


def test_bad_file_is_refused_and_nothing_is_stored(iris, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("key,a,b,c\nx,1,2,3\n")
    media = Path(django_settings.MEDIA_ROOT)
    before = sorted(media.rglob("*.csv"))
    with pytest.raises(BadSource, match="4 value"):
        batch.create_job("iris", file=path)
    assert not BatchJob.objects.exists()
    assert sorted(media.rglob("*.csv")) == before


def test_bad_values_are_recorded_per_row_and_the_job_still_succeeds(affine, tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        {"key": "good", "inputs": [[1, 2, 3]]},
        {"key": "short", "inputs": [[1, 2]]},
        {"key": "words", "inputs": [["a", "b", "c"]]},
        {"key": "two-rows", "inputs": {"x": [[1, 2, 3], [0, 0, 1]]}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    job = _run("affine", file=path)
    assert (job.status, job.done, job.failed) == ("succeeded", 2, 2)
    stored = _stored(job)
    client = APIClient()
    for key in ("short", "words"):
        online = client.post(
            "/api/mlapp/models/affine/predict",
            {"inputs": next(x["inputs"] for x in lines if x["key"] == key)},
            format="json",
        )
        assert online.status_code == 400
        assert stored[key].error == online.json()["error"]
        assert stored[key].outputs == {}
    assert len(stored["two-rows"].outputs["y"]) == 2


def test_a_csv_cell_that_is_not_a_number_fails_only_its_row(iris, tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("key,a,b,c,d\nok,5.1,3.5,1.4,0.2\nbad,5.1,n/a,1.4,0.2\n")
    job = _run("iris", file=path)
    assert (job.status, job.done, job.failed) == ("succeeded", 1, 1)
    assert "'n/a' is not a number" in job.predictions.get(key="bad").error


NON_FINITE = "holds NaN or an infinite value"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "npy"])
def test_nan_and_infinite_inputs_fail_their_rows_and_are_never_scored(iris, tmp_path, fmt):
    rows = [
        [5.1, 3.5, 1.4, 0.2],
        [math.nan, 3.5, 1.4, 0.2],
        [5.1, math.inf, 1.4, 0.2],
        [5.1, 3.5, -math.inf, 0.2],
        [5.1, 3.5, 1.4, 1e39],  # beyond FP32: infinite once cast for the model
    ]
    path = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        path.write_text("a,b,c,d\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows))
    elif fmt == "jsonl":  # json.dumps writes NaN and Infinity, as Python does
        path.write_text("".join(json.dumps({"inputs": [r]}) + "\n" for r in rows))
    else:
        np.save(path, np.array(rows, np.float64))
    job = _run("iris", file=path)
    assert (job.status, job.done, job.failed, job.total) == ("succeeded", 1, 4, 5)
    stored = _stored(job)
    assert stored["0"].outputs["label"] == ["setosa"]
    for key in "1234":
        assert NON_FINITE in stored[key].error
        assert stored[key].outputs == {}


def test_a_short_row_and_a_huge_cell_fail_alone_and_the_job_succeeds(iris, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(
        "a,b,c,d,key\n5.1,3.5,1.4,0.2,ok\n5.1,3.5\n5.1,3.5,1.4," + "9" * 300_000 + ",huge\n"
    )
    job = _run("iris", file=path)
    assert (job.status, job.done, job.failed, job.total) == ("succeeded", 1, 2, 3)
    stored = _stored(job)
    assert stored["1"].error == "The row has 2 values; the header names 5 columns."
    assert NON_FINITE in stored["huge"].error  # 300,000 nines overflow every float
    assert stored["ok"].outputs["label"] == ["setosa"]


# -- idempotence, counters, status ------------------------------------------------------


def test_rerunning_a_chunk_writes_nothing_twice(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=30), chunk_size=10)
    first = runner.run_chunk(job.pk, plan.chunks[1])
    again = runner.run_chunk(job.pk, plan.chunks[1])
    job.refresh_from_db()
    assert (first.written, again.written) == (10, 0)
    assert (job.done, job.failed, job.status) == (10, 0, "running")
    assert job.predictions.count() == 10


def test_a_chunk_stored_in_part_adds_only_the_missing_keys(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=10), chunk_size=10)
    items = runner.open_source(job).read(plan.chunks[0])
    half = runner.predict_items("iris", 1, items[:4])
    runner.mark_running(job.pk)
    runner.write_results(job, half)
    outcome = runner.run_chunk(job.pk, plan.chunks[0])
    job.refresh_from_db()
    assert outcome.written == 6
    assert (job.done, job.status) == (10, "succeeded")
    assert sorted(job.predictions.values_list("key", flat=True)) == sorted(i.key for i in items)


def test_writing_the_same_results_twice_moves_the_counters_once(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=5), chunk_size=5)
    results = runner.predict_items("iris", 1, runner.open_source(job).read(plan.chunks[0]))
    runner.mark_running(job.pk)
    assert runner.write_results(job, results).written == 5
    assert runner.write_results(job, results).written == 0
    job.refresh_from_db()
    assert (job.done, job.failed, job.predictions.count()) == (5, 0, 5)


def test_status_goes_pending_then_running_then_succeeded(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=30), chunk_size=10)
    seen = [BatchJob.objects.get(pk=job.pk).status]

    def progress(outcome):
        seen.append(BatchJob.objects.get(pk=job.pk).status)

    runner.run_job(job.pk, plan.chunks, progress=progress, **POLICY)
    assert seen == ["pending", "running", "running", "succeeded"]


def test_cancel_stops_the_chunks_not_yet_started(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=50), chunk_size=10)
    runner.run_job(job.pk, plan.chunks, progress=lambda outcome: batch.cancel(job), **POLICY)
    job.refresh_from_db()
    assert (job.status, job.done, job.predictions.count()) == ("cancelled", 10, 10)
    assert runner.run_chunk(job.pk, plan.chunks[2]).stopped
    assert batch.cancel(job) is False


# -- retries ---------------------------------------------------------------------------------


def test_a_failing_chunk_is_retried_a_bounded_number_of_times_then_fails_the_job(affine, tmp_path):
    affine.model.handler = "tests.batch.test_runner.FailingHandler"
    affine.model.save()
    FailingHandler.calls = 0
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    job = _run("affine", file=path, chunk_size=1)
    assert FailingHandler.calls == POLICY["max_retries"] + 1
    assert job.status == "failed"
    assert job.error.startswith("Chunk 0 (items 0-0) failed after 3 attempt(s)")
    assert "failed to run" in job.error or "own code failed" in job.error
    assert job.predictions.count() == 0


def test_a_chunk_that_fails_once_succeeds_on_its_retry(affine, tmp_path):
    affine.model.handler = "tests.batch.test_runner.FlakyHandler"
    affine.model.save()
    FlakyHandler.calls = 0
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    job = _run("affine", file=path)
    # Call 1 is the load's check of the handler's example (mlapp.serving.loading): it fails,
    # the retry loads again (call 2) and runs the chunk (call 3).
    assert (job.status, job.done, FlakyHandler.calls) == ("succeeded", 2, 3)


class FailsOnThirdCall(FlakyHandler):
    """A chunk's later part fails once, after earlier parts were written."""

    calls = 0
    fail_on = 3


# -- a chunk in parts: the model computes ahead while results are written -----------------


def _count_calls(monkeypatch) -> list[tuple[int, str]]:
    calls = []
    original = service.predict

    def counting(model, decode, **kwargs):
        def decoding(signature):
            arrays = decode(signature)
            rows = len(next(iter(arrays.values())))  # the items of one call, stacked
            calls.append((rows, threading.current_thread().name))
            return arrays

        return original(model, decoding, **kwargs)

    monkeypatch.setattr(service, "predict", counting)
    return calls


def _affine_csv(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(rows)))
    return path


def test_a_slow_models_chunk_runs_in_parts_computed_ahead_on_a_thread(
    affine, tmp_path, monkeypatch
):
    monkeypatch.setattr(runner, "PART_SIZE", 4)
    monkeypatch.setattr(runner, "PART_SECONDS", 0.0)  # every call counts as slow
    writes = []
    original_write = runner.write_results
    monkeypatch.setattr(
        runner,
        "write_results",
        lambda job, results: writes.append(len(results)) or original_write(job, results),
    )
    calls = _count_calls(monkeypatch)
    job = _run("affine", file=_affine_csv(tmp_path, 10), chunk_size=10)
    assert (job.status, job.done, job.failed) == ("succeeded", 10, 0)
    # The first part in the caller's thread (it sizes the others), the rest ahead of it.
    assert [n for n, _ in calls] == [4, 4, 2]
    assert calls[0][1] == threading.current_thread().name
    assert all(name.startswith("mlapp-batch") for _, name in calls[1:])
    assert sum(writes) == 10
    assert writes[0] == 4
    assert len(writes) >= 2
    stored = _stored(job)
    for i in range(10):
        x = np.array([[i, i + 1, i + 2]], np.float32)
        np.testing.assert_allclose(stored[str(i)].outputs["y"], expected(x), rtol=1e-6)


def test_a_fast_models_chunk_is_two_calls_and_one_write(affine, tmp_path, monkeypatch):
    writes = []
    original_write = runner.write_results
    monkeypatch.setattr(
        runner,
        "write_results",
        lambda job, results: writes.append(len(results)) or original_write(job, results),
    )
    calls = _count_calls(monkeypatch)
    job = _run("affine", file=_affine_csv(tmp_path, 300), chunk_size=300)
    assert (job.status, job.done) == ("succeeded", 300)
    assert [n for n, _ in calls] == [runner.PART_SIZE, 300 - runner.PART_SIZE]
    assert writes == [300]


def test_a_later_part_that_fails_reruns_only_the_keys_not_yet_written(
    affine, tmp_path, monkeypatch
):
    affine.model.handler = "tests.batch.test_runner.FailsOnThirdCall"
    affine.model.save()
    FailsOnThirdCall.calls = 0
    monkeypatch.setattr(runner, "PART_SIZE", 2)
    monkeypatch.setattr(runner, "PART_SECONDS", 0.0)
    job = _run("affine", file=_affine_csv(tmp_path, 6), chunk_size=6)
    assert (job.status, job.done, job.failed) == ("succeeded", 6, 0)
    assert sorted(job.predictions.values_list("key", flat=True)) == [str(i) for i in range(6)]
    # Parts written before the failure were not run again: at most the two last parts were
    # (plus one call: the load's check of the handler's example).
    assert FailsOnThirdCall.calls in (5, 6)


def test_results_stored_meanwhile_by_another_run_are_not_written_twice(iris, tmp_path):
    job, plan = batch.prepare_job("iris", file=_iris_csv(tmp_path, rows=10), chunk_size=10)
    runner.mark_running(job.pk)
    results = runner.predict_items("iris", 1, runner.open_source(job).read(plan.chunks[0]))
    assert runner.write_results(job, results[3:7]).written == 4  # the other run's write
    assert runner.write_results(job, results).written == 6
    job.refresh_from_db()
    assert (job.done, job.status, job.predictions.count()) == (10, "succeeded", 10)


# -- the same answers online and in batch --------------------------------------------------


def test_batch_answers_equal_online_answers_for_the_same_inputs(iris, tmp_path):
    job = _run("iris", file=_iris_csv(tmp_path, key=False), chunk_size=50)
    stored = _stored(job)
    x = np.array([[float(r[c]) for c in FLOWER_FIELDS] for r in _flowers()], np.float32)
    client = APIClient()
    # One online request with the rows of one chunk: the very same call, the very same bytes.
    online = client.post(
        "/api/mlapp/models/iris/predict", {"inputs": x[50:100].tolist()}, format="json"
    ).json()
    assert online["outputs"]["label"] == [
        stored[str(i)].outputs["label"][0] for i in range(50, 100)
    ]
    assert online["outputs"]["probabilities"] == [
        stored[str(i)].outputs["probabilities"][0] for i in range(50, 100)
    ]
    # Row by row: the same label, the probabilities within float32 rounding of a batch.
    for i in range(0, 150, 7):
        single = client.post(
            "/api/mlapp/models/iris/predict", {"inputs": x[i : i + 1].tolist()}, format="json"
        ).json()
        assert single["outputs"]["label"] == stored[str(i)].outputs["label"]
        np.testing.assert_allclose(
            single["outputs"]["probabilities"],
            stored[str(i)].outputs["probabilities"],
            rtol=1e-5,
            atol=1e-6,
        )


def _flowers():
    with (FIXTURES / "iris/flowers.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_items_of_different_row_counts_run_in_one_call_and_split_back(affine, monkeypatch):
    calls = []
    original = service.predict

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "predict", counting)
    items = [
        runner.Item("a", [[1, 2, 3]]),
        runner.Item("b", [[0, 0, 1], [1, 1, 1]]),
        runner.Item("c", [[4, 5, 6]]),
    ]
    results = runner.predict_items("affine", 1, items)
    assert len(calls) == 1
    assert [len(r.outputs["y"]) for r in results] == [1, 2, 1]
    np.testing.assert_allclose(
        results[1].outputs["y"], expected(np.array([[0, 0, 1], [1, 1, 1]], np.float32))
    )


# -- versions and lookups --------------------------------------------------------------------


def test_a_job_pinned_to_a_version_runs_it_after_another_is_promoted(affine, onnx_file, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    job, plan = batch.prepare_job("affine", file=path, version=1)
    promote_version(register_version("affine", onnx_file))
    runner.run_job(job.pk, plan.chunks, **POLICY)
    assert job.predictions.get().version.version == 1


def test_a_job_needs_a_model_with_a_production_version_or_a_named_one(affine, onnx_file, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ModelNotFound, match="No model named 'ghost'"):
        batch.prepare_job("ghost", file=path)
    with pytest.raises(ModelNotFound, match="no version 9"):
        batch.prepare_job("affine", file=path, version=9)
    register_version("staged", onnx_file)
    with pytest.raises(ModelNotReady, match="no production version"):
        batch.prepare_job("staged", file=path)
    assert batch.prepare_job("staged", file=path, version=1)[1].total == 1


def test_latest_prediction_comes_from_the_latest_succeeded_job(affine, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"key": "k", "inputs": [[1, 1, 1]]}\n')
    two = tmp_path / "two.jsonl"
    two.write_text('{"key": "k", "inputs": [[2, 2, 2]]}\n')
    _run("affine", file=one)
    second = _run("affine", file=two)
    cancelled, _ = batch.prepare_job("affine", file=one)
    batch.cancel(cancelled)
    found = batch.latest_prediction("affine", "k")
    assert found.job_id == second.pk
    np.testing.assert_allclose(found.outputs["y"], expected(np.full((1, 3), 2, np.float32)))
    assert batch.latest_prediction("affine", "nothing") is None


def test_submit_plans_a_stored_job_again_and_leaves_it_when_its_file_went_bad(affine):
    from django.core.files.base import ContentFile

    good = BatchJob(version=affine)
    good.source_file.save("ok.csv", ContentFile(b"a,b,c\n1,2,3\n4,5,6\n"), save=False)
    good.save()
    batch.submit(good)
    assert BatchJob.objects.get(pk=good.pk).total == 2
    bad = BatchJob(version=affine)
    bad.source_file.save("bad.csv", ContentFile(b"a,b\n1,2\n"), save=False)
    bad.save()
    stored = Path(bad.source_file.path)
    with pytest.raises(BadSource, match="3 value"):
        batch.submit(bad)
    # Resubmitting is not creating: the job and what it stored stay for someone to look at.
    assert BatchJob.objects.get(pk=bad.pk).status == "pending"
    assert stored.exists()


def test_an_uploaded_file_object_is_planned_and_stored(affine):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("rows.csv", b"a,b,c\n1,2,3\n", content_type="text/csv")
    job, plan = batch.prepare_job("affine", file=upload)
    assert plan.total == 1
    assert job.source_file.name.endswith(".csv")
    assert io.BytesIO(job.source_file.read()).read() == b"a,b,c\n1,2,3\n"
