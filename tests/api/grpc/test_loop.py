"""The call loop on gRPC's core (mlapp.api.grpc.loop), with handlers of its own, no Django:
what it answers, how its threads share calls, how it stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from mlapp.api.grpc import server as grpc_server
from mlapp.api.grpc.loop import Abort, CallLoop

ECHO = "/test.Loop/Echo"
WAIT = "/test.Loop/Wait"


class Handlers:
    """Echo (reversed; "abort" -> INVALID_ARGUMENT, "boom" -> an exception) and Wait (blocks
    until released, counting the calls waiting at once)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0
        self.most_waiting = 0
        self.seen_metadata: list[dict] = []

    def echo(self, raw: bytes, metadata) -> bytes:
        self.seen_metadata.append(dict(metadata))
        if raw == b"abort":
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "You asked for it.")
        if raw == b"boom":
            raise RuntimeError("a secret the client must not read")
        return raw[::-1]

    def wait(self, raw: bytes, metadata) -> bytes:
        with self.lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            self.release.wait(10)
        finally:
            with self.lock:
                self.waiting -= 1
        return raw


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


def serve(handlers: Handlers, threads: int = 4) -> tuple[CallLoop, grpc.Channel]:
    loop = CallLoop({ECHO: handlers.echo, WAIT: handlers.wait}, threads=threads)
    port = loop.add_insecure_port("127.0.0.1:0")
    loop.start()
    return loop, grpc.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
def served(handlers) -> Iterator[tuple[CallLoop, grpc.Channel]]:
    loop, channel = serve(handlers)
    yield loop, channel
    handlers.release.set()
    channel.close()
    loop.stop(1)


def test_a_call_gets_its_handlers_answer_and_the_handler_the_calls_metadata(served, handlers):
    _, channel = served
    answer = channel.unary_unary(ECHO)(b"abc", metadata=[("x-who", "me")], timeout=5)
    assert answer == b"cba"
    assert handlers.seen_metadata[-1]["x-who"] == "me"


def test_an_abort_answers_its_status_and_message(served):
    _, channel = served
    with pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(ECHO)(b"abort", timeout=5)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "You asked for it."


def test_an_exception_answers_internal_without_its_text_and_the_loop_goes_on(served, caplog):
    _, channel = served
    echo = channel.unary_unary(ECHO)
    with pytest.raises(grpc.RpcError) as error:
        echo(b"boom", timeout=5)
    assert error.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in error.value.details()
    assert "a gRPC handler failed" in caplog.text
    assert echo(b"ok", timeout=5) == b"ko"


def test_a_method_not_registered_is_unimplemented(served):
    _, channel = served
    with pytest.raises(grpc.RpcError) as error:
        channel.unary_unary("/test.Loop/Nope")(b"x", timeout=5)
    assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED
    # ... and the loop still asks for calls of every method.
    assert channel.unary_unary(ECHO)(b"xy", timeout=5) == b"yx"


def test_a_call_without_a_request_message_gets_a_status_not_a_hang(served):
    _, channel = served
    no_message = channel.stream_unary(ECHO)
    with pytest.raises(grpc.RpcError) as error:
        no_message(iter(()), timeout=5)
    assert error.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert channel.unary_unary(ECHO)(b"ab", timeout=5) == b"ba"


def test_calls_that_wait_overlap_up_to_the_threads(handlers):
    loop, channel = serve(handlers, threads=3)
    wait = channel.unary_unary(WAIT)
    try:
        futures = [wait.future(b"%d" % i, timeout=10) for i in range(5)]
        deadline = threading.Event()
        while handlers.most_waiting < 3 and not deadline.wait(0.01):
            pass
        # Three threads: three calls wait at once, the other two are queued, not refused.
        assert handlers.most_waiting == 3
        handlers.release.set()
        assert sorted(f.result() for f in futures) == [b"%d" % i for i in range(5)]
    finally:
        handlers.release.set()
        channel.close()
        loop.stop(1)
    assert handlers.most_waiting == 3


def test_a_cancelled_call_does_not_stop_the_loop(served, handlers):
    _, channel = served
    future = channel.unary_unary(WAIT).future(b"w", timeout=10)
    while handlers.waiting < 1:
        threading.Event().wait(0.01)
    future.cancel()
    handlers.release.set()
    assert channel.unary_unary(ECHO)(b"after", timeout=5) == b"retfa"


