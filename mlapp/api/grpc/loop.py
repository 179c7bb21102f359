"""Unary calls served straight off gRPC's core: no thread hand-off between a call's arrival and
its answer.

grpc's synchronous server (``grpc.server``) polls its completion queue in one thread and runs
each call in another: the call is handed to the pool, the pool's thread asks for the request
message and waits while the polling thread receives it, then answers, and the polling thread
finishes the call; three hand-offs between threads a call, and grpc's bookkeeping of each
call's state under locks. Measured here (docs/performance.md#grpc), that transport cost more
CPU than mlapp's whole servicer with the iris model.

This loop uses the same core through the same binding (``grpc._cython.cygrpc``, what
``grpc.server`` is written on) in the way gRPC's C++ synchronous server does: ``threads``
threads all poll one completion queue, and whichever thread takes an event carries the call
forward itself: a new call -> ask for its message; the message -> run the handler and send
the answer, initial metadata, message and status in one batch -> release the call. At one
call at a time, one thread does all of it; several threads let calls that wait (a database
query, a batched model) overlap as they do in the pool.

Only unary-unary methods, no interceptors, no server credentials: what the Open Inference
Protocol service needs. ``cygrpc`` is not grpc's public API, so this runs on the grpcio
releases it was tested on (:data:`mlapp.api.grpc.MEASURED_GRPCIO`); elsewhere
:mod:`mlapp.api.grpc.server` serves through ``grpc.server`` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc._common import STATUS_CODE_TO_CYGRPC_STATUS_CODE
from grpc._cython import cygrpc

logger = logging.getLogger("mlapp.grpc")

#: ``(key, value)`` pairs of a call's metadata, as gRPC's core hands them over.
Metadata = Sequence[tuple[str, "str | bytes"]]
#: A method: the request message's bytes and the call's metadata -> the answer's bytes.
#: Raises :class:`Abort` to answer another status.
Handler = Callable[[bytes, Metadata], bytes]

_NO_FLAGS = 0
_OPERATION_COMPLETE = cygrpc.CompletionType.operation_complete
_QUEUE_SHUTDOWN = cygrpc.CompletionType.queue_shutdown


class Abort(Exception):
    """Answer the call with ``code`` and ``message`` instead of a message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_OK = STATUS_CODE_TO_CYGRPC_STATUS_CODE[grpc.StatusCode.OK]
_INTERNAL = STATUS_CODE_TO_CYGRPC_STATUS_CODE[grpc.StatusCode.INTERNAL]
_UNIMPLEMENTED = STATUS_CODE_TO_CYGRPC_STATUS_CODE[grpc.StatusCode.UNIMPLEMENTED]


class _Method:
    """Tag of an outstanding request for a call of one method (or, ``handler`` None, of any
    method not registered)."""

    __slots__ = ("handler", "name")

    def __init__(self, name: str | None, handler: Handler | None) -> None:
        self.name = name
        self.handler = handler


class _Call:
    """Tag of one call's batches: its message asked for (``answered`` False), then its answer
    sent."""

    __slots__ = ("answered", "call", "handler", "metadata")

    def __init__(self, call: Any, handler: Handler | None, metadata: Metadata) -> None:
        self.call = call
        self.handler = handler
        self.metadata = metadata
        self.answered = False


