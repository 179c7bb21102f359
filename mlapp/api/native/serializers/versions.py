"""Serializers of versions: list, detail, and the upload of a new one."""

from __future__ import annotations

import os
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlapp.api.native.serializers.common import (
    JSONObjectField,
    SignatureSerializer,
    absolute_url,
)
from mlapp.api.native.status import public_signature
from mlapp.exceptions import MLAppError
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.handling import import_handler


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
        return absolute_url(self, "version-detail", name=obj.model.name, version=obj.version)


class VersionDetailSerializer(VersionListSerializer):
    signature = serializers.SerializerMethodField()
    artifact_signature = SignatureSerializer(source="signature", read_only=True)
    # The metaclass moves declared fields off the class; the stubs see Field.parent here.
    parent = serializers.IntegerField(  # type: ignore[assignment]
        source="parent.version", read_only=True, allow_null=True
    )
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
        name = obj.artifact.name
        assert name is not None  # the artifact is a required file field
        return os.path.basename(name)

    def get_artifact_url(self, obj: ModelVersion) -> str:
        return absolute_url(self, "version-artifact", name=obj.model.name, version=obj.version)

    def get_predict_url(self, obj: ModelVersion) -> str:
        return absolute_url(self, "predict-version", name=obj.model.name, version=obj.version)


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
    confirm_handler_change = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Confirms a new handler that changes the public signature of the "
        "production version (without it such an upload answers 409 and stores nothing).",
    )

    def validate_handler(self, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        try:
            import_handler(value)
        except MLAppError as exc:
            raise serializers.ValidationError(exc.message) from None
        return value
