"""Serializers of models: list and detail, with readiness in this process."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mlapp.api.native.serializers.common import SignatureSerializer, absolute_url
from mlapp.api.native.status import public_signature, readiness
from mlapp.models import MLModel, ModelVersion


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
        # The stubs type the context as a Mapping; DRF keeps the dict it was given.
        cache = cast("dict[str, Any]", self.context).setdefault("readiness", {})
        if obj.pk not in cache:
            cache[obj.pk] = readiness(obj, self._production(obj))
        return cache[obj.pk]

    def get_url(self, obj: MLModel) -> str:
        return absolute_url(self, "model-detail", name=obj.name)

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
        return absolute_url(self, "version-list", name=obj.name)

    def get_predict_url(self, obj: MLModel) -> str:
        return absolute_url(self, "predict", name=obj.name)
