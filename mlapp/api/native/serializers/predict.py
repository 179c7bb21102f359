"""Serializers of predict: the request, the response, and how to call it."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from mlapp.api.native.serializers.common import SignatureSerializer


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
    parameters = serializers.DictField(
        required=False,
        help_text=(
            "Request parameters (optional). A traffic policy sticky by field:<name> keeps "
            "each value of parameters[name] on one version."
        ),
    )


class PredictResponseSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The model that answered.")
    version = serializers.IntegerField(help_text="The version that answered.")
    outputs = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Output name -> nested list, one row per input row.",
    )


class PredictInfoSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    signature = SignatureSerializer(allow_null=True)
    example = serializers.JSONField(allow_null=True, help_text="A request body that fits.")
