"""The OpenAPI schema: valid, as committed (golden file), warning-free; docs pages offline.

Regenerate the golden file after an intended API change::

    MLAPP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/api/native/test_schema.py
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from openapi_spec_validator import validate
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

GOLDEN = Path(__file__).parents[2] / "golden" / "openapi.json"
SCHEMA_SETTINGS = "mlapp.api.native.schema.SCHEMA_SETTINGS"


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/mlapp/schema/?format=json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_schema_matches_the_committed_golden_file(schema):
    rendered = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("MLAPP_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), "no golden schema yet: run with MLAPP_UPDATE_GOLDEN=1"
    golden = json.loads(GOLDEN.read_text())
    changed = sorted(
        set(golden["paths"]).symmetric_difference(schema["paths"])
        | {
            p
            for p in golden["paths"]
            if p in schema["paths"] and golden["paths"][p] != schema["paths"][p]
        }
    )
    assert schema == golden, (
        f"The API changed (paths: {changed or 'components only'}); if intended, regenerate "
        "with MLAPP_UPDATE_GOLDEN=1 and review the diff."
    )


def test_schema_describes_the_native_routes_only(schema):
    paths = set(schema["paths"])
    assert all(p.startswith("/api/mlapp/") for p in paths)
    assert {
        "/api/mlapp/models/",
        "/api/mlapp/models/{name}/",
        "/api/mlapp/models/{name}/predict",
        "/api/mlapp/models/{name}/versions/{version}/predict",
        "/api/mlapp/models/{name}/versions/",
        "/api/mlapp/models/{name}/versions/{version}/artifact",
        "/api/mlapp/models/{name}/predictions/{key}",
        "/api/mlapp/jobs/",
        "/api/mlapp/jobs/{id}/cancel",
        "/api/mlapp/jobs/{id}/predictions/",
    } <= paths
    assert not any("schema" in p for p in paths)


def test_schema_documents_predict_with_examples(schema):
    post = schema["paths"]["/api/mlapp/models/{name}/predict"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"NamedInputs", "BareValue", "Records", "Texts"}
    assert set(post["responses"]) == {"200", "400", "401", "403", "404", "413", "415", "503"}
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"] == {
        "error": {"type": "string", "description": "What went wrong, and what to fix."}
    }


def test_schema_examples_are_bodies_the_demo_iris_model_takes(schema):
    from django.conf import settings

    from mlapp.versions.lifecycle import register_version

    iris = Path(settings.BASE_DIR) / "fixtures" / "iris"
    register_version(
        "iris",
        iris / "model.pt",
        signature=json.loads((iris / "signature.json").read_text()),
        handler="project.demo.handlers.IrisHandler",
        promote=True,
    )
    content = schema["paths"]["/api/mlapp/models/{name}/predict"]["post"]
    examples = content["requestBody"]["content"]["application/json"]["examples"]
    answer = content["responses"]["200"]["content"]["application/json"]["examples"]
    client = APIClient()
    for name in ("NamedInputs", "BareValue", "Records"):
        response = client.post(
            "/api/mlapp/models/iris/predict", examples[name]["value"], format="json"
        )
        assert response.status_code == 200, (name, response.content)
        labels = response.json()["outputs"]["label"]
        assert labels == answer["ClassifierAnswer"]["value"]["outputs"]["label"][: len(labels)]


def test_spectacular_command_validates_without_warnings(tmp_path, schema):
    GENERATOR_STATS.reset()
    out = tmp_path / "schema.json"
    call_command(
        "spectacular",
        "--custom-settings",
        SCHEMA_SETTINGS,
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        "--file",
        str(out),
    )
    assert json.loads(out.read_text()) == schema


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def _page(url: str) -> tuple[str, list[str]]:
    response = APIClient().get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    # The browser itself is told to load nothing from elsewhere (ReDoc fetches a logo).
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "img-src 'self' data:" in response["Content-Security-Policy"]
    html = response.content.decode()
    parser = _Links()
    parser.feed(html)
    return html, parser.urls


@pytest.mark.parametrize(
    ("url", "assets"),
    [
        (
            "/api/mlapp/schema/swagger/",
            ["swagger-ui-dist/swagger-ui.css", "swagger-ui-dist/swagger-ui-bundle.js"],
        ),
        ("/api/mlapp/schema/redoc/", ["redoc/bundles/redoc.standalone.js"]),
    ],
)
def test_docs_pages_load_local_static_files_only(url, assets):
    html, urls = _page(url)
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), (
        "the page names another host"
    )
    for asset in assets:
        assert f"/static/drf_spectacular_sidecar/{asset}" in urls
    for static_url in (u for u in urls if u.startswith("/static/")):
        assert finders.find(static_url.removeprefix("/static/")), static_url
    assert "/api/mlapp/schema/" in html


def test_swagger_ui_sends_the_schema_to_no_validator_service():
    html, _ = _page("/api/mlapp/schema/swagger/")
    assert '"validatorUrl": null' in html
