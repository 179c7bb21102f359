"""The native JSON API. Views stay thin: the inference service does the work."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mlapp.api.errors import exception_handler
from mlapp.api.native.serializers import PredictRequestSerializer
from mlapp.api.permissions import permission_classes
from mlapp.models import MLModel, ModelVersion
from mlapp.registry import registry
from mlapp.service import service


class MLAppAPIView(APIView):
    """Base view: mlapp's error format, permissions from ``MLAPP`` settings."""

    permission_kind = "READ"

    def get_permissions(self) -> list:
        return [cls() for cls in permission_classes(self.permission_kind)]

    def get_exception_handler(self) -> Any:
        return exception_handler


class ModelListView(MLAppAPIView):
    """Models, their production version, and whether this process has them ready."""

    def get(self, request: Request) -> Response:
        status = registry.status()
        production = {
            v.model_id: v.version
            for v in ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
        }
        data = []
        for model in MLModel.objects.all():
            state = status.get(model.name, {})
            data.append(
                {
                    "name": model.name,
                    "description": model.description,
                    "task": model.task,
                    "production_version": production.get(model.pk),
                    "ready": bool(state.get("ready")),
                    "error": state.get("error"),
                }
            )
        return Response(data)


class PredictView(MLAppAPIView):
    """Run a model: POST ``{"inputs": ...}``; the answer names the version that ran."""

    permission_kind = "PREDICT"
    serializer_class = PredictRequestSerializer

    def get_serializer(self, *args: Any, **kwargs: Any) -> PredictRequestSerializer:
        # Lets the browsable API render a form for the request body.
        return self.serializer_class(*args, **kwargs)

    def post(self, request: Request, name: str, version: int | None = None) -> Response:
        serializer = PredictRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prediction = service.predict(name, serializer.validated_data["inputs"], version=version)
        return Response(prediction.to_dict())
