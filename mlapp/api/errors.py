"""How every mlapp API answers an error: a status, ``{"error": "..."}`` and its headers.

``render_error`` is the one renderer: the DRF views (``exception_handler``) and the Open
Inference Protocol views both answer with what it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from mlapp.exceptions import MLAppError

logger = logging.getLogger("mlapp.api")

#: What a 500 that mlapp did not raise on purpose answers: nothing of the exception.
INTERNAL_ERROR = "Internal server error."


@dataclass(frozen=True)
class ErrorAnswer:
    """What an API answers for an exception."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.message}


def render_error(exc: BaseException) -> ErrorAnswer:
    """The answer to ``exc``: an ``MLAppError``, a DRF ``APIException`` or anything else.

    ``Retry-After`` comes from the error's ``retry_after`` (DRF's throttle: its ``wait``).
    A 500 answers the class's default message and the exception is logged whole; other
    statuses answer the error's message, which is written for the client (a 503 says why).
    """
    if isinstance(exc, MLAppError):
        status = exc.status_code
        message = exc.default_message if status == 500 else exc.message
        headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, drf_exceptions.APIException):
        status, message, headers = exc.status_code, _flatten(exc.detail), {}
        auth_header, wait = getattr(exc, "auth_header", None), getattr(exc, "wait", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        if wait:
            headers["Retry-After"] = str(int(wait))
    else:
        status, message, headers = 500, INTERNAL_ERROR, {}
    if status >= 500:
        logger.error("mlapp: %s answered %d", type(exc).__name__, status, exc_info=exc)
    return ErrorAnswer(status, message, headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER`` for mlapp's views: ``render_error``, and roll back.

    Like DRF's own handler, it marks an ``ATOMIC_REQUESTS`` transaction for rollback and
    leaves any other exception to Django (None).
    """
    if not isinstance(exc, MLAppError | drf_exceptions.APIException):
        return None
    answer = render_error(exc)
    set_rollback()
    return Response(answer.body, status=answer.status, headers=answer.headers or None)


def _flatten(detail: Any) -> str:
    """DRF's error detail as one line: ``field: problem; other: problem``."""
    if isinstance(detail, dict):
        return "; ".join(
            _flatten(v) if k == api_settings.NON_FIELD_ERRORS_KEY else f"{k}: {_flatten(v)}"
            for k, v in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)
