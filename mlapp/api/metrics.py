"""``GET /metrics``: the Prometheus exposition of the serving metrics (``mlapp.serving.metrics``)
and of the latest drift reports (``mlapp.monitoring.drift``).

``mlapp.site_urls`` routes it at the site root, where scrapers expect it; a project that
wants it elsewhere routes this view itself::

    path("metrics", mlapp.api.metrics.metrics_view, name="mlapp-metrics"),

Like the health endpoints of model servers it asks for no credentials (a scraper carries
none): route it only where your network lets Prometheus, and not the public, reach it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from mlapp.monitoring.drift import exposition
from mlapp.serving.metrics import render


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    content, content_type = render()
    # The drift gauges come from the stored reports (the job runs in another process).
    return HttpResponse(content + exposition(), content_type=content_type)
