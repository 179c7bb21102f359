"""``mlapp.predictions.annotate_predictions``: stored predictions joined to the host's rows.

Runs on SQLite and, with ``MLAPP_TEST_DB=postgres``, on PostgreSQL: the point of the helper is
that the same call works on both (integer pks against text keys, JSON numbers and strings).
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db.models import CharField, Count, DecimalField, F, Value
from django.db.models.functions import Concat
from django.test import override_settings
from django.utils import timezone

from mlapp import batch
from mlapp.batch import runner
from mlapp.models import BatchJob, BatchPrediction, MLModel, ModelVersion
from mlapp.predictions import annotate_predictions
from mlapp.versions.lifecycle import register_version
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


def _version(name: str = "churn") -> ModelVersion:
    model, _ = MLModel.objects.get_or_create(name=name)
    return ModelVersion.objects.create(model=model, version=1, format="onnx", sha256="0" * 64)


def _job(version: ModelVersion, rows: dict, status: str = "succeeded", age: float = 0) -> BatchJob:
    """A job that stored ``{key: outputs or error message}``; ended ``age`` hours ago."""
    job = BatchJob.objects.create(
        version=version,
        source_name="customers",
        status=status,
        finished_at=timezone.now() - timedelta(hours=age),
    )
    BatchPrediction.objects.bulk_create(
        BatchPrediction(
            job=job,
            model=version.model,
            version=version,
            key=key,
            outputs={} if isinstance(value, str) else value,
            error=value if isinstance(value, str) else "",
        )
        for key, value in rows.items()
    )
    return job


def _flowers(count: int) -> list[Flower]:
    return [
        Flower.objects.create(sepal_length=i, sepal_width=1, petal_length=1, petal_width=1)
        for i in range(count)
    ]


def test_integer_pks_meet_text_keys_and_values_come_typed():
    # The obvious join (key=OuterRef("pk")) compares varchar to integer: PostgreSQL refuses it.
    a, b, c = _flowers(3)
    version = _version()
    _job(
        version,
        {
            str(a.pk): {"label": ["premium"], "score": [0.91]},
            str(b.pk): {"label": ["basic"], "score": [0.25]},
        },
    )
    rows = annotate_predictions(Flower.objects.all(), "churn", {"label": str, "score": float})
    found = {f.pk: (f.prediction_label, f.prediction_score) for f in rows}
    assert found == {a.pk: ("premium", 0.91), b.pk: ("basic", 0.25), c.pk: (None, None)}
    assert isinstance(found[a.pk][1], float)


def test_typed_values_filter_order_and_count_in_the_database():
    flowers = _flowers(4)
    scores = [0.9, 0.1, 0.7, 0.4]
    labels = ["premium", "basic", "premium", "basic"]
    _job(
        _version(),
        {
            str(f.pk): {"label": [lab], "score": [s]}
            for f, lab, s in zip(flowers, labels, scores, strict=True)
        },
    )
    rows = annotate_predictions(Flower.objects.all(), "churn", {"label": str, "score": float})
    assert list(rows.filter(prediction_label="premium").values_list("pk", flat=True)) == [
        flowers[0].pk,
        flowers[2].pk,
    ]
    assert [f.pk for f in rows.filter(prediction_score__gte=0.5)] == [flowers[0].pk, flowers[2].pk]
    assert [f.pk for f in rows.order_by("-prediction_score")] == [
        flowers[i].pk for i in (0, 2, 3, 1)
    ]
    counts = rows.order_by().values("prediction_label").annotate(n=Count("pk"))
    assert {c["prediction_label"]: c["n"] for c in counts} == {"premium": 2, "basic": 2}


def test_json_numbers_and_strings_cast_alike():
    # A score stored as a JSON string and a label stored as a JSON number: the cast reads
    # the text of either (SQLite's json_extract would hand a float to a JSON decoder).
    a, b = _flowers(2)
    _job(
        _version(),
        {
            str(a.pk): {"label": [2], "score": ["0.5"], "flag": [True]},
            str(b.pk): {"label": ["2"], "score": [0.5], "flag": [False]},
        },
    )
    rows = annotate_predictions(
        Flower.objects.order_by("pk"),
        "churn",
        {"label": str, "score": float, "flag": bool},
    )
    assert [(f.prediction_label, f.prediction_score, f.prediction_flag) for f in rows] == [
        ("2", 0.5, True),
        ("2", 0.5, False),
    ]


def test_a_list_of_outputs_gives_the_stored_json_values():
    (a,) = _flowers(1)
    stored = {"label": ["premium"], "score": [0.91], "probs": [[0.1, 0.9]], "flag": [True]}
    _job(_version(), {str(a.pk): {**stored, "class": [2]}})
    rows = annotate_predictions(Flower.objects.all(), "churn", [*stored, "class"])
    row = rows.get()
    assert (row.prediction_label, row.prediction_score, row.prediction_probs) == (
        "premium",
        0.91,
        [0.1, 0.9],
    )
    assert (row.prediction_flag, row.prediction_class) == (True, 2)
    assert rows.filter(prediction_label="premium").exists()
    assert not rows.filter(prediction_label="basic").exists()


def test_elements_are_named_as_the_csv_columns():
    (a,) = _flowers(1)
    _job(_version(), {str(a.pk): {"probabilities": [[0.1, 0.2, 0.7]]}})
    row = annotate_predictions(
        Flower.objects.all(),
        "churn",
        {"probabilities.2": float, "probabilities.0": DecimalField(max_digits=4, decimal_places=2)},
        prefix="churn_",
    ).get()
    assert row.churn_probabilities_2 == pytest.approx(0.7)
    assert row.churn_probabilities_0 == Decimal("0.1")


def test_a_named_text_key_and_an_expression_key():
    users = get_user_model().objects
    ann = users.create(username="ann")
    users.create(username="bob")
    _job(_version(), {"ann": {"label": ["premium"]}, "user-2": {"label": ["basic"]}})
    by_name = annotate_predictions(users.order_by("pk"), "churn", {"label": str}, key="username")
    assert [(u.username, u.prediction_label) for u in by_name] == [
        ("ann", "premium"),
        ("bob", None),
    ]
    by_expression = annotate_predictions(
        users.filter(pk=ann.pk),
        "churn",
        {"label": str},
        key=Concat(Value("user-"), Value(2), output_field=CharField()),
    )
    assert by_expression.get().prediction_label == "basic"


def test_latest_succeeded_job_per_key_by_default():
    a, b = _flowers(2)
    version = _version()
    _job(version, {str(a.pk): {"label": ["old"]}, str(b.pk): {"label": ["old"]}}, age=2)
    _job(version, {str(a.pk): {"label": ["new"]}}, age=1)
    _job(version, {str(a.pk): {"label": ["failed job"]}}, status="failed")
    _job(version, {str(b.pk): {"label": ["running job"]}}, status="running")
    rows = annotate_predictions(Flower.objects.order_by("pk"), "churn", {"label": str})
    assert [f.prediction_label for f in rows] == ["new", "old"]
    assert batch.latest_prediction("churn", str(a.pk)).outputs == {"label": ["new"]}


def test_latest_job_only_and_a_given_job():
    a, b = _flowers(2)
    version = _version()
    older = _job(version, {str(a.pk): {"label": ["old"]}, str(b.pk): {"label": ["old"]}}, age=2)
    _job(version, {str(a.pk): {"label": ["new"]}}, age=1)
    rows = Flower.objects.order_by("pk")
    latest = annotate_predictions(rows, "churn", {"label": str}, job="latest")
    assert [f.prediction_label for f in latest] == ["new", None]
    given = annotate_predictions(rows, "churn", {"label": str}, job=older)
    assert [f.prediction_label for f in given] == ["old", "old"]
    assert [
        f.prediction_label for f in annotate_predictions(rows, "churn", ["label"], job=older.pk)
    ] == [
        "old",
        "old",
    ]


def test_a_failed_item_and_another_models_predictions_give_none():
    a, b = _flowers(2)
    _job(_version(), {str(a.pk): "Input 'input': 'O.2' is not a number."})
    _job(_version("other"), {str(b.pk): {"label": ["premium"]}})
    rows = annotate_predictions(Flower.objects.order_by("pk"), "churn", {"label": str})
    assert [f.prediction_label for f in rows] == [None, None]


def test_two_models_side_by_side_with_prefixes():
    (a,) = _flowers(1)
    _job(_version(), {str(a.pk): {"label": ["premium"]}})
    _job(_version("upsell"), {str(a.pk): {"label": ["yes"]}})
    rows = annotate_predictions(Flower.objects.all(), "churn", {"label": str}, prefix="churn_")
    rows = annotate_predictions(rows, "upsell", {"label": str}, prefix="upsell_")
    assert rows.values_list("churn_label", "upsell_label").get() == ("premium", "yes")


@pytest.mark.parametrize(
    ("outputs", "kwargs", "message"),
    [
        ("label", {}, "not a str"),
        ([], {}, "at least one output"),
        (["label; DROP TABLE x"], {}, "not an output name"),
        ({"label": list}, {}, "is not str, float"),
        (["label"], {"job": "newest"}, "job must be"),
        (["species"], {"prefix": ""}, "already named"),
    ],
)
def test_bad_arguments_say_what_to_fix(outputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        annotate_predictions(Flower.objects.all(), "churn", outputs, **kwargs)


def test_a_real_job_over_the_flowers_source_joins_back():
    # End to end: the flowers source (key "pk") scored by the iris model, read back joined.
    load_flowers()
    with override_settings(MLAPP={"THREADS": 1, "BATCH_SOURCES": SOURCES}):
        register_version(
            "iris",
            FIXTURES / "iris/model.pt",
            signature=json.loads((FIXTURES / "iris/signature.json").read_text()),
            handler="project.demo.handlers.IrisHandler",
            promote=True,
        )
        job, plan = batch.prepare_job("iris", source="flowers")
        runner.run_job(job.pk, plan.chunks, max_retries=0, retry_delay=0)
    rows = annotate_predictions(
        Flower.objects.all(), "iris", {"label": str, "probabilities.2": float}
    )
    assert rows.filter(prediction_label__isnull=True).count() == 0
    agree = rows.filter(prediction_label=F("species")).count()
    assert agree >= 140  # the demo model is about 97 % right on its own training flowers
    virginica = rows.filter(prediction_probabilities_2__gt=0.5)
    assert set(virginica.values_list("prediction_label", flat=True)) == {"virginica"}
