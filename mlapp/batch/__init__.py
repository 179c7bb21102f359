"""Batch prediction: run a model over many inputs, store the results, serve them by key.

The public functions, for views, commands and the host project's own code::

    from mlapp import batch
    job = batch.create_job("iris", file="flowers.csv")      # or source="flowers"
    batch.cancel(job)
    batch.resume(job)                                       # failed, cancelled or stuck
    batch.latest_prediction("iris", "17")

``sources`` (one module per file format, and chunking), ``runner`` (one chunk through the
inference service, idempotent writes) and ``writers`` (JSON Lines / CSV streams) hold the
work; ``jobs`` creates, queues and cancels jobs; Celery only schedules chunks (``mlapp.tasks``).
"""

from mlapp.batch.jobs import (
    cancel,
    create_job,
    enqueue,
    executor,
    inprocess,
    latest_prediction,
    predictions_by_key,
    prepare_job,
    prepare_resume,
    resumable,
    resume,
    submit,
)

__all__ = [
    "cancel",
    "create_job",
    "enqueue",
    "executor",
    "inprocess",
    "latest_prediction",
    "predictions_by_key",
    "prepare_job",
    "prepare_resume",
    "resumable",
    "resume",
    "submit",
]
