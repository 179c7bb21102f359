"""Celery tasks: thin wrappers over ``mlapp.batch.runner``, which does the work.

Each chunk of a batch job is one task. It is acknowledged late and rejected (so requeued)
when its worker dies, and the runner's writes are idempotent: a chunk that runs again after
a crash, or twice at once, stores every key exactly once. With Redis as the broker, a
message whose worker vanished comes back after the transport's ``visibility_timeout``.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from mlapp.batch import outages as outages_module
from mlapp.batch import runner
from mlapp.batch.sources import Chunk


@shared_task(
    bind=True,
    name="mlapp.run_batch_chunk",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_batch_chunk(
    self: Any,
    job_id: int,
    chunk: dict[str, Any],
    max_retries: int = 3,
    retry_delay: float = 5.0,
    skip_stored: bool = False,
    outages: int = 0,
) -> dict[str, int]:
    """Run one chunk; retry it up to ``max_retries`` times, then fail the job.

    ``skip_stored``: the job was resumed, some keys are stored. ``outages``: how many of
    this message's retries waited for the database or the broker; those retry with a
    growing delay up to ``mlapp.batch.outages.OUTAGE_RETRIES`` times and do not count as failures.
    """
    part = Chunk.from_dict(chunk)
    # A retry, or a message handed out again (its worker died): keys may be stored already.
    again = (
        skip_stored
        or self.request.retries > 0
        or bool((self.request.delivery_info or {}).get("redelivered"))
    )
    try:
        outcome = runner.run_chunk(job_id, part, skip_stored=again)
    except Exception as exc:
        # Celery's own count of retries covers both kinds; the limits are enforced here.
        # (max_retries=None would mean the task's default of 3, not "no limit".)
        limit = max_retries + outages_module.OUTAGE_RETRIES
        kwargs = {
            "max_retries": max_retries,
            "retry_delay": retry_delay,
            "skip_stored": True,
            "outages": outages,
        }
        if outages_module.is_outage(exc) and outages < outages_module.OUTAGE_RETRIES:
            outages_module.reset_connections()
            raise self.retry(
                exc=exc,
                countdown=outages_module.outage_delay(outages + 1),
                max_retries=limit,
                kwargs={**kwargs, "outages": outages + 1},
            ) from exc
        attempts = self.request.retries - outages + 1
        if attempts > max_retries:
            runner.fail_job(job_id, runner.chunk_failure(part, attempts, exc))
            return {"written": 0, "failed": 0}
        raise self.retry(exc=exc, countdown=retry_delay, max_retries=limit, kwargs=kwargs) from exc
    return {"written": outcome.written, "failed": outcome.failed}


@shared_task(name="mlapp.check_drift", ignore_result=True)
def check_drift(model: str | None = None, hours: float = 24.0) -> int:
    """The periodic drift job (put it on a beat schedule): one report per version with a
    reference and logged requests in the last ``hours``; returns how many drifted."""
    from mlapp.monitoring.drift import check_drift as run

    return sum(report.drifted for report in run(model, hours=hours))