class _Shutdown:
    """Tag of the server's shutdown: set once every call has ended."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class CallLoop:
    """A gRPC server of unary methods (``{"/package.Service/Method": handler}``), its calls
    served by ``threads`` threads polling one completion queue."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        options: Sequence[tuple[str, Any]] = (),
        threads: int = 8,
    ) -> None:
        if threads < 1:
            raise ValueError("A call loop needs at least one thread.")
        self.threads = threads
        self._queue = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple(options), False)
        self._server.register_completion_queue(self._queue)
        self._methods = [_Method(name, handler) for name, handler in handlers.items()]
        for method in self._methods:
            self._server.register_method(method.name)
        self._unregistered = _Method(None, None)
        # Guards the count and stages below; _ended is notified when the last call ends.
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._serving = False  # asking for new calls
        self._closed = False  # the queue is shut down: no batch may start on it
        self._active = 0  # calls taken and not yet ended
        self._threads: list[threading.Thread] = []
        self._shutdown: _Shutdown | None = None

    def add_insecure_port(self, address: str) -> int:
        """Listen on ``address`` (``host:port``); the port bound. Raises when it cannot."""
        port = self._server.add_http2_port(address.encode())
        if port == 0:
            raise RuntimeError(f"Failed to bind to address {address}")
        return int(port)

    def start(self) -> None:
        self._server.start()
        with self._lock:
            self._serving = True
            for method in self._methods:
                self._request(method)
            self._request(self._unregistered)
        for i in range(self.threads):
            thread = threading.Thread(target=self._poll, name=f"mlapp-grpc_{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace: float | None = None) -> None:
        """Take no new call; let calls under way finish for ``grace`` seconds (None: as long
        as they take), cancel what is left, end the threads.

        A handler still running after that (cancelled, and ``grace`` seconds more) is left to
        return in its thread; its answer is dropped.
        """
        with self._lock:
            if not self._serving:
                return
            self._serving = False
            self._shutdown = shutdown = _Shutdown()
            self._server.shutdown(self._queue, shutdown)
        if not shutdown.done.wait(grace):
            self._server.cancel_all_calls()
            shutdown.done.wait()
        with self._lock:
            # A cancelled call ends as soon as its handler returns.
            self._ended.wait_for(lambda: self._active == 0, grace)
            self._closed = True
            self._queue.shutdown()
        for thread in self._threads:
            thread.join(grace)
        self._server.destroy()

    # -- the loop -------------------------------------------------------------------------

    def _request(self, method: _Method) -> None:
        if method.name is None:
            self._server.request_call(self._queue, self._queue, method)
        else:
            self._server.request_registered_call(self._queue, self._queue, method.name, method)

    def _poll(self) -> None:
        poll = self._queue.poll
        while True:
            event = poll()
            if event.completion_type is not _OPERATION_COMPLETE:
                if event.completion_type is _QUEUE_SHUTDOWN:
                    return
                continue
            try:
                self._advance(event)
            except Exception:
                # Not a handler's error (those are answered INTERNAL): the loop's own. The call
                # of this event, if any, is dropped; the core cancels it when released.
                logger.exception("mlapp: the gRPC call loop failed on an event")
            # Drop the event (and the call it holds) before the next poll.
            event = None

    def _advance(self, event: Any) -> None:
        tag = event.tag
        if type(tag) is _Call:
            if tag.answered:
                self._end()  # the answer is sent (or the call was cancelled): it has ended.
            else:
                self._answer(tag, event.batch_operations[0].message())
        elif type(tag) is _Method:
            if not event.success:
                return  # the server is shutting down.
            with self._lock:
                self._active += 1
                if self._serving:
                    self._request(tag)
            call = _Call(event.call, tag.handler, event.invocation_metadata)
            if tag.handler is None:
                self._finish(call, None, _UNIMPLEMENTED, b"Method not found!")
            else:
                self._start(call, (cygrpc.ReceiveMessageOperation(_NO_FLAGS),))
        elif type(tag) is _Shutdown:
            tag.done.set()

    def _start(self, call: _Call, operations: Sequence[Any]) -> None:
        # gRPC's core aborts the process when a batch starts on a queue shut down.
        with self._lock:
            error = None if self._closed else call.call.start_server_batch(operations, call)
            if error == 0:  # GRPC_CALL_OK: its completion will come through the queue
                return
        if error is not None:
            # Refused by the core (a grpc_call_error): no completion will come. The call is
            # dropped; the core cancels it when released, and the client reads a status.
            logger.error("mlapp: gRPC's core refused a batch of a call (call error %s)", error)
        self._end()

    def _end(self) -> None:
        with self._lock:
            self._active -= 1
            if not self._active:
                self._ended.notify_all()

    def _answer(self, call: _Call, request: bytes | None) -> None:
        if request is None:
            # The client ended the call (or sent no message): answer a status nobody may read.
            self._finish(call, None, _UNIMPLEMENTED, b"A unary method takes one request message.")
            return
        assert call.handler is not None
        try:
            response = call.handler(request, call.metadata)
        except Abort as abort:
            code = STATUS_CODE_TO_CYGRPC_STATUS_CODE.get(abort.code, _INTERNAL)
            self._finish(call, None, code, str(abort.message).encode())
        except Exception:
            logger.exception("mlapp: a gRPC handler failed")
            self._finish(call, None, _INTERNAL, b"Internal error.")
        else:
            self._finish(call, response, _OK, b"")

    def _finish(self, call: _Call, response: bytes | None, code: Any, details: bytes) -> None:
        call.answered = True
        operations: list[Any] = [cygrpc.SendInitialMetadataOperation(None, _NO_FLAGS)]
        if response is not None:
            operations.append(cygrpc.SendMessageOperation(response, _NO_FLAGS))
        operations.append(cygrpc.SendStatusFromServerOperation(None, code, details, _NO_FLAGS))
        operations.append(cygrpc.ReceiveCloseOnServerOperation(_NO_FLAGS))
        self._start(call, operations)
