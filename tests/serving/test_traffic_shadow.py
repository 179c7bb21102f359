"""The shadow version: a copy of the traffic, run after the answer on a thread of its own,
compared with the answers, and never changing or delaying what the caller gets."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mlapp.models import ShadowComparison, TrafficPolicy
from mlapp.serving import traffic as traffic_module
from mlapp.serving.inputs import named
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.serving.shadow import compare
from mlapp.versions.lifecycle import register_version
from tests.artifacts import expected

pytestmark = pytest.mark.django_db

X = [[1.0, 2.0, 3.0]]


@pytest.fixture
def shadowed(onnx_file):
    """affine v1 in production, v2 its shadow (loaded here: the shadow thread then queries
    nothing, which the tests' in-memory database would not let it)."""
    production = register_version("affine", onnx_file, promote=True)
    shadow = register_version("affine", onnx_file)
    TrafficPolicy.objects.create(model=production.model, shadow=shadow, shadow_share=100)
    service.traffic.forget("affine")
    return registry.get("affine", 2)


def _stats() -> ShadowComparison:
    service.traffic.drain()
    service.traffic.flush()
    return ShadowComparison.objects.get(model_name="affine", answered=1, shadow=2)


def test_the_shadow_sees_every_request_and_agrees_with_an_identical_version(shadowed):
    for _ in range(20):
        assert service.predict("affine", named(X)).version == 1
    stats = _stats()
    assert (stats.requests, stats.errors, stats.tensor_rows) == (20, 0, 20)
    assert stats.mean_cosine == pytest.approx(1.0)
    assert stats.max_abs_diff == 0.0


def test_a_shadow_that_raises_changes_no_answer(shadowed, monkeypatch):
    def broken(inputs):
        raise RuntimeError("the shadow is broken")

    monkeypatch.setattr(shadowed, "run", broken)
    for _ in range(10):
        answer = service.predict("affine", named(X))
        assert answer.version == 1
        np.testing.assert_allclose(answer.outputs["y"], expected(np.array(X, np.float32)))
    stats = _stats()
    assert (stats.requests, stats.errors) == (10, 10)


def test_the_caller_never_waits_for_the_shadow(shadowed, monkeypatch):
    """The shadow blocks until the caller has its answer: had the service waited for it,
    the call would never return (the event is set only after it does)."""
    answered = threading.Event()
    shadow_ran = threading.Event()
    real_run = shadowed.run

    def slow(inputs):
        assert answered.wait(timeout=30), "the caller waited for the shadow"
        shadow_ran.set()
        return real_run(inputs)

    monkeypatch.setattr(shadowed, "run", slow)
    answer = service.predict("affine", named(X))
    answered.set()
    assert answer.version == 1
    assert shadow_ran.wait(timeout=30)
    assert _stats().requests == 1


def test_a_shadow_that_falls_behind_drops_copies_not_requests(shadowed, monkeypatch):
    release = threading.Event()
    real_run = shadowed.run

    def stuck(inputs):
        release.wait(timeout=30)
        return real_run(inputs)

    monkeypatch.setattr(shadowed, "run", stuck)
    monkeypatch.setattr(service.traffic, "dropped", 0)
    limit = traffic_module.SHADOW_QUEUE_SIZE
    for _ in range(limit + 10):
        assert service.predict("affine", named(X)).version == 1
    release.set()
    assert service.traffic.dropped >= 9
    assert _stats().requests + service.traffic.dropped == limit + 10


def test_a_sampled_shadow_sees_its_share(shadowed):
    TrafficPolicy.objects.update(shadow_share=25)
    service.traffic.forget("affine")
    for _ in range(40):
        service.predict("affine", named(X))
    assert _stats().requests == 10


def test_a_pinned_request_is_not_copied(shadowed):
    service.predict("affine", named(X), version=1)
    service.traffic.drain()
    service.traffic.flush()
    assert not ShadowComparison.objects.exists()


def test_labels_are_compared_row_by_row():
    answered = {"label": np.array([b"a", b"b", b"c", b"d"], dtype=object)}
    shadow = {"label": np.array([b"a", b"x", b"c", b"d"], dtype=object)}
    result = compare(answered, shadow)
    assert (result.label_rows, result.label_agreed, result.tensor_rows) == (4, 3, 0)


def test_tensors_are_compared_by_cosine_and_largest_difference():
    answered = {"y": np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)}
    shadow = {"y": np.array([[0.0, 1.0], [0.0, 2.5]], np.float32)}
    result = compare(answered, shadow)
    assert result.tensor_rows == 2
    assert result.cosine_sum == pytest.approx(0.0 + 1.0)
    assert result.max_abs_diff == pytest.approx(1.0)


def test_an_output_the_shadow_lacks_or_shapes_differently_disagrees():
    answered = {"y": np.zeros((3, 2), np.float32), "label": np.array([1, 2, 3])}
    result = compare(answered, {"y": np.zeros((3, 4), np.float32)})
    assert (result.label_rows, result.label_agreed) == (6, 0)


def test_shadow_copies_are_counted_in_the_metrics(shadowed):
    from prometheus_client import REGISTRY

    labels = {"model": "affine", "answered": "1", "shadow": "2", "outcome": "compared"}

    def compared() -> float:
        return REGISTRY.get_sample_value("mlapp_shadow_copies_total", labels) or 0.0

    before = compared()
    for _ in range(7):
        service.predict("affine", named(X))
    service.traffic.drain()
    assert compared() - before == 7
