"""Drift against a reference, on real data: the demo models' own training and held-out rows.

The references are the rows each demo model was trained on (the same stratified 70/30 split
as fixtures/train_*.py, random_state=0); the windows are its held-out rows, as they are, or
shifted (iris: +1 cm of petal length) or noisy (digits: Gaussian noise of 4 grey levels),
sent through the service with the prediction log at 100 %.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

import mlapp
from mlapp.models import DriftReport, MLModel, ModelVersion
from mlapp.monitoring import drift
from mlapp.monitoring.drift import (
    check_drift,
    drift_detected,
    drift_report,
    reference_from_file,
    reference_from_log,
    set_reference,
)
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import register_version
from tests.monitoring.conftest import DIGITS, DIGITS_HANDLER

pytestmark = pytest.mark.django_db


def split(loader):
    data = loader()
    x = data.data.astype(np.float32)
    train, test = train_test_split(x, test_size=0.3, random_state=0, stratify=data.target)
    return train, test


@pytest.fixture
def register_digits(digits_report):
    def register():
        version = register_version(
            "digits", DIGITS, handler=DIGITS_HANDLER, promote=True, report=digits_report
        )
        MLModel.objects.filter(name="digits").update(monitoring={"sample_rate": 1.0})
        registry.clear()
        return version

    return register


def send(model: str, rows: np.ndarray, shape: tuple[int, ...]) -> None:
    for row in rows:
        mlapp.predict(model, [row.reshape(shape).tolist()])


def window(version: ModelVersion, log, rows: np.ndarray, shape: tuple[int, ...]) -> DriftReport:
    started = timezone.now()
    send(version.model.name, rows, shape)
    log.flush()
    report = drift_report(version, since=started)
    assert report is not None
    return report


def test_iris_rows_shifted_one_cm_in_petal_length_trip_the_psi_threshold(register_iris, log):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    shifted = test.copy()
    shifted[:, 2] += 1.0
    report = window(version, log, shifted, (4,))
    assert report.drifted, report.result
    features = report.result["features"]
    assert features["input.2"]["psi"] > 0.2
    assert any(line.startswith("input.2: PSI") for line in report.alerts)
    # The other measurements did not move.
    assert all(features[f"input.{i}"]["psi"] <= 0.2 for i in (0, 1, 3))


def test_held_out_iris_rows_do_not_trip_it(register_iris, log):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    report = window(version, log, test, (4,))
    assert report.rows == len(test)
    assert not report.drifted, report.alerts
    assert max(f["psi"] for f in report.result["features"].values()) <= 0.2
    assert report.result["classes"]["psi"] <= 0.2


def test_digits_with_noise_trip_it_and_held_out_digits_do_not(register_digits, log):
    version = register_digits()
    train, test = split(load_digits)
    set_reference(version, {"image": train.reshape(-1, 1, 8, 8)})
    clean = window(version, log, test[:300], (1, 8, 8))
    assert not clean.drifted, clean.alerts
    rng = np.random.default_rng(0)
    noisy = np.clip(test[:300] + rng.normal(0, 4, test[:300].shape), 0, 16).astype(np.float32)
    report = window(version, log, noisy, (1, 8, 8))
    assert report.drifted, report.result
    psi = [f["psi"] for f in report.result["features"].values()]
    clean_psi = [f["psi"] for f in clean.result["features"].values()]
    # Noise moves many pixels, not one: a quarter of them beyond any pixel of the clean window.
    assert sum(p > max(clean_psi) for p in psi) >= 16


def test_a_crossed_threshold_sends_the_signal_once_per_report(register_iris, log):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    received = []

    def receiver(sender, report, alerts, **kwargs):
        received.append((report.pk, alerts))

    drift_detected.connect(receiver)
    try:
        shifted = test.copy()
        shifted[:, 2] += 1.0
        report = window(version, log, shifted, (4,))
    finally:
        drift_detected.disconnect(receiver)
    assert received == [(report.pk, report.alerts)]


def test_thresholds_are_per_model(register_iris, log):
    version = register_iris(rate=1.0)
    MLModel.objects.filter(name="iris").update(
        monitoring={"sample_rate": 1.0, "thresholds": {"psi": 50, "ks": 1, "classes": 50}}
    )
    version.refresh_from_db()
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    shifted = test.copy()
    shifted[:, 2] += 1.0
    report = window(version, log, shifted, (4,))
    assert not report.drifted
    assert report.result["thresholds"]["psi"] == 50


def test_text_inputs_get_length_and_out_of_vocabulary_drift():
    from mlapp.monitoring import stats

    english = [f"the cat number {i} sat on the mat near the door" for i in range(200)]
    reference = stats.profile([{"text": [t]} for t in english], [])
    same = stats.compare(reference, [{"text": [t]} for t in english[:100]], [])
    assert same["text"]["text"]["oov_rate"] == 0
    assert not stats.alerts(same, THRESHOLDS)
    other = [f"zorglub {i} flarp quux wibble wobble {i}" for i in range(100)]
    moved = stats.compare(reference, [{"text": [t]} for t in other], [])
    found = stats.alerts(moved, THRESHOLDS)
    assert moved["text"]["text"]["oov_rate"] > 0.5
    assert any("out-of-vocabulary" in line for line in found)
    assert any("length PSI" in line for line in found)


THRESHOLDS = {"psi": 0.2, "ks": 0.2, "classes": 0.2, "length": 0.2, "oov": 0.1}


def test_a_reference_from_the_first_logged_requests(register_iris, log):
    version = register_iris(rate=1.0)
    train, _ = split(load_iris)
    send("iris", train[:30], (4,))
    log.flush()
    reference = reference_from_log(version, rows=20)
    assert (reference.source, reference.rows) == ("log", 20)
    assert reference.profile["numeric"]["input.0"]["rows"] == 20


def test_a_reference_from_a_csv_file(register_iris, tmp_path):
    version = register_iris()
    train, _ = split(load_iris)
    path = tmp_path / "reference.csv"
    lines = ["a,b,c,d", *(",".join(str(float(v)) for v in row) for row in train)]
    path.write_text("\n".join(lines) + "\n")
    reference = reference_from_file(version, path)
    assert (reference.source, reference.rows) == ("file", len(train))
    assert sum(reference.profile["classes"].values()) == pytest.approx(1)


def test_the_job_reports_every_version_with_a_reference(register_iris, log):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    send("iris", test, (4,))
    log.flush()
    [report] = check_drift()
    assert report.version_id == version.pk
    out = io.StringIO()
    call_command("check_drift", "--model", "iris", stdout=out)
    assert "iris v1: ok, 45 request(s)" in out.getvalue()
    with pytest.raises(CommandError, match="No model named"):
        call_command("check_drift", "--model", "nope")


def test_the_reference_command_takes_the_log(register_iris, log):
    register_iris(rate=1.0)
    train, _ = split(load_iris)
    with pytest.raises(CommandError, match="no logged request"):
        call_command("drift_reference", "iris", "--from-log")
    send("iris", train[:10], (4,))
    log.flush()
    out = io.StringIO()
    call_command("drift_reference", "iris", "--from-log", stdout=out)
    assert "Reference of iris v1: 10 request(s) (log)." in out.getvalue()


def test_metrics_show_the_latest_report_as_gauges(register_iris, log, client):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    shifted = test.copy()
    shifted[:, 2] += 1.0
    report = window(version, log, shifted, (4,))
    text = client.get("/metrics").content.decode()
    psi = report.result["features"]["input.2"]["psi"]
    line = f'mlapp_drift_psi{{feature="input.2",model="iris",version="1"}} {psi}'
    assert line in text
    assert f'mlapp_drift_alerts{{model="iris",version="1"}} {float(len(report.alerts))}' in text
    assert "mlapp_requests_total" in text  # the serving metrics are still there


def test_the_api_lists_drift_reports(register_iris, log):
    version = register_iris(rate=1.0)
    train, test = split(load_iris)
    set_reference(version, {"input": train})
    window(version, log, test, (4,))
    staff = APIClient()
    staff.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    body = staff.get("/api/mlapp/models/iris/drift/").json()
    assert body["count"] == 1
    [item] = body["results"]
    assert (item["version"], item["rows"], item["drifted"]) == (1, 45, False)
    assert set(item["result"]["features"]) == {f"input.{i}" for i in range(4)}
    assert staff.get("/api/mlapp/models/iris/drift/", {"drifted": "true"}).json()["count"] == 0
    assert staff.get("/api/mlapp/models/nope/drift/").status_code == 404
    assert json.loads(json.dumps(item))  # plain JSON


def test_drift_report_without_a_reference_is_none(register_iris):
    version = register_iris()
    assert drift_report(version, since=timezone.now() - timedelta(hours=1)) is None
    assert drift.check_drift() == []


def test_the_job_takes_the_first_logged_requests_as_a_reference_once_there_are_enough(
    register_iris, log
):
    version = register_iris()
    MLModel.objects.filter(name="iris").update(
        monitoring={"sample_rate": 1.0, "reference_rows": 40}
    )
    registry.clear()
    train, _ = split(load_iris)
    send("iris", train[:39], (4,))
    log.flush()
    assert check_drift() == []  # 39 of 40 rows: no reference yet
    send("iris", train[39:60], (4,))
    log.flush()
    [report] = check_drift()
    reference = version.drift_reference
    assert (reference.source, reference.rows) == ("log", 40)
    assert report.rows == 60


def test_unlabelled_outputs_are_classes_only_for_a_classifier():
    from mlapp.monitoring import stats

    requests = [{"x": [[float(i)]]} for i in range(50)]
    outputs = [{"embedding": [[0.5 * (i % 2), 0.2, 0.3]]} for i in range(50)]
    assert stats.profile(requests, outputs, scores=False)["classes"] == {}
    assert "classes" not in stats.compare(
        stats.profile(requests, outputs, scores=False), requests, outputs, scores=False
    )
    assert set(stats.profile(requests, outputs)["classes"]) == {"0", "2"}
    # Rows that are neither numbers nor texts are left out, not an error.
    odd = stats.features([{"x": [[["a", 1]]]}, {"x": [[2.0]]}])
    assert odd == {"x": [2.0]}
