"""Creating, queueing and cancelling batch jobs, and where their chunks run.

The one way a job is made, whoever asks (the API, ``run_batch``, the host's Python code):
:func:`prepare_job` checks the file's format against the one table of formats
(``mlapp.batch.sources.FORMATS``) and reads the source once end to end BEFORE anything is
stored, so a bad file or source is refused with a clear error (``BadSource``, HTTP 400) and
no job exists. :func:`create_job` then hands the chunks over when the transaction commits:
to Celery when a broker is configured (one task per chunk), else to a background thread of
this process running the same code. :func:`cancel` is the one way a job is stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, cast

from django.db import connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from mlapp.batch import runner
from mlapp.batch.sources import Chunk, Opener, Plan, QuerySetSource, file_format, file_source
from mlapp.conf import settings
from mlapp.exceptions import (
    BadSource,
    QueueUnavailable,
)
from mlapp.files import as_local_file, save_with_file
from mlapp.models import BatchJob, BatchPrediction, MLModel, ModelVersion
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.batch")

#: The Celery task that runs one chunk (mlapp.tasks.run_batch_chunk).
TASK_NAME = "mlapp.run_batch_chunk"


# -- where chunks run --------------------------------------------------------------------


def celery_app() -> Any | None:
    """The Celery app jobs are sent through (``MLAPP["CELERY_APP"]``), or None without Celery."""
    if settings.CELERY_APP is not None:
        return settings.CELERY_APP
    try:
        from celery import current_app
    except ImportError:
        return None
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


def _send_chunks(app: Any, job_id: int, chunks: Sequence[Chunk], policy: dict[str, Any]) -> None:
    try:
        with app.producer_or_acquire() as producer:
            for chunk in chunks:
                app.send_task(
                    TASK_NAME, args=(job_id, chunk.to_dict()), kwargs=policy, producer=producer
                )
    except Exception as exc:
        runner.fail_job(job_id, f"The chunks could not be queued: {exc}")
        raise QueueUnavailable(f"The batch queue is unavailable: {exc}") from exc


def enqueue(job: BatchJob, plan: Plan, *, where: str | None = None) -> None:
    """Hand the job's chunks to Celery or the in-process runner once the transaction commits.

    On commit: a worker must find the job's row, and a rolled-back job must run nowhere.
    (So inside a test wrapped in a transaction nothing is sent: use a transactional test.)
    """
    where = where or executor()
    policy = retry_policy()
    if where == "celery":
        transaction.on_commit(partial(_send_chunks, celery_app(), job.pk, plan.chunks, policy))
    else:
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
    enqueue(job, plan)
    return job


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
