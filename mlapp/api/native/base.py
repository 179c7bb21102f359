"""What every native view shares: permissions by kind of access, errors, lookups.

The lookups of a model and a version by name live here, once, for every native view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, generics
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from mlapp.api.errors import exception_handler
from mlapp.api.native.pagination import MLAppPagination
from mlapp.api.native.schema_docs import MLAppAutoSchema
from mlapp.api.permissions import MANAGE, READ, permission_classes
from mlapp.conf import settings
from mlapp.exceptions import ModelNotFound, PayloadTooLarge
from mlapp.models import MLModel, ModelVersion

if TYPE_CHECKING:
    from rest_framework.settings import _Settings

    # For the type checker, the mixin is what it is mixed into: a view (request, super()).
    _ViewBase = APIView
else:
    _ViewBase = object

#: Room for the multipart framing and form fields around an uploaded file.
FORM_OVERHEAD = 1024 * 1024


class _NoFormatOverride:
    """DRF's settings, less the ``?format=`` renderer override."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str) -> Any:
        return getattr(api_settings, name)


class FormatIsAFilterNegotiation(DefaultContentNegotiation):
    """Content negotiation for a list that filters on a field named ``format``."""

    # Stands in for DRF's settings object, by attribute: the stubs name that object's class.
    settings = cast("_Settings", _NoFormatOverride())


class MLAppViewMixin(_ViewBase):
    """Permissions from ``MLAPP`` settings per kind of access; errors as ``{"error": ...}``.

    ``read_access`` applies to GET/HEAD/OPTIONS, ``write_access`` to the other methods.
    """

    read_access = READ
    write_access = MANAGE
    schema = MLAppAutoSchema()

    def get_permissions(self) -> list:
        method = self.request.method if self.request is not None else "GET"
        assert method is not None  # Django gives every request it serves a method
        # A method the view does not have answers 405 to whoever may read, not 403.
        writes = method not in SAFE_METHODS and hasattr(self, method.lower())
        kind = self.write_access if writes else self.read_access
        return [cls() for cls in permission_classes(kind)]

    def get_exception_handler(self) -> Any:
        return exception_handler

    # DRF returns None for "no challenge" (then a 403); its stubs say str.
    def get_authenticate_header(self, request: Request) -> str | None:  # type: ignore[override]
        """The challenge of a 401, or None for a 403 (DRF asks only the first scheme).

        With session authentication first, DRF answers 403 to every refused request, a
        wrong token included. A client that sent credentials (an ``Authorization`` header)
        and was refused gets 401 and the challenge of the scheme that takes them (``Token``).
        """
        header = super().get_authenticate_header(request)
        if header is None and request.META.get("HTTP_AUTHORIZATION"):
            for authenticator in request.authenticators:
                header = authenticator.authenticate_header(request)
                if header:
                    break
        return header or None

    def handle_exception(self, exc: Exception) -> Response:
        # Django raises these while reading the body; left alone they become bare 400s.
        if isinstance(exc, RequestDataTooBig):
            exc = PayloadTooLarge(
                "The request body is larger than this server accepts "
                f"(DATA_UPLOAD_MAX_MEMORY_SIZE = {django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                "bytes): send fewer rows per request, or run a batch job."
            )
        elif isinstance(exc, SuspiciousOperation):
            exc = exceptions.ParseError(str(exc) or "Malformed request.")
        elif isinstance(exc, Http404):
            # DRF turns these into its own exceptions, but mlapp.api.errors flattens only those.
            exc = exceptions.NotFound(str(exc) or "Not found.")
        elif isinstance(exc, DjangoPermissionDenied):
            exc = exceptions.PermissionDenied(str(exc) or None)
        return super().handle_exception(exc)


class MLAppAPIView(MLAppViewMixin, APIView):
    """Base of the native views that are not generic."""


class MLAppGenericView(MLAppViewMixin, generics.GenericAPIView):
    """Base of the native detail views."""


class MLAppListView(MLAppViewMixin, generics.ListAPIView):
    """Base of the native lists: paginated, filtered."""

    pagination_class = MLAppPagination


def validated(serializer: Serializer) -> dict[str, Any]:
    """The serializer's validated data, or a 400 whose message names each field's problem."""
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def request_user(request: Request) -> Any:
    """Who made the request, or None for an anonymous client (what ``created_by`` stores)."""
    return request.user if request.user.is_authenticated else None


def get_model(name: str, queryset: QuerySet[MLModel] | None = None) -> MLModel:
    """The model named ``name`` (from ``queryset`` when given), or 404."""
    model = (MLModel.objects if queryset is None else queryset).filter(name=name).first()
    if model is None:
        raise ModelNotFound.no_model(name)
    return model


def get_version(name: str, number: int) -> ModelVersion:
    """Version ``number`` of model ``name``, or 404 naming which of the two is missing."""
    version = (
        ModelVersion.objects.select_related("model", "parent", "created_by")
        .filter(model__name=name, version=number)
        .first()
    )
    if version is None:
        get_model(name)
        raise ModelNotFound.no_version(name, number)
    return version


def find_version(name: str, number: int | None) -> ModelVersion | None:
    """Version ``number`` of ``name``, or its production version (None while it has none)."""
    return get_model(name).production_version if number is None else get_version(name, number)


def refuse_oversized_body(request: Request, limit: int | None = None) -> None:
    """Answer 413 before reading an upload whose declared length is beyond the limit."""
    limit = settings.MAX_UPLOAD_SIZE if limit is None else limit
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length > limit + FORM_OVERHEAD:
        raise PayloadTooLarge(
            f"The upload is {length} bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is {limit}."
        )


def check_file_size(size: int) -> None:
    if size > settings.MAX_UPLOAD_SIZE:
        raise PayloadTooLarge(
            f"The file is {size} bytes; the limit (MLAPP['MAX_UPLOAD_SIZE']) is "
            f"{settings.MAX_UPLOAD_SIZE}."
        )
