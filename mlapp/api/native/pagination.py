"""Page-number pagination for the native lists."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

#: Page size when the project sets no ``REST_FRAMEWORK["PAGE_SIZE"]``.
DEFAULT_PAGE_SIZE = 50


class MLAppPagination(PageNumberPagination):
    """``?page=N``; ``?page_size=N`` up to 1000. The default size is DRF's ``PAGE_SIZE``."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    @property
    def page_size(self) -> int:  # type: ignore[override]
        # Read on each request so that override_settings(REST_FRAMEWORK=...) applies.
        return api_settings.PAGE_SIZE or DEFAULT_PAGE_SIZE

    def get_page_size(self, request: Request) -> int | None:
        """``?page_size=``: a whole number from 1; any other value is a 400, not ignored."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) > 0):
            raise ValidationError({"page_size": f"Must be a whole number from 1, got {raw!r}."})
        return super().get_page_size(request)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        # DRF reads an empty ?page= as page 1; any other page that is not a number is a 404.
        if request.query_params.get(self.page_query_param) == "":
            raise NotFound("Invalid page: ?page= needs a page number.")
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1  # page and page_size both count from 1
        return parameters
