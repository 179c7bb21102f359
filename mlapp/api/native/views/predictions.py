"""Stored predictions served by key: what the latest succeeded batch job wrote for an item."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppGenericView, get_model
from mlapp.api.native.schema_docs import extend_schema
from mlapp.api.native.serializers.jobs import BatchPredictionSerializer
from mlapp.api.permissions import PREDICT
from mlapp.batch import latest_prediction
from mlapp.exceptions import NotFound


@extend_schema(tags=["predict"], responses={200: BatchPredictionSerializer, 404: docs.ERROR})
class StoredPredictionView(MLAppGenericView):
    """The stored prediction of one item by its key: from the latest succeeded batch job."""

    read_access = write_access = PREDICT
    serializer_class = BatchPredictionSerializer

    def get(self, request: Request, name: str, key: str) -> Response:
        found = latest_prediction(name, key)
        if found is None:
            get_model(name)
            raise NotFound(
                f"No stored prediction of model {name!r} for key {key!r} "
                "(predictions come from succeeded batch jobs)."
            )
        return Response(self.get_serializer(found).data)
