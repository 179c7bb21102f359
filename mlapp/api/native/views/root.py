"""The root of the native API: links to its resources and its schema."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from mlapp.api.native.base import MLAppAPIView
from mlapp.api.native.schema_docs import extend_schema


class ApiRootView(MLAppAPIView):
    """The routes of the native API."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        links = {
            "models": "mlapp:model-list",
            "jobs": "mlapp:job-list",
            "schema": "mlapp:schema",
            "swagger": "mlapp:swagger",
            "redoc": "mlapp:redoc",
        }
        return Response({k: reverse(v, request=request) for k, v in links.items()})
