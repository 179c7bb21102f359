"""Filters of the native lists (django-filter), shown in the schema and the browsable API."""

from __future__ import annotations

import django_filters
from django_filters.rest_framework import DjangoFilterBackend

from mlapp.models import (
    BatchJob,
    BatchPrediction,
    DriftReport,
    MLModel,
    ModelVersion,
    PredictionLog,
)


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with the browsable API's filter form from mlapp's templates:
    a project need not add ``django_filters`` to ``INSTALLED_APPS`` for the form to render."""

    template = "mlapp/api/filter_form.html"


class ModelFilter(django_filters.FilterSet):
    task = django_filters.ChoiceFilter(choices=MLModel.Task.choices)

    class Meta:
        model = MLModel
        fields = ["task"]


class VersionFilter(django_filters.FilterSet):
    stage = django_filters.ChoiceFilter(choices=ModelVersion.Stage.choices)
    format = django_filters.CharFilter(help_text="Artifact format, e.g. onnx or torchscript.")

    class Meta:
        model = ModelVersion
        fields = ["stage", "format"]


class JobFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=BatchJob.Status.choices)
    model = django_filters.CharFilter(
        field_name="version__model__name", help_text="Name of the model the job runs."
    )

    class Meta:
        model = BatchJob
        fields = ["status", "model"]


class PredictionFilter(django_filters.FilterSet):
    key = django_filters.CharFilter(help_text="The item's key.")

    class Meta:
        model = BatchPrediction
        fields = ["key"]


class PredictionLogFilter(django_filters.FilterSet):
    version = django_filters.NumberFilter(field_name="version__version", help_text="Version.")
    key = django_filters.CharFilter(help_text="The caller's key (X-MLApp-Key).")
    request_id = django_filters.CharFilter(help_text="The request id (X-Request-ID).")
    protocol = django_filters.CharFilter(help_text="native, v2, python ...")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Logged at or after (ISO 8601)."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Logged before (ISO 8601)."
    )

    class Meta:
        model = PredictionLog
        fields = ["version", "key", "request_id", "protocol", "since", "until"]


class DriftReportFilter(django_filters.FilterSet):
    version = django_filters.NumberFilter(field_name="version__version", help_text="Version.")
    drifted = django_filters.BooleanFilter(help_text="Only reports that crossed a threshold.")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Made at or after (ISO 8601)."
    )

    class Meta:
        model = DriftReport
        fields = ["version", "drifted", "since"]
