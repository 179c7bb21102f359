"""Versions of a model: list and upload, detail, artifact download, promote and archive."""

from __future__ import annotations

import base64
import binascii
import posixpath
from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import (
    FormatIsAFilterNegotiation,
    MLAppAPIView,
    MLAppGenericView,
    MLAppListView,
    check_file_size,
    get_model,
    get_version,
    refuse_oversized_body,
    request_user,
    validated,
)
from mlapp.api.native.filters import FilterBackend, VersionFilter
from mlapp.api.native.schema_docs import extend_schema, extend_schema_view
from mlapp.api.native.serializers.versions import (
    VersionDetailSerializer,
    VersionListSerializer,
    VersionUploadSerializer,
)
from mlapp.api.permissions import MANAGE
from mlapp.exceptions import NotFound
from mlapp.models import ModelVersion
from mlapp.versions.lifecycle import archive_version, promote_version, register_version


@extend_schema_view(
    get=extend_schema(tags=["versions"], summary="List the versions of a model"),
    post=extend_schema(
        tags=["manage"],
        summary="Upload a new version (staging)",
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionDetailSerializer,
            400: docs.ERROR,
            409: docs.ERROR,
            413: docs.ERROR,
        },
    ),
)
class VersionListView(MLAppListView):
    """Versions of a model (newest first); POST uploads a new one, validated first.

    A refused artifact answers 400 with the reason and stores nothing.
    """

    filter_backends = [FilterBackend]
    filterset_class = VersionFilter
    # ?format= filters by artifact format here; the Accept header picks JSON or HTML.
    content_negotiation_class = FormatIsAFilterNegotiation
    parser_classes = [MultiPartParser, FormParser]

    def get_serializer_class(self) -> Any:
        if self.request is not None and self.request.method == "POST":
            return VersionUploadSerializer
        return VersionListSerializer

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return ModelVersion.objects.none()
        return ModelVersion.objects.select_related("model").filter(model__name=self.kwargs["name"])

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        get_model(kwargs["name"])
        return super().list(request, *args, **kwargs)

    def post(self, request: Request, name: str) -> Response:
        refuse_oversized_body(request)
        data = validated(VersionUploadSerializer(data=request.data))
        upload = data["file"]
        check_file_size(upload.size)
        version = register_version(
            name,
            upload,
            signature=data.get("signature"),
            metrics=data.get("metrics"),
            handler=data.get("handler"),
            confirm_handler_change=data["confirm_handler_change"],
            description=data.get("description"),
            task=data.get("task"),
            notes=data["notes"],
            filename=upload.name,
            created_by=request_user(request),
        )
        body = VersionDetailSerializer(
            get_version(name, version.version), context=self.get_serializer_context()
        ).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


@extend_schema(tags=["versions"], responses={200: VersionDetailSerializer, 404: docs.ERROR})
class VersionDetailView(MLAppGenericView):
    """One version: format, checksum, size, signature, metrics, stage, lineage."""

    serializer_class = VersionDetailSerializer

    def get(self, request: Request, name: str, version: int) -> Response:
        return Response(self.get_serializer(get_version(name, version)).data)


@extend_schema(
    tags=["versions"],
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            response=docs.BINARY,
            description="The artifact file, with its SHA-256 in X-Checksum-SHA256 "
            "(hex) and Repr-Digest (RFC 9530).",
        ),
        404: docs.ERROR,
    },
)
class ArtifactView(MLAppAPIView):
    """Download a version's artifact (streamed), with its checksum in the headers."""

    read_access = write_access = MANAGE

    def get(self, request: Request, name: str, version: int) -> FileResponse:
        found = get_version(name, version)
        try:
            handle = found.artifact.open("rb")
        except FileNotFoundError:
            raise NotFound(f"The artifact file of {found} is missing from storage.") from None
        stored = found.artifact.name
        assert stored is not None  # the artifact is a required file field
        extension = posixpath.splitext(stored)[1]
        response = FileResponse(
            handle,
            as_attachment=True,
            filename=f"{name}-v{version}{extension}",
            content_type="application/octet-stream",
        )
        response["X-Checksum-SHA256"] = found.sha256
        try:
            digest = base64.b64encode(bytes.fromhex(found.sha256)).decode()
            response["Repr-Digest"] = f"sha-256=:{digest}:"
        except (ValueError, binascii.Error):
            pass
        return response


class _StageChangeView(MLAppGenericView):
    read_access = write_access = MANAGE
    serializer_class = VersionDetailSerializer

    def change(self, version: ModelVersion, user: Any) -> ModelVersion:
        raise NotImplementedError

    def post(self, request: Request, name: str, version: int) -> Response:
        self.change(get_version(name, version), request_user(request))
        return Response(self.get_serializer(get_version(name, version)).data)


@extend_schema(
    tags=["manage"],
    request=None,
    responses={200: VersionDetailSerializer, 404: docs.ERROR, 409: docs.ERROR},
)
class PromoteView(_StageChangeView):
    """Make this version the production version; the previous one is archived."""

    def change(self, version: ModelVersion, user: Any) -> ModelVersion:
        return promote_version(version, user=user)


@extend_schema(
    tags=["manage"],
    request=None,
    responses={200: VersionDetailSerializer, 404: docs.ERROR, 409: docs.ERROR},
)
class ArchiveView(_StageChangeView):
    """Archive a staging version (a production version answers 409: promote another)."""

    def change(self, version: ModelVersion, user: Any) -> ModelVersion:
        return archive_version(version, user=user)
