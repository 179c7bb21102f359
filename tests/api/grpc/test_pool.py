"""The gRPC server's call threads (mlapp.api.grpc.pool) and its transport defaults."""

from __future__ import annotations

import logging
import threading

import pytest

from mlapp.api import grpc as grpc_package
from mlapp.api.grpc.pool import Pool


def test_a_submitted_call_runs_with_its_arguments_and_then_tells_its_callbacks():
    pool = Pool(2)
    ran = threading.Event()
    seen: list[tuple] = []
    release = threading.Event()

    def call(a, b):
        release.wait(5)
        seen.append((a, b))
        ran.set()

    submitted = pool.submit(call, 1, 2)
    told = threading.Event()
    submitted.add_done_callback(lambda s: told.set())
    assert not submitted.done()
    assert not told.is_set()
    release.set()
    assert told.wait(5)
    assert ran.is_set()
    assert seen == [(1, 2)]
    assert submitted.done()
    # A callback added after the call ran is called at once, with the submitted call.
    late: list = []
    submitted.add_done_callback(late.append)
    assert late == [submitted]
    pool.shutdown()


def test_a_failing_call_is_logged_and_its_thread_serves_the_next(caplog):
    pool = Pool(1)

    def boom():
        raise RuntimeError("grpc's runner failed")

    with caplog.at_level(logging.ERROR, logger="mlapp.grpc"):
        failed = pool.submit(boom)
        done = threading.Event()
        failed.add_done_callback(lambda s: done.set())
        assert done.wait(5)  # a failed call still counts as finished for grpc
        after = threading.Event()
        pool.submit(after.set)
        assert after.wait(5)
    assert "failed outside its handler" in caplog.text
    pool.shutdown()


def test_calls_run_concurrently_on_the_pools_threads():
    pool = Pool(3)
    barrier = threading.Barrier(3, timeout=5)
    names: set[str] = set()
    lock = threading.Lock()

    def meet():
        with lock:
            names.add(threading.current_thread().name)
        barrier.wait()  # breaks (and the test fails) unless three run at once

    finished = []
    for _ in range(3):
        submitted = pool.submit(meet)
        event = threading.Event()
        submitted.add_done_callback(lambda s, e=event: e.set())
        finished.append(event)
    assert all(event.wait(5) for event in finished)
    assert not barrier.broken
    assert len(names) == 3
    pool.shutdown()


def test_shutdown_ends_the_threads_after_what_was_submitted():
    pool = Pool(2)
    results: list[int] = []
    for i in range(5):
        pool.submit(results.append, i)
    pool.shutdown(wait=True)
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert not any(thread.is_alive() for thread in pool._threads)


def test_a_pool_needs_a_thread():
    with pytest.raises(ValueError, match="at least one thread"):
        Pool(0)


def test_the_transport_experiments_are_set_unless_the_host_set_its_own(monkeypatch):
    monkeypatch.setattr(grpc_package.metadata, "version", lambda name: "1.85.3")
    environ: dict[str, str] = {}
    assert grpc_package.transport_defaults(environ) == grpc_package.TRANSPORT_EXPERIMENTS
    assert environ == {"GRPC_EXPERIMENTS": grpc_package.TRANSPORT_EXPERIMENTS}
    own = {"GRPC_EXPERIMENTS": "-work_serializer_dispatch"}
    assert grpc_package.transport_defaults(own) == "-work_serializer_dispatch"
    assert own == {"GRPC_EXPERIMENTS": "-work_serializer_dispatch"}


@pytest.mark.parametrize("release", ["1.60.1", "1.86.0", "2.0.0"])
def test_grpcio_releases_not_measured_keep_grpcs_defaults(monkeypatch, release):
    monkeypatch.setattr(grpc_package.metadata, "version", lambda name: release)
    environ: dict[str, str] = {}
    assert grpc_package.transport_defaults(environ) is None
    assert environ == {}
