"""Running a batch job's chunks: plain code that Celery tasks and the in-process runner share.

One chunk: read its items, skip the keys already stored when the chunk runs again (a
retry, or a message handed out again after its worker died), run the rest through the
inference service — the same one online requests go through, so an input gets the same
answer online and in batch — and write the results in bulk. The write locks the job's row,
inserts only keys not yet stored, and moves the counters in the same transaction, so a chunk
that runs twice writes nothing twice and counts nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from mlapp.batch import outages as outages_module
from mlapp.batch.sources import Chunk, Item, QuerySetSource, Source, file_source
from mlapp.exceptions import BadSource, InvalidInput, MLAppError
from mlapp.models import BatchJob, BatchPrediction
from mlapp.runtimes.tensors import Signature
from mlapp.serving.inputs import named, validate_inputs
from mlapp.serving.predlog import recorder
from mlapp.serving.service import service, to_json_value

logger = logging.getLogger("mlapp.batch")

#: Rows inserted per INSERT statement.
INSERT_BATCH = 1000
#: A chunk runs in parts: while one part's results are written, the model computes the
#: next (the call releases the GIL). The first part has ``PART_SIZE`` items; the others as
#: many as the model runs in about ``PART_SECONDS`` (at least ``PART_SIZE``).
PART_SIZE = 32
PART_SECONDS = 0.25


@dataclass
class Result:
    key: str
    outputs: dict[str, Any] | None = None
    error: str = ""


@dataclass
class ChunkOutcome:
    """What one run of a chunk did."""

    written: int = 0
    failed: int = 0
    #: The job was no longer active (cancelled, failed, finished, deleted): nothing ran.
    stopped: bool = False


def open_source(job: BatchJob, signature: Signature | None = None) -> Source:
    """The source a stored job reads: its uploaded file, or its registered source."""
    signature = signature or service.public_signature(job.version)
    if job.source_name:
        return QuerySetSource(job.source_name, job.source_params, signature)
    if not job.source_file:
        raise BadSource("The job has neither an input file nor a registered source.")
    field = job.source_file
    storage, name = field.storage, field.name
    assert name is not None  # a FieldFile is true only when it has a name
    try:
        path = storage.path(name)
    except NotImplementedError:  # a remote storage: read through the storage API
        path = None
    return file_source(name, lambda: storage.open(name, "rb"), signature, path)


# -- predicting -------------------------------------------------------------------------


def _stack_key(arrays: dict[str, np.ndarray]) -> tuple | None:
    """Items with the same key can be stacked along their first axis into one call."""
    if any(a.ndim == 0 for a in arrays.values()):
        return None
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(arrays.items()))


def check_finite(arrays: dict[str, np.ndarray]) -> None:
    """Refuse an item whose numbers hold NaN or an infinity (``InvalidInput``).

    A model answers NaN with an answer (iris names a species, with null probabilities)
    that no one should store as a prediction. The check runs on the arrays as the model
    gets them, so a value too large for FP16 that became infinite is caught as well.
    """
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise InvalidInput(
                f"Input {name!r} holds NaN or an infinite value; a batch item's inputs must "
                "be finite numbers."
            )


def predict_items(model: str, version: int, items: Sequence[Item]) -> list[Result]:
    """Run ``items`` through the inference service, stacked into as few calls as fit.

    Items the service refuses (wrong shape, wrong dtype) get the same error message native
    predict would answer; a failure of the model itself raises, and the chunk is retried.
    """
    signature = service.model(model, version).signature
    results: dict[str, Result] = {}
    groups: dict[Any, list[tuple[str, dict[str, np.ndarray]]]] = {}
    for item in items:
        if item.error:
            results[item.key] = Result(item.key, error=item.error)
            continue
        try:
            arrays = item.inputs if item.checked else validate_inputs(signature, item.inputs)
            check_finite(arrays)
        except InvalidInput as exc:
            results[item.key] = Result(item.key, error=exc.message)
            continue
        key = _stack_key(arrays)
        groups.setdefault(key if key is not None else ("alone", item.key), []).append(
            (item.key, arrays)
        )
    for members in groups.values():
        for item_key, outputs in _run_group(model, version, members):
            results[item_key] = Result(item_key, outputs=outputs)
    return [results[item.key] for item in items]


def _run_group(
    model: str, version: int, members: list[tuple[str, dict[str, np.ndarray]]]
) -> Iterable[tuple[str, dict[str, Any]]]:
    names = list(members[0][1])
    counts = [len(arrays[names[0]]) for _, arrays in members]
    stacked = (
        members[0][1]
        if len(members) == 1
        else {n: np.concatenate([arrays[n] for _, arrays in members]) for n in names}
    )
    # Stored as BatchPrediction rows: not written to the prediction log too.
    with recorder.suspended():
        outputs = service.predict(model, named(stacked), version=version).outputs
    rows = sum(counts)
    if len(members) > 1 and any(o.ndim == 0 or len(o) != rows for o in outputs.values()):
        # Outputs not one row per input row cannot be split: run each item on its own.
        for key, arrays in members:
            with recorder.suspended():
                single = service.predict(model, named(arrays), version=version).outputs
            yield key, {n: to_json_value(o) for n, o in single.items()}
        return
    start = 0
    for (key, _), count in zip(members, counts, strict=True):
        stop = start + count
        yield key, {n: to_json_value(o[start:stop]) for n, o in outputs.items()}
        start = stop


def predict_ahead(model: str, version: int, items: Sequence[Item]) -> Iterator[list[Result]]:
    """The results of ``items`` in parts, the later parts predicted on a thread ahead.

    While the caller writes one part's results, the model computes the next (a model call
    releases the GIL), so a slow model hides the database's time. Parts are sized to take
    about ``PART_SECONDS`` of model time, from the time the first ``PART_SIZE`` items took:
    a fast model's chunk is one more call and one write, a slow model's many small calls.
    A model failure raises here, as it would inline.
    """
    if not items:
        return
    started = time.perf_counter()
    first = predict_items(model, version, items[:PART_SIZE])
    rest = items[PART_SIZE:]
    if not rest:
        yield first
        return
    per_item = (time.perf_counter() - started) / PART_SIZE  # the first part was full
    size = max(PART_SIZE, int(PART_SECONDS / per_item) if per_item > 0 else len(rest))
    if size >= len(rest):
        yield first + predict_items(model, version, rest)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="mlapp-batch") as pool:
        pending = deque(
            pool.submit(predict_items, model, version, rest[start : start + size])
            for start in range(0, len(rest), size)
        )
        try:
            yield first
            while pending:
                ready = pending.popleft().result()
                while pending and pending[0].done():
                    ready += pending.popleft().result()
                yield ready
        finally:
            for future in pending:
                future.cancel()


# -- the job's state ---------------------------------------------------------------------


def mark_running(job_id: int) -> None:
    # A resumed job keeps the time it first started.
    BatchJob.objects.filter(pk=job_id, status=BatchJob.Status.PENDING).update(
        status=BatchJob.Status.RUNNING, started_at=Coalesce(F("started_at"), timezone.now())
    )


def finish_if_complete(job_id: int) -> bool:
    """Mark an active job whose every item is stored as succeeded; True if it did.

    Writes do this as they store the last item; a job whose last write happened before it
    stopped (it was resumed, or its last chunk ran twice) needs it here.
    """
    return bool(
        BatchJob.objects.active()
        .filter(pk=job_id, total__lte=F("done") + F("failed"))
        .update(status=BatchJob.Status.SUCCEEDED, finished_at=timezone.now())
    )


def fail_job(job_id: int, message: str) -> bool:
    """Stop an active job as failed with ``message``; False if it had already stopped."""
    logger.error("mlapp: batch job %s failed: %s", job_id, message)
    return bool(
        BatchJob.objects.active()
        .filter(pk=job_id)
        .update(status=BatchJob.Status.FAILED, error=message[:10_000], finished_at=timezone.now())
    )


def describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, MLAppError) else f"{type(exc).__name__}: {exc}"


def chunk_failure(chunk: Chunk, attempts: int, exc: BaseException) -> str:
    last = chunk.start + chunk.count - 1
    return (
        f"Chunk {chunk.index} (items {chunk.start}-{last}) failed after {attempts} "
        f"attempt(s): {describe(exc)}"
    )


def _existing_keys(job_id: int, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), INSERT_BATCH):
        found.update(
            BatchPrediction.objects.filter(
                job_id=job_id, key__in=keys[start : start + INSERT_BATCH]
            ).values_list("key", flat=True)
        )
    return found


def write_results(job: BatchJob, results: Sequence[Result]) -> ChunkOutcome:
    """Insert the results whose keys are not stored yet and move the counters, atomically."""
    with transaction.atomic():
        # The row lock serialises the writers of one job (PostgreSQL); SQLite serialises
        # every writer itself. Either way the check below and the insert are not raced.
        list(BatchJob.objects.select_for_update().filter(pk=job.pk).values_list("pk"))
        new = [_prediction(job, r) for r in results]
        try:
            with transaction.atomic():
                BatchPrediction.objects.bulk_create(new, batch_size=INSERT_BATCH)
        except IntegrityError:
            # Another run of this chunk stored some of these keys since it was read (its
            # message handed out again while the first worker still ran): insert the rest.
            existing = _existing_keys(job.pk, [r.key for r in results])
            new = [_prediction(job, r) for r in results if r.key not in existing]
            BatchPrediction.objects.bulk_create(new, batch_size=INSERT_BATCH)
        failed = sum(1 for p in new if p.error)
        outcome = ChunkOutcome(written=len(new) - failed, failed=failed)
        if new:
            BatchJob.objects.filter(pk=job.pk).update(
                done=F("done") + outcome.written, failed=F("failed") + outcome.failed
            )
        BatchJob.objects.filter(
            pk=job.pk,
            status=BatchJob.Status.RUNNING,
            total__lte=F("done") + F("failed"),
        ).update(status=BatchJob.Status.SUCCEEDED, finished_at=timezone.now())
    return outcome


def _prediction(job: BatchJob, result: Result) -> BatchPrediction:
    return BatchPrediction(
        job_id=job.pk,
        model_id=job.version.model_id,
        version_id=job.version_id,
        key=result.key,
        outputs=result.outputs if result.outputs is not None else {},
        error=result.error,
    )


def run_chunk(job_id: int, chunk: Chunk, *, skip_stored: bool = True) -> ChunkOutcome:
    """Run one chunk of a job; raises on a failure worth retrying.

    ``skip_stored`` first looks for the chunk's keys already stored, so a chunk that runs
    again does not run the model again; a caller that knows this is the chunk's first run
    spares that query. Either way the write stores each key once.
    """
    job = BatchJob.objects.active().select_related("version__model").filter(pk=job_id).first()
    if job is None:
        return ChunkOutcome(stopped=True)
    mark_running(job_id)
    items = open_source(job).read(chunk)
    existing = _existing_keys(job_id, [item.key for item in items]) if skip_stored else set()
    todo = [item for item in items if item.key not in existing]
    outcome = ChunkOutcome()
    if not todo:  # every key stored already: perhaps the last chunk of a resumed job
        finish_if_complete(job_id)
        return outcome
    for results in predict_ahead(job.version.model.name, job.version.version, todo):
        written = write_results(job, results)
        outcome.written += written.written
        outcome.failed += written.failed
    return outcome


def run_job(
    job_id: int,
    chunks: Sequence[Chunk],
    *,
    max_retries: int,
    retry_delay: float,
    progress: Callable[[ChunkOutcome], None] | None = None,
) -> None:
    """Run the chunks one after another in this process, each retried up to ``max_retries``.

    A chunk that still fails then fails the job; a cancelled job stops at the next chunk.
    A database outage is waited for apart: up to ``outages.OUTAGE_RETRIES`` tries with a growing
    delay, which do not count against ``max_retries``.
    """
    # A job that stored nothing yet (the usual case) has no keys to skip on a first try.
    resumed = BatchPrediction.objects.filter(job_id=job_id).exists()
    for chunk in chunks:
        attempt = outages = 0
        while True:
            attempt += 1
            try:
                outcome = run_chunk(job_id, chunk, skip_stored=resumed or attempt > 1)
                break
            except Exception as exc:
                if outages_module.is_outage(exc) and outages < outages_module.OUTAGE_RETRIES:
                    outages += 1
                    attempt -= 1
                    delay = outages_module.outage_delay(outages)
                    logger.warning(
                        "mlapp: chunk %s of job %s: database unreachable (%s), try %s of %s "
                        "in %.1fs",
                        chunk.index,
                        job_id,
                        describe(exc),
                        outages,
                        outages_module.OUTAGE_RETRIES,
                        delay,
                    )
                    outages_module.reset_connections()
                    time.sleep(delay)
                    resumed = True  # a write may have landed before the connection broke
                    continue
                if attempt > max_retries:
                    logger.exception("mlapp: chunk %s of job %s failed", chunk.index, job_id)
                    fail_job(job_id, chunk_failure(chunk, attempt, exc))
                    return
                logger.warning(
                    "mlapp: chunk %s of job %s failed (attempt %s), retrying: %s",
                    chunk.index,
                    job_id,
                    attempt,
                    describe(exc),
                )
                time.sleep(retry_delay)
        if outcome.stopped:
            return
        if progress is not None:
            progress(outcome)
