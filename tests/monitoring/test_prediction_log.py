"""The prediction log: sampled per model, buffered per process, written off the request path."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

import mlapp
from mlapp.conf.defaults import DEFAULTS
from mlapp.models import MLModel, PredictionLog
from mlapp.monitoring import configure
from mlapp.serving.predlog import PredictionRecorder, recorder
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

X = [[1.0, 2.0, 3.0]]


def monitoring(**changes):
    return override_settings(MLAPP={"MONITORING": {**DEFAULTS["MONITORING"], **changes}})


@pytest.fixture
def affine(register_affine):
    return register_affine(rate=1.0)


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "mlapp_prediction_log_dropped_total", {"model": "affine", "reason": reason}
    )
    return value or 0.0


def test_a_model_logs_nothing_by_default(register_affine, log):
    register_affine()
    mlapp.predict("affine", X)
    assert registry.get("affine").log_rate == 0
    assert log.pending == 0
    assert log.flush() == 0


def test_a_logged_request_keeps_inputs_outputs_version_key_and_latency(affine, log):
    answer = mlapp.predict("affine", X, key="order-17", request_id="req-1")
    assert log.pending == 1
    assert PredictionLog.objects.count() == 0  # nothing written on the request's path
    assert log.flush() == 1
    row = PredictionLog.objects.get()
    assert (row.model.name, row.version.version, row.protocol) == ("affine", 1, "python")
    assert (row.request_id, row.key, row.truncated) == ("req-1", "order-17", False)
    assert row.inputs == {"x": X}
    assert row.outputs == {"y": answer.to_dict()["outputs"]["y"]}
    assert row.latency_ms > 0
    assert timezone.now() - row.created_at < timedelta(minutes=1)


def test_a_request_without_an_id_gets_one_made_up(affine, log):
    mlapp.predict("affine", X)
    mlapp.predict("affine", X)
    log.flush()
    ids = set(PredictionLog.objects.values_list("request_id", flat=True))
    assert len(ids) == 2
    assert all(f"-{os.getpid():x}-" in i for i in ids)


def test_the_sampling_rate_keeps_about_that_share(affine, log):
    MLModel.objects.filter(name="affine").update(monitoring={"sample_rate": 0.25})
    registry.clear()
    for _ in range(400):
        mlapp.predict("affine", X)
    # 400 draws at 25 %: 100 expected, below 60 or above 140 has odds under one in a million.
    assert 60 <= log.pending <= 140


def test_a_full_buffer_drops_and_counts_and_never_blocks(affine, log):
    with monitoring(BUFFER_SIZE=5):
        log.close()
        log.start(thread=False)
        before, count = dropped("full"), log.dropped
        for _ in range(8):
            mlapp.predict("affine", X)
    assert log.pending == 5
    assert log.dropped - count == 3
    assert dropped("full") - before == 3
    assert log.flush() == 5
    assert PredictionLog.objects.count() == 5


def test_inputs_over_the_size_cap_are_stored_as_their_shapes(affine, log):
    with monitoring(MAX_PAYLOAD_BYTES=20):
        log.close()
        log.start(thread=False)
        mlapp.predict("affine", [[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]])
        log.flush()
    row = PredictionLog.objects.get()
    assert row.truncated
    assert row.inputs == {"shapes": {"x": [2, 3]}}


def redact_x(model, inputs, outputs):
    """A host's redaction hook (named in MLAPP["MONITORING"]["REDACT"] by the test below)."""
    return {**inputs, "x": "<redacted>"}, outputs


def test_the_host_redaction_hook_runs_before_a_row_is_stored(affine, log):
    with monitoring(REDACT=f"{__name__}.redact_x"):
        log.close()
        log.start(thread=False)
        mlapp.predict("affine", X)
        log.flush()
    assert PredictionLog.objects.get().inputs == {"x": "<redacted>"}


def test_a_failed_write_drops_its_rows_and_counts_them(affine, log):
    mlapp.predict("affine", X)
    affine.delete()  # the version goes: its rows cannot be written
    before, failed = dropped("error"), log.failed
    assert log.flush() == 0
    assert log.failed - failed == 1
    assert dropped("error") - before == 1


def test_changing_the_rate_reaches_the_loaded_model_without_reloading_it(
    register_affine, log, django_capture_on_commit_callbacks
):
    version = register_affine()
    loaded = registry.get("affine")
    with django_capture_on_commit_callbacks(execute=True):
        configure(version.model, {"sample_rate": 0.5})
    now = registry.get("affine")
    assert now.log_rate == 0.5
    assert now.runtime is loaded.runtime


def test_a_bad_monitoring_config_is_a_form_error():
    model = MLModel(name="m", monitoring={"sample_rate": 2})
    with pytest.raises(ValidationError, match="sample_rate must be a number from 0 to 1"):
        model.clean()
    model.monitoring = {"thresholds": {"psi": -1}}
    with pytest.raises(ValidationError, match="psi must be a number > 0"):
        model.clean()
    model.monitoring = {"rate": 1}
    with pytest.raises(ValidationError, match="unknown key"):
        model.clean()


def test_the_writer_thread_writes_without_a_flush_call(onnx_file, transactional_db):
    version = register_version("affine", onnx_file, promote=True)
    MLModel.objects.filter(pk=version.model_id).update(monitoring={"sample_rate": 1.0})
    with monitoring(FLUSH_INTERVAL=0.05):
        recorder.close()
        try:
            for _ in range(3):
                mlapp.predict("affine", X)
            deadline = time.monotonic() + 10
            while PredictionLog.objects.count() < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert PredictionLog.objects.count() == 3
        finally:
            recorder.close()


