"""The native JSON API's views, one module per resource.

Kinds of access (``mlapp.api.permissions``): reads of models and versions are READ,
predict and stored predictions by key are PREDICT, everything that changes state (uploads,
stage changes, batch jobs) and artifact downloads are MANAGE. Views stay thin: the inference
service, the version lifecycle and the batch package do the work.
"""

from mlapp.api.native.views.jobs import (
    JobCancelView,
    JobDetailView,
    JobDownloadView,
    JobListView,
    JobPredictionsView,
    JobResumeView,
)
from mlapp.api.native.views.models import ModelDetailView, ModelListView, RollbackView
from mlapp.api.native.views.monitoring import (
    DriftReportListView,
    FeedbackView,
    LiveMetricView,
    MonitoringConfigView,
    PredictionLogView,
)
from mlapp.api.native.views.predict import PredictView
from mlapp.api.native.views.predictions import StoredPredictionView
from mlapp.api.native.views.root import ApiRootView
from mlapp.api.native.views.versions import (
    ArchiveView,
    ArtifactView,
    PromoteView,
    VersionDetailView,
    VersionListView,
)

__all__ = [
    "ApiRootView",
    "ArchiveView",
    "ArtifactView",
    "DriftReportListView",
    "FeedbackView",
    "JobCancelView",
    "JobDetailView",
    "JobDownloadView",
    "JobListView",
    "JobPredictionsView",
    "JobResumeView",
    "LiveMetricView",
    "ModelDetailView",
    "ModelListView",
    "MonitoringConfigView",
    "PredictView",
    "PredictionLogView",
    "PromoteView",
    "RollbackView",
    "StoredPredictionView",
    "VersionDetailView",
    "VersionListView",
]
