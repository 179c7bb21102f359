"""The browser fixture of the admin's browser test, shared."""

from tests.admin.test_browser import browser_page

__all__ = ["browser_page"]
