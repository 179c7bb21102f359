"""Open Inference Protocol V2 views: plain Django function views over the inference service.

The inference hot path stays lean on purpose (issue 7 measured a plain view with orjson
well ahead of a DRF view): no content negotiation, no serializer, no authentication or
session lookup while the permission classes are ``AllowAny`` (the default), and no database
query once the model is loaded. Bodies are read raw: ``tritonclient`` sends no Content-Type
and may compress them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

import mlapp
from mlapp.api import permissions
from mlapp.api.errors import render_error
from mlapp.api.v2 import protocol
from mlapp.api.v2.responses import encode_response
from mlapp.conf import settings
from mlapp.exceptions import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from mlapp.runtimes.tensors import Signature
from mlapp.serving.routes import Caller
from mlapp.serving.service import service

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rest_framework.authentication import BaseAuthentication

#: What a 503 of the health endpoints asks clients to wait, as the error does.
_RETRY = {"Retry-After": str(ModelNotReady.retry_after)}

JSON = "application/json"
BINARY = "application/octet-stream"
#: Request media types the infer endpoint reads. tritonclient sends none, which Python's
#: wsgiref (runserver) reports as text/plain, so that one stands for "none" too.
READABLE_TYPES = frozenset({"", "text/plain", JSON, BINARY})
#: What ``GET /v2`` lists: only extensions this server implements.
EXTENSIONS = ["binary_tensor_data"]
#: ModelVersion.format -> the model metadata's ``platform``.
PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "torchscript": "pytorch_torchscript",
    "torch_export": "pytorch_export",
}


# -- responses ------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    return _json({"error": message}, status, headers)


# -- permissions ----------------------------------------------------------------------------


class V2View:
    """What permission classes get as ``view``: the kind of access being checked."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


def check_access(request: HttpRequest, kind: str) -> HttpResponse | None:
    """Run the ``MLAPP`` permission classes of ``kind``; a response when access is refused.

    All ``AllowAny`` (the default) and no ``Authorization`` header: nothing runs, so no
    session or token is looked up. Credentials that were sent are always checked: a wrong
    token is a 401, as on the native API, even where anyone may call.
    """
    credentials = "HTTP_AUTHORIZATION" in request.META
    if permissions.open_to_anyone(kind) and not credentials:
        return None
    classes = permissions.permission_classes(kind)
    # api_settings imports the classes; the stubs type the setting as their dotted paths.
    auth_classes = cast(
        "list[type[BaseAuthentication]]", api_settings.DEFAULT_AUTHENTICATION_CLASSES
    )
    drf_request = Request(request, authenticators=[auth() for auth in auth_classes])
    view = V2View(kind)
    try:
        if credentials:
            drf_request.user  # noqa: B018 - authenticates now: a wrong token raises here
        for cls in classes:
            permission = cls()
            if permission.has_permission(drf_request, view):
                continue
            if drf_request.authenticators and not drf_request.successful_authenticator:
                raise drf_exceptions.NotAuthenticated()
            raise drf_exceptions.PermissionDenied(getattr(permission, "message", None))
    except drf_exceptions.APIException as exc:
        status = exc.status_code
        headers = None
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            # DRF's rule (APIView.handle_exception): 401 with WWW-Authenticate when the first
            # authentication class names a scheme (Token), else 403 (Session). A client that
            # sent credentials gets the challenge of the scheme that takes them, as on the
            # native API (mlapp.api.native.base).
            challenge = _challenge(drf_request, credentials)
            status = 401 if challenge else 403
            headers = {"WWW-Authenticate": challenge} if challenge else None
        return _error(str(exc.detail), status, headers)
    return None


def _challenge(drf_request: Request, credentials: bool) -> str | None:
    # The ones built above: a test's ForcedAuthentication never fails to authenticate.
    authenticators = cast("Sequence[BaseAuthentication]", drf_request.authenticators)
    for position, authenticator in enumerate(authenticators):
        if position > 0 and not credentials:
            break
        header = authenticator.authenticate_header(drf_request)
        if header:
            return str(header)
    return None


# -- the view decorator -----------------------------------------------------------------------


