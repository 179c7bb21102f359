"""V2 inference without the middleware stack: an opt-in WSGI wrapper for the hot path.

Django's request cycle and a usual middleware stack cost about 250 µs of CPU per request,
more than the iris model with its whole V2 decoding and encoding. With
``MLAPP["V2_SKIP_MIDDLEWARE"] = True``, :func:`mlapp.wsgi.get_wsgi_application` wraps the
project's application so that ``POST .../v2/models/<name>[/versions/<v>]/infer`` goes
straight to the same ``infer`` view, not through URL resolving and ``MIDDLEWARE``. Every
other request, and every inference request while predicting needs a permission (only
``AllowAny`` lets anyone in without a session), goes through Django as before.

What the fast path keeps: the view itself (body limits, decoding, errors as V2 JSON,
metrics), ``ALLOWED_HOSTS`` (a request for another host is refused with 400), database
connections closed after the request as Django's handler closes them, and
``X-Content-Type-Options: nosniff``. What it skips: the project's middleware and the
``request_started`` / ``request_finished`` signals (their dispatch alone cost ~45 µs a
request; their receivers reset the query log, caches and urlconf that this path does not
touch). Turn it on only where nothing must see inference requests (access logs, rate limits,
IP rules, tracing).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest, get_path_info
from django.urls import NoReverseMatch, reverse

from mlapp.api.connections import close_old_connections
from mlapp.api.permissions import PREDICT, open_to_anyone
from mlapp.api.v2 import views
from mlapp.conf import settings

logger = logging.getLogger("mlapp.api")

StartResponse = Callable[..., Any]


def infer_pattern() -> re.Pattern[str] | None:
    """The infer routes as included by the project's URLconf; None when V2 is not included."""
    try:
        model = reverse("mlapp-v2:infer", kwargs={"name": "MLAPPNAME"})
        version = reverse(
            "mlapp-v2:version-infer", kwargs={"name": "MLAPPNAME", "version": "MLAPPVERSION"}
        )
    except NoReverseMatch:
        return None
    model_path = re.escape(model).replace("MLAPPNAME", "(?P<name>[^/]+)")
    version_path = (
        re.escape(version)
        .replace("MLAPPNAME", "(?P<vname>[^/]+)")
        .replace("MLAPPVERSION", "(?P<version>[^/]+)")
    )
    return re.compile(f"^(?:{model_path}|{version_path})$")


class SkipMiddleware:
    """A WSGI application: V2 infer requests to the view directly, the rest to ``application``."""

    def __init__(self, application: Callable[..., Iterable[bytes]], pattern: re.Pattern[str]):
        self.application = application
        self.pattern = pattern

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").endswith(
            "/infer"
        ):
            # Decoded as WSGIRequest decodes it; the request is built only for this path.
            match = self.pattern.match(get_path_info(environ))
            if match is not None and open_to_anyone(PREDICT):
                return self.infer(match, environ, start_response)
        return self.application(environ, start_response)

    def infer(
        self, match: re.Match[str], environ: dict[str, Any], start_response: StartResponse
    ) -> Any:
        request = WSGIRequest(environ)
        try:
            request.get_host()
        except DisallowedHost as exc:
            response = views._error(str(exc), 400)
        else:
            name = match["name"] or match["vname"]
            try:
                response = views.infer(request, name=name, version=match["version"])
            finally:
                # A request that had to load a model may have opened a connection: close
                # it as Django's handler would (CONN_MAX_AGE, unusable connections).
                close_old_connections()
        response["X-Content-Type-Options"] = "nosniff"
        request.close()
        status = f"{response.status_code} {response.reason_phrase}"
        start_response(status, list(response.items()))
        # The body, not the response: its close() would send request_finished.
        return [response.content]


def wrap(application: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``application`` with the fast path in front when the setting asks for it."""
    if not settings.V2_SKIP_MIDDLEWARE:
        return application
    pattern = infer_pattern()
    if pattern is None:
        logger.warning(
            "mlapp: V2_SKIP_MIDDLEWARE is on but the V2 routes are not in the URLconf: "
            "no fast path."
        )
        return application
    return SkipMiddleware(application, pattern)
