"""What several serializers of the native API share: URLs, JSON object fields, signatures."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

#: Largest signature or metrics JSON file accepted with an upload.
MAX_JSON_FILE = 1024 * 1024


def absolute_url(serializer: serializers.Serializer, route: str, **kwargs: Any) -> str:
    """The URL of ``route``: absolute when the serializer has the request."""
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
            assert data.size is not None  # an uploaded file always has its size
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


class TensorSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.CharField(help_text="Open Inference Protocol datatype, e.g. FP32.")
    shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="-1 marks a variable dimension."
    )


class SignatureSerializer(serializers.Serializer):
    inputs = TensorSpecSerializer(many=True)
    outputs = TensorSpecSerializer(many=True)
