"""Micro-batching through the inference service and both APIs: same answers, order kept,
errors isolated, backpressure as 503, no batching without a variable batch dimension, hot
swap under batched traffic, the config checked by ``manage.py check``."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import numpy as np
import pytest
from django.core.checks import Error

import mlapp
from mlapp.checks import check_serving_configs, check_settings
from mlapp.exceptions import InvalidInput, Overloaded
from mlapp.handlers import BaseHandler
from mlapp.models import MLModel
from mlapp.serving.batching import SAMPLE_EVERY
from mlapp.serving.inputs import named
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.versions.lifecycle import promote_version, register_version
from tests.artifacts import expected

#: The watcher never polls during these tests; batching on with no extra delay, and however
#: fast the model (the test model's calls take a few µs, below the default min_call_ms).
BATCHED = {
    "THREADS": 1,
    "POLL_INTERVAL": 3600,
    "BATCHING": {"enabled": True, "max_batch_size": 64, "max_queue_delay_ms": 0, "min_call_ms": 0},
}


class RefusesNegativeHandler(BaseHandler):
    """Refuses a request whose inputs hold a negative number (only at run time)."""

    def preprocess(self, inputs):
        if (inputs["x"] < 0).any():
            raise InvalidInput("Negative inputs are refused by this handler.")
        return inputs


@contextmanager
def gated(target, name="fn"):
    """Hold the first call of ``target.<name>`` until released, so that requests queue up
    behind it (``loaded.batcher``: the batcher's calls; ``loaded.runtime, "run"``: the
    model's, however it is called).

    Yields ``(entered, release, batches)``: an event set once the first call is running, a
    function letting it go, and the row counts of every call made.
    """
    entered, gate, batches = threading.Event(), threading.Event(), []
    run = getattr(target, name)

    def call(inputs):
        batches.append(len(next(iter(inputs.values()))))
        if len(batches) == 1:
            entered.set()
            assert gate.wait(10)
        return run(inputs)

    setattr(target, name, call)
    try:
        yield entered, gate.set, batches
    finally:
        gate.set()
        setattr(target, name, run)


def _wait_for(condition) -> None:
    event = threading.Event()
    for _ in range(10_000):
        if condition():
            return
        event.wait(0.001)
    raise AssertionError("condition not reached")


def _concurrently(calls):
    """Run each zero-argument call in its own thread; return results (or errors) in order."""
    results: list[object] = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, results


@pytest.fixture
def affine(onnx_file, settings):
    settings.MLAPP = BATCHED
    register_version("affine", onnx_file, promote=True)
    loaded = registry.get("affine")
    assert loaded.batcher is not None
    return loaded


@pytest.mark.django_db
def test_batched_answers_equal_unbatched_ones_and_keep_their_order(affine):
    rows = [np.full((i % 3 + 1, 3), i, np.float32) for i in range(10)]
    with gated(affine.batcher) as (entered, release, batches):
        first, _ = _concurrently([lambda: mlapp.predict("affine", [[9.0, 9.0, 9.0]])])
        assert entered.wait(10)
        threads, results = _concurrently([lambda x=x: mlapp.predict("affine", x) for x in rows])
        _wait_for(lambda: affine.batcher.pending() == len(rows))
        release()
        for t in [*first, *threads]:
            t.join(10)
    assert batches == [1, sum(len(x) for x in rows)]  # the ten requests made one call
    for x, result in zip(rows, results, strict=True):
        assert result.version == 1
        np.testing.assert_allclose(result.outputs["y"], expected(x), rtol=1e-6)


@pytest.mark.django_db
def test_a_bad_request_in_a_batch_fails_alone(onnx_file, settings):
    settings.MLAPP = BATCHED
    register_version(
        "affine", onnx_file, promote=True, handler=f"{__name__}.RefusesNegativeHandler"
    )
    loaded = registry.get("affine")
    good, bad = [[1.0, 2.0, 3.0]], [[-1.0, 2.0, 3.0]]
    with gated(loaded.batcher) as (entered, release, batches):
        first, _ = _concurrently([lambda: mlapp.predict("affine", good)])
        assert entered.wait(10)
        threads, results = _concurrently(
            [lambda x=x: mlapp.predict("affine", x) for x in (good, bad, good)]
        )
        _wait_for(lambda: loaded.batcher.pending() == 3)
        release()
        for t in [*first, *threads]:
            t.join(10)
    assert batches[:2] == [1, 3]  # batched, then each of the three alone
    assert isinstance(results[1], InvalidInput)
    for i in (0, 2):
        np.testing.assert_allclose(results[i].outputs["y"], expected(np.array(good, np.float32)))


@pytest.mark.django_db
def test_a_request_above_max_batch_size_is_answered_whole(onnx_file, settings):
    settings.MLAPP = {**BATCHED, "BATCHING": {"enabled": True, "max_batch_size": 4}}
    register_version("affine", onnx_file, promote=True)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.testing.assert_allclose(mlapp.predict("affine", x).outputs["y"], expected(x))


@pytest.fixture
def full_queue(onnx_file, settings):
    """A model whose one-slot queue is full: one call running, one request waiting."""
    settings.MLAPP = {
        **BATCHED,
        "BATCHING": {"enabled": True, "max_batch_size": 1, "max_queue_size": 1},
    }
    register_version("affine", onnx_file, promote=True)
    loaded = registry.get("affine")
    with gated(loaded.batcher) as (entered, release, _):
        running, _ = _concurrently([lambda: mlapp.predict("affine", [[1.0, 2.0, 3.0]])])
        assert entered.wait(10)
        waiting, _ = _concurrently([lambda: mlapp.predict("affine", [[1.0, 2.0, 3.0]])])
        _wait_for(lambda: loaded.batcher.pending() == 1)
        yield
        release()
        for t in [*running, *waiting]:
            t.join(10)


@pytest.mark.django_db
def test_full_queue_answers_503_with_retry_after_on_the_native_api(full_queue, client):
    response = client.post(
        "/api/mlapp/models/affine/predict",
        {"inputs": [[1.0, 2.0, 3.0]]},
        content_type="application/json",
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert "requests waiting" in response.json()["error"]


@pytest.mark.django_db
def test_full_queue_answers_503_with_retry_after_on_the_v2_api(full_queue, client):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    response = client.post(
        "/v2/models/affine/infer", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert "requests waiting" in response.json()["error"]


@pytest.mark.django_db
def test_full_queue_raises_overloaded_in_python(full_queue):
    with pytest.raises(Overloaded):
        service.predict("affine", named([[1.0, 2.0, 3.0]]))


@pytest.mark.django_db
def test_a_model_without_a_variable_batch_dimension_is_not_batched(torchscript_file, settings):
    settings.MLAPP = BATCHED
    fixed = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2]}],
    }
    register_version("affine", torchscript_file, signature=fixed, promote=True)
    loaded = registry.get("affine")
    assert loaded.batching is not None  # asked for...
    assert loaded.batcher is None  # ...but not possible
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(mlapp.predict("affine", x).outputs["y"], expected(x))


@pytest.mark.django_db
def test_a_model_can_turn_batching_off_in_its_serving_config(onnx_file, settings):
    settings.MLAPP = BATCHED
    register_version("affine", onnx_file, promote=True)
    MLModel.objects.filter(name="affine").update(serving={"batching": {"enabled": False}})
    assert registry.get("affine").batcher is None


@pytest.mark.django_db
def test_a_serving_config_change_swaps_the_batcher_and_keeps_the_runtime(affine):
    old_batcher = affine.batcher
    model = MLModel.objects.get(name="affine")
    model.serving = {"batching": {"max_batch_size": 8}}
    model.save()
    registry.reload("affine")
    swapped = registry.get("affine")
    assert swapped.batcher.max_batch_size == 8
    assert swapped.runtime is affine.runtime
    # The old batcher no longer batches: a request that still holds it runs unbatched.
    assert old_batcher.submit({"x": np.ones((1, 3), np.float32)})["y"].shape == (1, 2)
    assert old_batcher._closed


@pytest.mark.django_db(transaction=True)
def test_hot_swap_with_batching_on_answers_every_request(onnx_file, settings):
    settings.MLAPP = BATCHED
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    x = np.ones((1, 3), np.float32)
    mlapp.predict("affine", x)
    answers: list[object] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                answers.append(mlapp.predict("affine", x).version)
            except Exception as exc:
                answers.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(answers) > 50)
        old = registry.get("affine")
        promote_version(v2)
        assert registry.get("affine").version == 2
        count = len(answers)
        _wait_for(lambda: len(answers) > count + 50)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert [a for a in answers if not isinstance(a, int)] == []
    assert set(answers) == {1, 2}
    assert old.batcher._closed
    assert old.batcher.pending() == 0


def test_check_reports_a_bad_global_batching_value(settings):
    settings.MLAPP = {"BATCHING": {"max_queue_size": 0}}
    (issue,) = check_settings()
    assert issue.id == "mlapp.E002"
    assert "max_queue_size" in issue.msg


@pytest.mark.django_db
def test_check_reports_a_bad_batching_config_of_a_model(onnx_file):
    register_version("affine", onnx_file, promote=True)
    MLModel.objects.filter(name="affine").update(serving={"batching": {"max_batch_size": -2}})
    (issue,) = check_serving_configs(databases=["default"])
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E004"
    assert issue.msg.startswith("Model 'affine', serving config: batching: max_batch_size")


@pytest.mark.django_db
def test_a_model_with_a_bad_batching_config_still_answers_unbatched(onnx_file, settings):
    settings.MLAPP = BATCHED
    register_version("affine", onnx_file, promote=True)
    MLModel.objects.filter(name="affine").update(serving={"batching": {"max_batch": 4}})
    assert registry.get("affine").batcher is None
    assert mlapp.predict("affine", [[1, 2, 3]]).outputs["y"].shape == (1, 2)


@pytest.mark.django_db
def test_a_model_too_fast_to_batch_answers_concurrent_requests_beside_the_running_call(
    onnx_file, settings
):
    settings.MLAPP = {**BATCHED, "BATCHING": {"enabled": True}}  # the default min_call_ms
    register_version("affine", onnx_file, promote=True)
    loaded = registry.get("affine")
    batcher = loaded.batcher
    for _ in range(3 * SAMPLE_EVERY):  # calls of a few µs of CPU, sampled
        mlapp.predict("affine", [[1.0, 2.0, 3.0]])
    assert batcher.call_s is not None
    assert batcher.call_s < batcher.min_call_s
    with gated(loaded.runtime, "run") as (entered, release, batches):
        first, _ = _concurrently([lambda: mlapp.predict("affine", [[9.0, 9.0, 9.0]])])
        assert entered.wait(10)
        # The first call is held; these do not queue behind it, they run beside it, straight
        # from submit (the batcher's lock untouched).
        x = np.array([[1.0, 2.0, 3.0]], np.float32)
        threads, results = _concurrently([lambda: mlapp.predict("affine", x)] * 3)
        for t in threads:
            t.join(10)
        assert batcher.pending() == 0
        assert first[0].is_alive()
        release()
        first[0].join(10)
    assert batches == [1, 1, 1, 1]
    for result in results:
        np.testing.assert_allclose(result.outputs["y"], expected(x), rtol=1e-6)
