"""Serializers of model monitoring: the config, logged predictions."""

from __future__ import annotations

from rest_framework import serializers

from mlapp.api.native.serializers.common import JSONObjectField
from mlapp.models import PredictionLog


class MonitoringConfigSerializer(serializers.Serializer):
    """A model's monitoring config: as stored, and in effect (over MLAPP["MONITORING"])."""

    model = serializers.CharField(read_only=True)
    monitoring = JSONObjectField(
        help_text='Keys to change, e.g. {"sample_rate": 0.1, "thresholds": {"psi": 0.25}}.'
    )
    effective = serializers.DictField(read_only=True)


class PredictionLogSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)

    class Meta:
        model = PredictionLog
        fields = [
            "id",
            "model",
            "version",
            "request_id",
            "key",
            "protocol",
            "inputs",
            "outputs",
            "truncated",
            "latency_ms",
            "created_at",
        ]
        read_only_fields = fields