def test_close_writes_what_is_buffered(affine):
    own = PredictionRecorder()
    own.start(thread=False)
    own.offer(registry.get("affine"), {"x": np.ones((1, 3))}, {"y": np.ones((1, 2))}, 0.001, "v2")
    assert own.close() == 1
    assert PredictionLog.objects.get().protocol == "v2"


# -- front doors ------------------------------------------------------------------------------


def test_native_and_v2_requests_are_logged_with_the_caller_headers(affine, log, client):
    headers = {"HTTP_X_REQUEST_ID": "abc", "HTTP_X_MLAPP_KEY": "k1"}
    native = client.post(
        "/api/mlapp/models/affine/predict", {"inputs": X}, "application/json", **headers
    )
    assert native.status_code == 200
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    v2 = client.post("/v2/models/affine/infer", body, "application/json")
    assert v2.status_code == 200
    log.flush()
    rows = {r.protocol: r for r in PredictionLog.objects.all()}
    assert (rows["native"].request_id, rows["native"].key) == ("abc", "k1")
    assert rows["v2"].inputs == {"x": X}


def test_a_v2_body_id_names_the_logged_request_unless_the_header_does(affine, log, client):
    body = {
        "id": "body-1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": X[0]}],
    }
    assert client.post("/v2/models/affine/infer", body, "application/json").status_code == 200
    body["id"] = "body-2"
    answer = client.post(
        "/v2/models/affine/infer", body, "application/json", HTTP_X_REQUEST_ID="header-2"
    )
    assert answer.status_code == 200
    assert answer.json()["id"] == "body-2"  # the body's id is echoed either way
    log.flush()
    assert sorted(PredictionLog.objects.values_list("request_id", flat=True)) == [
        "body-1",
        "header-2",
    ]


def test_grpc_requests_are_logged_with_the_caller_metadata(affine, log):
    import tritonclient.grpc as triton

    from mlapp.api.grpc.server import start_server

    mlapp.predict("affine", X)  # loaded here: the server's thread finds it in the registry
    server = start_server("127.0.0.1", 0, max_message_size=None)
    client = triton.InferenceServerClient(f"127.0.0.1:{server.bound_port}")
    try:
        x = triton.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array(X, dtype=np.float32))
        headers = {"x-request-id": "g1", "x-mlapp-key": "k2"}
        client.infer("affine", [x], request_id="oip-1", headers=headers)
        client.infer("affine", [x], request_id="oip-2")
    finally:
        client.close()
        server.stop()
    log.flush()
    rows = PredictionLog.objects.filter(protocol="grpc").order_by("request_id")
    assert [(r.request_id, r.key) for r in rows] == [("g1", "k2"), ("oip-2", "")]
    assert rows[0].inputs == {"x": X}


@pytest.fixture
def staff():
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("ops", is_staff=True))
    return api


def test_the_api_sets_the_rate_and_refuses_a_bad_one(register_affine, staff):
    register_affine()
    url = "/api/mlapp/models/affine/monitoring"
    response = staff.patch(url, {"monitoring": {"sample_rate": 0.1}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["effective"]["sample_rate"] == 0.1
    assert MLModel.objects.get().monitoring == {"sample_rate": 0.1}
    bad = staff.patch(url, {"monitoring": {"sample_rate": "all"}}, format="json")
    assert bad.status_code == 400
    assert "sample_rate" in bad.json()["error"]
    assert APIClient().get(url).status_code == 403


def test_the_api_lists_the_log_filtered_and_paginated(affine, log, staff):
    for i in range(5):
        mlapp.predict("affine", X, key=f"k{i % 2}")
    log.flush()
    url = "/api/mlapp/models/affine/log/"
    page = staff.get(url, {"key": "k0", "page_size": 2}).json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert {r["key"] for r in page["results"]} == {"k0"}
    assert page["results"][0]["version"] == 1
    assert staff.get(url, {"since": "yesterday"}).status_code == 400
    assert staff.get("/api/mlapp/models/nope/log/").status_code == 404
    assert APIClient().get(url).status_code == 403


def test_purge_deletes_logged_predictions_older_than_the_limit(affine, log):
    mlapp.predict("affine", X)
    mlapp.predict("affine", X)
    log.flush()
    old = PredictionLog.objects.first()
    PredictionLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))
    out = StringIO()
    call_command("purge_predictions", "--days", "30", "--log-days", "7", stdout=out)
    assert "Deleted 1 logged prediction(s)" in out.getvalue()
    assert list(PredictionLog.objects.all()) != [old]
    assert PredictionLog.objects.count() == 1


def test_check_reports_a_bad_monitoring_setting():
    from mlapp.checks import check_settings

    with monitoring(FLUSH_ROWS=0):
        assert [e.id for e in check_settings()] == ["mlapp.E002"]
    with monitoring(REDACT="nowhere.redact"):
        assert [e.id for e in check_settings()] == ["mlapp.E003"]
    with monitoring(SPEED=1):
        assert "unknown key(s) SPEED" in check_settings()[0].msg


def test_check_reports_a_model_whose_monitoring_config_is_unreadable(register_affine):
    from mlapp.checks import check_serving_configs

    register_affine()
    assert check_serving_configs(databases=["default"]) == []
    MLModel.objects.filter(name="affine").update(monitoring={"sample_rate": 7})
    [error] = check_serving_configs(databases=["default"])
    assert error.id == "mlapp.E012"
    assert "sample_rate" in error.msg