def v2_view(methods: tuple[str, ...], kind: str | None) -> Callable:
    """A V2 endpoint: allowed methods, permission kind (None: open), errors as JSON.

    CSRF-exempt: anonymous clients post without a token (session-authenticated requests are
    still checked by DRF's SessionAuthentication when permissions need a user).
    """

    def decorate(func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(func)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return _error(
                    f"Method {request.method} is not allowed here; use {', '.join(methods)}.",
                    405,
                    {"Allow": ", ".join(methods)},
                )
            try:
                if kind is not None:
                    denied = check_access(request, kind)
                    if denied is not None:
                        return denied
                return func(request, *args, **kwargs)
            except Exception as exc:
                answer = render_error(exc)
                return _json(answer.body, answer.status, answer.headers or None)

        return view

    return decorate


READ_METHODS = ("GET", "HEAD")


# -- server ----------------------------------------------------------------------------------


@v2_view(READ_METHODS, "READ")
def server_metadata(request: HttpRequest) -> HttpResponse:
    return _json({"name": "mlapp", "version": mlapp.__version__, "extensions": EXTENSIONS})


@v2_view(READ_METHODS, None)
def server_live(request: HttpRequest) -> HttpResponse:
    return _json({"live": True})


@v2_view(READ_METHODS, None)
def server_ready(request: HttpRequest) -> HttpResponse:
    """200 once startup loading ran in this process and every production version loaded.

    Open to all, like liveness (probes carry no credentials).
    """
    ready, reason = service.ready()
    if not ready:
        return _json({"ready": False, "error": reason}, 503, _RETRY)
    return _json({"ready": True})


@v2_view(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"), None)
def unknown_endpoint(request: HttpRequest) -> HttpResponse:
    return _error(f"No Open Inference Protocol endpoint at {request.path}.", 404)


# -- models ----------------------------------------------------------------------------------


def _version_number(name: str, version: str | None) -> int | None:
    if version is None:
        return None
    if not (version.isascii() and version.isdigit()):
        raise ModelNotFound.no_version(name, version)
    return int(version)


@v2_view(READ_METHODS, "READ")
def model_metadata(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    """The model (its production version, or ``version``) as clients see it."""
    meta = service.model_metadata(name, _version_number(name, version))
    return _json(
        {
            "name": meta.name,
            "versions": meta.versions,
            "platform": PLATFORMS.get(meta.format, meta.format),
            "inputs": [spec.to_dict() for spec in meta.signature.inputs],
            "outputs": [spec.to_dict() for spec in meta.signature.outputs],
        }
    )


@v2_view(READ_METHODS, "READ")
def model_ready(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    """200 when this process has the model (version) loaded; 503 with the reason if not."""
    ready, reason = service.model_ready(name, _version_number(name, version))
    if ready:
        return _json({"name": name, "ready": True})
    return _json({"name": name, "ready": False, "error": reason}, 503, _RETRY)


# -- inference -------------------------------------------------------------------------------


def body_limit() -> int | None:
    """Bytes a request body may have, before and after decompression (None: no limit)."""
    limit = settings.V2_MAX_REQUEST_SIZE
    return django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit


def _read_body(request: HttpRequest) -> bytes:
    """The raw body, inflated; 413 beyond the limit, 415 for what this API does not read."""
    meta = request.META
    media_type = meta.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media_type not in READABLE_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media_type!r} is not read here: send application/json, "
            "application/octet-stream (binary tensor data), or no Content-Type."
        )
    encoding = meta.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in protocol.ENCODINGS and encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not read here: use gzip, deflate or none."
        )
    limit = body_limit()
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("Content-Length is not a number.") from None
    if limit is not None and length > limit:
        raise PayloadTooLarge(
            f"The request body is {length} bytes; the limit is {limit} bytes "
            "(MLAPP['V2_MAX_REQUEST_SIZE'], or DATA_UPLOAD_MAX_MEMORY_SIZE when unset)."
        )
    # Read raw, not request.body: that would apply DATA_UPLOAD_MAX_MEMORY_SIZE on its own.
    body = request.read()
    if encoding in protocol.ENCODINGS:
        body = protocol.decompress(body, encoding, limit)
    return body


class _Decoder:
    """Decodes the body against the signature of the version that answers (in the service,
    so that a bad request is counted in the metrics), keeping what the response needs."""

    __slots__ = ("body", "header_length", "request")

    def __init__(self, body: bytes, header_length: str | None) -> None:
        self.body = body
        self.header_length = header_length
        self.request: protocol.InferenceRequest | None = None

    def __call__(self, signature: Signature) -> dict[str, Any]:
        self.request = protocol.decode_request(self.body, self.header_length, signature)
        return self.request.inputs

    def request_id(self) -> str | None:
        """The body's ``id``, once decoded."""
        return self.request.id if self.request is not None else None


@v2_view(("POST",), "PREDICT")
def infer(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    number = _version_number(name, version)
    decoder = _Decoder(
        _read_body(request), request.META.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    )
    meta = request.META
    caller = Caller(
        request.headers,
        lambda: getattr(request, "user", None),
        lambda: protocol.request_parameters(decoder.body, decoder.header_length),
    )
    prediction = service.predict(
        name,
        decoder,
        version=number,
        protocol="v2",
        caller=caller,
        # The X-Request-ID header, else the body's "id" (read only for a logged request).
        request_id=meta.get("HTTP_X_REQUEST_ID") or decoder.request_id,
        key=meta.get("HTTP_X_MLAPP_KEY"),
    )
    # Both set by service.predict: the decoder ran, and the answer carries its signature.
    assert decoder.request is not None
    assert prediction.signature is not None
    content, json_length = encode_response(
        model_name=prediction.model,
        model_version=str(prediction.version),
        request=decoder.request,
        outputs=prediction.outputs,
        output_names=prediction.signature.output_names,
    )
    if json_length is None:
        return HttpResponse(content, content_type=JSON)
    return HttpResponse(
        content,
        content_type=BINARY,
        headers={"Inference-Header-Content-Length": str(json_length)},
    )
