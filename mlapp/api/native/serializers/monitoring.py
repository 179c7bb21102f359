"""Serializers of model monitoring: the config, logged predictions."""

from __future__ import annotations

from rest_framework import serializers

from mlapp.api.native.serializers.common import JSONObjectField
from mlapp.models import DriftReport, PredictionLog


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


class FeedbackItemSerializer(serializers.Serializer):
    key = serializers.CharField(
        max_length=255, help_text="A request id, a caller's key, or a batch key."
    )
    value = serializers.JSONField(help_text="The truth: a label, a number, or one per row.")


class FeedbackSerializer(serializers.Serializer):
    """One item (``key``, ``value``), many (``items``), or a CSV ``file`` (key, value)."""

    key = serializers.CharField(max_length=255, required=False)
    value = serializers.JSONField(required=False)
    items = FeedbackItemSerializer(many=True, required=False)
    file = serializers.FileField(required=False, help_text="A CSV with key and value columns.")


class FeedbackResultSerializer(serializers.Serializer):
    model = serializers.CharField()
    stored = serializers.IntegerField()


class MetricPointSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    period = serializers.DateTimeField()
    count = serializers.IntegerField()
    value = serializers.FloatField()


class LiveMetricSerializer(serializers.Serializer):
    model = serializers.CharField()
    metric = serializers.CharField(help_text="accuracy, or mae for a regression.")
    bucket = serializers.CharField()
    points = MetricPointSerializer(many=True)


class DriftReportSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)

    class Meta:
        model = DriftReport
        fields = [
            "id",
            "model",
            "version",
            "window_start",
            "window_end",
            "rows",
            "drifted",
            "alerts",
            "result",
            "created_at",
        ]
        read_only_fields = fields
