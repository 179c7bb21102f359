"""Traffic policies in a serving process: the canary split, the shadow copy, the rollback.

A model's :class:`~mlapp.models.TrafficPolicy` is read once per process (then again after
each change, which the change marker announces: the registry calls :meth:`Traffic.forget`)
into a :class:`Route`. The service asks :meth:`Traffic.route` on each request that names no
version: for a model without a policy that is one dictionary lookup returning None, and
nothing else happens.

With a policy:

- :meth:`Route.choose` picks the version. Unsticky, a process answers exactly
  ``weight`` of its requests with the canary (an error-diffusion counter with a random
  phase, so several processes add up to the weight, with no randomness to wait out); sticky,
  a caller's key is hashed (blake2b, the same in every process) into one of 10,000 slots.
- The service reports each answer to :meth:`Traffic.record`; a thread of the process writes
  the counts every ``POLL_INTERVAL`` into :class:`~mlapp.models.TrafficWindow` rows of its
  own (no two processes write one row), then sums every process's rows over the policy's
  window and rolls the canary back when it does worse than production. The rollback is one
  conditional UPDATE, so when several processes decide it at once, one of them does it and
  records it (:class:`~mlapp.models.TrafficEvent`).
- :meth:`Traffic.shadow` queues a copy of the request for the shadow version, to run on a
  thread of its own after the caller has its answer; a full queue drops the copy. The
  answers are compared and added to :class:`~mlapp.models.ShadowComparison`.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import logging
import math
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from mlapp.conf import settings
from mlapp.exceptions import MLAppError
from mlapp.models import ShadowComparison, TrafficEvent, TrafficPolicy, TrafficWindow
from mlapp.serving import metrics
from mlapp.serving.registry import LoadedModel, Registry
from mlapp.signals import announce

logger = logging.getLogger("mlapp.serving.traffic")

#: Width of one :class:`~mlapp.models.TrafficWindow` bucket, in seconds.
BUCKET_SECONDS = 5
#: Upper bounds (seconds) of the latency histogram's buckets; the last one is open.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, math.inf,
)  # fmt: skip
#: Counters older than this are deleted (by whichever process writes): the admin page shows
#: ten minutes, a rollback window should stay under this.
RETENTION_SECONDS = 3600
#: Routes remembered by a process that reads them on first use (names that clients sent).
MAX_ROUTES = 1000
#: Copies waiting for the shadow; more are dropped (and counted) rather than queued.
SHADOW_QUEUE_SIZE = 256
#: Niceness of the shadow's thread (Linux): its CPU goes to requests first.
SHADOW_NICENESS = 10
#: Hash slots of sticky assignment: weights have a resolution of 0.01 %.
SLOTS = 10_000


@dataclass(frozen=True)
class Caller:
    """What a front door knows of the caller, for sticky assignment."""

    headers: Mapping[str, str] = field(default_factory=dict)
    #: The authenticated user (anything with a ``pk``), or a callable returning it (so that
    #: nobody is looked up unless a policy is sticky by user), or None.
    user: Any = None
    #: The request's own parameters (the native body's and V2's ``parameters`` object,
    #: gRPC's request ``parameters`` map), or a callable returning them (so that a V2 body
    #: is read for them only when a policy is sticky by field).
    fields: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = field(default_factory=dict)
    #: The key itself, whatever attribute the policy names (``mlapp.predict(sticky=...)``).
    fixed: str | None = None

    @classmethod
    def of_key(cls, key: Any) -> Caller:
        return cls(fixed=str(key))

    def key(self, sticky: str) -> str | None:
        """The value of the attribute ``sticky`` names, or None when the request has none."""
        if self.fixed is not None:
            return self.fixed
        kind, _, name = sticky.partition(":")
        if kind == "header":
            value = self.headers.get(name)
        elif kind == "field":
            fields = self.fields() if callable(self.fields) else self.fields
            value = fields.get(name) if isinstance(fields, Mapping) else None
        elif kind == "user":
            user = self.user() if callable(self.user) else self.user
            value = (
                user.pk if user is not None and getattr(user, "is_authenticated", False) else None
            )
        else:
            return None
        return None if value is None or value == "" else str(value)


class _Split:
    """Exactly ``share`` of the calls say yes, spread evenly, from a random phase."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._phase = random.random()  # noqa: S311 (a phase, not a secret)
        self._count = itertools.count()  # next() is atomic under the GIL

    def __call__(self) -> bool:
        n = next(self._count)
        return math.floor((n + 1) * self.share + self._phase) > math.floor(
            n * self.share + self._phase
        )


@dataclass(frozen=True)
class Rollback:
    """When the canary is rolled back (thresholds relative to production)."""

    error_rate: float | None
    p99_ratio: float | None
    window: int
    min_requests: int


