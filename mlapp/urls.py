"""The native API, its schema and docs pages. Include under a prefix of your choice, e.g.::

path("api/mlapp/", include("mlapp.urls")),

The routes whose paths are fixed (V2, ``/metrics``) are in :mod:`mlapp.site_urls`, included
at the site root.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt

from mlapp.api.native import schema, views

app_name = "mlapp"


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under the prefix: a 404 in the API's error format.

    CSRF-exempt: it changes nothing, and a POST to a wrong path should learn that, not get
    the CSRF failure page.
    """
    message = f"No route {request.path} in the mlapp API; see its schema for the routes."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "not-found":
            message = f"No route {request.path}; did you mean {request.path}/ ?"
    return JsonResponse({"error": message}, status=404)


version = "models/<slug:name>/versions/<int:version>"

urlpatterns = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("models/", views.ModelListView.as_view(), name="model-list"),
    path("models/<slug:name>/", views.ModelDetailView.as_view(), name="model-detail"),
    path("models/<slug:name>/predict", views.PredictView.as_view(), name="predict"),
    path("models/<slug:name>/rollback", views.RollbackView.as_view(), name="model-rollback"),
    path(
        "models/<slug:name>/predictions/<path:key>",
        views.StoredPredictionView.as_view(),
        name="prediction-by-key",
    ),
    path(
        "models/<slug:name>/monitoring",
        views.MonitoringConfigView.as_view(),
        name="model-monitoring",
    ),
    path("models/<slug:name>/log/", views.PredictionLogView.as_view(), name="prediction-log"),
    path("models/<slug:name>/feedback", views.FeedbackView.as_view(), name="feedback"),
    path("models/<slug:name>/accuracy", views.LiveMetricView.as_view(), name="live-metric"),
    path("models/<slug:name>/drift/", views.DriftReportListView.as_view(), name="drift-reports"),
    path("models/<slug:name>/versions/", views.VersionListView.as_view(), name="version-list"),
    path(f"{version}/", views.VersionDetailView.as_view(), name="version-detail"),
    path(f"{version}/artifact", views.ArtifactView.as_view(), name="version-artifact"),
    path(f"{version}/predict", views.PredictView.as_view(), name="predict-version"),
    path(f"{version}/promote", views.PromoteView.as_view(), name="version-promote"),
    path(f"{version}/archive", views.ArchiveView.as_view(), name="version-archive"),
    path("jobs/", views.JobListView.as_view(), name="job-list"),
    path("jobs/<int:pk>/", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:pk>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<int:pk>/resume", views.JobResumeView.as_view(), name="job-resume"),
    path("jobs/<int:pk>/predictions/", views.JobPredictionsView.as_view(), name="job-predictions"),
    path("jobs/<int:pk>/download", views.JobDownloadView.as_view(), name="job-download"),
    path("schema/", schema.SchemaView.as_view(), name="schema"),
    path("schema/swagger/", schema.SwaggerView.as_view(), name="swagger"),
    path("schema/redoc/", schema.RedocView.as_view(), name="redoc"),
    # Any character, a newline included: a path no route takes still answers JSON.
    re_path(r"^(?P<rest>[\s\S]*)$", not_found, name="not-found"),
]
