"""MicroBatcher: grouping, splitting, error isolation, backpressure (no Django, no timing)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mlapp.exceptions import Overloaded
from mlapp.serving.batching import MicroBatcher


class GatedModel:
    """Doubles its input; the first call waits for a gate so a queue can build up behind it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __call__(self, inputs):
        self.batches.append(int(inputs["x"].shape[0]))
        if len(self.batches) == 1:
            self.entered.set()
            self.gate.wait(10)
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] * 2}


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def _run_concurrently(batcher, model, payloads):
    """Block the model on a first request, queue ``payloads`` behind it, then release."""
    results: dict[int, object] = {}

    def call(i, x):
        try:
            results[i] = batcher.submit({"x": x})
        except Exception as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(-1, np.zeros((1, 2), np.float32)))
    first.start()
    assert model.entered.wait(10)
    threads = [threading.Thread(target=call, args=(i, x)) for i, x in enumerate(payloads)]
    for t in threads:
        t.start()
    _wait_for(lambda: batcher.pending() == len(payloads))
    model.gate.set()
    for t in [first, *threads]:
        t.join(10)
    return results


def test_batched_results_equal_unbatched_and_keep_order():
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=64, max_queue_delay_ms=0)
    payloads = [np.full((i % 3 + 1, 2), i, np.float32) for i in range(8)]
    results = _run_concurrently(batcher, model, payloads)
    assert model.batches == [1, sum(p.shape[0] for p in payloads)]
    for i, x in enumerate(payloads):
        np.testing.assert_array_equal(results[i]["y"], x * 2)
    batcher.close()


def test_batch_never_exceeds_max_rows():
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=4, max_queue_delay_ms=0)
    payloads = [np.ones((1, 2), np.float32) for _ in range(10)]
    results = _run_concurrently(batcher, model, payloads)
    assert all(size <= 4 for size in model.batches)
    assert sum(model.batches[1:]) == 10
    assert all(not isinstance(r, Exception) for r in results.values())
    batcher.close()


def test_request_larger_than_max_batch_is_cut_into_parts_and_joined():
    model = GatedModel()
    model.gate.set()
    batcher = MicroBatcher(model, max_batch_size=4)
    x = np.arange(18, dtype=np.float32).reshape(9, 2)
    out = batcher.submit({"x": x})
    np.testing.assert_array_equal(out["y"], x * 2)
    assert model.batches == [4, 4, 1]
    batcher.close()


def test_bad_request_in_a_batch_fails_alone():
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=64)
    payloads = [np.ones((1, 2), np.float32), -np.ones((1, 2), np.float32), np.ones((2, 2))]
    payloads = [p.astype(np.float32) for p in payloads]
    results = _run_concurrently(batcher, model, payloads)
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[0]["y"], payloads[0] * 2)
    np.testing.assert_array_equal(results[2]["y"], payloads[2] * 2)
    batcher.close()


def test_requests_of_different_shapes_are_not_mixed():
    model = GatedModel()
    seen_shapes: list[tuple] = []

    def fn(inputs):
        seen_shapes.append(inputs["x"].shape)
        return model(inputs)

    batcher = MicroBatcher(fn, max_batch_size=64)
    payloads = [np.ones((1, 2), np.float32), np.ones((1, 5), np.float32), np.ones((1, 2))]
    payloads = [p.astype(np.float32) for p in payloads]
    results = _run_concurrently(batcher, model, payloads)
    assert sorted(seen_shapes[1:]) == [(1, 5), (2, 2)]
    for i, x in enumerate(payloads):
        np.testing.assert_array_equal(results[i]["y"], x * 2)
    batcher.close()


