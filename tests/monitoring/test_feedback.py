"""Feedback: ground truth joined to logged and batch predictions; live accuracy per version."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

import mlapp
from mlapp import batch
from mlapp.batch import runner
from mlapp.exceptions import InvalidInput
from mlapp.models import Feedback, MLModel
from mlapp.monitoring import (
    feedback_from_csv,
    feedback_from_queryset,
    joined,
    live_metric,
    record_feedback,
)
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import promote_version
from project.flowers.loading import load_flowers
from project.flowers.models import Flower

pytestmark = pytest.mark.django_db

FIXTURES = Path(django_settings.BASE_DIR) / "fixtures"
SOURCES = {
    "flowers": {
        "queryset": "project.flowers.sources.flowers",
        "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        "key": "pk",
    }
}
SPECIES = ("setosa", "versicolor", "virginica")


def flowers() -> list[dict]:
    with (FIXTURES / "iris/flowers.csv").open() as f:
        return list(csv.DictReader(f))


def measurements(row: dict) -> list[float]:
    names = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    return [float(row[n]) for n in names]


@pytest.fixture
def iris(register_iris):
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        yield register_iris(rate=1.0)


def test_feedback_by_key_and_by_request_id_joins_logged_predictions(iris, log):
    rows = flowers()[:20]
    answers = {}
    for number, row in enumerate(rows):
        kwargs = {"key": f"f{number}"} if number % 2 else {"request_id": f"r{number}"}
        answers[number] = mlapp.predict("iris", [measurements(row)], **kwargs)
    log.flush()
    # The truth is the model's own answer for the first ten, another species for the rest:
    # whatever the model answers, the accuracy is one half.
    truths = {}
    for number, answer in answers.items():
        label = str(answer.outputs["label"][0])
        if number >= 10:
            label = next(s for s in SPECIES if s != label)
        truths[f"f{number}" if number % 2 else f"r{number}"] = label
    assert record_feedback("iris", truths) == 20
    pairs = list(joined("iris"))
    assert len(pairs) == 20
    assert {p.source for p in pairs} == {"log"}
    metric, points = live_metric("iris", bucket="hour")
    assert metric == "accuracy"
    assert [(p.version, p.count, p.value) for p in points] == [(1, 20, 0.5)]


def test_accuracy_is_kept_per_version(iris, log, register_iris):
    rows = flowers()[::10]
    for number, row in enumerate(rows):
        mlapp.predict("iris", [measurements(row)], key=f"a{number}")
    promote_version(register_iris(promote=False))
    registry.clear()
    for number, row in enumerate(rows):
        mlapp.predict("iris", [measurements(row)], key=f"b{number}")
    log.flush()
    truth = {f"{p}{n}": row["species"] for p in "ab" for n, row in enumerate(rows)}
    record_feedback("iris", truth)
    _, points = live_metric("iris")
    assert sorted(p.version for p in points) == [1, 2]
    for point in points:
        assert point.count == len(rows)
        # The demo model gets nearly every iris right (its validation accuracy is stored).
        assert point.value >= 0.9


def test_feedback_from_the_host_table_joins_batch_predictions(iris):
    load_flowers()
    job, plan = batch.prepare_job("iris", source="flowers")
    runner.run_job(job.pk, plan.chunks, max_retries=0, retry_delay=0)
    assert feedback_from_queryset("iris", Flower.objects.all(), "species") == 150
    pairs = list(joined("iris"))
    assert len(pairs) == 150
    assert {p.source for p in pairs} == {"batch"}
    _, [point] = live_metric("iris")
    wrong = sum(str(p.predicted[0]) != str(p.truth[0]) for p in pairs)
    assert point.count == 150
    assert point.value == pytest.approx(1 - wrong / 150)
    assert point.value >= 0.9


def test_feedback_sent_again_replaces_the_value(iris):
    record_feedback("iris", [("k", "setosa")])
    record_feedback("iris", [("k", "virginica")])
    assert list(Feedback.objects.values_list("key", "value")) == [("k", "virginica")]


def test_bad_feedback_is_refused_with_the_reason(iris):
    with pytest.raises(InvalidInput, match="1 to 255 characters"):
        record_feedback("iris", {"": "setosa"})
    with pytest.raises(InvalidInput, match="no value"):
        record_feedback("iris", {"k": None})
    with pytest.raises(InvalidInput, match="no 'key' column"):
        feedback_from_csv("iris", io.BytesIO(b"id,label\n1,setosa\n"))
    with pytest.raises(InvalidInput, match="Name the CSV's value column"):
        feedback_from_csv("iris", io.BytesIO(b"key,a,b\n1,x,y\n"))


def test_regression_feedback_gives_the_mean_absolute_error(register_affine, log):
    register_affine()
    MLModel.objects.filter(name="affine").update(task="regression", monitoring={"sample_rate": 1})
    registry.clear()
    answer = mlapp.predict("affine", [[1.0, 2.0, 3.0]], key="x")
    log.flush()
    first = float(answer.outputs["y"][0][0])
    record_feedback("affine", {"x": first + 2.5})
    metric, [point] = live_metric("affine")
    assert metric == "mae"
    assert point.value == pytest.approx(2.5, abs=1e-5)


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
def staff():
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    return api


def test_the_api_takes_one_item_many_items_and_a_csv(iris, staff):
    url = "/api/mlapp/models/iris/feedback"
    one = staff.post(url, {"key": "a", "value": "setosa"}, format="json")
    assert one.json() == {"model": "iris", "stored": 1}
    items = [{"key": "b", "value": "virginica"}, {"key": "c", "value": "setosa"}]
    assert staff.post(url, {"items": items}, format="json").json()["stored"] == 2
    upload = SimpleUploadedFile("truth.csv", b"key,label\nd,setosa\ne,versicolor\n")
    assert staff.post(url, {"file": upload}, format="multipart").json()["stored"] == 2
    assert Feedback.objects.count() == 5
    assert staff.post(url, {}, format="json").status_code == 400
    assert staff.post(url, {"key": "x" * 300, "value": 1}, format="json").status_code == 400
    assert staff.post("/api/mlapp/models/nope/feedback", {}, format="json").status_code == 404
    assert APIClient().post(url, {"key": "a", "value": "b"}, format="json").status_code == 403


def test_the_api_answers_live_accuracy_per_version(iris, log, staff):
    for number, row in enumerate(flowers()[::15]):
        mlapp.predict("iris", [measurements(row)], key=f"k{number}")
        record_feedback("iris", {f"k{number}": row["species"]})
    log.flush()
    body = APIClient().get("/api/mlapp/models/iris/accuracy", {"bucket": "hour"}).json()
    assert body["metric"] == "accuracy"
    assert [p["version"] for p in body["points"]] == [1]
    assert body["points"][0]["count"] == 10
    bad = APIClient().get("/api/mlapp/models/iris/accuracy", {"bucket": "week"})
    assert bad.status_code == 400
    assert APIClient().get("/api/mlapp/models/iris/accuracy", {"since": "x"}).status_code == 400


def test_batch_jobs_are_not_written_to_the_log_too(iris, log):
    load_flowers()
    job, plan = batch.prepare_job("iris", source="flowers")
    runner.run_job(job.pk, plan.chunks, max_retries=0, retry_delay=0)
    assert log.pending == 0  # their predictions are BatchPrediction rows
    mlapp.predict("iris", [[5.1, 3.5, 1.4, 0.2]])
    assert log.pending == 1
