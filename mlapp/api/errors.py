"""One exception handler for mlapp's views: every error answers ``{"error": "..."}``."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mlapp.exceptions import MLAppError

logger = logging.getLogger("mlapp.api")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, MLAppError):
        if exc.status_code >= 500:
            # A server-side failure: log it whole, answer without echoing internals.
            logger.error("mlapp error: %s", exc, exc_info=exc)
            message = exc.default_message if exc.status_code == 500 else exc.message
        else:
            message = exc.message
        headers = {"Retry-After": "1"} if exc.status_code == 503 else None
        return Response({"error": message}, status=exc.status_code, headers=headers)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, drf_exceptions.APIException):
        response.data = {"error": _flatten(exc.detail)}
    return response


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)