def test_full_queue_answers_overloaded():
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=1, max_queue_size=2)
    threads = [
        threading.Thread(target=batcher.submit, args=({"x": np.ones((1, 2), np.float32)},))
        for _ in range(3)
    ]
    threads[0].start()
    assert model.entered.wait(10)
    for t in threads[1:]:
        t.start()
    _wait_for(lambda: batcher.pending() == 2)
    with pytest.raises(Overloaded, match="2 requests waiting"):
        batcher.submit({"x": np.ones((1, 2), np.float32)})
    model.gate.set()
    for t in threads:
        t.join(10)
    batcher.close()


def test_idle_batcher_does_not_wait_out_the_delay():
    model = GatedModel()
    model.gate.set()
    # A one-minute delay: a lone request that waited for company would hang this test.
    batcher = MicroBatcher(model, max_batch_size=8, max_queue_delay_ms=60_000)
    done = threading.Event()
    threading.Thread(
        target=lambda: (batcher.submit({"x": np.ones((1, 2), np.float32)}), done.set()),
        daemon=True,
    ).start()
    assert done.wait(10)
    batcher.close()


def test_on_batch_reports_size_and_rows():
    model = GatedModel()
    stats = []
    batcher = MicroBatcher(model, max_batch_size=64, on_batch=stats.append)
    _run_concurrently(batcher, model, [np.ones((2, 2), np.float32)] * 3)
    assert [(s.size, s.rows) for s in stats] == [(1, 1), (3, 6)]
    batcher.close()


def test_submit_after_close_answers_unbatched():
    model = GatedModel()
    model.gate.set()
    batcher = MicroBatcher(model)
    batcher.submit({"x": np.ones((1, 2), np.float32)})
    batcher.close()
    out = batcher.submit({"x": np.full((1, 2), 3, np.float32)})
    np.testing.assert_array_equal(out["y"], [[6, 6]])


def test_batching_module_imports_no_django():
    import subprocess
    import sys

    code = (
        "import sys, mlapp.serving.batching; "
        "assert 'django' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_forked_child_starts_with_an_idle_batcher():
    from mlapp.serving import batching

    model = GatedModel()
    model.gate.set()
    batcher = MicroBatcher(model)
    # As if a thread of the parent was running a call when the process forked: in the child
    # that thread does not exist, and nobody would ever pass the lead on.
    batcher._leading = True
    batcher._mutex.acquire()
    batching._after_fork()
    out = batcher.submit({"x": np.full((1, 2), 2, np.float32)})
    np.testing.assert_array_equal(out["y"], [[4, 4]])


def test_batching_config_names_the_bad_key():
    from mlapp.serving.config import BatchingConfig

    assert BatchingConfig.from_dict({}) == BatchingConfig()
    for bad, word in [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_queue_size": 1.5}, "max_queue_size"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms"),
        ({"enabled": "yes"}, "enabled"),
        ({"max_batch": 4}, "max_batch"),
        ({"min_call_ms": -0.1}, "min_call_ms"),
        ({"min_call_ms": True}, "min_call_ms"),
    ]:
        with pytest.raises(ValueError, match=word):
            BatchingConfig.from_dict(bad)


