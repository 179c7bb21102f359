"""The MLAPP settings: system checks (mlapp.checks) and the settings object (mlapp.conf)."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from mlapp.checks import check_settings
from mlapp.conf import DEFAULTS
from mlapp.conf import settings as mlapp_settings
from mlapp.runtimes import DEFAULT_RUNTIMES


def issues(mlapp: dict) -> list:
    with override_settings(MLAPP=mlapp):
        return check_settings()


def ids(found: list) -> list[str]:
    return [issue.id for issue in found]


# --- check_settings


def test_check_passes_on_defaults():
    assert issues({}) == []


def test_check_passes_without_an_mlapp_setting(settings):
    del settings.MLAPP
    assert check_settings() == []


def test_check_passes_on_the_test_settings():
    assert check_settings() == []


def test_check_passes_on_valid_overrides():
    assert (
        issues(
            {
                "THREADS": 4,
                "DEVICE": "cuda:1",
                "ONNX_GRAPH_OPTIMIZATION": "basic",
                "MAX_UPLOAD_SIZE": 2**20,
                "BATCHING": {"enabled": True, "max_batch_size": 8},
                "STAGING_CACHE_SIZE": 0,
                "POLL_INTERVAL": 0.5,
                "LOAD_ON_STARTUP": False,
            }
        )
        == []
    )


def test_check_reports_an_unknown_key_with_a_hint():
    (issue,) = issues({"THREAD": 2})
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E001"
    assert "'THREAD'" in issue.msg
    assert "THREADS" in issue.hint
    assert "MAX_UPLOAD_SIZE" in issue.hint


def test_check_reports_each_unknown_key_once():
    found = issues({"B": 1, "A": 2})
    assert ids(found) == ["mlapp.E001", "mlapp.E001"]
    assert "'A'" in found[0].msg
    assert "'B'" in found[1].msg


@pytest.mark.parametrize(
    ("mlapp", "key"),
    [
        ({"THREADS": 0}, "THREADS"),
        ({"THREADS": -1}, "THREADS"),
        ({"THREADS": "4"}, "THREADS"),
        ({"THREADS": True}, "THREADS"),
        ({"DEVICE": "tpu"}, "DEVICE"),
        ({"DEVICE": None}, "DEVICE"),
        ({"ONNX_GRAPH_OPTIMIZATION": "max"}, "ONNX_GRAPH_OPTIMIZATION"),
        ({"MAX_UPLOAD_SIZE": "big"}, "MAX_UPLOAD_SIZE"),
        ({"MAX_UPLOAD_SIZE": 0}, "MAX_UPLOAD_SIZE"),
        ({"BATCH_CHUNK_SIZE": 0}, "BATCH_CHUNK_SIZE"),
        ({"STAGING_CACHE_SIZE": -1}, "STAGING_CACHE_SIZE"),
        ({"POLL_INTERVAL": 0}, "POLL_INTERVAL"),
        ({"LOAD_ON_STARTUP": "yes"}, "LOAD_ON_STARTUP"),
        ({"BATCHING": {"max_batch_size": 0}}, "BATCHING"),
        ({"BATCHING": {"max_batch_size": 2.5}}, "BATCHING"),
        ({"BATCHING": {"max_queue_delay_ms": -1}}, "BATCHING"),
        ({"BATCHING": {"max_queue_delay_ms": True}}, "BATCHING"),
        ({"BATCHING": {"max_batch": 8}}, "BATCHING"),
        ({"BATCHING": 8}, "BATCHING"),
    ],
)
def test_check_reports_a_bad_value(mlapp, key):
    (issue,) = issues(mlapp)
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E002"
    assert issue.msg.startswith(f"MLAPP[{key!r}]")
    assert issue.hint


def test_check_names_the_known_batching_keys_for_an_unknown_one():
    (issue,) = issues({"BATCHING": {"max_batch": 8}})
    assert "max_batch_size" in issue.hint
    assert "max_queue_delay_ms" in issue.hint


def test_check_reports_an_unimportable_permission_class():
    (issue,) = issues({"PREDICT_PERMISSION_CLASSES": ["mlapp.nowhere.Nobody"]})
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E003"
    assert "'mlapp.nowhere.Nobody'" in issue.msg
    assert "PREDICT_PERMISSION_CLASSES" in issue.msg


def test_check_reports_a_permission_setting_that_is_a_string():
    (issue,) = issues({"READ_PERMISSION_CLASSES": "rest_framework.permissions.AllowAny"})
    assert issue.id == "mlapp.E002"
    assert "dotted import paths" in issue.msg


def test_check_warns_about_an_unimportable_runtime():
    (issue,) = issues({"RUNTIMES": {"onnx": "mlapp.runtimes.nowhere.Runtime"}})
    assert isinstance(issue, Warning)
    assert issue.id == "mlapp.W001"
    assert "'mlapp.runtimes.nowhere.Runtime'" in issue.msg
    assert "pip install" in issue.hint


def test_check_reports_all_problems_at_once():
    found = issues({"NOPE": 1, "THREADS": 0, "MANAGE_PERMISSION_CLASSES": ["no.such.Class"]})
    assert sorted(ids(found)) == ["mlapp.E001", "mlapp.E002", "mlapp.E003"]


def test_manage_py_check_fails_on_an_unknown_key():
    with (
        override_settings(MLAPP={"UNKNOWN": 1}),
        pytest.raises(SystemCheckError, match=r"mlapp\.E001"),
    ):
        call_command("check")


def test_manage_py_check_passes_on_the_test_settings():
    call_command("check")


# --- mlapp.conf.settings


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
    with override_settings(MLAPP={"RUNTIMES": {"tflite": "x.y.Runtime"}}):
        assert mlapp_settings.RUNTIMES == {**DEFAULT_RUNTIMES, "tflite": "x.y.Runtime"}


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
        assert mlapp_settings.runtime_options() == {"threads": 2, "graph_optimization": "basic"}


def test_check_reports_mlapp_that_is_not_a_dict(settings):
    settings.MLAPP = ["THREADS", 1]
    found = check_settings()
    assert ids(found) == ["mlapp.E001"]
    assert "must be a dict" in found[0].msg


@pytest.mark.parametrize("key", ["STAGING_CACHE_SIZE", "POLL_INTERVAL"])
def test_check_refuses_booleans_for_numbers(key):
    assert "mlapp.E002" in ids(issues({key: True}))


def test_check_reports_a_permission_module_that_fails_on_import():
    found = issues({"READ_PERMISSION_CLASSES": ["tests.importable.broken.Permission"]})
    assert ids(found) == ["mlapp.E003"]
    assert "broken on purpose" in found[0].msg
