"""The OpenAPI schema of the native API, and Swagger UI / ReDoc from local static files.

The schema describes the native routes only (``native_endpoints``). The documentation pages
take their JavaScript and CSS from drf-spectacular-sidecar whatever ``SPECTACULAR_SETTINGS``
says, and load nothing from another host: they work on a closed network.
"""

from __future__ import annotations

import json
from typing import Any

from django.templatetags.static import static
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response

import mlapp
from mlapp.api.native.base import MLAppViewMixin
from mlapp.api.native.schema_docs import extend_schema

#: drf-spectacular settings for mlapp's schema (``manage.py spectacular --custom-settings``).
SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "mlapp native API",
    "DESCRIPTION": (
        "Models served from inside Django: models and versions, predict, batch jobs and "
        'stored predictions, management for pipelines. Every error answers {"error": "..."}.'
    ),
    "VERSION": mlapp.__version__,
    "PREPROCESSING_HOOKS": ["mlapp.api.native.schema.native_endpoints"],
    # Separate request and response components: uploads are binary in requests only.
    "COMPONENT_SPLIT_REQUEST": True,
}

_NATIVE_MODULE = "mlapp.api.native."
_DOC_VIEWS = (SpectacularAPIView, SpectacularSwaggerView, SpectacularRedocView)


def native_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Preprocessing hook: keep the routes of the native API, drop the rest of the site."""
    kept = []
    for path, path_regex, method, callback in endpoints:
        cls = getattr(callback, "cls", None)
        if cls is None or issubclass(cls, _DOC_VIEWS):
            continue
        if cls.__module__.startswith(_NATIVE_MODULE):
            kept.append((path, path_regex, method, callback))
    return kept


#: The docs pages may load and connect to this server only: ReDoc's sidebar would otherwise
#: fetch a logo from a public host, and the browser itself now refuses that.
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
    ]
)


def _sidecar(path: str) -> str:
    return static(f"drf_spectacular_sidecar/{path}")


class SchemaView(MLAppViewMixin, SpectacularAPIView):
    """The OpenAPI 3 schema (YAML, or JSON with ``?format=json``)."""

    custom_settings = SCHEMA_SETTINGS

    # drf-spectacular documents its own ``get`` over the project's DEFAULT_SCHEMA_CLASS; this
    # one is described by mlapp's schema (and left out of every schema, like the docs pages).
    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class SwaggerView(MLAppViewMixin, SpectacularSwaggerView):
    url_name = "mlapp:schema"
    title = SCHEMA_SETTINGS["TITLE"]

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        ui_settings = spectacular_settings.SWAGGER_UI_SETTINGS
        if isinstance(ui_settings, dict):
            # Swagger UI would otherwise send the schema to a public validator service.
            response.data["settings"] = json.dumps({**ui_settings, "validatorUrl": None})
        response.data.update(
            swagger_ui_css=_sidecar("swagger-ui-dist/swagger-ui.css"),
            swagger_ui_bundle=_sidecar("swagger-ui-dist/swagger-ui-bundle.js"),
            swagger_ui_standalone=_sidecar("swagger-ui-dist/swagger-ui-standalone-preset.js"),
            favicon_href=_sidecar("swagger-ui-dist/favicon-32x32.png"),
        )
        response["Content-Security-Policy"] = DOCS_CSP
        return response


class RedocView(MLAppViewMixin, SpectacularRedocView):
    url_name = "mlapp:schema"
    title = SCHEMA_SETTINGS["TITLE"]
    # drf-spectacular's page links web fonts from a public host; this one does not.
    template_name = "mlapp/api/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response.data["redoc_standalone"] = _sidecar("redoc/bundles/redoc.standalone.js")
        response["Content-Security-Policy"] = DOCS_CSP
        return response
