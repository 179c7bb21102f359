"""Models: the list, one model, and rolling a model back to its previous version."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from rest_framework import filters
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import (
    MLAppGenericView,
    MLAppListView,
    get_model,
    get_version,
    request_user,
)
from mlapp.api.native.filters import FilterBackend, ModelFilter
from mlapp.api.native.schema_docs import extend_schema
from mlapp.api.native.serializers.models import ModelDetailSerializer, ModelListSerializer
from mlapp.api.native.serializers.versions import VersionDetailSerializer
from mlapp.api.permissions import MANAGE
from mlapp.models import MLModel, ModelVersion
from mlapp.versions.lifecycle import rollback


def _models_queryset() -> Any:
    production = ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
    return MLModel.objects.prefetch_related(
        Prefetch("versions", queryset=production, to_attr="production_versions")
    )


@extend_schema(tags=["models"])
class ModelListView(MLAppListView):
    """Models, their production version, and whether this process has them ready."""

    serializer_class = ModelListSerializer
    filter_backends = [FilterBackend, filters.SearchFilter]
    filterset_class = ModelFilter
    search_fields = ["name"]

    def get_queryset(self) -> Any:
        return _models_queryset()


@extend_schema(tags=["models"], responses={200: ModelDetailSerializer, 404: docs.ERROR})
class ModelDetailView(MLAppGenericView):
    """One model: description, task, handler, serving config, production version, readiness."""

    serializer_class = ModelDetailSerializer

    def get(self, request: Request, name: str) -> Response:
        return Response(self.get_serializer(get_model(name, _models_queryset())).data)


@extend_schema(
    tags=["manage"],
    request=None,
    responses={200: VersionDetailSerializer, 404: docs.ERROR, 409: docs.ERROR},
)
class RollbackView(MLAppGenericView):
    """Bring back the version that was in production before the current one."""

    read_access = write_access = MANAGE
    serializer_class = VersionDetailSerializer

    def post(self, request: Request, name: str) -> Response:
        version = rollback(get_model(name), user=request_user(request))
        return Response(self.get_serializer(get_version(name, version.version)).data)
