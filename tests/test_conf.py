"""The settings object (mlapp.conf): defaults, typed values, imported paths, RUNTIMES."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils.module_loading import import_string
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated

from mlapp.conf import settings as mlapp_settings
from mlapp.conf.defaults import DEFAULTS
from mlapp.conf.rules import BatchSource, InvalidSetting
from mlapp.runtimes.onnx import OnnxRuntime
from mlapp.serving.registry import registry
from mlapp.versions.lifecycle import register_version
from tests.importable.tagged_runtime import TaggedOnnxRuntime


def flowers_source(**params):
    raise AssertionError("never called here")


CELERY_APP = object()


def test_settings_fall_back_to_defaults(settings):
    settings.MLAPP = {}
    assert mlapp_settings.MAX_UPLOAD_SIZE == 1024**3
    assert mlapp_settings.THREADS is None


def test_settings_reflect_override_settings():
    with override_settings(MLAPP={"THREADS": 3}):
        assert mlapp_settings.THREADS == 3
    with override_settings(MLAPP={"THREADS": 5}):
        assert mlapp_settings.THREADS == 5


def test_settings_reload_when_the_override_ends():
    with override_settings(MLAPP={"DEVICE": "cuda"}):
        assert mlapp_settings.DEVICE == "cuda"
    assert mlapp_settings.DEVICE == "cpu"


def test_settings_fixture_changes_reload_the_cache(settings):
    assert mlapp_settings.STAGING_CACHE_SIZE == 2
    settings.MLAPP = {"STAGING_CACHE_SIZE": 7}
    assert mlapp_settings.STAGING_CACHE_SIZE == 7


def test_settings_merge_a_partial_batching_override_over_defaults():
    with override_settings(MLAPP={"BATCHING": {"max_batch_size": 4}}):
        assert mlapp_settings.BATCHING == {
            "enabled": False,
            "max_batch_size": 4,
            "max_queue_delay_ms": 0.0,
            "max_queue_size": 256,
            "min_call_ms": 0.2,
        }


def test_settings_merge_an_added_runtime_over_the_defaults():
    with override_settings(MLAPP={"RUNTIMES": {"tflite": {"BACKEND": "x.y.Runtime"}}}):
        runtimes = mlapp_settings.RUNTIMES
        assert runtimes == {
            **{fmt: {**entry, "OPTIONS": {}} for fmt, entry in DEFAULTS["RUNTIMES"].items()},
            "tflite": {"BACKEND": "x.y.Runtime", "OPTIONS": {}},
        }


def test_settings_merging_leaves_the_defaults_untouched():
    with override_settings(MLAPP={"BATCHING": {"max_batch_size": 4}}):
        assert mlapp_settings.BATCHING["max_batch_size"] == 4
    assert DEFAULTS["BATCHING"]["max_batch_size"] == 32


def test_settings_refuse_an_unknown_attribute():
    with pytest.raises(AttributeError, match="Unknown mlapp setting: 'NOPE'"):
        _ = mlapp_settings.NOPE


def test_settings_refuse_a_private_attribute():
    with pytest.raises(AttributeError):
        _ = mlapp_settings._secret


def test_runtime_options_carry_threads_and_graph_optimization():
    with override_settings(MLAPP={"THREADS": 2, "ONNX_GRAPH_OPTIMIZATION": "basic"}):
        assert mlapp_settings.runtime_options("onnx") == {
            "threads": 2,
            "graph_optimization": "basic",
        }


# --- typed values


def test_seconds_are_handed_back_as_floats():
    with override_settings(
        MLAPP={"BATCH_RETRY_DELAY": 2, "POLL_INTERVAL": 3, "VALIDATION_TIMEOUT": 4}
    ):
        assert mlapp_settings.BATCH_RETRY_DELAY == 2.0
        assert isinstance(mlapp_settings.BATCH_RETRY_DELAY, float)
        assert isinstance(mlapp_settings.POLL_INTERVAL, float)
        assert isinstance(mlapp_settings.VALIDATION_TIMEOUT, float)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("STAGING_CACHE_SIZE", "3"),
        ("STAGING_CACHE_SIZE", -1),
        ("POLL_INTERVAL", 0),
        ("BATCH_MAX_RETRIES", 1.5),
        ("VALIDATION_TIMEOUT", "60"),
        ("BATCHING", 8),
        ("DEVICE", "tpu"),
    ],
)
def test_a_bad_value_raises_on_first_read_naming_the_key_and_the_fix(key, value):
    with override_settings(MLAPP={key: value}), pytest.raises(InvalidSetting) as caught:
        getattr(mlapp_settings, key)
    assert isinstance(caught.value, ImproperlyConfigured)
    assert str(caught.value).startswith(f"MLAPP[{key!r}]")
    assert "(mlapp.E002: " in str(caught.value)


def test_a_bad_value_is_not_cached():
    with override_settings(MLAPP={"STAGING_CACHE_SIZE": "3"}):
        for _ in range(2):
            with pytest.raises(InvalidSetting):
                _ = mlapp_settings.STAGING_CACHE_SIZE


# --- dotted paths: imported on first read, cached, reloaded


def test_permission_classes_are_handed_back_imported():
    read, manage = mlapp_settings.READ_PERMISSION_CLASSES, mlapp_settings.MANAGE_PERMISSION_CLASSES
    assert read == (AllowAny,)
    assert manage == (IsAdminUser,)


def test_dotted_paths_are_imported_once():
    paths = {"PREDICT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    with (
        override_settings(MLAPP=paths),
        mock.patch("mlapp.conf.rules.import_string", wraps=import_string) as imported,
    ):
        first = mlapp_settings.PREDICT_PERMISSION_CLASSES
        assert mlapp_settings.PREDICT_PERMISSION_CLASSES is first
        assert first == (IsAuthenticated,)
        assert mlapp_settings.runtime_class("onnx") is OnnxRuntime
        assert mlapp_settings.runtime_class("onnx") is OnnxRuntime
    assert imported.call_count == 2


def test_override_settings_reimports_the_paths():
    with override_settings(
        MLAPP={"READ_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    ):
        overridden = mlapp_settings.READ_PERMISSION_CLASSES
    assert overridden == (IsAuthenticated,)
    default = mlapp_settings.READ_PERMISSION_CLASSES
    assert default == (AllowAny,)
    with override_settings(
        MLAPP={
            "RUNTIMES": {"onnx": {"BACKEND": "tests.importable.tagged_runtime.TaggedOnnxRuntime"}}
        }
    ):
        assert mlapp_settings.runtime_class("onnx") is TaggedOnnxRuntime
    assert mlapp_settings.runtime_class("onnx") is OnnxRuntime


def test_an_unimportable_path_raises_on_first_read():
    with (
        override_settings(MLAPP={"READ_PERMISSION_CLASSES": ["mlapp.nowhere.Nobody"]}),
        pytest.raises(InvalidSetting, match=r"'mlapp\.nowhere\.Nobody' cannot be imported"),
    ):
        _ = mlapp_settings.READ_PERMISSION_CLASSES


def test_the_celery_app_is_handed_back_imported():
    assert mlapp_settings.CELERY_APP is None
    with override_settings(MLAPP={"CELERY_APP": "tests.test_conf.CELERY_APP"}):
        assert mlapp_settings.CELERY_APP is CELERY_APP


def test_batch_sources_are_handed_back_imported_with_their_key():
    sources = {"f": {"queryset": "tests.test_conf.flowers_source", "inputs": ["a", "b"]}}
    with override_settings(MLAPP={"BATCH_SOURCES": sources}):
        sources = mlapp_settings.BATCH_SOURCES
        assert sources == {"f": BatchSource(queryset=flowers_source, inputs=["a", "b"], key="pk")}


# --- RUNTIMES in the shape of STORAGES


def test_runtime_class_refuses_a_format_without_a_runtime():
    with pytest.raises(KeyError):
        mlapp_settings.runtime_class("tflite")


def test_a_plain_dotted_path_is_short_for_a_backend():
    with override_settings(
        MLAPP={"RUNTIMES": {"onnx": "tests.importable.tagged_runtime.TaggedOnnxRuntime"}}
    ):
        assert mlapp_settings.RUNTIMES["onnx"] == {
            "BACKEND": "tests.importable.tagged_runtime.TaggedOnnxRuntime",
            "OPTIONS": {},
        }
        assert mlapp_settings.runtime_class("onnx") is TaggedOnnxRuntime


def test_a_default_format_may_change_only_its_options():
    runtimes = {"onnx": {"OPTIONS": {"graph_optimization": "disable", "threads": 3}}}
    with override_settings(MLAPP={"THREADS": 1, "RUNTIMES": runtimes}):
        assert mlapp_settings.runtime_class("onnx") is OnnxRuntime
        assert mlapp_settings.runtime_options("onnx") == {
            "threads": 3,
            "graph_optimization": "disable",
        }
        # The other formats keep the global options.
        assert mlapp_settings.runtime_options("torchscript") == {
            "threads": 1,
            "graph_optimization": "all",
        }


def test_runtime_options_pass_a_runtimes_own_options_through():
    runtimes = {
        "onnx": {
            "BACKEND": "tests.importable.tagged_runtime.TaggedOnnxRuntime",
            "OPTIONS": {"arena": False},
        }
    }
    with override_settings(MLAPP={"RUNTIMES": runtimes}):
        assert mlapp_settings.runtime_options("onnx")["arena"] is False


@pytest.mark.django_db
def test_a_version_loads_with_a_runtime_configured_the_new_way(onnx_file, settings):
    settings.MLAPP = {
        "THREADS": 1,
        "RUNTIMES": {
            "onnx": {
                "BACKEND": "tests.importable.tagged_runtime.TaggedOnnxRuntime",
                "OPTIONS": {"graph_optimization": "basic"},
            }
        },
    }
    register_version("affine", onnx_file, promote=True)
    loaded = registry.get("affine")
    assert type(loaded.runtime) is TaggedOnnxRuntime
    assert loaded.runtime.options == {"threads": 1, "graph_optimization": "basic"}
    out = loaded.run({"x": np.ones((2, 3), dtype=np.float32)})
    assert out["y"].shape == (2, 2)
