"""Serializers of the native API: what each route reads and answers."""

from __future__ import annotations

import os
from typing import Any

import orjson
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from django.utils.module_loading import import_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from mlapp.api.native.status import public_signature, readiness
from mlapp.batch.sources import EXTENSIONS
from mlapp.handlers import BaseHandler
from mlapp.models import BatchJob, BatchPrediction, MLModel, ModelVersion

#: Largest signature or metrics JSON file accepted with an upload.
MAX_JSON_FILE = 1024 * 1024


def _url(serializer: serializers.Serializer, route: str, **kwargs: Any) -> str:
    # Django's reverse, not DRF's: DRF's carries ?format= along, a filter on the versions list.
    path = reverse(f"mlapp:{route}", kwargs=kwargs)
    request = serializer.context.get("request")
    return request.build_absolute_uri(path) if request is not None else path


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.Field):
    """A JSON object: in a JSON body, as a form field's text, or as an uploaded .json file."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("style", {"base_template": "textarea.html"})
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, UploadedFile):
            if data.size > MAX_JSON_FILE:
                raise serializers.ValidationError(f"The file is over {MAX_JSON_FILE} bytes.")
            data = data.read()
        if isinstance(data, (str, bytes)):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise serializers.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


# -- predict ----------------------------------------------------------------------------


@extend_schema_serializer(component_name="Predict")
class PredictRequestSerializer(serializers.Serializer):
    """The predict body; the view decodes it (see ``mlapp.api.native.codecs``)."""

    inputs = serializers.JSONField(
        help_text=(
            "Named inputs as nested lists, first dimension the rows: "
            '{"input": [[5.1, 3.5, 1.4, 0.2]]}. For a model with one input, the value '
            'alone: [[5.1, 3.5, 1.4, 0.2]], or strings for a text model: ["a sentence"]. '
            'Or records, one object per row keyed by input name: [{"input": [5.1, 3.5, '
            "1.4, 0.2]}, ...]."
        )
    )


class PredictResponseSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The model that answered.")
    version = serializers.IntegerField(help_text="The version that answered.")
    outputs = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Output name -> nested list, one row per input row.",
    )


class TensorSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.CharField(help_text="Open Inference Protocol datatype, e.g. FP32.")
    shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="-1 marks a variable dimension."
    )


class SignatureSerializer(serializers.Serializer):
    inputs = TensorSpecSerializer(many=True)
    outputs = TensorSpecSerializer(many=True)


class PredictInfoSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    signature = SignatureSerializer(allow_null=True)
    example = serializers.JSONField(allow_null=True, help_text="A request body that fits.")


# -- models -----------------------------------------------------------------------------


class ModelListSerializer(serializers.ModelSerializer):
    """A model, its production version and whether this process has it ready."""

    url = serializers.SerializerMethodField()
    production_version = serializers.SerializerMethodField()
    ready = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField()

    class Meta:
        model = MLModel
        fields = ["url", "name", "description", "task", "production_version", "ready", "reason"]
        read_only_fields = fields

    def _production(self, obj: MLModel) -> ModelVersion | None:
        prefetched = getattr(obj, "production_versions", None)
        if prefetched is not None:
            return prefetched[0] if prefetched else None
        return obj.production_version

    def _state(self, obj: MLModel) -> dict[str, Any]:
        cache = self.context.setdefault("readiness", {})
        if obj.pk not in cache:
            cache[obj.pk] = readiness(obj, self._production(obj), self.context["states"])
        return cache[obj.pk]

    def get_url(self, obj: MLModel) -> str:
        return _url(self, "model-detail", name=obj.name)

    def get_production_version(self, obj: MLModel) -> int | None:
        production = self._production(obj)
        return production.version if production else None

    def get_ready(self, obj: MLModel) -> bool:
        return self._state(obj)["ready"]

    def get_reason(self, obj: MLModel) -> str | None:
        """Why the model is not ready; null when it is."""
        return self._state(obj)["reason"]


class ModelDetailSerializer(ModelListSerializer):
    """A model: what it does, how it is served, and whether this process has it ready."""

    loaded_version = serializers.SerializerMethodField()
    signature = serializers.SerializerMethodField()
    versions_url = serializers.SerializerMethodField()
    predict_url = serializers.SerializerMethodField()

    class Meta(ModelListSerializer.Meta):
        fields = [
            *ModelListSerializer.Meta.fields,
            "loaded_version",
            "handler",
            "serving",
            "signature",
            "created_at",
            "updated_at",
            "versions_url",
            "predict_url",
        ]
        read_only_fields = fields

    def get_loaded_version(self, obj: MLModel) -> int | None:
        """The version this process answers with (null when none is loaded)."""
        return self._state(obj)["loaded_version"]

    @extend_schema_field(SignatureSerializer(allow_null=True))
    def get_signature(self, obj: MLModel) -> dict[str, Any] | None:
        """What clients send and get (through the handler); null without a production version."""
        production = self._production(obj)
        return public_signature(production) if production else None

    def get_versions_url(self, obj: MLModel) -> str:
        return _url(self, "version-list", name=obj.name)

    def get_predict_url(self, obj: MLModel) -> str:
        return _url(self, "predict", name=obj.name)


# -- versions ---------------------------------------------------------------------------


class VersionListSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model.name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "url",
            "model",
            "version",
            "stage",
            "format",
            "sha256",
            "size",
            "created_at",
            "promoted_at",
        ]
        read_only_fields = fields

    def get_url(self, obj: ModelVersion) -> str:
        return _url(self, "version-detail", name=obj.model.name, version=obj.version)


class VersionDetailSerializer(VersionListSerializer):
    signature = serializers.SerializerMethodField()
    artifact_signature = SignatureSerializer(source="signature", read_only=True)
    parent = serializers.IntegerField(source="parent.version", read_only=True, allow_null=True)
    created_by = serializers.CharField(
        source="created_by.get_username", read_only=True, allow_null=True
    )
    filename = serializers.SerializerMethodField()
    artifact_url = serializers.SerializerMethodField()
    predict_url = serializers.SerializerMethodField()

    class Meta(VersionListSerializer.Meta):
        fields = [
            *VersionListSerializer.Meta.fields,
            "signature",
            "artifact_signature",
            "metrics",
            "notes",
            "parent",
            "created_by",
            "stage_changed_at",
            "filename",
            "artifact_url",
            "predict_url",
        ]
        read_only_fields = fields

    @extend_schema_field(SignatureSerializer)
    def get_signature(self, obj: ModelVersion) -> dict[str, Any]:
        """What clients send and get (through the model's handler)."""
        return public_signature(obj)

    def get_filename(self, obj: ModelVersion) -> str:
        return os.path.basename(obj.artifact.name)

    def get_artifact_url(self, obj: ModelVersion) -> str:
        return _url(self, "version-artifact", name=obj.model.name, version=obj.version)

    def get_predict_url(self, obj: ModelVersion) -> str:
        return _url(self, "predict-version", name=obj.model.name, version=obj.version)


class VersionUploadSerializer(serializers.Serializer):
    """A new version: the artifact file, and what TorchScript or the model may need."""

    file = serializers.FileField(help_text="The artifact: ONNX, TorchScript or torch.export.")
    signature = JSONObjectField(
        required=False,
        help_text='Signature JSON {"inputs": [{"name", "datatype", "shape"}], "outputs": '
        "[...]}: needed for a TorchScript archive unless the production version has one.",
    )
    metrics = JSONObjectField(required=False, help_text="Evaluation metrics, a JSON object.")
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    description = serializers.CharField(required=False, help_text="Sets the model's description.")
    task = serializers.ChoiceField(
        choices=MLModel.Task.choices, required=False, help_text="Sets the model's task."
    )
    handler = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Sets the model's handler: dotted path to a mlapp.handlers.BaseHandler.",
    )

    def validate_handler(self, value: str) -> str:
        if not value:
            return value
        try:
            cls = import_string(value)
        except ImportError as exc:
            raise serializers.ValidationError(f"Cannot import {value!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, BaseHandler)):
            raise serializers.ValidationError(f"{value!r} is not a mlapp.handlers.BaseHandler.")
        return value


# -- batch jobs -------------------------------------------------------------------------


class JobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="version.model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    source_file = serializers.SerializerMethodField()
    created_by = serializers.CharField(
        source="created_by.get_username", read_only=True, allow_null=True
    )
    progress = serializers.SerializerMethodField()
    predictions_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchJob
        fields = [
            "id",
            "url",
            "model",
            "version",
            "status",
            "source_file",
            "source_name",
            "source_params",
            "total",
            "done",
            "failed",
            "progress",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "predictions_url",
        ]
        read_only_fields = fields

    def get_url(self, obj: BatchJob) -> str:
        return _url(self, "job-detail", pk=obj.pk)

    def get_source_file(self, obj: BatchJob) -> str | None:
        """Name of the uploaded input file; null for a registered source."""
        return os.path.basename(obj.source_file.name) if obj.source_file else None

    def get_progress(self, obj: BatchJob) -> float | None:
        """Share of items handled, done or failed (0..1); null while the total is unknown."""
        return round((obj.done + obj.failed) / obj.total, 4) if obj.total else None

    def get_predictions_url(self, obj: BatchJob) -> str:
        return _url(self, "job-predictions", pk=obj.pk)


class JobCreateSerializer(serializers.Serializer):
    """A batch job over an uploaded file (multipart) or a registered source (JSON)."""

    model = serializers.SlugField(help_text="Name of the model to run.")
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Version to run; default: production."
    )
    file = serializers.FileField(required=False, help_text=f"Input file: {', '.join(EXTENSIONS)}.")
    source = serializers.RegexField(
        r"^[\w.-]+$",
        max_length=100,
        required=False,
        help_text="Name of a registered source (e.g. an ORM queryset) instead of a file.",
    )
    params = JSONObjectField(required=False, help_text="Parameters of the registered source.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("source" in attrs):
            raise serializers.ValidationError(
                "Give either a 'file' to upload or the name of a registered 'source'."
            )
        if "params" in attrs and "source" not in attrs:
            raise serializers.ValidationError("'params' go with a registered 'source'.")
        model = MLModel.objects.filter(name=attrs["model"]).first()
        if model is None:
            raise serializers.ValidationError({"model": f"No model named {attrs['model']!r}."})
        if "version" in attrs:
            version = model.versions.filter(version=attrs["version"]).first()
            if version is None:
                raise serializers.ValidationError(
                    {"version": f"Model {model.name!r} has no version {attrs['version']}."}
                )
        else:
            version = model.production_version
            if version is None:
                raise serializers.ValidationError(
                    {"version": f"Model {model.name!r} has no production version: name one."}
                )
        attrs["model_version"] = version
        return attrs


class BatchPredictionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = BatchPrediction
        fields = ["key", "model", "version", "outputs", "error", "job", "created_at"]
        read_only_fields = fields

    def get_error(self, obj: BatchPrediction) -> str | None:
        """Why this item failed; null when it has outputs."""
        return obj.error or None
