"""Open Inference Protocol V2 routes. Include at the site root: ``path("", include(...))``.

The paths are the protocol's own (``/v2/...``), so clients find them without configuration.
"""

from django.urls import path, re_path

from mlapp.api.v2 import views

app_name = "mlapp-v2"

_MODEL = "v2/models/<str:name>"
_VERSION = "v2/models/<str:name>/versions/<str:version>"

urlpatterns = [
    path("v2", views.server_metadata, name="server-metadata"),
    path("v2/health/live", views.server_live, name="health-live"),
    path("v2/health/ready", views.server_ready, name="health-ready"),
    path(_MODEL, views.model_metadata, name="model-metadata"),
    path(f"{_MODEL}/ready", views.model_ready, name="model-ready"),
    path(f"{_MODEL}/infer", views.infer, name="infer"),
    path(_VERSION, views.model_metadata, name="version-metadata"),
    path(f"{_VERSION}/ready", views.model_ready, name="version-ready"),
    path(f"{_VERSION}/infer", views.infer, name="version-infer"),
    # Anything else under /v2 answers the protocol's JSON error, not an HTML page.
    re_path(r"^v2/", views.unknown_endpoint, name="unknown"),
]