def test_stop_lets_a_call_under_way_finish_within_the_grace(handlers):
    loop, channel = serve(handlers)
    future = channel.unary_unary(WAIT).future(b"last", timeout=10)
    while handlers.waiting < 1:
        threading.Event().wait(0.01)
    threading.Timer(0.2, handlers.release.set).start()
    loop.stop(5)
    assert future.result() == b"last"
    channel.close()
    # Stopped: its threads have ended, a second stop is nothing.
    assert not any(t.is_alive() for t in loop._threads)
    loop.stop(1)


def test_stop_cancels_a_call_still_running_after_the_grace(handlers):
    loop, channel = serve(handlers)
    future = channel.unary_unary(WAIT).future(b"late", timeout=10)
    while handlers.waiting < 1:
        threading.Event().wait(0.01)
    stopper = threading.Thread(target=loop.stop, args=(0.1,))
    stopper.start()
    with pytest.raises(grpc.RpcError) as error:
        future.result()
    # Cancelled by the server: UNAVAILABLE, a status a client may retry elsewhere.
    assert error.value.code() is grpc.StatusCode.UNAVAILABLE
    handlers.release.set()  # the handler returns; its answer is dropped, not sent.
    stopper.join(10)
    assert not stopper.is_alive()
    channel.close()


def test_a_handler_returning_after_stop_gave_up_on_it_is_dropped_safely(handlers):
    loop, channel = serve(handlers)
    future = channel.unary_unary(WAIT).future(b"later", timeout=10)
    while handlers.waiting < 1:
        threading.Event().wait(0.01)
    loop.stop(0.05)  # cancels, waits 0.05 s more for the handler, then gives up on it
    handlers.release.set()
    with pytest.raises(grpc.RpcError):
        future.result()
    # The handler's thread answered onto a queue shut down: gRPC's core would abort the
    # process; the loop drops the answer (this test would not end otherwise).
    while handlers.waiting:
        threading.Event().wait(0.01)
    channel.close()


def test_a_port_taken_without_reuse_is_an_error(handlers):
    first = CallLoop({ECHO: handlers.echo}, options=[("grpc.so_reuseport", 0)])
    port = first.add_insecure_port("127.0.0.1:0")
    second = CallLoop({ECHO: handlers.echo}, options=[("grpc.so_reuseport", 0)])
    with pytest.raises(RuntimeError, match="bind"):
        second.add_insecure_port(f"127.0.0.1:{port}")


def test_the_loop_serves_on_the_grpcio_releases_it_was_tested_on(monkeypatch):
    from mlapp.api import grpc as grpc_package

    monkeypatch.setattr(grpc_package, "grpcio_release", lambda: (1, 85))
    assert grpc_server.default_engine() == "loop"
    monkeypatch.setattr(grpc_package, "grpcio_release", lambda: (1, 99))
    assert grpc_server.default_engine() == "grpc"
    with pytest.raises(ValueError, match="engine"):
        grpc_server.GrpcServer("127.0.0.1", 0, max_message_size=None, engine="fast")


def test_a_compressed_request_reaches_the_handler_decompressed(served):
    _, channel = served
    echo = channel.unary_unary(ECHO)
    for compression in (grpc.Compression.Gzip, grpc.Compression.Deflate):
        assert echo(b"abc" * 1000, timeout=5, compression=compression) == b"cba" * 1000


def test_a_batch_the_core_refuses_ends_the_call_and_is_logged(handlers, caplog):
    """start_server_batch answers a grpc_call_error instead of raising: a refused batch gets
    no completion, so the loop must count its call ended (or stop() would wait it out)."""
    from mlapp.api.grpc.loop import _Call

    class RefusingCall:
        def start_server_batch(self, operations, tag):
            return 8  # GRPC_CALL_ERROR_TOO_MANY_OPERATIONS

    loop = CallLoop({ECHO: handlers.echo}, threads=1)
    loop._active = 1  # the call below was taken
    loop._start(_Call(RefusingCall(), handlers.echo, ()), ())
    assert loop._active == 0
    assert "refused a batch of a call (call error 8)" in caplog.text


def test_an_abort_with_a_code_the_core_lacks_answers_internal(handlers):
    def odd(raw, metadata):
        raise Abort("not a status code", "odd")

    loop = CallLoop({ECHO: odd}, threads=1)
    port = loop.add_insecure_port("127.0.0.1:0")
    loop.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            pytest.raises(grpc.RpcError) as error,
        ):
            channel.unary_unary(ECHO)(b"x", timeout=5)
        assert error.value.code() is grpc.StatusCode.INTERNAL
        assert error.value.details() == "odd"
    finally:
        loop.stop(1)
