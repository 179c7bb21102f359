"""Model monitoring: a model's monitoring config and its prediction log."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppGenericView, MLAppListView, get_model, validated
from mlapp.api.native.filters import DriftReportFilter, FilterBackend, PredictionLogFilter
from mlapp.api.native.schema_docs import extend_schema, extend_schema_view
from mlapp.api.native.serializers.monitoring import (
    DriftReportSerializer,
    FeedbackResultSerializer,
    FeedbackSerializer,
    LiveMetricSerializer,
    MonitoringConfigSerializer,
    PredictionLogSerializer,
)
from mlapp.api.permissions import MANAGE
from mlapp.exceptions import InvalidInput
from mlapp.models import DriftReport, MLModel, PredictionLog
from mlapp.monitoring import configure, feedback_from_csv, live_metric, record_feedback
from mlapp.monitoring.feedback import BUCKETS
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
        # A PATCH may leave the config out (its schema says so): nothing then changes.
        data = validated(MonitoringConfigSerializer(data=request.data, partial=True))
        return Response(_config(configure(get_model(name), data.get("monitoring", {}))))


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


@extend_schema(
    tags=["monitoring"],
    summary="Attach ground truth to predictions by request id or key",
    request={
        "application/json": FeedbackSerializer,
        "multipart/form-data": FeedbackSerializer,
    },
    responses={200: FeedbackResultSerializer, 400: docs.ERROR, 404: docs.ERROR},
)
class FeedbackView(MLAppGenericView):
    """``{"key": "order-17", "value": "setosa"}``, ``{"items": [...]}`` or a CSV ``file``."""

    read_access = write_access = MANAGE
    serializer_class = FeedbackSerializer
    parser_classes = [JSONParser, MultiPartParser]

    def post(self, request: Request, name: str) -> Response:
        model = get_model(name)
        data = validated(FeedbackSerializer(data=request.data))
        if data.get("file") is not None:
            stored = feedback_from_csv(model, data["file"])
        elif data.get("items"):
            stored = record_feedback(model, [(i["key"], i["value"]) for i in data["items"]])
        elif "key" in data and data.get("value") is not None:
            stored = record_feedback(model, [(data["key"], data["value"])])
        else:
            raise InvalidInput('Send {"key": ..., "value": ...}, {"items": [...]} or a CSV file.')
        return Response({"model": name, "stored": stored})


@extend_schema(
    tags=["monitoring"],
    parameters=[
        OpenApiParameter("bucket", str, enum=list(BUCKETS), description="Period (default day)."),
        OpenApiParameter("since", OpenApiTypes.DATETIME, description="From (ISO 8601)."),
        OpenApiParameter("until", OpenApiTypes.DATETIME, description="Before (ISO 8601)."),
    ],
    responses={200: LiveMetricSerializer, 400: docs.ERROR, 404: docs.ERROR},
)
class LiveMetricView(MLAppGenericView):
    """Accuracy (mean absolute error for a regression) per version and period, from the
    logged and batch predictions that have feedback."""

    serializer_class = LiveMetricSerializer

    def get(self, request: Request, name: str) -> Response:
        model = get_model(name)
        bucket = request.query_params.get("bucket", "day")
        metric, points = live_metric(
            model,
            bucket=bucket,
            since=_when(request, "since"),
            until=_when(request, "until"),
        )
        return Response(
            {
                "model": name,
                "metric": metric,
                "bucket": bucket,
                "points": [dataclasses.asdict(p) for p in points],
            }
        )


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    found = parse_datetime(raw)
    if found is None:
        raise InvalidInput(f"{name} must be an ISO 8601 date and time, not {raw!r}.")
    return found if timezone.is_aware(found) else timezone.make_aware(found, UTC)


@extend_schema(tags=["monitoring"], responses={200: DriftReportSerializer, 404: docs.ERROR})
class DriftReportListView(MLAppListView):
    """The drift reports of a model, newest first (filter by version, drifted, time)."""

    serializer_class = DriftReportSerializer
    filter_backends = [FilterBackend]
    filterset_class = DriftReportFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return DriftReport.objects.none()
        return DriftReport.objects.select_related("model", "version").filter(
            model__name=self.kwargs["name"]
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        get_model(kwargs["name"])
        return super().list(request, *args, **kwargs)
