"""The per-request side of a traffic policy: which version answers, whether it is copied.

A model's :class:`~mlapp.models.TrafficPolicy` becomes a :class:`Route` (:func:`route_of`),
which :class:`~mlapp.serving.traffic.Traffic` keeps per process. :meth:`Route.choose` picks
the version: unsticky, a process answers exactly ``weight`` of its requests with the canary
(an error-diffusion counter with a random phase, so several processes add up to the weight,
with no randomness to wait out); sticky, a caller's key (:class:`Caller`) is hashed (blake2b,
the same in every process) into one of ``SLOTS`` slots. :meth:`Route.copies` says whether a
request is copied to the shadow, the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlapp.exceptions import MLAppError
from mlapp.serving.traffic_stats import BUCKET_SECONDS

if TYPE_CHECKING:
    from mlapp.models import TrafficPolicy

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
