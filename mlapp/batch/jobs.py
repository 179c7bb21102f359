"""Creating, queueing and cancelling batch jobs, and where their chunks run.

The one way a job is made, whoever asks (the API, ``run_batch``, the host's Python code):
:func:`prepare_job` checks the file's format against the one table of formats
(``mlapp.batch.sources.FORMATS``) and reads the source once end to end BEFORE anything is
stored, so a bad file or source is refused with a clear error (``BadSource``, HTTP 400) and
no job exists. :func:`create_job` then hands the chunks over when the transaction commits:
to Celery when a broker is configured (one task per chunk), else to a background thread of
this process running the same code. :func:`cancel` is the one way a job is stopped, and
:func:`resume` the one way a failed, cancelled or stuck job goes on where it stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from django.db import connections, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from mlapp.batch import runner
from mlapp.batch.sources import Chunk, Opener, Plan, QuerySetSource, file_format, file_source
from mlapp.conf import settings
from mlapp.exceptions import (
    BadSource,
    Conflict,
    NotFound,
    QueueUnavailable,
)
from mlapp.files import as_local_file, save_with_file
from mlapp.models import BatchJob, BatchPrediction, MLModel, ModelVersion
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.batch")

#: The Celery task that runs one chunk (mlapp.tasks.run_batch_chunk).
TASK_NAME = "mlapp.run_batch_chunk"
#: Seconds a job's chunks may take to reach the broker before the job fails with a 503.
ENQUEUE_TIMEOUT = 5.0
#: A pending or running job that stored nothing for this long is stuck (its chunks were
#: lost with a broker that restarted empty, or with the process that ran them) and may be
#: resumed. Longer than a chunk takes, and than the broker's visibility timeout, after
#: which a dead worker's chunk runs again on its own.
STUCK_AFTER = timedelta(minutes=10)


# -- where chunks run --------------------------------------------------------------------


def celery_app() -> Any | None:
    """The Celery app jobs are sent through, or None without Celery: ``MLAPP["CELERY_APP"]``,
    else the project's own app (Celery's current app), else :mod:`mlapp.celery`'s app when
    the project made none (Celery's unconfigured fallback is named ``default``)."""
    if settings.CELERY_APP is not None:
        return settings.CELERY_APP
    try:
        from celery import current_app
    except ImportError:
        return None
    if current_app.main == "default":
        from mlapp.celery import app

        return app
    return current_app


def executor() -> str:
    """``"celery"`` or ``"thread"``: ``MLAPP["BATCH_EXECUTOR"]``, ``"auto"`` by the broker."""
    choice = settings.BATCH_EXECUTOR
    if choice != "auto":
        return choice
    app = celery_app()
    return "celery" if app is not None and app.conf.broker_url else "thread"


class InProcessRunner:
    """One background thread per process running queued jobs one after another.

    The embedded default: no broker, no worker, ``make demo`` runs batch jobs on SQLite.
    A job interrupted by a restart stays as it was; submit it again to finish it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._futures: set[Future] = set()

    def submit(self, job_id: int, chunks: Sequence[Chunk], policy: dict[str, Any]) -> Future:
        with self._lock:
            # A forked server worker must not share its parent's thread pool.
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlapp-batch")
                self._pid = os.getpid()
                self._futures = set()
            future = self._pool.submit(self._run, job_id, list(chunks), policy)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    @staticmethod
    def _run(job_id: int, chunks: list[Chunk], policy: dict[str, Any]) -> None:
        try:
            runner.run_job(job_id, chunks, **policy)
        except Exception as exc:  # the database went away, say: record it on the job
            logger.exception("mlapp: in-process batch job %s stopped", job_id)
            runner.fail_job(job_id, runner.describe(exc))
        finally:
            connections.close_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the jobs queued in this process; True when none is left running."""
        with self._lock:
            futures = list(self._futures)
        _, pending = wait(futures, timeout=timeout)
        return not pending


inprocess = InProcessRunner()


def retry_policy() -> dict[str, Any]:
    """How often a failing chunk runs again, and after how long (``run_job``'s keywords)."""
    return {
        "max_retries": settings.BATCH_MAX_RETRIES,
        "retry_delay": settings.BATCH_RETRY_DELAY,
    }


def _send_chunks(
    app: Any,
    job_id: int,
    chunks: Sequence[Chunk],
    policy: dict[str, Any],
    *,
    skip_stored: bool = False,
) -> None:
    """Send one message per chunk, or fail the job and raise ``QueueUnavailable`` (503).

    The sending runs on a thread given ``ENQUEUE_TIMEOUT`` seconds: a broker that accepts
    connections but never answers (stopped, swapping, a full disk) would otherwise hold the
    request as long as the socket has no timeout (forever, by Redis's default). Should that
    thread deliver its messages later, they find the job failed and do nothing.
    """
    kwargs = {**policy, "skip_stored": True} if skip_stored else policy
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            with app.producer_or_acquire() as producer:
                for chunk in chunks:
                    app.send_task(
                        TASK_NAME, args=(job_id, chunk.to_dict()), kwargs=kwargs, producer=producer
                    )
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    sender = threading.Thread(target=send, name=f"mlapp-enqueue-{job_id}", daemon=True)
    sender.start()
    sender.join(ENQUEUE_TIMEOUT)
    error = outcome[0] if outcome else TimeoutError(f"no answer in {ENQUEUE_TIMEOUT:g}s")
    if error is not None:
        runner.fail_job(job_id, f"The chunks could not be queued: {error}")
        raise QueueUnavailable(f"The batch queue is unavailable: {error}") from error


def enqueue(
    job: BatchJob, plan: Plan, *, where: str | None = None, skip_stored: bool = False
) -> None:
    """Hand the job's chunks to Celery or the in-process runner once the transaction commits.

    On commit: a worker must find the job's row, and a rolled-back job must run nowhere.
    (So inside a test wrapped in a transaction nothing is sent: use a transactional test.)
    ``skip_stored``: the job has stored keys already (it is resumed): each chunk first
    looks for its keys, and runs only the missing ones.
    """
    where = where or executor()
    policy = retry_policy()
    if where == "celery":
        send = partial(
            _send_chunks, celery_app(), job.pk, plan.chunks, policy, skip_stored=skip_stored
        )
        transaction.on_commit(send)
    else:
        # The in-process runner looks for stored keys by itself (runner.run_job).
        transaction.on_commit(partial(inprocess.submit, job.pk, plan.chunks, policy))


# -- creating jobs -----------------------------------------------------------------------


def prepare_job(
    model: str | MLModel,
    *,
    version: int | None = None,
    file: Any = None,
    source: str | None = None,
    params: dict[str, Any] | None = None,
    chunk_size: int | None = None,
    created_by: Any = None,
) -> tuple[BatchJob, Plan]:
    """Plan a job over ``file`` or the registered ``source`` and store it, not yet queued.

    Raises ``BadSource`` (400) naming what to fix, or ``ModelNotFound`` / ``ModelNotReady``
    for a model without that version, before anything is stored.
    """
    if (file is None) == (source is None):
        raise BadSource("Give either an input file or the name of a registered source.")
    if params and source is None:
        raise BadSource("Params go with a registered source.")
    model_name = model.name if isinstance(model, MLModel) else model
    model_version = ModelVersion.objects.resolve(model_name, version)
    signature = service.public_signature(model_version)
    size = chunk_size or settings.BATCH_CHUNK_SIZE
    job = BatchJob(
        version=model_version,
        source_name=source or "",
        source_params=params or {},
        created_by=created_by,
    )
    if source is not None:
        plan = QuerySetSource(source, params or {}, signature).plan(size)
        job.total = plan.total
        job.save()
        return job, plan
    local = isinstance(file, (str, os.PathLike))
    name = os.path.basename(os.fspath(file) if local else getattr(file, "name", "") or "")
    file_format(name)  # an extension no batch job reads is refused before anything is copied
    with as_local_file(file) as path:
        # mypy's partial() loses the "rb" literal and types open()'s text overload.
        opener = cast(Opener, partial(open, path, "rb"))
        plan = file_source(name, opener, signature, path).plan(size)
        job.total = plan.total
        save_with_file(job, job.source_file, name, path)
    return job, plan


def create_job(model: str | MLModel, **kwargs: Any) -> BatchJob:
    """Plan, store and queue a job (arguments of :func:`prepare_job`); returns it ``pending``."""
    with transaction.atomic():
        job, plan = prepare_job(model, **kwargs)
        enqueue(job, plan)
    return job


def submit(job: BatchJob, *, chunk_size: int | None = None) -> BatchJob:
    """Queue a stored job again, e.g. one an in-process runner lost to a restart.

    Its source is planned anew (``BadSource``, 400, if it can no longer be read: the job is
    left as it was); keys already stored are skipped, so only what is missing runs.
    """
    plan = runner.open_source(job).plan(chunk_size or settings.BATCH_CHUNK_SIZE)
    BatchJob.objects.filter(pk=job.pk).update(total=plan.total)
    job.total = plan.total
    enqueue(job, plan, skip_stored=True)
    return job


def last_activity(job: BatchJob) -> datetime:
    """When the job last showed life: its latest stored prediction, else its start."""
    latest = job.predictions.aggregate(latest=Max("created_at"))["latest"]
    return max(t for t in (latest, job.started_at, job.created_at) if t is not None)


def is_stuck(job: BatchJob, now: datetime | None = None) -> bool:
    """Whether an active job stored nothing for ``STUCK_AFTER``: its chunks are lost."""
    if job.status not in (BatchJob.Status.PENDING, BatchJob.Status.RUNNING):
        return False
    return last_activity(job) <= (now or timezone.now()) - STUCK_AFTER


def resumable(job: BatchJob) -> bool:
    """Whether :func:`resume` takes this job: failed, cancelled, or stuck."""
    return job.status in (BatchJob.Status.FAILED, BatchJob.Status.CANCELLED) or is_stuck(job)


def prepare_resume(
    job: BatchJob | int,
    *,
    chunk_size: int | None = None,
    stuck_after: timedelta | None = None,
) -> tuple[BatchJob, Plan | None]:
    """Put a failed, cancelled or stuck job back to ``pending`` and plan it, not yet queued.

    The source is planned anew (``BadSource``, 400, if it can no longer be read: the job is
    left as it was). ``Conflict`` (409) for a job that succeeded, or that is pending or
    running and stored something within ``stuck_after`` (default :data:`STUCK_AFTER`).
    The plan is None when every item turns out to be stored: the job is then succeeded.
    """
    pk = job.pk if isinstance(job, BatchJob) else job
    found = BatchJob.objects.select_related("version__model").filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No batch job {pk}.")
    status = BatchJob.Status
    if found.status == status.SUCCEEDED:
        raise Conflict(f"Batch job {pk} succeeded: there is nothing left to resume.")
    if found.status in (status.PENDING, status.RUNNING):
        quiet = timezone.now() - last_activity(found)
        if quiet < (STUCK_AFTER if stuck_after is None else stuck_after):
            raise Conflict(
                f"Batch job {pk} is {found.status} and stored predictions "
                f"{quiet.total_seconds():.0f}s ago: only a failed, cancelled or stuck job "
                f"resumes (stuck: nothing stored for {STUCK_AFTER.total_seconds():.0f}s; "
                "cancel it to resume it now)."
            )
    plan = runner.open_source(found).plan(chunk_size or settings.BATCH_CHUNK_SIZE)
    # One conditional UPDATE: a runner that finishes the job meanwhile wins cleanly.
    taken = (
        BatchJob.objects.filter(pk=pk)
        .exclude(status=status.SUCCEEDED)
        .update(status=status.PENDING, error="", finished_at=None, total=plan.total)
    )
    if not taken:
        raise Conflict(f"Batch job {pk} succeeded meanwhile: there is nothing left to resume.")
    logger.info("mlapp: batch job %s resumed: %s chunk(s) to look at", pk, len(plan.chunks))
    complete = runner.finish_if_complete(pk)
    found.refresh_from_db()
    return found, None if complete else plan


def resume(
    job: BatchJob | int,
    *,
    chunk_size: int | None = None,
    stuck_after: timedelta | None = None,
) -> BatchJob:
    """Queue a failed, cancelled or stuck job again: it goes on where it stopped.

    Every chunk runs again with the keys already stored skipped, so each key ends up
    stored exactly once (see :func:`prepare_resume` for what is refused).
    """
    with transaction.atomic():
        found, plan = prepare_resume(job, chunk_size=chunk_size, stuck_after=stuck_after)
        if plan is not None:
            enqueue(found, plan, skip_stored=True)
    return found


def cancel(job: BatchJob | int) -> bool:
    """Cancel a pending or running job: its chunks not yet started then do nothing.

    One conditional UPDATE: a runner finishing the job at the same moment wins or loses
    cleanly, never half. False when the job had already ended (or does not exist).
    """
    pk = job.pk if isinstance(job, BatchJob) else job
    return bool(
        BatchJob.objects.active()
        .filter(pk=pk)
        .update(status=BatchJob.Status.CANCELLED, finished_at=timezone.now())
    )


def predictions_by_key(model: str, key: str) -> QuerySet[BatchPrediction]:
    """The stored predictions of ``key`` from the model's succeeded jobs, latest first."""
    return (
        BatchPrediction.objects.select_related("model", "version")
        .filter(model__name=model, key=key, job__status=BatchJob.Status.SUCCEEDED)
        .order_by(F("job__finished_at").desc(nulls_last=True), "-job_id")
    )


def latest_prediction(model: str, key: str) -> BatchPrediction | None:
    """The stored prediction of ``key`` from the model's latest succeeded job that has it."""
    return predictions_by_key(model, key).first()
