"""Traffic policies in a serving process: the canary split, the shadow copy, the rollback.

A model's :class:`~mlapp.models.TrafficPolicy` is read once per process (then again after
each change, which the change marker announces: the registry calls :meth:`Traffic.forget`)
into a :class:`~mlapp.serving.routes.Route`. The service asks :meth:`Traffic.route` on each
request that names no version: for a model without a policy that is one dictionary lookup
returning None, and nothing else happens.

With a policy:

- :meth:`Route.choose <mlapp.serving.routes.Route.choose>` picks the version
  (:mod:`mlapp.serving.routes`).
- The service reports each answer to :meth:`Traffic.record`; a thread of the process writes
  the counts every ``POLL_INTERVAL`` into :class:`~mlapp.models.TrafficWindow` rows of its
  own (no two processes write one row), then sums every process's rows over the policy's
  window and rolls the canary back when it does worse than production
  (:mod:`mlapp.serving.traffic_stats`). The rollback is one conditional UPDATE, so when
  several processes decide it at once, one of them does it and records it
  (:class:`~mlapp.models.TrafficEvent`).
- :meth:`Traffic.shadow` queues a copy of the request for the shadow version, to run on a
  thread of its own after the caller has its answer; a full queue drops the copy. The
  answers are compared (:mod:`mlapp.serving.shadow`) and added to
  :class:`~mlapp.models.ShadowComparison`.

This module holds :class:`Traffic`: the process's routes, its counters, its shadow queue and
the two threads that work through them.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import queue
import socket
import threading
import time
from typing import Any

from django.db import connections
from django.db.models import F
from django.db.models.functions import Greatest

from mlapp.conf import settings
from mlapp.models import ShadowComparison, TrafficPolicy, TrafficWindow
from mlapp.serving import metrics
from mlapp.serving.registry import LoadedModel, Registry
from mlapp.serving.routes import Route, route_of
from mlapp.serving.shadow import Comparison, compare
from mlapp.serving.traffic_stats import (
    BUCKET_SECONDS,
    LATENCY_BOUNDS,
    Counts,
    roll_back_canary,
    rollback_reason,
)

logger = logging.getLogger("mlapp.serving.traffic")

#: Counters older than this are deleted (by whichever process writes): the admin page shows
#: ten minutes, a rollback window should stay under this.
RETENTION_SECONDS = 3600
#: Routes remembered by a process that reads them on first use (names that clients sent).
MAX_ROUTES = 1000
#: Copies waiting for the shadow; more are dropped (and counted) rather than queued.
SHADOW_QUEUE_SIZE = 256
#: Niceness of the shadow's thread (Linux): its CPU goes to requests first.
SHADOW_NICENESS = 10


class Traffic:
    """The routes of this process, its counters and its shadow thread."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._routes: dict[str, Route | None] = {}
        #: The last route read per model with a policy, kept through forget() (_same).
        self._kept: dict[str, Route | None] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int, int], Counts] = {}
        self._comparisons: dict[tuple[str, int, int], Comparison] = {}
        self._shadow_queue: queue.Queue[tuple[Any, ...]] = queue.Queue(SHADOW_QUEUE_SIZE)
        #: Copies dropped because the shadow fell behind (this process, since it started).
        self.dropped = 0
        self._threads_pid: int | None = None
        self._stop = threading.Event()
        self.process = f"{socket.gethostname()}:{os.getpid()}"
        self._purged = 0.0
        registry.listeners.append(self.forget)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._threads_pid = None
        self._counts = {}
        self._comparisons = {}
        self._shadow_queue = queue.Queue(SHADOW_QUEUE_SIZE)
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    # -- routes --------------------------------------------------------------------------

    def route(self, name: str) -> Route | None:
        """The route of model ``name`` (None: no policy; then nothing else is done)."""
        try:
            return self._routes[name]
        except KeyError:
            if self.registry.startup_done:
                # Read at startup and after each change: a name not known here (a model
                # that does not exist, or did not load) has no route, and costs no query.
                return None
            return self._load(name)

    def _load(self, name: str) -> Route | None:
        generation = self._generation
        policy = (
            TrafficPolicy.objects.select_related("model", "canary", "shadow")
            .filter(model__name=name)
            .first()
        )
        route = route_of(policy) if policy is not None else None
        with self._lock:
            if generation == self._generation:
                if len(self._routes) >= MAX_ROUTES:
                    self._routes.clear()  # names clients made up must not grow it forever
                # The same policy read again (after a reload, or a first load here) keeps
                # its route, so the exact split goes on where it was.
                route = self._same(name, route)
                self._routes[name] = route
        if route is not None:
            self._started(route)
        return route

    def _started(self, route: Route) -> None:
        """Load a new route's canary and shadow on this process's thread, if it runs (its
        start does it for the routes known then), not in a request."""
        if self._threads_pid == os.getpid():
            self._warm(route)

    def _warm(self, route: Route) -> None:
        if not self.registry.startup_done:
            return  # a process that loads on first use (a worker, a shell) loads then
        for number in (route.canary, route.shadow):
            if number is not None:
                self._submit(("warm", route.model, number))

    def forget(self, name: str | None) -> None:
        """The policy of ``name`` (of every model: None) may have changed: read it again.

        Called by the registry after each reload of a model (in the watcher's thread, or once
        a change made here commits) and after startup loading, so requests find their route
        read already: the first one queries nothing either.
        """
        with self._lock:
            self._generation += 1
            if name is None:
                self._routes.clear()
                self._kept.clear()  # every model may have changed: the splits start anew
        if name is None:
            if self.registry.startup_done:
                self._load_all()
            return
        # The route read again replaces the old one in place: a request meanwhile finds the
        # old route, never none, so it does not query (its query could meet the write that
        # caused this change on a database that refuses a read beside a write).
        try:
            self._load(name)
        except BaseException:
            with self._lock:
                self._routes.pop(name, None)  # unknown now: the next request reads it
            raise

    def _same(self, name: str, route: Route | None) -> Route | None:
        """``route``, or the one kept for ``name`` when it says the same (its splits go on
        where they were); call with the lock held. Only models with a policy are kept."""
        kept = self._kept.get(name)
        if route is None:
            self._kept.pop(name, None)
            return None
        if kept == route:
            return kept
        self._kept[name] = route
        return route

    def _load_all(self) -> None:
        generation = self._generation
        policies = TrafficPolicy.objects.select_related("model", "canary", "shadow")
        routes: dict[str, Route | None] = dict.fromkeys(self.registry.loaded())
        routes.update((policy.model.name, route_of(policy)) for policy in policies)
        with self._lock:
            if generation == self._generation:
                routes = {name: self._same(name, route) for name, route in routes.items()}
                self._routes.update(routes)
        for route in routes.values():
            if route is not None:
                self._started(route)

    # -- counting ------------------------------------------------------------------------

    def record(self, name: str, version: int, seconds: float, failed: bool = False) -> None:
        """Count one request of a model under a policy (the service calls it)."""
        if self._threads_pid is None:  # _after_fork sets it back
            # Threads start in the process that serves (after a preloading server's fork).
            self._start_threads()
        key = (name, version, int(time.time() // BUCKET_SECONDS) * BUCKET_SECONDS)
        slot = bisect.bisect_left(LATENCY_BOUNDS, seconds)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = Counts()
            counts.requests += 1
            counts.errors += failed
            counts.seconds += seconds
            counts.latency[slot] += 1
        metrics.version_latency(name, version).observe(seconds)

    def shadow(
        self, route: Route, answered: LoadedModel, inputs: dict[str, Any], outputs: dict
    ) -> None:
        """Queue a copy of a request for the shadow version; never blocks, never raises."""
        if route.shadow is not None and route.shadow != answered.version and route.copies():
            job = ("shadow", route.model, route.shadow, answered.version, inputs, outputs)
            if not self._submit(job):
                labels = (route.model, str(answered.version), str(route.shadow), "dropped")
                metrics.SHADOW_COPIES.labels(*labels).inc()

    def _submit(self, job: tuple[Any, ...]) -> bool:
        try:
            self._shadow_queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    # -- background work -----------------------------------------------------------------

    def _start_threads(self) -> None:
        pid = os.getpid()
        with self._lock:
            if self._threads_pid == pid:
                return
            self._threads_pid = pid
        self._stop.clear()
        threading.Thread(target=self._shadow_loop, name="mlapp-shadow", daemon=True).start()
        threading.Thread(target=self._flush_loop, name="mlapp-traffic", daemon=True).start()
        for route in list(self._routes.values()):
            if route is not None:
                self._warm(route)

    def _shadow_loop(self) -> None:
        shadow_queue = self._shadow_queue
        # Linux schedules threads on their own: the shadow yields the CPU to requests.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICENESS)
        while not self._stop.is_set():
            try:
                job = shadow_queue.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                self.run_job(job)
            except Exception:
                logger.exception("mlapp: shadow job failed")
            finally:
                shadow_queue.task_done()
        connections.close_all()

    def run_job(self, job: tuple[Any, ...]) -> None:
        """Run one queued job: warm a version up, or run a shadow copy and compare."""
        if job[0] == "warm":
            try:
                self.registry.get(job[1], job[2])
            except Exception as exc:  # the first request that needs it will say why
                logger.warning("mlapp: %s v%s could not be loaded ahead: %s", *job[1:], exc)
            return
        _, name, number, answered, inputs, outputs = job
        started = time.perf_counter()
        try:
            loaded = self.registry.get(name, number)
            shadow_outputs = loaded.run(inputs)
        except Exception as exc:
            result = Comparison(requests=1, errors=1)
            logger.debug("mlapp: shadow %s v%s failed: %s", name, number, exc)
        else:
            result = compare(outputs, shadow_outputs)
        result.seconds = time.perf_counter() - started
        pair = (name, str(answered), str(number))
        metrics.SHADOW_COPIES.labels(*pair, "error" if result.errors else "compared").inc()
        if result.label_rows:
            metrics.SHADOW_ROWS.labels(*pair, "agreed").inc(result.label_agreed)
            metrics.SHADOW_ROWS.labels(*pair, "disagreed").inc(
                result.label_rows - result.label_agreed
            )
        with self._lock:
            self._comparisons.setdefault((name, answered, number), Comparison()).add(result)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the shadow queue is empty (tests, and a process that shuts down)."""
        until = time.monotonic() + timeout
        while self._shadow_queue.unfinished_tasks and time.monotonic() < until:
            time.sleep(0.01)

    def _flush_loop(self) -> None:
        # This thread keeps its own connection from one write to the next, as the change
        # marker's watcher does (connecting anew each second was half of a flush's CPU on
        # SQLite, and a new backend a second on PostgreSQL); after an error it connects anew.
        try:
            while not self._stop.wait(settings.POLL_INTERVAL):
                try:
                    self.flush()
                    self.check_rollbacks()
                except Exception:
                    logger.exception("mlapp: writing traffic counters failed")
                    connections.close_all()
        finally:
            connections.close_all()

    def flush(self) -> None:
        """Write this process's counters into the shared tables (and, once a minute, delete
        everyone's counters older than RETENTION_SECONDS)."""
        now = time.time()
        if now - self._purged > 60:
            self._purged = now
            TrafficWindow.objects.filter(bucket__lt=now - RETENTION_SECONDS).delete()
        with self._lock:
            counts, self._counts = self._counts, {}
            comparisons, self._comparisons = self._comparisons, {}
        try:
            self._write(counts, comparisons)
        except Exception:
            # What was not written goes back, to be written with the next counts (the
            # caller logs the error): a lost connection loses no request's count.
            with self._lock:
                for key, c in counts.items():
                    self._counts.setdefault(key, Counts()).add(c)
                for key, s in comparisons.items():
                    self._comparisons.setdefault(key, Comparison()).add(s)
            raise

    def _write(
        self,
        counts: dict[tuple[str, int, int], Counts],
        comparisons: dict[tuple[str, int, int], Comparison],
    ) -> None:
        """Write the counters, removing each from its dict once it is stored."""
        for key, c in list(counts.items()):
            name, version, bucket = key
            row, _ = TrafficWindow.objects.get_or_create(
                process=self.process, model_name=name, version=version, bucket=bucket
            )
            row.requests += c.requests
            row.errors += c.errors
            row.total_seconds += c.seconds
            stored = row.latency or [0] * len(LATENCY_BOUNDS)
            row.latency = [a + b for a, b in zip(stored, c.latency, strict=True)]
            row.save(update_fields=["requests", "errors", "total_seconds", "latency"])
            del counts[key]
        for key, s in list(comparisons.items()):
            name, answered, number = key
            ShadowComparison.objects.get_or_create(
                model_name=name, answered=answered, shadow=number
            )
            ShadowComparison.objects.filter(
                model_name=name, answered=answered, shadow=number
            ).update(
                requests=F("requests") + s.requests,
                errors=F("errors") + s.errors,
                label_rows=F("label_rows") + s.label_rows,
                label_agreed=F("label_agreed") + s.label_agreed,
                tensor_rows=F("tensor_rows") + s.tensor_rows,
                cosine_sum=F("cosine_sum") + s.cosine_sum,
                max_abs_diff=Greatest(F("max_abs_diff"), s.max_abs_diff),
                shadow_seconds=F("shadow_seconds") + s.seconds,
            )
            del comparisons[key]

    def check_rollbacks(self) -> list[str]:
        """Roll back every canary of this process's routes that does worse than production
        over its window, in all processes together; return the models rolled back here."""
        rolled = []
        for name, route in list(self._routes.items()):
            if route is None or route.rollback is None or route.canary is None:
                continue
            production = self.registry.peek(name)
            if production is None:
                continue
            reason = rollback_reason(name, route.canary, production.version, route.rollback)
            if reason is not None and roll_back_canary(name, route.canary, reason):
                rolled.append(name)
        return rolled

    def stop(self) -> None:
        self._stop.set()
