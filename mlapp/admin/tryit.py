"""The version page's "try it": a request typed in the admin, run through the service.

The form comes prefilled with an example request (:func:`.display.example_request`); the
request runs through :data:`mlapp.serving.service.service` with the version pinned, and the
answer (or the error) is shown with the time it took. View permission is enough.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from mlapp.admin.display import example_request
from mlapp.admin.forms import TryItForm
from mlapp.exceptions import MLAppError
from mlapp.models import ModelVersion
from mlapp.serving.inputs import named
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.admin")


def try_view(model_admin: Any, request: HttpRequest, version: ModelVersion) -> HttpResponse:
    if not model_admin.has_view_or_change_permission(request, version):
        raise PermissionDenied
    result = error = latency_ms = None
    if request.method == "POST":
        form = TryItForm(request.POST)
        if form.is_valid():
            started = time.perf_counter()
            result, error = _try(version, form.cleaned_data["body"])
            latency_ms = 1000 * (time.perf_counter() - started)
    else:
        form = TryItForm(initial={"body": json.dumps(example_request(version))})
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("Try %(version)s") % {"version": version},
        "original": version,
        "form": form,
        "result": result,
        "error": error,
        "latency_ms": latency_ms,
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/mlapp/modelversion/try_it.html", context)


def _try(version: ModelVersion, inputs: Any) -> tuple[str | None, str | None]:
    """Run ``inputs`` through ``version``: (the answer as JSON, None) or (None, the error)."""
    try:
        prediction = service.predict(version.model.name, named(inputs), version=version.version)
    except MLAppError as exc:
        return None, exc.message
    except Exception as exc:
        logger.exception("mlapp: try it on %s failed", version)
        error = _("The model raised an unexpected %(error)s (see the server log).")
        return None, error % {"error": type(exc).__name__}
    return json.dumps(prediction.to_dict(), indent=2), None
