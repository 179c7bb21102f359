"""The native API over real HTTP (a live server): plain urllib, and a browser on the docs pages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db(transaction=True)

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


def call(url: str, body: bytes | None = None, headers: dict | None = None, method=None):
    """(status, headers, body) of one HTTP request; 4xx/5xx answers are returned too."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def predict(base: str, body: bytes) -> tuple[int, dict]:
    status, _, content = call(
        f"{base}/api/mlapp/models/affine/predict", body, {"Content-Type": "application/json"}
    )
    return status, json.loads(content)


def test_predict_over_http(live_server, affine):
    status, body = predict(live_server.url, b'{"inputs": [[1, 2, 3]]}')
    assert (status, body) == (
        200,
        {"model": "affine", "version": 1, "outputs": {"y": [[14.5, 1.5]]}},
    )


def test_bad_requests_over_http_then_a_good_one(live_server, affine, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    cases = [
        (b"{not json", 400),
        (b'{"inputs": [[1, 2]]}', 400),
        (json.dumps({"inputs": [[1.0, 2.0, 3.0]] * 2000}).encode(), 413),
    ]
    for body, expected in cases:
        status, answer = predict(live_server.url, body)
        assert status == expected, answer
        assert answer["error"]
    assert predict(live_server.url, b'{"inputs": [[1, 2, 3]]}')[0] == 200


def test_artifact_download_over_http_with_a_token(live_server, affine, onnx_file):
    staff = get_user_model().objects.create_user("ops", is_staff=True)
    token = Token.objects.create(user=staff)
    status, headers, content = call(
        f"{live_server.url}/api/mlapp/models/affine/versions/1/artifact",
        headers={"Authorization": f"Token {token.key}"},
    )
    assert status == 200
    assert content == onnx_file.read_bytes()
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(content).hexdigest()
    assert int(headers["Content-Length"]) == len(content)


def test_schema_over_http_is_yaml_by_default(live_server):
    status, headers, content = call(f"{live_server.url}/api/mlapp/schema/")
    assert status == 200
    assert headers["Content-Type"].startswith("application/vnd.oai.openapi")
    assert content.startswith(b"openapi: 3.")


def _browser(playwright):
    args = ["--no-sandbox", "--disable-background-networking"]
    try:
        return playwright.chromium.launch(args=args)
    except Exception:
        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        if executable is None:
            message = "no Chromium for Playwright (playwright install chromium, or apt)"
            if CI:
                pytest.fail(f"{message}; CI=true requires it.")
            pytest.skip(message)
        return playwright.chromium.launch(executable_path=executable, args=args)


@pytest.mark.parametrize(
    ("path", "ready_selector"),
    [
        ("/api/mlapp/schema/swagger/", ".swagger-ui .opblock-tag"),
        ("/api/mlapp/schema/redoc/", "h1"),
    ],
)
def test_docs_pages_render_in_a_browser_from_this_server_only(
    live_server, monkeypatch, path, ready_selector
):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the live server's DB is shared.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = urlsplit(live_server.url).netloc
    requested: list[str] = []
    elsewhere: list[str] = []

    def route(route):
        # Every request that would leave the browser passes here (CSP-blocked ones do not).
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != server:
            elsewhere.append(url)
            route.abort()
        else:
            requested.append(url)
            route.continue_()

    with sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.goto(f"{live_server.url}{path}")
            page.wait_for_selector(ready_selector, timeout=30_000)
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "mlapp native API" in text
    assert elsewhere == []
    assert any(u.endswith("/api/mlapp/schema/") for u in requested)
