"""Pieces of the OpenAPI description shared by the views: errors, files, examples."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular import utils as spectacular
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, and what to fix.")


ERROR = OpenApiResponse(response=ErrorSerializer, description='{"error": "..."}')


#: Django's ``slug`` path converter, which model names use in the URLconf.
SLUG_PATTERN = "^[-a-zA-Z0-9_]+$"


class MLAppAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the errors every native view may answer.

    Declared once here rather than on each view: 401 (credentials sent and refused) and 403
    (not allowed: every kind of access has a permission setting a project may tighten) on
    every operation; 404 where a path names a model, version or job, or a list pages;
    400 where a list pages or takes filters (a bad page size or filter value); 415 where an
    operation takes a body.
    """

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = ["401", "403"]
        if "{" in self.path or self._pages():
            codes.append("404")
        if self._pages() or getattr(self.view, "filterset_class", None):
            codes.append("400")
        if self.method in {"POST", "PUT", "PATCH"}:
            # DRF's parsers: a body of a type none of them reads, or a multipart body too
            # broken to tell its type.
            codes.append("415")
        for code in codes:
            responses.setdefault(
                code, self._get_response_for_code(ERROR, code, direction=direction)
            )
        return dict(sorted(responses.items()))

    def _get_parameters(self) -> list[dict[str, Any]]:
        # What the URLconf's converters take (slug, int), which drf-spectacular leaves out
        # for views without a model: a name or number the schema allows reaches its view.
        parameters = super()._get_parameters()
        filterset = getattr(self.view, "filterset_class", None)
        filters = filterset.base_filters if filterset is not None else {}
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if parameter.get("in") == "query" and parameter["name"] in filters:
                # django-filter reads an empty value as no filter (the browsable API's filter
                # form sends one for every field left blank).
                if "enum" in schema and "" not in schema["enum"]:
                    schema["enum"] = [*schema["enum"], ""]
                continue
            if parameter.get("in") != "path":
                continue
            if schema.get("type") == "integer":
                schema.setdefault("minimum", 0)
            elif parameter["name"] == "name":
                schema.setdefault("pattern", SLUG_PATTERN)
        return parameters

    def _pages(self) -> bool:
        return self._is_list_view() and getattr(self.view, "pagination_class", None) is not None


F = TypeVar("F", bound=Callable[..., Any])


def extend_schema(**kwargs: Any) -> Callable[[F], F]:
    """drf-spectacular's ``extend_schema``, over :class:`MLAppAutoSchema` on a view method too.

    On a method, drf-spectacular derives the method's schema class from the project's
    ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` as it is when the views are imported: DRF's own
    ``AutoSchema`` in a project that never set it, and then the schema, the docs pages and
    ``check --deploy`` fail with "Incompatible AutoSchema used on View ...". The base it looks
    at first is the function's ``schema`` attribute: given for the decoration, the method is
    described by mlapp's schema whatever the project's setting. Every native view and the
    docs views use this one, not drf-spectacular's.
    """
    decorate = spectacular.extend_schema(**kwargs)

    def decorator(f: F) -> F:
        own = "schema" in getattr(f, "kwargs", {}) or hasattr(f, "schema")
        if not inspect.isfunction(f) or own:
            return decorate(f)
        f.schema = MLAppAutoSchema  # type: ignore[attr-defined]
        try:
            return decorate(f)
        finally:
            del f.schema  # type: ignore[attr-defined]

    return decorator


def extend_schema_view(**kwargs: Any) -> Callable[[F], F]:
    """drf-spectacular's ``extend_schema_view``; give it decorators of :func:`extend_schema`."""
    return spectacular.extend_schema_view(**kwargs)


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

#: A traffic policy as the API takes it (every field optional in a PATCH).
TRAFFIC_POLICY = OpenApiTypes.OBJECT
TRAFFIC_RESPONSES = {
    200: OpenApiResponse(
        response=OpenApiTypes.OBJECT,
        description=(
            "The policy (canary, canary_weight, sticky, shadow, shadow_share, rollback_*), "
            "each version's recent traffic, the shadow comparisons and the policy's history."
        ),
    ),
    400: ERROR,
    404: ERROR,
    409: ERROR,
}
