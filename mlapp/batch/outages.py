"""Database and broker outages during a batch job: recognised, waited for, recovered from.

A chunk that fails because the database or the broker could not be reached is not the
chunk's fault: the Celery task (:mod:`mlapp.tasks`) and the in-process runner
(:mod:`mlapp.batch.runner`) try it again after a growing delay instead of failing the job.
"""

from __future__ import annotations

import random

from django.db import InterfaceError, OperationalError, connections

#: A chunk that fails because the database (or the broker) is unreachable is retried this
#: many times, ``outage_delay`` apart (about 7 minutes in all), before its job fails: an
#: outage is not the chunk's fault, and a job should not fail at 98 % for a restart.
OUTAGE_RETRIES = 20
OUTAGE_FIRST_DELAY = 0.5
OUTAGE_MAX_DELAY = 30.0


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database or the broker could not be reached (or went away
    mid-query): worth waiting for, unlike a model that fails on its inputs."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    try:
        from kombu.exceptions import OperationalError as BrokerError
    except ImportError:  # no Celery installed: no broker to lose
        return False
    return isinstance(exc, BrokerError)


def outage_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th try after an outage: doubling, capped, jittered (so
    the chunks of many workers do not all come back at the same instant)."""
    delay = min(OUTAGE_MAX_DELAY, OUTAGE_FIRST_DELAY * 2 ** (attempt - 1))
    return delay * random.uniform(0.75, 1.0)  # noqa: S311 (jitter, not a secret)


def reset_connections() -> None:
    """Drop this thread's database connections that an outage broke, so the next try opens
    new ones (inside a transaction, e.g. a test's, the connection is left to its owner)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
