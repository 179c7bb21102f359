"""Loading production versions into the process, lazily or at startup."""

from __future__ import annotations

import numpy as np
import pytest

from mlapp.exceptions import ModelNotFound, ModelNotReady
from mlapp.models import ModelVersion
from mlapp.serving.registry import registry
from mlapp.startup import load_models
from mlapp.versions.lifecycle import promote_version, register_version

pytestmark = pytest.mark.django_db


def _break_artifact(version: ModelVersion) -> None:
    with open(version.artifact.path, "wb") as fh:
        fh.write(b"corrupted after upload")


def test_startup_loads_every_production_version(onnx_file, torch_export_file):
    register_version("a", onnx_file, promote=True)
    register_version("b", torch_export_file, promote=True)
    register_version("c", onnx_file)  # staging only: not loaded
    errors = load_models()
    assert errors == {}
    assert set(registry.loaded()) == {"a", "b"}
    assert registry.is_ready()


def test_startup_with_one_broken_model_serves_the_others(onnx_file, torch_export_file):
    register_version("good", onnx_file, promote=True)
    broken = register_version("broken", torch_export_file, promote=True)
    _break_artifact(broken)
    errors = load_models()
    assert set(errors) == {"broken"}
    assert not registry.is_ready()
    assert registry.status()["broken"]["ready"] is False
    assert registry.status()["good"] == {"ready": True, "version": 1, "error": None}
    out = registry.get("good").run({"x": np.ones((1, 3), dtype=np.float32)})
    assert out["y"].shape == (1, 2)
    with pytest.raises(ModelNotReady, match="failed to load"):
        registry.get("broken")


def test_missing_artifact_file_is_reported_not_raised(onnx_file):
    version = register_version("gone", onnx_file, promote=True)
    version.artifact.storage.delete(version.artifact.name)
    assert "gone" in load_models()


def test_lazy_load_on_first_use_outside_the_web_process(onnx_file):
    register_version("lazy", onnx_file, promote=True)
    assert registry.loaded() == {}
    assert registry.get("lazy").version == 1
    assert set(registry.loaded()) == {"lazy"}


def test_unknown_model_is_not_found():
    with pytest.raises(ModelNotFound):
        registry.get("nope")


def test_model_without_production_version_is_not_ready(onnx_file):
    register_version("staged", onnx_file)
    with pytest.raises(ModelNotReady, match="no production version"):
        registry.get("staged")


def test_pinned_version_loads_into_a_bounded_cache(onnx_file, settings):
    settings.MLAPP = {"STAGING_CACHE_SIZE": 1, "THREADS": 1}
    register_version("m", onnx_file, promote=True)
    register_version("m", onnx_file)
    register_version("m", onnx_file)
    assert registry.get("m", 2).version == 2
    assert registry.get("m", 3).version == 3
    assert list(registry._pinned) == [("m", 3)]
    with pytest.raises(ModelNotFound):
        registry.get("m", 9)


def test_promotion_swaps_the_loaded_version_in_this_process(
    onnx_file, django_capture_on_commit_callbacks
):
    register_version("m", onnx_file, promote=True)
    load_models()
    v2 = register_version("m", onnx_file)
    assert registry.get("m").version == 1
    with django_capture_on_commit_callbacks(execute=True):
        promote_version(v2)
    assert registry.get("m").version == 2
