"""The routes mlapp serves at the site root: Open Inference Protocol V2 and ``/metrics``.

Include it at the root, first (inference is the hot path, and Django tries the patterns in
order), next to the native API under a prefix of your choice::

    path("", include("mlapp.site_urls")),
    path("api/mlapp/", include("mlapp.urls")),

The paths are fixed by what calls them: V2 clients (KServe, Triton's) expect ``/v2/...``,
Prometheus ``/metrics``. ``/metrics`` asks for no credentials, as a scraper carries none:
where the public reaches the server, keep it off at the proxy (or include
``mlapp.api.v2.urls`` alone, route :func:`mlapp.api.metrics.metrics_view` elsewhere, and
silence ``mlapp.W003``).
"""

from django.urls import include, path

from mlapp.api.metrics import metrics_view

urlpatterns = [
    path("", include("mlapp.api.v2.urls")),
    path("metrics", metrics_view, name="mlapp-metrics"),
]