def _busy(seconds: float) -> None:
    """Burn this thread's CPU for ``seconds``."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class HeldModel:
    """Doubles its input, burning ``cpu_s`` of CPU a call; a call made with a negative input
    waits for ``gate`` (so one call can be kept running)."""

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s
        self.gate, self.entered = threading.Event(), threading.Event()
        self.calls: list[int] = []

    def __call__(self, inputs):
        self.calls.append(int(inputs["x"].shape[0]))
        _busy(self.cpu_s)
        if (inputs["x"] < 0).any():
            self.entered.set()
            self.gate.wait(10)
        return {"y": inputs["x"] * 2}


def _hold_one_call(batcher, model):
    """Start a call that stays running until ``model.gate`` is set; return its thread."""
    thread = threading.Thread(target=batcher.submit, args=({"x": -np.ones((1, 2), np.float32)},))
    thread.start()
    assert model.entered.wait(10)
    return thread


def test_a_fast_model_is_sampled_and_its_requests_run_beside_a_running_call():
    from mlapp.serving.batching import SAMPLE_EVERY

    model = HeldModel(cpu_s=0.0)
    batcher = MicroBatcher(model, min_call_ms=5.0)
    assert batcher.call_s is None
    assert not batcher.too_fast_to_batch()
    for _ in range(SAMPLE_EVERY - 1):
        batcher.submit({"x": np.ones((1, 2), np.float32)})
    assert batcher.call_s is None  # one call in SAMPLE_EVERY is measured
    batcher.submit({"x": np.ones((1, 2), np.float32)})
    assert batcher.call_s is not None
    assert batcher.call_s < 0.005
    assert batcher.too_fast_to_batch()
    held = _hold_one_call(batcher, model)
    out = batcher.submit({"x": np.full((1, 2), 3, np.float32)})  # answered while held
    np.testing.assert_array_equal(out["y"], [[6, 6]])
    assert batcher.pending() == 0
    assert held.is_alive()
    model.gate.set()
    held.join(10)
    assert model.calls == [1] * (SAMPLE_EVERY + 2)
    batcher.close()


def _sampled(cpu_s: float, **options) -> tuple[HeldModel, MicroBatcher]:
    """A batcher of a model burning ``cpu_s`` a call, after the calls that make one sample."""
    from mlapp.serving.batching import SAMPLE_EVERY

    model = HeldModel(cpu_s=cpu_s)
    batcher = MicroBatcher(model, **options)
    for _ in range(SAMPLE_EVERY):
        batcher.submit({"x": np.ones((1, 2), np.float32)})
    return model, batcher


def test_a_fast_model_runs_a_request_above_max_batch_size_whole():
    """Too fast to batch means as with batching off: one call, not parts of max_batch_size."""
    model, batcher = _sampled(0.0, max_batch_size=2, min_call_ms=5.0)
    assert batcher.too_fast_to_batch()
    out = batcher.submit({"x": np.arange(10, dtype=np.float32).reshape(5, 2)})
    np.testing.assert_array_equal(out["y"], np.arange(10).reshape(5, 2) * 2)
    assert model.calls[-1] == 5
    batcher.close()


def test_a_model_whose_calls_take_long_enough_is_batched():
    model, batcher = _sampled(0.002, max_batch_size=8, min_call_ms=0.5)
    assert batcher.call_s >= 0.0015  # ~2 ms a call
    assert not batcher.too_fast_to_batch()
    held = _hold_one_call(batcher, model)
    results = {}

    def call(i):
        results[i] = batcher.submit({"x": np.full((1, 2), i, np.float32)})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    _wait_for(lambda: batcher.pending() == 3)  # queued behind the running call
    model.gate.set()
    for t in [held, *threads]:
        t.join(10)
    assert model.calls[-1] == 3  # the three made one call
    for i in range(3):
        np.testing.assert_array_equal(results[i]["y"], [[2 * i, 2 * i]])
    batcher.close()


def test_min_call_ms_zero_never_samples_and_always_queues():
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_size=64, min_call_ms=0)
    results = _run_concurrently(batcher, model, [np.ones((1, 2), np.float32)] * 2)
    assert model.batches == [1, 2]
    assert batcher.call_s is None
    assert len(results) == 3
    batcher.close()


def test_calls_without_a_queue_go_to_on_alone_and_batches_to_on_batch():
    model = GatedModel()
    alone, batches = [], []
    batcher = MicroBatcher(model, max_batch_size=64, on_batch=batches.append, on_alone=alone.append)
    _run_concurrently(batcher, model, [np.ones((2, 2), np.float32)] * 3)
    batcher.submit({"x": np.ones((1, 2), np.float32)})
    assert len(alone) == 2
    assert all(seconds >= 0 for seconds in alone)
    assert [(s.size, s.rows) for s in batches] == [(3, 6)]
    batcher.close()
