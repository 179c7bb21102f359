"""Recent request volume and latency per model, kept in this process for the admin's charts.

A small ring of time buckets per model (60 buckets of 10 seconds: the last ten minutes),
updated by the inference service on every call. It is per process: under a server with
several workers, each worker's page shows its own traffic. Long-term metrics belong to
Prometheus, not here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

BUCKET_SECONDS = 10
BUCKETS = 60


@dataclass(frozen=True)
class Bucket:
    """Requests that finished in one time bucket."""

    start: float
    count: int
    total_seconds: float
    max_seconds: float

    @property
    def mean_ms(self) -> float:
        return 1000 * self.total_seconds / self.count if self.count else 0.0

    @property
    def max_ms(self) -> float:
        return 1000 * self.max_seconds


class RequestStats:
    """Per-model rings of :class:`Bucket`; ``record`` is cheap and thread-safe."""

    def __init__(self, bucket_seconds: int = BUCKET_SECONDS, buckets: int = BUCKETS) -> None:
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        # model name -> deque of [bucket index, count, total seconds, max seconds]
        self._rings: dict[str, deque[list[float]]] = {}
        self._lock = threading.Lock()

    def record(self, model: str, seconds: float, now: float | None = None) -> None:
        """Count one request to ``model`` that took ``seconds``."""
        index = int((time.time() if now is None else now) // self.bucket_seconds)
        with self._lock:
            ring = self._rings.get(model)
            if ring is None:
                ring = self._rings[model] = deque(maxlen=self.buckets)
            if ring and ring[-1][0] == index:
                last = ring[-1]
                last[1] += 1
                last[2] += seconds
                last[3] = max(last[3], seconds)
            else:
                ring.append([index, 1, seconds, seconds])

    def recent(self, model: str, now: float | None = None) -> list[Bucket]:
        """The last ``buckets`` buckets of ``model``, oldest first, empty ones included."""
        newest = int((time.time() if now is None else now) // self.bucket_seconds)
        with self._lock:
            stored = {int(b[0]): tuple(b) for b in self._rings.get(model, ())}
        result = []
        for index in range(newest - self.buckets + 1, newest + 1):
            _, count, total, longest = stored.get(index, (index, 0, 0.0, 0.0))
            result.append(
                Bucket(
                    start=float(index * self.bucket_seconds),
                    count=int(count),
                    total_seconds=float(total),
                    max_seconds=float(longest),
                )
            )
        return result

    def clear(self) -> None:
        with self._lock:
            self._rings.clear()


#: The request statistics of this process.
request_stats = RequestStats()


def record_request(model: str, seconds: float) -> None:
    """Count one answered request (called by ``mlapp.serving.service``)."""
    request_stats.record(model, seconds)