@dataclass
class Route:
    """A model's policy as this process applies it."""

    model: str
    canary: int | None
    #: Share of requests for the canary, 0..1.
    weight: float
    sticky: str
    shadow: int | None
    shadow_share: float
    rollback: Rollback | None
    # Not compared: a route read again unchanged keeps its splits (see Traffic._load).
    _split: _Split = field(init=False, repr=False, compare=False)
    _copy: _Split = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._split = _Split(self.weight)
        self._copy = _Split(self.shadow_share)

    def choose(self, caller: Caller | None) -> int | None:
        """The version that answers this request: the canary's number, or None (production)."""
        if self.canary is None:
            return None
        if self.sticky and caller is not None:
            key = caller.key(self.sticky)
            if key is not None:
                digest = hashlib.blake2b(f"{self.model}\0{key}".encode(), digest_size=8).digest()
                slot = int.from_bytes(digest, "big") % SLOTS
                return self.canary if slot < round(self.weight * SLOTS) else None
        return self.canary if self._split() else None

    def copies(self) -> bool:
        """Whether this request is copied to the shadow."""
        return self.shadow is not None and self._copy()


def route_of(policy: TrafficPolicy) -> Route | None:
    """The route of a stored policy; None when it sends nothing anywhere but production."""
    # A canary or shadow promoted since answers as production already.
    canary = policy.canary if policy.canary_weight > 0 else None
    if canary is not None and canary.stage == canary.Stage.PRODUCTION:
        canary = None
    shadow = policy.shadow if policy.shadow_share > 0 else None
    if shadow is not None and shadow.stage == shadow.Stage.PRODUCTION:
        shadow = None
    if canary is None and shadow is None:
        return None
    thresholds = policy.rollback_error_rate is not None or policy.rollback_p99_ratio is not None
    return Route(
        model=policy.model.name,
        canary=canary.version if canary is not None else None,
        weight=policy.canary_weight / 100,
        sticky=policy.sticky,
        shadow=shadow.version if shadow is not None else None,
        shadow_share=policy.shadow_share / 100,
        rollback=Rollback(
            policy.rollback_error_rate,
            policy.rollback_p99_ratio,
            max(policy.rollback_window, BUCKET_SECONDS),
            policy.rollback_min_requests,
        )
        if thresholds and canary is not None
        else None,
    )


def counts_against(exc: BaseException) -> bool:
    """Whether a failed request counts against the version (a client's mistake does not)."""
    return not (isinstance(exc, MLAppError) and exc.status_code < 500)


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS))


@dataclass
class _Comparison:
    requests: int = 0
    errors: int = 0
    label_rows: int = 0
    label_agreed: int = 0
    tensor_rows: int = 0
    cosine_sum: float = 0.0
    max_abs_diff: float = 0.0
    seconds: float = 0.0


def compare(answered: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]) -> _Comparison:
    """Compare two versions' outputs row by row: labels agree or not; floats by cosine and
    largest absolute difference. An output the shadow lacks, or of another shape, disagrees."""
    result = _Comparison(requests=1)
    for name, a in answered.items():
        a = np.asarray(a)
        rows = a.shape[0] if a.ndim else 1
        b = shadow.get(name)
        b = None if b is None else np.asarray(b)
        if b is None or b.shape != a.shape:
            result.label_rows += rows
            continue
        left = a.reshape(rows, -1)
        right = b.reshape(rows, -1)
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            x = left.astype(np.float64)
            y = right.astype(np.float64)
            norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
            dots = np.einsum("ij,ij->i", x, y)
            same = np.all(x == y, axis=1)  # zero rows included
            cosine = np.where(same, 1.0, dots / np.where(norms == 0, 1.0, norms))
            result.tensor_rows += rows
            result.cosine_sum += float(cosine.sum())
            if x.size:
                result.max_abs_diff = max(result.max_abs_diff, float(np.abs(x - y).max()))
        else:
            result.label_rows += rows
            result.label_agreed += int(np.all(left == right, axis=1).sum())
    return result


