"""Hot swap in one process: no failed request while versions change, the change marker and
its poller, release of the old version. (Two real servers: test_hot_swap_servers.py.)"""

from __future__ import annotations

import gc
import threading
import weakref
from collections import Counter

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import mlapp
from mlapp.models import ChangeMarker, ModelVersion
from mlapp.serving.registry import registry
from mlapp.startup import load_models
from mlapp.versions.lifecycle import archive_version, promote_version, register_version, rollback
from tests.serving.changes import elsewhere

X = np.ones((2, 3), dtype=np.float32)
#: Long enough that the watcher thread never polls during a test: these tests poll by hand.
QUIET = {"THREADS": 1, "POLL_INTERVAL": 3600}


def _counter(name: str) -> int:
    return ChangeMarker.objects.filter(model_name=name).values_list("counter", flat=True).first()


class Traffic:
    """Threads that predict in a loop, counting answers by version and every failure."""

    def __init__(self, threads: int = 6) -> None:
        self.versions: Counter[int] = Counter()
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = mlapp.predict("affine", X)
                assert answer.outputs["y"].shape == (2, 2)
            except BaseException as exc:
                with self._lock:
                    self.failures.append(exc)
            else:
                with self._lock:
                    self.versions[answer.version] += 1

    def answers(self) -> int:
        with self._lock:
            return sum(self.versions.values()) + len(self.failures)

    def wait_for_more(self, count: int = 20) -> None:
        """Let the threads answer ``count`` more requests (no sleeping on a clock)."""
        target = self.answers() + count
        while self.answers() < target:
            self._stop.wait(0.001)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        self.wait_for_more()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.mark.django_db(transaction=True)
def test_requests_keep_flowing_while_promoting_and_rolling_back(onnx_file, settings):
    settings.MLAPP = QUIET
    v1 = register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    assert mlapp.predict("affine", X).version == 1
    with Traffic() as traffic:
        for _ in range(3):
            promote_version(v2)
            assert registry.get("affine").version == 2
            traffic.wait_for_more()
            rollback(v2.model)
            assert registry.get("affine").version == 1
            traffic.wait_for_more()
    assert traffic.failures == []
    assert set(traffic.versions) == {1, 2}
    assert ModelVersion.objects.get(stage="production").pk == v1.pk


@pytest.mark.django_db(transaction=True)
def test_poller_swaps_versions_promoted_elsewhere_under_traffic(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    load_models()
    # The first lookup starts this process's watcher, which catches up (reads the markers on
    # its own connection) while that lookup waits: done here, the traffic's lookups cannot
    # return while the catch-up still reads the table the promotion below writes (on the
    # tests' in-memory SQLite a write meeting a read fails at once: "table is locked").
    assert registry.get("affine").version == 1
    with Traffic() as traffic, elsewhere():
        for _ in range(3):
            promote_version(v2)
            assert registry.get("affine").version == 1  # not told yet
            assert registry.watcher.poll() == ["affine"]
            assert registry.get("affine").version == 2
            traffic.wait_for_more()
            rollback(v2.model)
            assert registry.watcher.poll() == ["affine"]
            assert registry.get("affine").version == 1
            traffic.wait_for_more()
    assert traffic.failures == []
    assert set(traffic.versions) == {1, 2}


@pytest.mark.django_db
def test_promotion_and_rollback_move_the_change_marker(onnx_file):
    v1 = register_version("affine", onnx_file, promote=True)
    assert _counter("affine") == 1
    v2 = register_version("affine", onnx_file)
    assert _counter("affine") == 1  # a new staging version changes nothing served
    promote_version(v2)
    assert _counter("affine") == 2
    rollback(v1.model)
    assert _counter("affine") == 3
    archive_version(v2)
    assert _counter("affine") == 3


@pytest.mark.django_db
def test_poll_without_a_change_is_one_query_and_reloads_nothing(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    load_models()
    loaded = registry.get("affine")
    with CaptureQueriesContext(connection) as queries:
        assert registry.watcher.poll() == []
    assert len(queries.captured_queries) == 1
    assert "mlapp_changemarker" in queries.captured_queries[0]["sql"]
    assert registry.get("affine") is loaded


@pytest.mark.django_db
def test_lookups_never_query_the_database(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    load_models()
    registry.get("affine")  # the first lookup of a process starts its watcher
    with CaptureQueriesContext(connection) as queries:
        for _ in range(100):
            mlapp.predict("affine", X)
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_watcher_starts_once_per_process_and_again_in_a_forked_child(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    load_models()
    assert not registry.watcher.running  # nothing starts before the first request
    registry.get("affine")
    first = registry.watcher._thread
    assert registry.watcher.running
    registry.get("affine")
    assert registry.watcher._thread is first
    registry.watcher.stop()  # in a real fork the parent's thread does not exist in the child
    registry._after_fork()
    registry.get("affine")
    assert registry.watcher.running
    assert registry.watcher._thread is not first


@pytest.mark.django_db(transaction=True)  # the watcher thread reads what this test committed
def test_first_lookup_after_fork_catches_up_with_a_change_made_meanwhile(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    load_models()  # in the preloading parent, before the fork
    with elsewhere():
        promote_version(v2)
    registry._after_fork()  # a worker that served nothing yet
    assert registry.get("affine").version == 2


@pytest.mark.django_db
def test_old_version_is_released_once_the_last_request_using_it_returns(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    load_models()
    in_flight = registry.get("affine")  # a request that is still running on v1
    old = weakref.ref(in_flight)
    with elsewhere():
        promote_version(v2)
    registry.watcher.poll()
    assert registry.get("affine").version == 2
    # The swap did not pull the runtime from under the running request ...
    assert in_flight.run({"x": X})["y"].shape == (2, 2)
    del in_flight
    gc.collect()
    # ... and once it returned, nothing holds v1 any more.
    assert old() is None


@pytest.mark.django_db
def test_failed_reload_keeps_the_old_version_answering(onnx_file, settings):
    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    load_models()
    with elsewhere():
        promote_version(v2)
    # Lost after its promotion checked it, before this process loaded it.
    v2.artifact.storage.delete(v2.artifact.name)
    registry.watcher.poll()
    assert mlapp.predict("affine", X).version == 1
    state = registry.status()["affine"]
    # v1 answers, so the model stays ready, the failure beside it (test_failed_swap.py).
    assert (state["ready"], state["version"]) == (True, 1)
    assert "missing from storage" in state["error"]
    # Not retried every second: the marker was seen.
    with CaptureQueriesContext(connection) as queries:
        assert registry.watcher.poll() == []
    assert len(queries.captured_queries) == 1
    # Rolling back to the version that kept answering makes the model ready again.
    with elsewhere():
        rollback(v2.model)
    registry.watcher.poll()
    assert registry.status()["affine"] == {"ready": True, "version": 1, "error": None}


@pytest.mark.django_db
def test_watcher_loads_a_model_promoted_for_the_first_time_in_a_serving_process(
    onnx_file, settings
):
    settings.MLAPP = QUIET
    load_models()  # a web process that started with nothing in production
    first = register_version("affine", onnx_file)
    with elsewhere():
        promote_version(first)
    assert registry.watcher.poll() == ["affine"]
    assert set(registry.loaded()) == {"affine"}
