"""Startup: ready() touches no database; the WSGI entry loads models before serving."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import register_version


@pytest.mark.django_db
def test_app_ready_and_url_import_make_no_queries():
    import importlib

    with CaptureQueriesContext(connection) as queries:
        apps.get_app_config("mlapp").ready()
        importlib.reload(importlib.import_module("mlapp.urls"))
        importlib.reload(importlib.import_module("mlapp.api.native.views"))
    assert queries.captured_queries == []
    assert registry.loaded() == {}


@pytest.mark.django_db
def test_wsgi_entry_loads_production_models_before_serving(onnx_file):
    from mlapp.wsgi import get_wsgi_application

    register_version("affine", onnx_file, promote=True)
    get_wsgi_application()
    assert registry.startup_done
    assert registry.loaded()["affine"].version == 1


@pytest.mark.django_db
def test_load_on_startup_false_defers_loading(onnx_file, settings):
    from mlapp.startup import load_models

    settings.MLAPP = {"LOAD_ON_STARTUP": False}
    register_version("affine", onnx_file, promote=True)
    assert load_models() == {}
    assert registry.loaded() == {}
