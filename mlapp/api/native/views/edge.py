"""Derived versions and edge bundles of a version."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppGenericView, get_version, request_user, validated
from mlapp.api.native.serializers.edge import DeriveSerializer
from mlapp.api.native.serializers.versions import VersionDetailSerializer
from mlapp.api.permissions import MANAGE
from mlapp.versions.bundles import bundle_file
from mlapp.versions.derivation import derive_version


@extend_schema(
    tags=["manage"],
    request=DeriveSerializer,
    responses={201: VersionDetailSerializer, 400: docs.ERROR, 404: docs.ERROR},
)
class DeriveView(MLAppGenericView):
    """Derive a new staging version from this one: int8 from ONNX, or ONNX from TorchScript.

    It is made and measured against this version in the validation sandbox (size, latency,
    agreement on the sample), then validated like an upload; its ``metrics.derived`` holds
    the figures of both, its ``parent`` this version. A version it cannot be derived from
    answers 400 with the reason.
    """

    read_access = write_access = MANAGE
    serializer_class = VersionDetailSerializer
    parser_classes = [JSONParser]

    def post(self, request: Request, name: str, version: int) -> Response:
        options = validated(DeriveSerializer(data=request.data))
        derived = derive_version(
            get_version(name, version),
            kind=options["kind"],
            method=options["method"],
            samples=options.get("samples"),
            user=request_user(request),
        )
        body = self.get_serializer(get_version(name, derived.version)).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


@extend_schema(
    tags=["versions"],
    responses={
        (200, "application/zip"): OpenApiResponse(
            response=docs.BINARY,
            description="The edge bundle: the artifact, the handler's assets, manifest.json "
            "(sha256 of every member, signatures, handler notes, version and parent) and, when "
            "the host sets MLAPP['BUNDLE_SIGNING_KEY'], manifest.sig. The zip's own SHA-256 "
            "is in X-Checksum-SHA256.",
        ),
        404: docs.ERROR,
    },
)
class BundleView(MLAppGenericView):
    """Download the version's edge bundle (``python -m mlapp.edge fetch`` reads it)."""

    read_access = write_access = MANAGE

    def get(self, request: Request, name: str, version: int) -> FileResponse:
        found = get_version(name, version)
        handle, digest = bundle_file(found)
        response = FileResponse(
            handle,
            as_attachment=True,
            filename=f"{name}-v{version}.zip",
            content_type="application/zip",
        )
        response["X-Checksum-SHA256"] = digest
        return response
