"""The prediction log's writer: sampled requests kept per process, bulk-inserted off the path.

The inference service hands every answered request of a model whose ``log_rate`` is above 0
to :data:`recorder` (:meth:`PredictionRecorder.offer`): a coin toss against the rate, then an
append of the request's arrays to this process's buffer. Nothing is encoded, and the database
is not touched, on the request's thread. A background thread, started lazily by the first
offer of each process (keyed by PID: a worker forked from a preloading parent starts its own,
as the change watcher does), wakes every ``FLUSH_INTERVAL`` seconds (or as soon as
``FLUSH_ROWS`` rows wait), encodes the rows (redaction hook, size cap) and writes them,
``FLUSH_ROWS`` per statement (:mod:`mlapp.serving.predlog_insert`). A full buffer
(``BUFFER_SIZE``) drops the row and counts it (``mlapp_prediction_log_dropped_total``): a
request never waits for the log.

What is buffered is written when the process stops gracefully: :meth:`PredictionRecorder.close`
is a ``multiprocessing`` finalizer, run at interpreter exit and at the exit of a
``multiprocessing`` child (granian's workers end that way, which skips ``atexit``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing.util
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from django.db import connections
from django.utils.module_loading import import_string
from prometheus_client import Counter

from mlapp.models import ModelVersion
from mlapp.serving.monitorconf import LogSettings, log_settings
from mlapp.serving.predlog_insert import insert_rows, stamper, write_connection

if TYPE_CHECKING:
    from mlapp.serving.loading import LoadedModel

logger = logging.getLogger("mlapp.monitoring")

DROPPED = Counter(
    "mlapp_prediction_log_dropped_total",
    "Sampled requests the prediction log did not store: its buffer was full (full), or "
    "writing them failed (error).",
    ["model", "reason"],
)
# Labelled, so that nothing is written to PROMETHEUS_MULTIPROC_DIR at import: a management
# command of a deployment that sets the variable before the launcher makes the folder
# (``migrate`` imports this module through the admin) must not fail on a missing folder.
WRITTEN = Counter(
    "mlapp_prediction_log_rows_total", "Rows written to the prediction log.", ["model"]
)

_NUMPY = orjson.OPT_SERIALIZE_NUMPY

#: What one buffered request holds: time, model, version id, protocol, inputs, outputs,
#: seconds, request id, key.
Entry = tuple[float, str, int, str, dict[str, Any], dict[str, Any], float, Any, Any]


def _plain(array: Any) -> Any:
    """A value orjson writes: numeric arrays as they are, texts and bytes as lists of str."""
    if type(array) is np.ndarray:
        if array.dtype.kind != "O":
            return array if array.flags.c_contiguous else np.ascontiguousarray(array)
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else _plain(v)
            for v in array.tolist()
        ]
    if isinstance(array, list):
        return [_plain(v) for v in array]
    return array


def _native(value: Any) -> bool:
    """Whether orjson writes ``value`` itself: a numeric array in C order."""
    return type(value) is np.ndarray and value.dtype.kind != "O" and value.flags.c_contiguous


def encode(arrays: dict[str, Any]) -> Any:
    """Arrays by name as JSON values (float32 written as the shortest decimal)."""
    return orjson.loads(orjson.dumps({k: _plain(v) for k, v in arrays.items()}, option=_NUMPY))


def shapes(arrays: dict[str, Any]) -> dict[str, list[int]]:
    return {name: list(np.shape(value)) for name, value in arrays.items()}


class PredictionRecorder:
    """This process's buffer of sampled requests and the thread that writes them."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also after a fork: the parent's rows are the parent's to write, and a lock held by
        # one of its threads would stay held here forever.
        self._buffer: deque[Entry] = deque()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._settings = LogSettings()
        self._redact: Callable[..., Any] | None = None
        self._model_ids: dict[int, int] = {}
        self._hooked: int | None = None
        #: Request ids made up here: this process's start and PID, then a counter (unique,
        #: and in order, which keeps the index on them cheap to insert into).
        self._id_prefix = f"{int(time.time() * 1000):x}-{os.getpid():x}-"
        self._ids = itertools.count(1)
        self._last_warning = 0.0
        self._local = threading.local()
        #: Rows dropped (buffer full), rows lost to failed writes, rows written, here.
        self.dropped = 0
        self.failed = 0
        self.written = 0

    # -- the request path -----------------------------------------------------------------

    def offer(
        self,
        loaded: LoadedModel,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        seconds: float,
        protocol: str,
        request_id: str | None = None,
        key: str | None = None,
    ) -> None:
        """Keep one answered request, if its model's rate samples it and the buffer has room."""
        rate = loaded.log_rate
        if rate < 1.0 and random.random() >= rate:  # noqa: S311 - sampling, not secrecy
            return
        if getattr(self._local, "suspended", False):
            return
        if self._pid != os.getpid():
            self.start()
        buffer = self._buffer
        if len(buffer) >= self._settings.buffer_size:
            self._count_drop(loaded.name, "full", 1)
            return
        buffer.append(
            (
                time.time(),
                loaded.name,
                loaded.version_id,
                protocol,
                inputs,
                outputs,
                seconds,
                request_id,
                key,
            )
        )
        if len(buffer) >= self._settings.flush_rows and not self._wake.is_set():
            self._wake.set()

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Log nothing this thread predicts meanwhile (batch jobs: their predictions are
        stored as BatchPrediction rows already)."""
        self._local.suspended = True
        try:
            yield
        finally:
            self._local.suspended = False

    def _count_drop(self, model: str, reason: str, count: int) -> None:
        with self._lock:
            if reason == "full":
                self.dropped += count
            else:
                self.failed += count
        DROPPED.labels(model, reason).inc(count)

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return len(self._buffer)

    # -- the thread -------------------------------------------------------------------------

    def start(self, *, thread: bool = True) -> None:
        """Read the settings and start this process's writer thread (once per PID).

        ``thread=False`` (tests, benchmarks) buffers without a thread: :meth:`flush` writes.
        """
        pid = os.getpid()
        with self._lock:
            if self._pid == pid:
                return
            self._settings = log_settings()
            redact = self._settings.redact
            self._redact = import_string(redact) if redact else None
            if thread:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop, self._settings.flush_interval),
                    name=f"mlapp-prediction-log-{pid}",
                    daemon=True,
                )
                self._thread.start()
                if self._hooked != pid:
                    self._hooked = pid
                    # At interpreter exit (multiprocessing's exit function is an atexit hook)
                    # and at the end of a multiprocessing child (a granian worker), which
                    # skips atexit; after the gRPC server's drain (exitpriority 200).
                    multiprocessing.util.Finalize(None, self.close, exitpriority=100)
            self._pid = pid

    def _run(self, stop: threading.Event, interval: float) -> None:
        try:
            while not stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
                self.flush()
        finally:
            connections.close_all()  # this thread's own connection

    def close(self, timeout: float = 10.0) -> int:
        """Stop the thread and write what is buffered; returns the rows written now.

        Runs at a graceful exit; a later offer starts a new thread.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            self._pid = None
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        written = self.flush()
        self._model_ids = {}
        return written

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the buffered rows now, ``FLUSH_ROWS`` per statement; returns how many.

        A failed write drops its rows (counted, logged at most once a minute); the rows
        behind it wait for the next flush.
        """
        written = 0
        by_model: dict[str, int] = {}
        with self._flush_lock:
            while self._buffer:
                batch: list[Entry] = []
                while self._buffer and len(batch) < self._settings.flush_rows:
                    batch.append(self._buffer.popleft())
                try:
                    stamp = stamper(write_connection())
                    made = [(e[1], self._row(e, stamp)) for e in batch]
                    rows = [row for _, row in made if row is not None]
                    if rows:
                        insert_rows(rows)
                except Exception:
                    self._failed(batch)
                    break
                written += len(rows)
                for model, row in made:
                    if row is not None:
                        by_model[model] = by_model.get(model, 0) + 1
        if written:
            with self._lock:
                self.written += written
            for model, count in by_model.items():
                WRITTEN.labels(model).inc(count)
        return written

    def _failed(self, batch: list[Entry]) -> None:
        self._count_drop(batch[0][1], "error", len(batch))
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            logger.warning("mlapp: writing %d logged predictions failed", len(batch), exc_info=True)
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None and not connection.is_usable():
                connection.close()

    def _model_id(self, version_id: int) -> int | None:
        found = self._model_ids.get(version_id)
        if found is None:
            found = (
                ModelVersion.objects.filter(pk=version_id)
                .values_list("model_id", flat=True)
                .first()
            )
            if found is not None:
                self._model_ids[version_id] = found
        return found

    def _payload(self, arrays: dict[str, Any]) -> tuple[str, bool]:
        """JSON text of one side of a row, or of its shapes when over the size cap."""
        if all(_native(v) for v in arrays.values()):
            text = orjson.dumps(arrays, option=_NUMPY)  # orjson writes these as they are
        else:  # texts (object arrays), other orders, plain lists
            text = orjson.dumps({k: _plain(v) for k, v in arrays.items()}, option=_NUMPY)
        if len(text) > self._settings.max_payload_bytes:
            return orjson.dumps({"shapes": shapes(arrays)}).decode(), True
        return text.decode(), False

    def _row(self, entry: Entry, stamp: Callable[[float], Any]) -> tuple[Any, ...] | None:
        """The column values of one row, in :data:`~mlapp.serving.predlog_insert.COLUMNS`
        order (None: not writable)."""
        created, name, version_id, protocol, inputs, outputs, seconds, request_id, key = entry
        model_id = self._model_ids.get(version_id) or self._model_id(version_id)
        if model_id is None:  # the version was deleted meanwhile
            self._count_drop(name, "error", 1)
            return None
        if self._redact is not None:
            redacted_in, redacted_out = self._redact(name, encode(inputs), encode(outputs))
            text_in, cut_in = self._payload(redacted_in)
            text_out, cut_out = self._payload(redacted_out)
        else:
            text_in, cut_in = self._payload(inputs)
            text_out, cut_out = self._payload(outputs)
        return (
            model_id,
            version_id,
            str(request_id)[:64] if request_id else f"{self._id_prefix}{next(self._ids):x}",
            str(key)[:255] if key else "",
            protocol,
            text_in,
            text_out,
            cut_in or cut_out,
            seconds * 1000,
            stamp(created),
        )


#: The prediction log's writer of this process.
recorder = PredictionRecorder()
