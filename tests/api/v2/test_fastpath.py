"""The opt-in V2 fast path: inference skips the middleware stack, everything else does not."""

from __future__ import annotations

import io
import json
import logging
from contextlib import nullcontext
from unittest import mock

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import override_settings

from mlapp.api import connections as api_connections
from mlapp.api.v2 import fastpath
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

ROW = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
SEEN: list[str] = []
MIDDLEWARE = [
    "tests.api.v2.test_fastpath.recording_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def recording_middleware(get_response):
    def middleware(request):
        SEEN.append(request.path)
        return get_response(request)

    return middleware


@pytest.fixture
def affine(onnx_file):
    return register_version("affine", onnx_file, promote=True)


@pytest.fixture
def app():
    SEEN.clear()
    with override_settings(MIDDLEWARE=MIDDLEWARE, MLAPP={"V2_SKIP_MIDDLEWARE": True}):
        yield fastpath.wrap(WSGIHandler())


def call(app, path, body=b"", method="POST", host="127.0.0.1", **extra):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": host,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        **extra,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=int(status.split()[0]), headers=dict(headers))

    # As Django's test client: nothing may close the connection the test's transaction
    # holds (PostgreSQL would lose the test's rows).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        real = fastpath.close_old_connections is api_connections.close_old_connections
        with mock.patch.object(fastpath, "close_old_connections") if real else nullcontext():
            result = app(environ, start_response)
            try:
                content = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return started["status"], started["headers"], content


def body(rows=ROW) -> bytes:
    return json.dumps({"inputs": [rows]}).encode()


def test_inference_skips_the_middleware_and_answers_as_through_django(app, affine):
    status, headers, content = call(app, "/v2/models/affine/infer", body())
    assert status == 200
    assert SEEN == []
    assert headers["X-Content-Type-Options"] == "nosniff"
    fast = json.loads(content)
    with override_settings(MLAPP={"V2_SKIP_MIDDLEWARE": False}):
        plain = fastpath.wrap(WSGIHandler())
        assert plain.__class__ is WSGIHandler
        assert json.loads(call(plain, "/v2/models/affine/infer", body())[2]) == fast
    assert SEEN == ["/v2/models/affine/infer"]
    assert fast["model_name"] == "affine"
    assert fast["outputs"][0]["shape"] == [1, 2]


def test_a_pinned_version_is_served_by_the_fast_path_too(app, affine):
    status, _, content = call(app, "/v2/models/affine/versions/1/infer", body())
    assert (status, json.loads(content)["model_version"], SEEN) == (200, "1", [])


def test_other_requests_still_go_through_the_middleware(app, affine):
    assert call(app, "/v2/models/affine", method="GET")[0] == 200
    assert call(app, "/v2/models/affine/infer", method="GET")[0] == 405
    assert call(app, "/v2/health/live", method="GET")[0] == 200
    assert SEEN == ["/v2/models/affine", "/v2/models/affine/infer", "/v2/health/live"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{not json", 400, "JSON"),
        (body({**ROW, "shape": [1, 4]}), 400, "shape"),
    ],
)
def test_bad_requests_get_the_v2_error_on_the_fast_path(app, affine, payload, status, message):
    got, _, content = call(app, "/v2/models/affine/infer", payload)
    assert got == status
    assert message in json.loads(content)["error"]
    assert SEEN == []


def test_an_unknown_model_is_a_404_on_the_fast_path(app, affine):
    status, _, content = call(app, "/v2/models/nope/infer", body())
    assert status == 404
    assert "nope" in json.loads(content)["error"]


def test_a_host_not_in_allowed_hosts_is_refused_before_the_model_runs(app, affine):
    status, _, content = call(app, "/v2/models/affine/infer", body(), host="evil.example")
    assert status == 400
    assert "evil.example" in json.loads(content)["error"]


def test_when_predicting_needs_a_permission_inference_goes_through_django(app, affine):
    classes = ["rest_framework.permissions.IsAuthenticated"]
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        MLAPP={"V2_SKIP_MIDDLEWARE": True, "PREDICT_PERMISSION_CLASSES": classes},
    ):
        status, _, _ = call(app, "/v2/models/affine/infer", body())
    assert status in (401, 403)
    assert SEEN == ["/v2/models/affine/infer"]


def test_database_connections_are_closed_after_the_request_and_no_signal_is_sent(
    app, affine, monkeypatch
):
    closed, sent = [], []
    monkeypatch.setattr(fastpath, "close_old_connections", lambda: closed.append(True))

    def receiver(sender, **kwargs):
        sent.append(sender)

    signals.request_started.connect(receiver)
    signals.request_finished.connect(receiver)
    try:
        assert call(app, "/v2/models/affine/infer", body())[0] == 200
    finally:
        signals.request_started.disconnect(receiver)
        signals.request_finished.disconnect(receiver)
    assert (closed, sent) == ([True], [])


def test_without_the_v2_routes_in_the_urlconf_there_is_no_fast_path(caplog):
    application = WSGIHandler()
    with (
        override_settings(
            ROOT_URLCONF="tests.api.v2.test_fastpath", MLAPP={"V2_SKIP_MIDDLEWARE": True}
        ),
        caplog.at_level(logging.WARNING, logger="mlapp.api"),
    ):
        assert fastpath.wrap(application) is application
    assert "not in the URLconf" in caplog.text


urlpatterns: list = []  # an URLconf without mlapp's routes, for the test above


def test_the_setting_is_checked(affine):
    from mlapp.checks import check_settings

    with override_settings(MLAPP={"V2_SKIP_MIDDLEWARE": "yes"}):
        assert [e.id for e in check_settings(None)] == ["mlapp.E002"]
