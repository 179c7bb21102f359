"""Where the gRPC server starts (now, or in each worker after the fork), and hot swap under
gRPC traffic with no failed call."""

from __future__ import annotations

import threading
from collections import Counter

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

import mlapp.api.grpc as grpc_front
from mlapp import launcher
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import promote_version, register_version, rollback

X = np.ones((2, 3), dtype=np.float32)
QUIET = {"THREADS": 1, "POLL_INTERVAL": 3600}


@pytest.fixture
def no_server(monkeypatch):
    """This process's server slot and the launcher's hooks, fresh; the server stopped."""
    monkeypatch.setattr(grpc_front, "_server", None)
    monkeypatch.setattr(launcher, "_worker_hooks", [])
    yield
    if grpc_front._server is not None:
        grpc_front._server.stop()


def test_no_port_no_server(settings, no_server):
    settings.MLAPP = {}
    grpc_front.serve_beside_http()
    assert grpc_front._server is None
    assert launcher._worker_hooks == []


def test_a_process_that_does_not_fork_serves_at_once(settings, no_server):
    settings.MLAPP = {"GRPC_PORT": 0, "GRPC_MAX_MESSAGE_SIZE": 1234}
    grpc_front.serve_beside_http()
    server = grpc_front._server
    assert server is not None
    assert server.bound_port > 0
    assert server.max_message_size == 1234
    assert grpc_front.start() is server  # once per process
    client = triton.InferenceServerClient(f"127.0.0.1:{server.bound_port}")
    assert client.is_server_live()
    client.close()


def test_grpc_threads_sets_the_loops_threads_and_stop_ends_the_server(settings, no_server):
    settings.MLAPP = {"GRPC_PORT": 0, "GRPC_THREADS": 2}
    server = grpc_front.start()
    assert server is not None
    assert server.threads == 2
    assert server.engine != "loop" or len(server._loop._threads) == 2
    port = server.bound_port
    grpc_front.stop(grace=1)
    assert grpc_front._server is None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        with pytest.raises(grpc.RpcError) as error:
            live(b"", timeout=2)
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    grpc_front.stop()  # once stopped, nothing to do


def test_under_the_launcher_each_worker_starts_it_after_the_fork(settings, no_server, monkeypatch):
    settings.MLAPP = {"GRPC_PORT": 0}
    monkeypatch.setattr(launcher, "_forking", True)
    grpc_front.serve_beside_http()
    assert grpc_front._server is None  # nothing of gRPC before the fork
    assert launcher._worker_hooks == [grpc_front.start]
    application = object()
    assert launcher._load_in_worker(application) is application  # what a worker runs
    assert grpc_front._server is not None


def test_the_message_limit_defaults_to_the_rest_one(settings):
    settings.MLAPP = {"V2_MAX_REQUEST_SIZE": 5000}
    assert grpc_front.message_limit() == 5000
    settings.MLAPP = {}
    assert grpc_front.message_limit() == settings.DATA_UPLOAD_MAX_MEMORY_SIZE


# -- hot swap ----------------------------------------------------------------------------------


class Traffic:
    """Threads calling ModelInfer in a loop, each on its own connection, counting answers by
    version and every failure."""

    def __init__(self, address: str, threads: int = 4) -> None:
        self.address = address
        self.versions: Counter[str] = Counter()
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        client = triton.InferenceServerClient(self.address)
        tensor = triton.InferInput("x", [2, 3], "FP32")
        tensor.set_data_from_numpy(X)
        while not self._stop.is_set():
            try:
                answer = client.infer("affine", [tensor])
                assert answer.as_numpy("y").shape == (2, 2)
            except BaseException as exc:
                with self._lock:
                    self.failures.append(exc)
            else:
                with self._lock:
                    self.versions[answer.get_response().model_version] += 1
        client.close()

    def answers(self) -> int:
        with self._lock:
            return sum(self.versions.values()) + len(self.failures)

    def wait_for_more(self, count: int = 20) -> None:
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
@pytest.mark.parametrize("engine", ["loop", "grpc"])
def test_promotions_and_rollbacks_under_grpc_traffic_fail_no_call(
    engine, onnx_file, settings, reliability
):
    from mlapp.api.grpc.server import start_server

    settings.MLAPP = QUIET
    register_version("affine", onnx_file, promote=True)
    v2 = register_version("affine", onnx_file)
    server = start_server("127.0.0.1", 0, max_message_size=None, engine=engine)
    try:
        with Traffic(f"127.0.0.1:{server.bound_port}") as traffic:
            for _ in range(3):
                promote_version(v2)
                assert registry.get("affine").version == 2
                traffic.wait_for_more()
                rollback(v2.model)
                assert registry.get("affine").version == 1
                traffic.wait_for_more()
    finally:
        server.stop()
    reliability.add(
        "hot swap",
        f"gRPC calls (4 connections, {engine}) during 3 promotions and 3 roll backs",
        tried=traffic.answers(),
        bad=len(traffic.failures),
        unit="failed",
    )
    assert traffic.failures == []
    assert set(traffic.versions) == {"1", "2"}
