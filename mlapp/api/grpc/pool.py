"""The threads that run ``grpc.server``'s calls (the ``"grpc"`` engine, on grpcio releases the
call loop was not tested on): a leaner stand-in for ``ThreadPoolExecutor``.

grpc's synchronous server asks its pool for two things only: ``submit(fn, *args)``, and
``add_done_callback`` on what that returns (to count the calls in flight). A
``concurrent.futures`` future carries a condition variable, a state machine and a result
that grpc never reads; this pool hands back a small object with a lock and a list instead,
and its threads wait on a ``SimpleQueue`` (a C queue, one lock) rather than on the
executor's work queue and semaphore. Measured in docs/performance.md#grpc.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("mlapp.grpc")

_STOP = object()


class Submitted:
    """What :meth:`Pool.submit` returns: tells its callbacks when the call has run."""

    __slots__ = ("_callbacks", "_done", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._callbacks: list[Callable[[Submitted], Any]] = []

    def add_done_callback(self, callback: Callable[[Submitted], Any]) -> None:
        """Call ``callback(self)`` once the call has run (at once if it has)."""
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback(self)

    def done(self) -> bool:
        return self._done

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("mlapp: a gRPC call's completion callback failed")


class Pool:
    """``threads`` daemon threads running submitted calls in the order they came."""

    def __init__(self, threads: int, name: str = "mlapp-grpc") -> None:
        if threads < 1:
            raise ValueError("A pool needs at least one thread.")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Submitted:
        submitted = Submitted()
        self._queue.put((fn, args, submitted))
        return submitted

    def shutdown(self, wait: bool = True) -> None:
        """Let the threads finish what was submitted, then end them."""
        for _ in self._threads:
            self._queue.put(_STOP)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args, submitted = item
            try:
                fn(*args)
            except Exception:
                # grpc's own call runner catches what the handler raises; anything here is
                # grpc's failure, logged, and the thread goes on serving.
                logger.exception("mlapp: a gRPC call failed outside its handler")
            finally:
                submitted._finish()
