"""mlapp's tables, one module per part of the app; every model is importable from here.

- :mod:`~mlapp.models.registry`: models, their versions, the change marker, and where
  artifacts are stored (:func:`artifact_storage`, :func:`artifact_upload_to`, which the
  migrations name as ``mlapp.models.*``).
- :mod:`~mlapp.models.batch`: batch jobs and their stored predictions.
- :mod:`~mlapp.models.monitoring`: logged requests, feedback, drift references and reports.
- :mod:`~mlapp.models.traffic`: traffic policies, their counters, shadow comparisons, history.
"""

from mlapp.models.batch import BatchJob, BatchPrediction
from mlapp.models.monitoring import DriftReference, DriftReport, Feedback, PredictionLog
from mlapp.models.registry import (
    ChangeMarker,
    MLModel,
    ModelVersion,
    artifact_storage,
    artifact_upload_to,
)
from mlapp.models.traffic import ShadowComparison, TrafficEvent, TrafficPolicy, TrafficWindow

__all__ = [
    "BatchJob",
    "BatchPrediction",
    "ChangeMarker",
    "DriftReference",
    "DriftReport",
    "Feedback",
    "MLModel",
    "ModelVersion",
    "PredictionLog",
    "ShadowComparison",
    "TrafficEvent",
    "TrafficPolicy",
    "TrafficWindow",
    "artifact_storage",
    "artifact_upload_to",
]
