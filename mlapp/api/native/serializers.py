from __future__ import annotations

from rest_framework import serializers


class PredictRequestSerializer(serializers.Serializer):
    """``{"inputs": {name: nested list}}``; a one-input model also takes the bare value."""

    inputs = serializers.JSONField(
        help_text='Named inputs as nested lists, e.g. {"input": [[5.1, 3.5, 1.4, 0.2]]}; '
        "for a model with one input the value alone, e.g. [[5.1, 3.5, 1.4, 0.2]]."
    )


class PredictResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField()
    outputs = serializers.DictField(child=serializers.JSONField())


class LoadedModelStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    task = serializers.CharField()
    production_version = serializers.IntegerField(allow_null=True)
    ready = serializers.BooleanField()
    error = serializers.CharField(allow_null=True)
