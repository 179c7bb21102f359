"""One gRPC server per test module, in this process, over the demo models.

It shares the registry the demo models are loaded into (as the web process it runs in
would); the live HTTP server of the same process gives the REST answers to compare with.
"""

from __future__ import annotations

import gc
from io import StringIO

import pytest
from django.apps import apps
from django.core import serializers
from django.core.management import call_command

from mlapp.serving.registry import registry
from mlapp.startup import load_models

#: The message limit of the test server (RESOURCE_EXHAUSTED beyond).
MESSAGE_LIMIT = 4 * 2**20


def _mlapp_rows():
    for model in apps.get_app_config("mlapp").get_models():
        yield from model._default_manager.all()


@pytest.fixture(scope="module")
def demo_rows(django_db_setup, django_db_blocker):
    """Register the demo models, load them into the registry; the rows, serialized."""
    with django_db_blocker.unblock():
        call_command("setup_demo", "--no-admin", stdout=StringIO())
        rows = serializers.serialize("json", _mlapp_rows())
        registry.clear()
        errors = load_models()
    assert errors == {}
    yield rows
    registry.clear()
    gc.unfreeze()


@pytest.fixture(scope="module", params=["loop", "grpc"])
def grpc_port(request, demo_rows):
    """Each module's tests run against both ways of serving (mlapp.api.grpc.server.ENGINES):
    the call loop on gRPC's core, and grpc.server, what serves on other grpcio releases."""
    from mlapp.api.grpc.server import start_server

    server = start_server("127.0.0.1", 0, max_message_size=MESSAGE_LIMIT, engine=request.param)
    assert server.engine == request.param
    yield server.bound_port
    server.stop()


@pytest.fixture
def address(transactional_db, demo_rows, grpc_port) -> str:
    """host:port of the gRPC server. The rows come back after each test's flush."""
    for row in serializers.deserialize("json", demo_rows):
        row.save()
    return f"127.0.0.1:{grpc_port}"
