"""A newly promoted version that fails to load while the previous one still answers: the
server stays ready, the model says which version answers and why the new one does not; a
model with nothing loaded stays not ready."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

import mlapp
from mlapp.models import ModelVersion
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.startup import load_models
from mlapp.versions.lifecycle import promote_version, register_version, rollback
from tests.serving.changes import elsewhere

pytestmark = pytest.mark.django_db

#: The watcher thread never polls by itself here: the tests poll by hand.
QUIET = {"THREADS": 1, "POLL_INTERVAL": 3600}
X = np.ones((1, 3), dtype=np.float32)
NAME = "swapped"


def _lose_artifact(version: ModelVersion) -> None:
    version.artifact.storage.delete(version.artifact.name)


@pytest.fixture
def failed_swap(onnx_file, settings) -> ModelVersion:
    """v1 answers; v2 was promoted (elsewhere), then its file went missing before this
    process loaded it."""
    settings.MLAPP = QUIET
    register_version(NAME, onnx_file, promote=True)
    v2 = register_version(NAME, onnx_file)
    assert load_models() == {}
    with elsewhere():
        promote_version(v2)
    _lose_artifact(v2)
    assert registry.watcher.poll() == [NAME]
    return v2


def test_failed_swap_keeps_the_old_version_answering_and_the_server_ready(failed_swap, client):
    assert mlapp.predict(NAME, X).version == 1
    assert registry.is_ready()
    assert service.ready() == (True, None)
    response = client.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})
    state = registry.status()[NAME]
    assert (state["ready"], state["version"]) == (True, 1)
    assert "missing from storage" in state["error"]
    failure = registry.failure(NAME)
    assert failure is not None
    assert failure.version == 2
    assert failure.message == state["error"]


def test_model_ready_names_the_version_that_answers_and_why_the_new_one_does_not(
    failed_swap, client
):
    ready, reason = service.model_ready(NAME)
    assert ready is True
    assert f"answers with v1: its production version v2 failed to load: {registry.error(NAME)}" in (
        reason
    )
    assert service.model_ready(NAME, 1) == (True, reason)
    ready, reason = service.model_ready(NAME, 2)
    assert ready is False
    assert "failed to load" in reason
    assert "missing from storage" in reason
    assert reason.endswith("v1 answers meanwhile.")
    assert client.get(f"/v2/models/{NAME}/ready").status_code == 200
    pinned = client.get(f"/v2/models/{NAME}/versions/2/ready")
    assert pinned.status_code == 503
    assert "missing from storage" in pinned.json()["error"]


def test_metadata_describes_the_version_that_answers_with_the_reason(failed_swap):
    meta = service.model_metadata(NAME)
    assert meta.version == 1
    assert meta.reason == service.stale_reason(NAME)
    assert "v2 failed to load" in meta.reason
    # The promotion archived v1 in the database: it answers here only until v2 loads.
    assert meta.versions == ["2"]
    assert service.model_metadata(NAME, 1).reason == meta.reason


def test_failed_version_is_reported_not_ready_in_the_metrics(failed_swap):
    assert REGISTRY.get_sample_value("mlapp_model_ready", {"model": NAME, "version": "2"}) == 0
    assert REGISTRY.get_sample_value("mlapp_model_ready", {"model": NAME, "version": "1"}) == 1


def test_rolling_back_clears_the_failure(failed_swap):
    with elsewhere():
        rollback(failed_swap.model)
    registry.watcher.poll()
    assert registry.failure(NAME) is None
    assert service.model_ready(NAME) == (True, None)
    assert service.model_metadata(NAME).reason is None


def test_a_failed_first_load_after_startup_makes_the_server_not_ready(onnx_file, settings, client):
    settings.MLAPP = QUIET
    load_models()  # started with nothing in production
    first = register_version(NAME, onnx_file)
    with elsewhere():
        promote_version(first)
    _lose_artifact(first)
    registry.watcher.poll()
    assert not registry.is_ready()
    ready, reason = service.ready()
    assert ready is False
    assert NAME in reason
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    ready, reason = service.model_ready(NAME)
    assert ready is False
    assert "missing from storage" in reason
    assert "meanwhile" not in reason
    assert registry.status()[NAME] == {
        "ready": False,
        "version": None,
        "error": registry.error(NAME),
    }


def test_the_native_model_detail_is_ready_and_says_which_version_answers(failed_swap, client):
    detail = client.get(f"/api/mlapp/models/{NAME}/").json()
    assert (detail["ready"], detail["loaded_version"]) == (True, 1)
    assert "its production version v2 failed to load" in detail["reason"]