def p99(latency: list[int]) -> float:
    """The 99th percentile of a histogram (the upper bound of its bucket); 0 when empty."""
    total = sum(latency)
    if not total:
        return 0.0
    rank = math.ceil(0.99 * total)
    seen = 0
    for bound, count in zip(LATENCY_BOUNDS, latency, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return math.inf


class Traffic:
    """The routes of this process, its counters and its shadow thread."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._routes: dict[str, Route | None] = {}
        #: The last route read per model with a policy, kept through forget() (_same).
        self._kept: dict[str, Route | None] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int, int], _Counts] = {}
        self._comparisons: dict[tuple[str, int, int], _Comparison] = {}
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
            else:
                self._routes.pop(name, None)
        if name is not None:
            self._load(name)
        elif self.registry.startup_done:
            self._load_all()

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
                counts = self._counts[key] = _Counts()
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
            result = _Comparison(requests=1, errors=1)
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
            total = self._comparisons.setdefault((name, answered, number), _Comparison())
            for attr in ("requests", "errors", "label_rows", "label_agreed", "tensor_rows"):
                setattr(total, attr, getattr(total, attr) + getattr(result, attr))
            total.cosine_sum += result.cosine_sum
            total.seconds += result.seconds
            total.max_abs_diff = max(total.max_abs_diff, result.max_abs_diff)

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
        for (name, version, bucket), c in counts.items():
            row, _ = TrafficWindow.objects.get_or_create(
                process=self.process, model_name=name, version=version, bucket=bucket
            )
            row.requests += c.requests
            row.errors += c.errors
            row.total_seconds += c.seconds
            stored = row.latency or [0] * len(LATENCY_BOUNDS)
            row.latency = [a + b for a, b in zip(stored, c.latency, strict=True)]
            row.save(update_fields=["requests", "errors", "total_seconds", "latency"])
        for (name, answered, number), s in comparisons.items():
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


def window_totals(name: str, versions: list[int], seconds: int) -> dict[int, _Counts]:
    """Requests, errors and latency of each of ``versions`` over the last ``seconds``, summed
    over every process."""
    since = int((time.time() - seconds) // BUCKET_SECONDS) * BUCKET_SECONDS
    totals = {number: _Counts() for number in versions}
    rows = TrafficWindow.objects.filter(
        model_name=name, version__in=versions, bucket__gte=since
    ).values_list("version", "requests", "errors", "total_seconds", "latency")
    for number, requests, errors, total, latency in rows:
        counts = totals[number]
        counts.requests += requests
        counts.errors += errors
        counts.seconds += total
        if latency:
            counts.latency = [a + b for a, b in zip(counts.latency, latency, strict=True)]
    return totals


def rollback_reason(name: str, canary: int, production: int, rule: Rollback) -> str | None:
    """Why the canary should be rolled back now, or None."""
    totals = window_totals(name, [canary, production], rule.window)
    c, p = totals[canary], totals[production]
    if c.requests < rule.min_requests:
        return None
    canary_rate = c.errors / c.requests
    production_rate = p.errors / p.requests if p.requests else 0.0
    if rule.error_rate is not None and canary_rate - production_rate > rule.error_rate:
        return (
            f"error rate {canary_rate:.1%} over {c.requests} requests in {rule.window}s "
            f"against production's {production_rate:.1%} (allowed: +{rule.error_rate:.1%})"
        )
    if rule.p99_ratio is not None and p.requests >= rule.min_requests:
        canary_p99, production_p99 = p99(c.latency), p99(p.latency)
        if canary_p99 > rule.p99_ratio * production_p99:
            return (
                f"p99 latency {canary_p99 * 1000:g} ms in {rule.window}s against "
                f"production's {production_p99 * 1000:g} ms (allowed: x{rule.p99_ratio:g})"
            )
    return None


def roll_back_canary(name: str, canary: int, reason: str, user: Any = None) -> bool:
    """End the canary ``canary`` of ``name`` (once, whoever else decides it too) and record
    why; True when this call did it."""
    with transaction.atomic():
        policy = (
            TrafficPolicy.objects.select_related("model", "canary")
            .filter(model__name=name, canary__version=canary)
            .first()
        )
        if policy is None:
            return False
        done = TrafficPolicy.objects.filter(pk=policy.pk, canary_id=policy.canary_id).update(
            canary=None, canary_weight=0.0
        )
        if not done:
            return False
        TrafficEvent.objects.create(
            model=policy.model,
            action="rolled back",
            message=f"Canary v{canary} rolled back automatically: {reason}.",
            user=user,
        )
        announce(name)  # update() sends no post_save
    metrics.CANARY_ROLLBACKS.labels(name, str(canary)).inc()
    logger.warning("mlapp: canary %s v%s rolled back: %s", name, canary, reason)
    return True


@dataclass(frozen=True)
class VersionTraffic:
    """What one version answered over a window, in all processes together."""

    version: int
    requests: int
    errors: int
    mean_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def traffic_summary(name: str, seconds: int = 600) -> list[VersionTraffic]:
    """Each version's requests, errors and latency over the last ``seconds`` (counted while
    the model had a policy), newest version first."""
    since = int((time.time() - seconds) // BUCKET_SECONDS) * BUCKET_SECONDS
    numbers = sorted(
        set(
            TrafficWindow.objects.filter(model_name=name, bucket__gte=since).values_list(
                "version", flat=True
            )
        ),
        reverse=True,
    )
    totals = window_totals(name, numbers, seconds)
    return [
        VersionTraffic(
            number,
            c.requests,
            c.errors,
            1000 * c.seconds / c.requests if c.requests else 0.0,
            1000 * p99(c.latency) if c.requests else 0.0,
        )
        for number, c in totals.items()
    ]


def shadow_summary(name: str) -> list[ShadowComparison]:
    """The running comparisons of ``name``'s shadow versions, most recent first."""
    return list(ShadowComparison.objects.filter(model_name=name).order_by("-updated_at"))
