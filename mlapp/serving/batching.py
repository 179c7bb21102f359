"""Dynamic micro-batching: concurrent requests to one model grouped into one call.

One :class:`MicroBatcher` per loaded version. Callers (threads of a server worker) call
:meth:`MicroBatcher.submit` and block until their own rows are back. There is no batching
thread: a caller that finds the batcher idle runs its request at once, in its own thread. A
caller that arrives while a call is running queues; when the call ends, the oldest queued
request *leads* the next one: it takes its own rows and the compatible requests queued behind
it (up to ``max_batch_size`` rows), makes one call, hands every other request its rows, and
passes the lead on. So batches form by themselves while the model is busy (greedy batching,
Triton's default), and a lone request pays no hand-off to another thread (a worker thread
cost 45 µs per request on one core, more than the whole iris model). ``max_queue_delay_ms``
> 0 makes a leader wait that long for more requests, when the previous call held several.

Batching only where it pays: a request queues behind a running call only when the model's
calls take at least ``min_call_ms`` (every ``SAMPLE_EVERY``-th unqueued call is a sample; the
estimate is the shortest of the latest ``SAMPLES``, as other threads can only stretch a call).
A model faster than that (iris, digits: ~40 µs a call with their handlers) runs concurrent
requests side by side, as with batching off, without touching the batcher's lock: on one core,
handing a request to the leader's thread and back cost ~70 µs of CPU per request as measured
(wake-ups and the GIL), more than the call it saves. Free of Django, like the runtimes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from mlapp.exceptions import Overloaded

logger = logging.getLogger("mlapp.serving.batching")

Arrays = dict[str, np.ndarray]
BatchFn = Callable[[Arrays], Arrays]


@dataclass(slots=True)
class BatchStats:
    """What one model call of the batcher did, for metrics."""

    #: Requests in the call.
    size: int
    #: Rows in the call (requests may carry several rows each).
    rows: int
    #: Seconds each request waited, from submit to the start of the call.
    queue_waits: tuple[float, ...]
    #: Seconds the call itself took.
    compute_s: float


#: Marks the request of an idle batcher, which runs at once without a job.
_ALONE: Any = object()
#: One unqueued call in this many is a sample of how long the model's calls take.
SAMPLE_EVERY = 8
#: The estimate is the shortest of this many latest samples: other threads, the scheduler or
#: the garbage collector can only make a call look longer, never shorter.
SAMPLES = 16


def _rows(inputs: Arrays) -> int:
    """Rows of a request: the first dimension of its (first) input."""
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


class _Job:
    __slots__ = ("done", "enqueued", "error", "inputs", "key", "result", "rows", "signal")

    def __init__(self, inputs: Arrays, rows: int, key: tuple) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.enqueued = time.perf_counter()
        self.result: Arrays | None = None
        self.error: BaseException | None = None
        self.done = False
        #: Held while the job waits; released to wake its thread (done, or its turn to lead).
        self.signal: Any = None


class MicroBatcher:
    """Groups concurrent ``submit`` calls into calls of ``fn`` of at most ``max_batch_size`` rows.

    Args:
        fn: runs one batch of named arrays (first axis = rows) and returns named arrays with
            the same number of rows.
        max_batch_size: most rows in one call.
        max_queue_delay_ms: longest extra wait for more requests when batches are forming.
        max_queue_size: requests waiting beyond this are refused with ``Overloaded`` (503).
        min_call_ms: requests queue behind a running call only when the model's calls take
            at least this long; 0 always queues.
        on_batch: optional callback receiving :class:`BatchStats` after every call.
        on_alone: optional callback receiving the seconds of a call made for one request
            without a queue (an idle batcher, or beside a running call); when given, those
            calls are not reported to ``on_batch`` (their size is 1 and their wait 0, which
            the receiver can count in bulk).
    """

    def __init__(
        self,
        fn: BatchFn,
        *,
        max_batch_size: int = 32,
        max_queue_delay_ms: float = 0.0,
        max_queue_size: int = 256,
        min_call_ms: float = 0.0,
        name: str = "model",
        on_batch: Callable[[BatchStats], None] | None = None,
        on_alone: Callable[[float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_delay = max(float(max_queue_delay_ms), 0.0) / 1000.0
        self.max_queue_size = max_queue_size
        self.min_call_s = max(float(min_call_ms), 0.0) / 1000.0
        self.name = name
        self.on_batch = on_batch
        self.on_alone = on_alone
        #: Estimated seconds of one unqueued call (None until the first sample).
        self.call_s: float | None = None
        self._unqueued_calls = 0
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._closed = False
        self._reset()
        _batchers.add(self)

    def _reset(self) -> None:
        # Also run in a forked child (see _after_fork): a lock held by a thread of the parent
        # at fork time would stay held forever there, and its queue holds the parent's jobs.
        self._mutex = threading.Lock()
        #: Notified when a request arrives while a leader waits for more (the delay).
        self._arrived = threading.Condition(self._mutex)
        #: Notified when the batcher goes idle while :meth:`close` waits for it.
        self._idle = threading.Condition(self._mutex)
        self._queue: list[_Job] = []
        self._leading = False
        self._gathering = False
        self._last_size = 1

    # -- callers ------------------------------------------------------------------------

    def submit(self, inputs: Arrays) -> Arrays:
        """Run ``inputs`` as part of a batch; block until its own outputs are back.

        A model too fast to batch runs ``inputs`` here, whole, beside any running call, as
        with batching off, without the batcher's lock (taken by every request of every
        thread, it is a point of contention): the first check, as it is the common path.
        """
        if self.too_fast_to_batch():
            return self._run_unqueued(inputs)
        rows = _rows(inputs)
        if rows > self.max_batch_size:
            return self._submit_parts(inputs, rows)
        job: _Job | None
        with self._mutex:
            if self._closed:
                job = None
            elif not self._leading:
                # Idle (nothing queued: the queue only fills while someone leads): this
                # request runs at once, in this thread, with no job to build.
                self._leading = True
                job = _ALONE
            else:
                job = self._enqueue(inputs, rows)
        if job is None:
            # Replaced by a newer version while this request was on its way: answer it
            # unbatched rather than fail it.
            return self.fn(inputs)
        if job is _ALONE:
            return self._run_alone(inputs, rows)
        job.signal.acquire()  # released when done, or when it is this job's turn to lead
        if not job.done:
            self._lead()
        if job.error is not None:
            raise job.error
        return cast(Arrays, job.result)  # a job done without an error holds its result

    def _enqueue(self, inputs: Arrays, rows: int) -> _Job:
        """Queue a request behind the running call (locked); its thread then waits."""
        if len(self._queue) >= self.max_queue_size:
            raise Overloaded(
                f"Model {self.name!r} has {self.max_queue_size} requests waiting; retry shortly."
            )
        # Requests concatenate only when every non-batch dimension and dtype agree.
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items())
        job = _Job(inputs, rows, key)
        job.signal = threading.Lock()
        job.signal.acquire()
        self._queue.append(job)
        if self._gathering:
            self._arrived.notify()
        return job

    def too_fast_to_batch(self) -> bool:
        """True when the model's calls are estimated shorter than ``min_call_ms``."""
        estimate = self.call_s
        return estimate is not None and estimate < self.min_call_s

    def _run_alone(self, inputs: Arrays, rows: int) -> Arrays:
        """The idle path: one call for this request, then the lead goes to whoever queued."""
        try:
            return self._run_unqueued(inputs, rows)
        finally:
            self._pass_lead(1)

    def _run_unqueued(self, inputs: Arrays, rows: int | None = None) -> Arrays:
        """One call for one request, reported as a batch of one that did not wait; every
        ``SAMPLE_EVERY``-th such call is a sample of how long the model's calls take."""
        started = time.perf_counter()
        outputs = self.fn(inputs)
        seconds = time.perf_counter() - started
        self._unqueued_calls += 1  # a lost update under a race only moves the next sample
        if self.min_call_s and not self._unqueued_calls % SAMPLE_EVERY:
            self._samples.append(seconds)
            # RuntimeError: appended to meanwhile (free-threaded Python): next sample then.
            with contextlib.suppress(RuntimeError):
                self.call_s = min(self._samples)
        if self.on_alone is not None:
            self._report(seconds, self.on_alone)
        elif self.on_batch is not None:
            rows = _rows(inputs) if rows is None else rows
            self._report(BatchStats(1, rows, (0.0,), seconds), self.on_batch)
        return outputs

    def _submit_parts(self, inputs: Arrays, rows: int) -> Arrays:
        """A request above the limit: its parts go through the batcher one after the other."""
        step = self.max_batch_size
        parts = [
            self.submit({name: value[start : start + step] for name, value in inputs.items()})
            for start in range(0, rows, step)
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def pending(self) -> int:
        """Requests waiting for their turn (not counting the call running now)."""
        with self._mutex:
            return len(self._queue)

    def close(self, timeout: float = 10.0) -> None:
        """Stop batching: later requests run unbatched; wait for what is queued to finish."""
        deadline = time.monotonic() + timeout
        with self._mutex:
            self._closed = True
            while self._leading:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._idle.wait(remaining):
                    logger.warning(
                        "mlapp: batcher of %s still busy after %.0fs", self.name, timeout
                    )
                    return

    # -- the leader ---------------------------------------------------------------------

    def _lead(self) -> None:
        """Run one batch headed by this thread's own job, then pass the lead on."""
        batch: list[_Job] = []
        try:
            with self._mutex:
                rows = self._take(batch, 0)
                if self.max_delay and self._last_size > 1 and rows < self.max_batch_size:
                    rows = self._gather(batch, rows)
            self._run(batch)
        finally:
            for job in batch:
                if not job.done:  # only when something above raised (say, an interrupt)
                    job.error = job.error or RuntimeError("The batch was interrupted.")
                    self._finish(job)
            self._pass_lead(len(batch))

    def _pass_lead(self, size: int) -> None:
        """Wake the oldest waiting request to lead the next call, or go idle."""
        with self._mutex:
            self._last_size = size
            if self._queue:
                self._queue[0].signal.release()  # its turn to lead; self._leading stays True
            else:
                self._leading = False
                if self._closed:
                    self._idle.notify_all()

    def _take(self, batch: list[_Job], rows: int) -> int:
        """Move the queue's head and the compatible jobs behind it into ``batch`` (locked)."""
        queue = self._queue
        if not batch:
            head = queue.pop(0)
            batch.append(head)
            rows = head.rows
        key, limit = batch[0].key, self.max_batch_size
        index = 0
        while index < len(queue) and rows < limit:
            job = queue[index]
            if job.key == key and rows + job.rows <= limit:
                batch.append(queue.pop(index))
                rows += job.rows
            else:
                index += 1  # other shapes stay queued, in order, for a later batch
        return rows

    def _gather(self, batch: list[_Job], rows: int) -> int:
        """Wait up to the delay for more compatible jobs (locked; the wait releases the lock)."""
        deadline = time.perf_counter() + self.max_delay
        self._gathering = True
        try:
            while rows < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
                rows = self._take(batch, rows)
        finally:
            self._gathering = False
        return rows

    def _run(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                outputs = [self.fn(batch[0].inputs)]
            else:
                merged = {
                    name: np.concatenate([job.inputs[name] for job in batch])
                    for name in batch[0].inputs
                }
                outputs = _split(self.fn(merged), [job.rows for job in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                self._finish(batch[0])
            else:
                # One request's content may break the whole call: run each alone so the
                # error reaches only the request that caused it.
                for job in batch:
                    self._run([job])
            return
        compute = time.perf_counter() - started
        for job, out in zip(batch, outputs, strict=True):
            job.result = out
            self._finish(job)
        if self.on_batch is not None:
            stats = BatchStats(
                len(batch),
                sum(job.rows for job in batch),
                tuple(started - job.enqueued for job in batch),
                compute,
            )
            self._report(stats, self.on_batch)

    def _report(self, value: Any, callback: Callable[[Any], None]) -> None:
        try:
            callback(value)
        except Exception:
            logger.exception("mlapp: statistics callback of %s failed", self.name)

    @staticmethod
    def _finish(job: _Job) -> None:
        job.done = True
        if job.signal is not None:
            job.signal.release()


#: Every batcher of this process, reset in a forked child before any of its threads start.
_batchers: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()


def _after_fork() -> None:
    for batcher in list(_batchers):
        batcher._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _split(outputs: Arrays, rows: list[int]) -> list[Arrays]:
    total = sum(rows)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(
                f"Output {name!r} has shape {list(value.shape)}: a batch of {total} rows needs "
                "one output row per input row."
            )
    bounds = np.cumsum(rows)[:-1]
    parts = {name: np.split(value, bounds) for name, value in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(rows))]
