"""Predict: run a model on inputs, or describe how to call it (signature and example)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppAPIView, find_version
from mlapp.api.native.codecs import read_inputs
from mlapp.api.native.fastjson import FastJSONParser, FastJSONRenderer
from mlapp.api.native.schema_docs import extend_schema, extend_schema_view
from mlapp.api.native.serializers.predict import (
    PredictInfoSerializer,
    PredictRequestSerializer,
    PredictResponseSerializer,
)
from mlapp.api.native.status import example_request, public_signature
from mlapp.api.permissions import PREDICT, open_to_anyone, permission_classes
from mlapp.exceptions import MLAppError
from mlapp.serving.inputs import named
from mlapp.serving.routes import Caller
from mlapp.serving.service import service

#: Accept headers that mean "JSON is fine" (no header at all counts as */*).
_JSON_ACCEPT = frozenset({"*/*", "application/json", ""})


@extend_schema_view(
    get=extend_schema(
        tags=["predict"],
        summary="How to call predict: the signature and an example body",
        responses={200: PredictInfoSerializer, 404: docs.ERROR},
    ),
    post=extend_schema(
        tags=["predict"],
        summary="Run the model on inputs",
        request=PredictRequestSerializer,
        responses={
            200: PredictResponseSerializer,
            400: docs.ERROR,
            404: docs.ERROR,
            413: docs.ERROR,
            503: docs.ERROR,
        },
        examples=docs.PREDICT_EXAMPLES,
    ),
)
class PredictView(MLAppAPIView):
    """Run a model: POST ``{"inputs": ...}``; the answer names the model and version that ran.

    Without a version in the URL the production version answers; with one, that version
    (a staging version is loaded on first use into a bounded cache).
    """

    read_access = write_access = PREDICT
    # Forms: the browsable API's HTML form sends the inputs as a JSON text field.
    parser_classes = [FastJSONParser, FormParser, MultiPartParser]
    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer]
    _json_renderer = FastJSONRenderer()

    # The hot path (measured, docs/performance.md): with predict open to all (AllowAny, the
    # default) nobody is looked up before the model runs, and a client that accepts JSON gets
    # it without DRF's content negotiation. Anything else takes DRF's usual way.

    def get_permissions(self) -> list:
        return [cls() for cls in permission_classes(PREDICT)]

    def perform_authentication(self, request: Request) -> None:
        # Credentials that were sent are checked (a wrong token is a 401 here as anywhere);
        # else, while anyone may predict, request.user stays lazy: nobody is looked up, and
        # the browsable API still shows who is logged in.
        if not open_to_anyone(PREDICT) or "HTTP_AUTHORIZATION" in request.META:
            super().perform_authentication(request)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        meta = request._request.META
        if meta.get("HTTP_ACCEPT", "*/*") in _JSON_ACCEPT and not meta.get("QUERY_STRING"):
            return self._json_renderer, self._json_renderer.media_type
        return super().perform_content_negotiation(request, force)

    def post(self, request: Request, name: str, version: int | None = None) -> Response:
        data = request.data
        parameters = data.get("parameters") if isinstance(data, Mapping) else None
        fields = parameters if isinstance(parameters, Mapping) else {}
        caller = Caller(request.headers, lambda: request.user, fields)
        meta = request._request.META
        prediction = service.predict(
            name,
            named(read_inputs(data)),
            version=version,
            protocol="native",
            caller=caller,
            request_id=meta.get("HTTP_X_REQUEST_ID"),
            key=meta.get("HTTP_X_MLAPP_KEY"),
        )
        return Response(prediction.to_dict())

    def get(self, request: Request, name: str, version: int | None = None) -> Response:
        return Response(self._info(name, version))

    def _info(self, name: str, version: int | None) -> dict[str, Any]:
        found = find_version(name, version)
        signature = public_signature(found) if found else None
        return {
            "model": name,
            "version": found.version if found else None,
            "signature": signature,
            "example": example_request(found) if found else None,
        }

    def get_serializer(self, *args: Any, **kwargs: Any) -> PredictRequestSerializer:
        # The browsable API's form, filled in with a body that fits the model.
        if args or kwargs:
            return PredictRequestSerializer(*args, **kwargs)
        try:
            example = self._info(self.kwargs["name"], self.kwargs.get("version"))["example"]
        except MLAppError:
            example = None  # the page shows the error; the form stays empty
        return PredictRequestSerializer(instance=example or {"inputs": None})
