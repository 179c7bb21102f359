"""Model monitoring: a model's monitoring config and its prediction log."""

from __future__ import annotations

import dataclasses
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppGenericView, MLAppListView, get_model, validated
from mlapp.api.native.filters import FilterBackend, PredictionLogFilter
from mlapp.api.native.schema_docs import extend_schema, extend_schema_view
from mlapp.api.native.serializers.monitoring import (
    MonitoringConfigSerializer,
    PredictionLogSerializer,
)
from mlapp.api.permissions import MANAGE
from mlapp.models import MLModel, PredictionLog
from mlapp.monitoring import configure
from mlapp.serving.monitorconf import model_monitoring


def _config(model: MLModel) -> dict[str, Any]:
    try:
        effective: dict[str, Any] = dataclasses.asdict(model_monitoring(model.monitoring))
    except ValueError as exc:
        effective = {"error": str(exc)}
    return {"model": model.name, "monitoring": model.monitoring, "effective": effective}


@extend_schema_view(
    get=extend_schema(
        tags=["monitoring"],
        summary="A model's monitoring config: sampling rate of its log, drift thresholds",
        responses={200: MonitoringConfigSerializer, 404: docs.ERROR},
    ),
    patch=extend_schema(
        tags=["monitoring"],
        summary="Change keys of a model's monitoring config",
        request=MonitoringConfigSerializer,
        responses={200: MonitoringConfigSerializer, 400: docs.ERROR, 404: docs.ERROR},
    ),
)
class MonitoringConfigView(MLAppGenericView):
    """``{"monitoring": {"sample_rate": 0.1}}`` turns the model's prediction log on for one
    request in ten; every serving process follows within ``POLL_INTERVAL``."""

    read_access = write_access = MANAGE
    serializer_class = MonitoringConfigSerializer

    def get(self, request: Request, name: str) -> Response:
        return Response(_config(get_model(name)))

    def patch(self, request: Request, name: str) -> Response:
        data = validated(MonitoringConfigSerializer(data=request.data))
        return Response(_config(configure(get_model(name), data["monitoring"])))


@extend_schema(tags=["monitoring"], responses={200: PredictionLogSerializer, 404: docs.ERROR})
class PredictionLogView(MLAppListView):
    """The logged predictions of a model, newest first (filter by version, key, request id,
    protocol, time)."""

    read_access = write_access = MANAGE
    serializer_class = PredictionLogSerializer
    filter_backends = [FilterBackend]
    filterset_class = PredictionLogFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return PredictionLog.objects.none()
        return PredictionLog.objects.select_related("model", "version").filter(
            model__name=self.kwargs["name"]
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        get_model(kwargs["name"])
        return super().list(request, *args, **kwargs)
