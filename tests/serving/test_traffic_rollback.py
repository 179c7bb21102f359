"""The automatic rollback of a canary: decided over the counters of every process, done
once, recorded in the model's history."""

from __future__ import annotations

import time

import pytest

from mlapp.models import TrafficEvent, TrafficPolicy, TrafficWindow
from mlapp.serving.inputs import named
from mlapp.serving.routes import Rollback
from mlapp.serving.service import service
from mlapp.serving.traffic_stats import (
    BUCKET_SECONDS,
    LATENCY_BOUNDS,
    roll_back_canary,
    rollback_reason,
)
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

RULE = Rollback(error_rate=0.1, p99_ratio=3.0, window=60, min_requests=50)


def _counts(process: str, version: int, requests: int, errors: int, slot: int = 3) -> None:
    latency = [0] * len(LATENCY_BOUNDS)
    latency[slot] = requests
    TrafficWindow.objects.create(
        process=process,
        model_name="affine",
        version=version,
        bucket=int(time.time() // BUCKET_SECONDS) * BUCKET_SECONDS,
        requests=requests,
        errors=errors,
        latency=latency,
    )


@pytest.fixture
def canary(onnx_file):
    production = register_version("affine", onnx_file, promote=True)
    canary = register_version("affine", onnx_file)
    return TrafficPolicy.objects.create(
        model=production.model,
        canary=canary,
        canary_weight=10,
        rollback_error_rate=0.1,
        rollback_window=60,
        rollback_min_requests=50,
    )


def test_errors_are_summed_over_every_process_before_deciding(canary):
    # Each process alone has too few canary requests to decide; together they have 60.
    _counts("web-1:10", 1, 300, 0)
    _counts("web-1:10", 2, 30, 6)
    assert rollback_reason("affine", 2, 1, RULE) is None
    _counts("web-2:11", 1, 300, 3)
    _counts("web-2:11", 2, 30, 6)
    reason = rollback_reason("affine", 2, 1, RULE)
    assert reason is not None
    assert "error rate 20.0% over 60 requests" in reason


def test_errors_as_frequent_as_production_roll_nothing_back(canary):
    _counts("web-1:10", 1, 500, 100)
    _counts("web-1:10", 2, 60, 12)
    assert rollback_reason("affine", 2, 1, RULE) is None


def test_a_slow_canary_is_rolled_back_on_its_p99(canary):
    _counts("web-1:10", 1, 100, 0, slot=2)  # <= 5 ms
    _counts("web-1:10", 2, 100, 0, slot=5)  # <= 50 ms
    reason = rollback_reason("affine", 2, 1, RULE)
    assert reason is not None
    assert "p99 latency 50 ms" in reason


def test_counters_older_than_the_window_do_not_count(canary):
    TrafficWindow.objects.create(
        process="web-1:10",
        model_name="affine",
        version=2,
        bucket=int(time.time()) - 3600,
        requests=100,
        errors=100,
        latency=[0] * len(LATENCY_BOUNDS),
    )
    assert rollback_reason("affine", 2, 1, RULE) is None


def test_the_rollback_happens_once_whoever_decides_it_and_is_recorded(canary):
    assert roll_back_canary("affine", 2, "error rate too high")
    assert not roll_back_canary("affine", 2, "error rate too high")  # another process
    policy = TrafficPolicy.objects.get()
    assert (policy.canary, policy.canary_weight) == (None, 0.0)
    event = TrafficEvent.objects.get()
    assert event.action == "rolled back"
    assert "Canary v2 rolled back automatically: error rate too high" in event.message


def test_a_process_rolls_back_from_its_own_counters_and_production_answers(canary):
    service.traffic.forget("affine")
    assert service.model("affine").version == 1  # loads production (no request: no split)
    _counts("web-2:11", 2, 80, 20)
    assert service.traffic.check_rollbacks() == ["affine"]
    service.traffic.forget("affine")  # the change's on_commit does it outside a test
    assert {service.predict("affine", named([[1, 2, 3]])).version for _ in range(30)} == {1}


def test_counters_past_the_retention_are_deleted_by_the_next_write(canary, monkeypatch):
    from mlapp.serving import traffic as traffic_module

    _counts("web-1:10", 1, 10, 0)
    TrafficWindow.objects.create(
        process="gone:1",
        model_name="affine",
        version=1,
        bucket=int(time.time()) - traffic_module.RETENTION_SECONDS - 60,
        requests=5,
    )
    monkeypatch.setattr(service.traffic, "_purged", 0.0)
    service.traffic.flush()
    processes = set(TrafficWindow.objects.values_list("process", flat=True))
    assert "web-1:10" in processes
    assert "gone:1" not in processes


def test_counters_a_failed_write_did_not_store_are_written_by_the_next(canary, monkeypatch):
    """A write that fails part-way (say, the database connection dropped) keeps what it did
    not store for the next write: no request's count is lost, none is counted twice."""
    from django.db import OperationalError

    for version in (1, 1, 2):
        service.traffic.record("affine", version, 0.001)
    real = TrafficWindow.objects.get_or_create
    calls = []

    def second_fails(**kwargs):
        calls.append(kwargs["version"])
        if len(calls) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(TrafficWindow.objects, "get_or_create", second_fails)
    with pytest.raises(OperationalError):
        service.traffic.flush()
    service.traffic.record("affine", 1, 0.001)
    service.traffic.flush()
    stored: dict[int, int] = {}
    rows = TrafficWindow.objects.filter(process=service.traffic.process)
    for version, requests in rows.values_list("version", "requests"):  # by bucket
        stored[version] = stored.get(version, 0) + requests
    assert stored == {1: 3, 2: 1}
