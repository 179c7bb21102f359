"""Batch jobs: list and create, detail, cancel, resume, their stored predictions and download."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from mlapp import batch
from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import (
    MLAppGenericView,
    MLAppListView,
    check_file_size,
    refuse_oversized_body,
    request_user,
    validated,
)
from mlapp.api.native.filters import FilterBackend, JobFilter, PredictionFilter
from mlapp.api.native.schema_docs import extend_schema, extend_schema_view
from mlapp.api.native.serializers.jobs import (
    BatchPredictionSerializer,
    JobCreateSerializer,
    JobSerializer,
)
from mlapp.api.permissions import MANAGE
from mlapp.batch.writers import streaming_response
from mlapp.exceptions import Conflict, NotFound
from mlapp.models import BatchJob, BatchPrediction


@extend_schema_view(
    get=extend_schema(tags=["jobs"], summary="List batch jobs"),
    post=extend_schema(
        tags=["jobs"],
        summary="Create a batch job",
        request={
            "multipart/form-data": JobCreateSerializer,
            "application/json": JobCreateSerializer,
        },
        responses={201: JobSerializer, 400: docs.ERROR, 413: docs.ERROR},
    ),
)
class JobListView(MLAppListView):
    """Batch jobs, newest first. POST creates one over an uploaded file or a registered source.

    A new job is ``pending``; progress (total, done, failed) shows on its detail.
    """

    read_access = write_access = MANAGE
    filter_backends = [FilterBackend]
    filterset_class = JobFilter
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_serializer_class(self) -> Any:
        if self.request is not None and self.request.method == "POST":
            return JobCreateSerializer
        return JobSerializer

    def get_queryset(self) -> Any:
        return BatchJob.objects.select_related("version__model", "created_by")

    def post(self, request: Request) -> Response:
        refuse_oversized_body(request)
        data = validated(JobCreateSerializer(data=request.data))
        if "file" in data:
            check_file_size(data["file"].size)
        # The one job-creation path: the file or source is checked before anything is stored.
        version = data["model_version"]
        job = batch.create_job(
            version.model.name,
            version=version.version,
            file=data.get("file"),
            source=data.get("source"),
            params=data.get("params"),
            created_by=request_user(request),
        )
        body = JobSerializer(
            self.get_queryset().get(pk=job.pk), context=self.get_serializer_context()
        ).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


def _get_job(pk: int) -> BatchJob:
    job = BatchJob.objects.select_related("version__model", "created_by").filter(pk=pk).first()
    if job is None:
        raise NotFound(f"No batch job {pk}.")
    return job


@extend_schema(tags=["jobs"], responses={200: JobSerializer, 404: docs.ERROR})
class JobDetailView(MLAppGenericView):
    """One batch job with its progress."""

    read_access = write_access = MANAGE
    serializer_class = JobSerializer

    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(_get_job(pk)).data)


@extend_schema(
    tags=["jobs"],
    request=None,
    responses={200: JobSerializer, 404: docs.ERROR, 409: docs.ERROR},
)
class JobCancelView(MLAppGenericView):
    """Cancel a pending or running job (409 once it has finished)."""

    read_access = write_access = MANAGE
    serializer_class = JobSerializer

    def post(self, request: Request, pk: int) -> Response:
        job = _get_job(pk)
        if not batch.cancel(job):
            raise Conflict(f"Batch job {pk} is {job.status}: only a pending or running job stops.")
        return Response(self.get_serializer(_get_job(pk)).data)


@extend_schema(
    tags=["jobs"],
    request=None,
    responses={200: JobSerializer, 400: docs.ERROR, 404: docs.ERROR, 409: docs.ERROR},
)
class JobResumeView(MLAppGenericView):
    """Resume a failed, cancelled or stuck job where it stopped: the keys already stored are
    kept, the others run (409 for a job that succeeded or is still making progress; 400 if
    its input can no longer be read)."""

    read_access = write_access = MANAGE
    serializer_class = JobSerializer

    def post(self, request: Request, pk: int) -> Response:
        batch.resume(_get_job(pk))
        return Response(self.get_serializer(_get_job(pk)).data)


@extend_schema(tags=["jobs"])
class JobPredictionsView(MLAppListView):
    """The stored predictions of a job, in the order they were written."""

    read_access = write_access = MANAGE
    serializer_class = BatchPredictionSerializer
    filter_backends = [FilterBackend]
    filterset_class = PredictionFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return BatchPrediction.objects.none()
        return (
            BatchPrediction.objects.select_related("model", "version")
            .filter(job_id=self.kwargs["pk"])
            .order_by("pk")
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        _get_job(kwargs["pk"])
        return super().list(request, *args, **kwargs)


@extend_schema(
    tags=["jobs"],
    parameters=[
        OpenApiParameter(
            "as", str, enum=["csv", "jsonl"], description="Download format (default jsonl)."
        )
    ],
    responses={
        (200, "application/x-ndjson"): OpenApiTypes.STR,
        (200, "text/csv"): OpenApiTypes.STR,
        400: docs.ERROR,
        404: docs.ERROR,
    },
)
class JobDownloadView(MLAppGenericView):
    """All predictions of a job, streamed as JSON Lines or CSV (never held in memory)."""

    read_access = write_access = MANAGE

    def get(self, request: Request, pk: int) -> Any:
        fmt = request.query_params.get("as", "jsonl")
        if fmt not in {"csv", "jsonl"}:
            raise ValidationError({"as": "Use 'csv' or 'jsonl'."})
        return streaming_response(_get_job(pk), fmt)
