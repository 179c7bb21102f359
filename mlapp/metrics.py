"""Prometheus metrics of the serving path, correct under several worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with several workers: the production config
sets it), every process writes its samples to files there and ``/metrics`` aggregates them
with prometheus-client's multiprocess collector; without it, the process's own registry is
served (runserver, tests). The variable must be set before ``prometheus_client`` is imported
(``project/gunicorn.conf.py`` does it), as the library picks its value class at import.

The hot path takes labelled children from small caches (:func:`request_metrics`,
:func:`batch_observer`): ``Counter.labels(...)`` takes a lock and builds a key per call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from mlapp.exceptions import MLAppError, ModelNotFound, ModelNotReady, Overloaded

if TYPE_CHECKING:
    from mlapp.batching import BatchStats

# Latency buckets from 100 µs (a tiny model answering in-process) to 10 s.
_LATENCY = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

REQUESTS = Counter(
    "mlapp_requests_total",
    "Prediction requests by model, version, protocol and outcome.",
    ["model", "version", "protocol", "outcome"],
)
REQUEST_LATENCY = Histogram(
    "mlapp_request_seconds",
    "Time inside the inference service per answered request (decoding and validation of "
    "the inputs, queue, model, handler).",
    ["model", "protocol"],
    buckets=_LATENCY,
)
COMPUTE_LATENCY = Histogram(
    "mlapp_model_compute_seconds",
    "Time of one model call, handler included (a whole micro-batch when batching).",
    ["model"],
    buckets=_LATENCY,
)
QUEUE_WAIT = Histogram(
    "mlapp_queue_wait_seconds",
    "Time a request waited in the micro-batching queue before its batch ran.",
    ["model"],
    buckets=_LATENCY,
)
BATCH_SIZE = Histogram(
    "mlapp_batch_size",
    "Requests per model call under micro-batching.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
MODEL_READY = Gauge(
    "mlapp_model_ready",
    "1 while the version is loaded and answers for the model in the serving processes.",
    ["model", "version"],
    # The latest write of any live process wins: a worker that swapped versions overrides
    # what the preloading master wrote at startup.
    multiprocess_mode="livemostrecent",
)

#: The ``outcome`` label of a request that raised.
OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (Overloaded, "overloaded"),
    (ModelNotReady, "not_ready"),
    (ModelNotFound, "not_found"),
)


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label of a failed request: a 4xx is ``invalid``, a 500 ``error``."""
    for cls, outcome in OUTCOMES:
        if isinstance(exc, cls):
            return outcome
    if isinstance(exc, MLAppError) and exc.status_code < 500:
        return "invalid"
    return "error"


class RequestMetrics:
    """The labelled children one (model, version, protocol) writes to, taken once."""

    __slots__ = ("_failed", "_labels", "compute", "latency", "ok")

    def __init__(self, model: str, version: str, protocol: str) -> None:
        self._labels = (model, version, protocol)
        self.ok = REQUESTS.labels(model, version, protocol, "ok")
        self.latency = REQUEST_LATENCY.labels(model, protocol)
        self.compute = COMPUTE_LATENCY.labels(model)
        self._failed: dict[str, Counter] = {}

    def answered(self, seconds: float) -> None:
        self.ok.inc()
        self.latency.observe(seconds)

    def failed(self, exc: BaseException) -> None:
        outcome = outcome_of(exc)
        child = self._failed.get(outcome)
        if child is None:
            child = self._failed[outcome] = REQUESTS.labels(*self._labels, outcome)
        child.inc()


_request_metrics: dict[tuple[str, int | None, str], RequestMetrics] = {}


def request_metrics(model: str, version: int | None, protocol: str) -> RequestMetrics:
    """The children of one model version and protocol (``version`` None: not routed)."""
    key = (model, version, protocol)
    found = _request_metrics.get(key)
    if found is None:
        found = RequestMetrics(model, "" if version is None else str(version), protocol)
        _request_metrics[key] = found
    return found


def unrouted_failure(model: str, protocol: str, exc: BaseException) -> None:
    """Count a request that no loaded version took (unknown model, not ready ...).

    An unknown name is not a label value: anyone could create series by sending names.
    """
    name = model if isinstance(exc, ModelNotReady) else ""
    request_metrics(name, None, protocol).failed(exc)


def batch_observer(model: str) -> Callable[[BatchStats], None]:
    """The ``on_batch`` callback of a model's micro-batcher."""
    size, compute, wait = (
        BATCH_SIZE.labels(model),
        COMPUTE_LATENCY.labels(model),
        QUEUE_WAIT.labels(model),
    )

    def observe(stats: BatchStats) -> None:
        size.observe(stats.size)
        compute.observe(stats.compute_s)
        for seconds in stats.queue_waits:
            wait.observe(seconds)

    return observe


def set_ready(model: str, version: int, ready: bool) -> None:
    MODEL_READY.labels(model, str(version)).set(1 if ready else 0)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics`` and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Call from the server's worker-exit hook so live gauges of dead workers go away."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
