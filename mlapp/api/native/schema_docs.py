"""Pieces of the OpenAPI description shared by the views: errors, files, examples."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, and what to fix.")


ERROR = OpenApiResponse(response=ErrorSerializer, description='{"error": "..."}')
BINARY = OpenApiTypes.BINARY

PREDICT_EXAMPLES = [
    OpenApiExample(
        "Named inputs",
        summary="Named inputs, first dimension the rows",
        description="Each input of the signature by name, as a nested list.",
        value={"inputs": {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}},
        request_only=True,
    ),
    OpenApiExample(
        "Bare value",
        summary="The value alone, for a model with one input",
        value={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
        request_only=True,
    ),
    OpenApiExample(
        "Records",
        summary="Records: one object per row, keyed by input name",
        description="Each record holds that row's value of every input; the outputs "
        "come back as named lists, one row per record, in order.",
        value={"inputs": [{"input": [5.1, 3.5, 1.4, 0.2]}, {"input": [6.7, 3.0, 5.2, 2.3]}]},
        request_only=True,
    ),
    OpenApiExample(
        "Texts",
        summary="Strings, for a text model whose handler tokenizes them",
        value={"inputs": ["A man is playing a guitar.", "The stock market fell."]},
        request_only=True,
    ),
    OpenApiExample(
        "Classifier answer",
        summary="A classifier's answer: one label per row, and the scores",
        value={
            "model": "iris",
            "version": 1,
            "outputs": {
                "label": ["setosa", "virginica"],
                "probabilities": [[0.98, 0.02, 0.0], [0.0, 0.03, 0.97]],
            },
        },
        response_only=True,
        status_codes=["200"],
    ),
]
