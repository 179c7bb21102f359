"""Page-number pagination for the native lists."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination
from rest_framework.settings import api_settings

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
