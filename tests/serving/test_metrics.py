"""Prometheus metrics in one process: what each request adds, and ``GET /metrics``.

Samples are process-wide and never reset, so each test compares before and after.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from mlapp.serving.metrics import fold_batch_counts
from mlapp.versions.lifecycle import register_version

V2_BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_total(model: str, version: str, protocol: str, outcome: str) -> float:
    return sample(
        "mlapp_requests_total", model=model, version=version, protocol=protocol, outcome=outcome
    )


@pytest.fixture
def affine(onnx_file, settings):
    settings.MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600}
    return register_version("affine", onnx_file, promote=True)


def _v2(client, body, model="affine"):
    return client.post(f"/v2/models/{model}/infer", json.dumps(body), "application/json")


def _native(client, inputs):
    return client.post(
        "/api/mlapp/models/affine/predict", {"inputs": inputs}, content_type="application/json"
    )


@pytest.mark.django_db
def test_requests_are_counted_by_protocol_and_outcome(affine, client):
    before = {
        "v2": requests_total("affine", "1", "v2", "ok"),
        "native": requests_total("affine", "1", "native", "ok"),
        "invalid": requests_total("affine", "1", "v2", "invalid"),
        "unknown": requests_total("", "", "v2", "not_found"),
        "latency": sample("mlapp_request_seconds_count", model="affine", protocol="v2"),
        "compute": sample("mlapp_model_compute_seconds_count", model="affine"),
    }
    for _ in range(3):
        assert _v2(client, V2_BODY).status_code == 200
    for _ in range(2):
        assert _native(client, [[1, 2, 3]]).status_code == 200
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    assert _v2(client, bad).status_code == 400
    assert _v2(client, V2_BODY, model="nobody").status_code == 404
    assert requests_total("affine", "1", "v2", "ok") - before["v2"] == 3
    assert requests_total("affine", "1", "native", "ok") - before["native"] == 2
    assert requests_total("affine", "1", "v2", "invalid") - before["invalid"] == 1
    # An unknown name is never a label value (anyone could create series by sending names).
    assert requests_total("", "", "v2", "not_found") - before["unknown"] == 1
    assert requests_total("nobody", "", "v2", "not_found") == 0
    latency = sample("mlapp_request_seconds_count", model="affine", protocol="v2")
    assert latency - before["latency"] == 3  # answered requests only
    assert sample("mlapp_model_compute_seconds_count", model="affine") - before["compute"] == 5


@pytest.mark.django_db
def test_batched_requests_record_batch_size_and_queue_wait(affine, client, settings):
    settings.MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600, "BATCHING": {"enabled": True}}
    fold_batch_counts()  # what earlier tests' batchers counted
    batches = sample("mlapp_batch_size_count", model="affine")
    waits = sample("mlapp_queue_wait_seconds_count", model="affine")
    ones = sample("mlapp_batch_size_bucket", model="affine", le="1.0")
    zero_waits = sample("mlapp_queue_wait_seconds_bucket", model="affine", le="0.0001")
    compute = sample("mlapp_model_compute_seconds_count", model="affine")
    for _ in range(4):
        assert _v2(client, V2_BODY).status_code == 200
    # Each call is observed at once; its batch size and wait are counted, then folded in
    # bulk: when /metrics renders, or every FOLD_EVERY calls.
    assert sample("mlapp_model_compute_seconds_count", model="affine") - compute == 4
    assert client.get("/metrics").status_code == 200
    assert sample("mlapp_batch_size_count", model="affine") - batches == 4  # one at a time
    assert sample("mlapp_batch_size_bucket", model="affine", le="1.0") - ones == 4
    assert sample("mlapp_batch_size_sum", model="affine") >= 4
    assert sample("mlapp_queue_wait_seconds_count", model="affine") - waits == 4
    assert sample("mlapp_queue_wait_seconds_bucket", model="affine", le="0.0001") - zero_waits == 4


@pytest.mark.django_db
def test_calls_without_a_queue_are_folded_every_fold_every_calls(affine, settings):
    import mlapp
    from mlapp.serving.metrics import BatchObserver

    settings.MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600, "BATCHING": {"enabled": True}}
    fold_batch_counts()
    batches = sample("mlapp_batch_size_count", model="affine")
    for _ in range(BatchObserver.FOLD_EVERY - 1):
        mlapp.predict("affine", [[1, 2, 3]])
    assert sample("mlapp_batch_size_count", model="affine") == batches  # counted, not folded
    mlapp.predict("affine", [[1, 2, 3]])
    assert sample("mlapp_batch_size_count", model="affine") - batches == BatchObserver.FOLD_EVERY


def test_observe_many_matches_observing_one_by_one():
    from prometheus_client import CollectorRegistry, Histogram

    from mlapp.serving.metrics import _observe_many

    registry = CollectorRegistry()
    one = Histogram("one_by_one", "x", buckets=(1, 2, 4), registry=registry)
    bulk = Histogram("in_bulk", "x", buckets=(1, 2, 4), registry=registry)
    for value, count in [(1, 5), (3, 2), (0.5, 1), (9, 3)]:
        for _ in range(count):
            one.observe(value)
        _observe_many(bulk, value, count)
    for suffix, labels in [("_count", {}), ("_sum", {}), ("_bucket", {"le": "2.0"})]:
        assert registry.get_sample_value(f"one_by_one{suffix}", labels) == (
            registry.get_sample_value(f"in_bulk{suffix}", labels)
        )
    assert registry.get_sample_value("in_bulk_bucket", {"le": "+Inf"}) == 11


@pytest.mark.django_db
def test_python_calls_are_labelled_python(affine):
    import mlapp

    before = requests_total("affine", "1", "python", "ok")
    mlapp.predict("affine", [[1, 2, 3]])
    assert requests_total("affine", "1", "python", "ok") - before == 1


@pytest.mark.django_db
def test_metrics_endpoint_serves_the_exposition_text(affine, client):
    assert _v2(client, V2_BODY).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'mlapp_requests_total{model="affine",outcome="ok",protocol="v2",version="1"}' in text
    assert 'mlapp_model_ready{model="affine",version="1"} 1.0' in text


@pytest.mark.django_db
def test_metrics_endpoint_refuses_posts(client):
    assert client.post("/metrics").status_code == 405
