"""The native JSON API. Views stay thin: the inference service and the version lifecycle work.

Kinds of access (``mlapp.api.permissions``): reads of models and versions are READ,
predict and stored predictions by key are PREDICT, everything that changes state (uploads,
stage changes, batch jobs) and artifact downloads are MANAGE.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from typing import Any

from django.db.models import Prefetch
from django.http import FileResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import filters, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import (
    Conflict,
    FormatIsAFilterNegotiation,
    MLAppAPIView,
    MLAppGenericView,
    MLAppListView,
    check_file_size,
    get_model,
    get_version,
    refuse_oversized_body,
    validated,
)
from mlapp.api.native.codecs import read_inputs
from mlapp.api.native.fastjson import FastJSONParser, FastJSONRenderer
from mlapp.api.native.filters import JobFilter, ModelFilter, PredictionFilter, VersionFilter
from mlapp.api.native.serializers import (
    BatchPredictionSerializer,
    JobCreateSerializer,
    JobSerializer,
    ModelDetailSerializer,
    ModelListSerializer,
    PredictInfoSerializer,
    PredictRequestSerializer,
    PredictResponseSerializer,
    VersionDetailSerializer,
    VersionListSerializer,
    VersionUploadSerializer,
)
from mlapp.api.native.status import example_inputs, public_signature
from mlapp.api.permissions import MANAGE, PREDICT, open_to_anyone, permission_classes
from mlapp.exceptions import MLAppError, ModelNotFound
from mlapp.models import BatchJob, BatchPrediction, MLModel, ModelVersion
from mlapp.serving.inputs import named
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.versions.lifecycle import archive_version, promote_version, register_version, rollback

#: Accept headers that mean "JSON is fine" (no header at all counts as */*).
_JSON_ACCEPT = frozenset({"*/*", "application/json", ""})


def enqueue_job(job: BatchJob) -> None:
    """Plan a newly created batch job and queue it (Celery on commit, or a thread).

    A source that cannot be read raises ``BadSource`` (400); the job and its file are gone.
    """
    from mlapp.batch import submit

    submit(job)


def _user(request: Request) -> Any:
    return request.user if request.user.is_authenticated else None


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


# -- models -----------------------------------------------------------------------------


def _models_queryset() -> Any:
    production = ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
    return MLModel.objects.prefetch_related(
        Prefetch("versions", queryset=production, to_attr="production_versions")
    )


class _ModelContextMixin:
    def get_serializer_context(self) -> dict[str, Any]:
        # One look at the registry per request: readiness of every model listed.
        return {**super().get_serializer_context(), "states": registry.status()}


@extend_schema(tags=["models"])
class ModelListView(_ModelContextMixin, MLAppListView):
    """Models, their production version, and whether this process has them ready."""

    serializer_class = ModelListSerializer
    filter_backends = [DjangoFilterBackend, filters.SearchFilter]
    filterset_class = ModelFilter
    search_fields = ["name"]

    def get_queryset(self) -> Any:
        return _models_queryset()


@extend_schema(tags=["models"], responses={200: ModelDetailSerializer, 404: docs.ERROR})
class ModelDetailView(_ModelContextMixin, MLAppGenericView):
    """One model: description, task, handler, serving config, production version, readiness."""

    serializer_class = ModelDetailSerializer

    def get(self, request: Request, name: str) -> Response:
        model = _models_queryset().filter(name=name).first()
        if model is None:
            raise ModelNotFound(f"No model named {name!r}.")
        return Response(self.get_serializer(model).data)


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
        version = rollback(get_model(name), user=_user(request))
        return Response(self.get_serializer(get_version(name, version.version)).data)


# -- versions ---------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(tags=["versions"], summary="List the versions of a model"),
    post=extend_schema(
        tags=["manage"],
        summary="Upload a new version (staging)",
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionDetailSerializer,
            400: docs.ERROR,
            413: docs.ERROR,
        },
    ),
)
class VersionListView(MLAppListView):
    """Versions of a model (newest first); POST uploads a new one, validated first.

    A refused artifact answers 400 with the reason and stores nothing.
    """

    filter_backends = [DjangoFilterBackend]
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
            description=data.get("description"),
            task=data.get("task"),
            notes=data["notes"],
            filename=upload.name,
            created_by=_user(request),
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
            raise ModelNotFound(f"The artifact file of {found} is missing from storage.") from None
        extension = posixpath.splitext(found.artifact.name)[1]
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
        self.change(get_version(name, version), _user(request))
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


# -- predict ----------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=["predict"],
        summary="How to call predict: the signature and an example body",
        responses={200: PredictInfoSerializer, 404: docs.ERROR},
    ),
    post=extend_schema(
        tags=["predict"],
        summary="Run the model on inputs",
        request=PredictRequestSerializer,
        responses={
            200: PredictResponseSerializer,
            400: docs.ERROR,
            404: docs.ERROR,
            413: docs.ERROR,
            503: docs.ERROR,
        },
        examples=docs.PREDICT_EXAMPLES,
    ),
)
class PredictView(MLAppAPIView):
    """Run a model: POST ``{"inputs": ...}``; the answer names the model and version that ran.

    Without a version in the URL the production version answers; with one, that version
    (a staging version is loaded on first use into a bounded cache).
    """

    read_access = write_access = PREDICT
    # Forms: the browsable API's HTML form sends the inputs as a JSON text field.
    parser_classes = [FastJSONParser, FormParser, MultiPartParser]
    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer]
    _json_renderer = FastJSONRenderer()

    # The hot path (measured, docs/performance.md): with predict open to all (AllowAny, the
    # default) nobody is looked up before the model runs, and a client that accepts JSON gets
    # it without DRF's content negotiation. Anything else takes DRF's usual way.

    def get_permissions(self) -> list:
        return [cls() for cls in permission_classes(PREDICT)]

    def perform_authentication(self, request: Request) -> None:
        if not open_to_anyone(PREDICT):
            super().perform_authentication(request)
        # Else request.user stays lazy: the browsable API still shows who is logged in.

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        meta = request._request.META
        if meta.get("HTTP_ACCEPT", "*/*") in _JSON_ACCEPT and not meta.get("QUERY_STRING"):
            return self._json_renderer, self._json_renderer.media_type
        return super().perform_content_negotiation(request, force)

    def post(self, request: Request, name: str, version: int | None = None) -> Response:
        prediction = service.predict(
            name, named(read_inputs(request.data)), version=version, protocol="native"
        )
        return Response(prediction.to_dict())

    def get(self, request: Request, name: str, version: int | None = None) -> Response:
        return Response(self._info(name, version))

    def _info(self, name: str, version: int | None) -> dict[str, Any]:
        if version is None:
            found = get_model(name).production_version
        else:
            found = get_version(name, version)
        signature = public_signature(found) if found else None
        return {
            "model": name,
            "version": found.version if found else None,
            "signature": signature,
            "example": example_inputs(signature) if signature else None,
        }

    def get_serializer(self, *args: Any, **kwargs: Any) -> PredictRequestSerializer:
        # The browsable API's form, filled in with a body that fits the model.
        if args or kwargs:
            return PredictRequestSerializer(*args, **kwargs)
        try:
            example = self._info(self.kwargs["name"], self.kwargs.get("version"))["example"]
        except MLAppError:
            example = None  # the page shows the error; the form stays empty
        return PredictRequestSerializer(instance=example or {"inputs": None})


# -- batch jobs and stored predictions --------------------------------------------------


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
    filter_backends = [DjangoFilterBackend]
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
        job = BatchJob(
            version=data["model_version"],
            source_name=data.get("source", ""),
            source_params=data.get("params", {}),
            created_by=_user(request),
        )
        if "file" in data:
            job.source_file.save(data["file"].name, data["file"], save=False)
        job.save()
        enqueue_job(job)
        body = JobSerializer(
            self.get_queryset().get(pk=job.pk), context=self.get_serializer_context()
        ).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


def _get_job(pk: int) -> BatchJob:
    job = BatchJob.objects.select_related("version__model", "created_by").filter(pk=pk).first()
    if job is None:
        raise ModelNotFound(f"No batch job {pk}.")
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
    ACTIVE = (BatchJob.Status.PENDING, BatchJob.Status.RUNNING)

    def post(self, request: Request, pk: int) -> Response:
        job = _get_job(pk)
        # One conditional UPDATE: a runner finishing the job at the same moment wins or loses
        # cleanly, never half.
        changed = BatchJob.objects.filter(pk=pk, status__in=self.ACTIVE).update(
            status=BatchJob.Status.CANCELLED, finished_at=timezone.now()
        )
        if not changed:
            raise Conflict(f"Batch job {pk} is {job.status}: only a pending or running job stops.")
        return Response(self.get_serializer(_get_job(pk)).data)


@extend_schema(tags=["jobs"])
class JobPredictionsView(MLAppListView):
    """The stored predictions of a job, in the order they were written."""

    read_access = write_access = MANAGE
    serializer_class = BatchPredictionSerializer
    filter_backends = [DjangoFilterBackend]
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
    responses={(200, "application/x-ndjson"): OpenApiTypes.STR, 404: docs.ERROR},
)
class JobDownloadView(MLAppGenericView):
    """All predictions of a job, streamed as JSON Lines or CSV (never held in memory)."""

    read_access = write_access = MANAGE

    def get(self, request: Request, pk: int) -> Any:
        from mlapp.batch.writers import streaming_response

        fmt = request.query_params.get("as", "jsonl")
        if fmt not in {"csv", "jsonl"}:
            raise ValidationError({"as": "Use 'csv' or 'jsonl'."})
        return streaming_response(_get_job(pk), fmt)


@extend_schema(tags=["predict"], responses={200: BatchPredictionSerializer, 404: docs.ERROR})
class StoredPredictionView(MLAppGenericView):
    """The stored prediction of one item by its key: from the latest succeeded batch job."""

    read_access = write_access = PREDICT
    serializer_class = BatchPredictionSerializer

    def get(self, request: Request, name: str, key: str) -> Response:
        from mlapp.batch import latest_prediction

        found = latest_prediction(name, key)
        if found is None:
            get_model(name)
            raise ModelNotFound(
                f"No stored prediction of model {name!r} for key {key!r} "
                "(predictions come from succeeded batch jobs)."
            )
        return Response(self.get_serializer(found).data)
