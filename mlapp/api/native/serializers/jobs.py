"""Serializers of batch jobs: a job, a new job, and a stored prediction."""

from __future__ import annotations

import os
from typing import Any

from rest_framework import serializers

from mlapp.api.native.base import get_model, get_version
from mlapp.api.native.serializers.common import JSONObjectField, absolute_url
from mlapp.batch.sources import EXTENSIONS
from mlapp.exceptions import ModelNotFound
from mlapp.models import BatchJob, BatchPrediction, ModelVersion


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
        return absolute_url(self, "job-detail", pk=obj.pk)

    def get_source_file(self, obj: BatchJob) -> str | None:
        """Name of the uploaded input file; null for a registered source."""
        name = obj.source_file.name  # a FieldFile is true when it has a name
        return os.path.basename(name) if name else None

    def get_progress(self, obj: BatchJob) -> float | None:
        """Share of items handled, done or failed (0..1); null while the total is unknown."""
        return round((obj.done + obj.failed) / obj.total, 4) if obj.total else None

    def get_predictions_url(self, obj: BatchJob) -> str:
        return absolute_url(self, "job-predictions", pk=obj.pk)


class JobCreateSerializer(serializers.Serializer):
    """A batch job over an uploaded file (multipart) or a registered source (JSON)."""

    model = serializers.SlugField(help_text="Name of the model to run.")
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Version to run; default: production."
    )
    file = serializers.FileField(required=False, help_text=f"Input file: {', '.join(EXTENSIONS)}.")
    # The metaclass moves declared fields off the class; the stubs see Field.source here.
    source = serializers.RegexField(  # type: ignore[assignment]
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
        try:
            model = get_model(attrs["model"])
        except ModelNotFound as exc:
            raise serializers.ValidationError({"model": exc.message}) from None
        version: ModelVersion | None
        if "version" in attrs:
            try:
                version = get_version(model.name, attrs["version"])
            except ModelNotFound as exc:
                raise serializers.ValidationError({"version": exc.message}) from None
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
