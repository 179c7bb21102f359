"""Model monitoring: the prediction log, ground-truth feedback, live accuracy and drift.

The log is written by the serving layer (:mod:`mlapp.serving.predlog`); this package reads
it, joins feedback to it and to batch predictions, and computes drift against a reference
(docs/monitoring.md). It sits beside the batch package: above the service, below the front
doors (the API, the admin, the commands and the Celery tasks call it).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from mlapp.exceptions import InvalidInput
from mlapp.models import MLModel
from mlapp.monitoring.feedback import (
    feedback_from_csv,
    feedback_from_queryset,
    joined,
    live_metric,
    record_feedback,
)

__all__ = [
    "configure",
    "feedback_from_csv",
    "feedback_from_queryset",
    "joined",
    "live_metric",
    "record_feedback",
]


def configure(model: MLModel, changes: dict[str, Any]) -> MLModel:
    """Merge ``changes`` into ``model.monitoring`` (validated) and save it.

    The change reaches every serving process within ``POLL_INTERVAL`` (the change marker
    moves); the model's weights are not reloaded. Raises :class:`InvalidInput` naming what
    is wrong.
    """
    if not isinstance(changes, dict):
        raise InvalidInput("The monitoring config must be a JSON object.")
    with transaction.atomic():
        model = MLModel.objects.select_for_update().get(pk=model.pk)
        model.monitoring = {**(model.monitoring or {}), **changes}
        try:
            model.clean()
        except ValidationError as exc:
            raise InvalidInput(" ".join(exc.messages)) from None
        model.save(update_fields=["monitoring", "updated_at"])
    return model
