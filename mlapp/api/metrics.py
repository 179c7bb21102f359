"""``GET /metrics``: the Prometheus exposition of the serving metrics (``mlapp.serving.metrics``).

``mlapp.site_urls`` routes it at the site root, where scrapers expect it; a project that
wants it elsewhere routes this view itself::

    path("metrics", mlapp.api.metrics.metrics_view, name="mlapp-metrics"),

Like the health endpoints of model servers it asks for no credentials (a scraper carries
none): route it only where your network lets Prometheus, and not the public, reach it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from mlapp.serving.metrics import render


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    content, content_type = render()
    return HttpResponse(content, content_type=content_type)
