"""The system checks of the MLAPP settings (mlapp.checks); the settings object: test_conf."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from rest_framework.permissions import IsAdminUser, IsAuthenticated

from mlapp.checks import check_serving_configs, check_settings
from mlapp.models import MLModel


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
        ({"VALIDATION_TIMEOUT": 0}, "VALIDATION_TIMEOUT"),
        ({"VALIDATION_TIMEOUT": "60"}, "VALIDATION_TIMEOUT"),
        ({"ARTIFACT_STORAGE": ""}, "ARTIFACT_STORAGE"),
        ({"ARTIFACT_PREFIX": None}, "ARTIFACT_PREFIX"),
        ({"RUNTIMES": ["onnx"]}, "RUNTIMES"),
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


# --- RUNTIMES entries (mlapp.E005), imported objects of the wrong kind (mlapp.E006)


@pytest.mark.parametrize(
    ("runtimes", "message"),
    [
        ({"onnx": 3}, "must be a dict with BACKEND and OPTIONS"),
        ({"onnx": {"BACKEND": "x.y.Runtime", "OPTION": {}}}, "must be a dict with BACKEND"),
        ({"tflite": {"OPTIONS": {}}}, "needs a BACKEND"),
        ({"onnx": {"BACKEND": 3}}, "needs a BACKEND"),
        ({"onnx": {"OPTIONS": ["threads", 1]}}, "OPTIONS must be a dict"),
        ({"onnx": {"OPTIONS": {"threads": 0}}}, "OPTIONS['threads']"),
        ({"onnx": {"OPTIONS": {"graph_optimization": "max"}}}, "OPTIONS['graph_optimization']"),
    ],
)
def test_check_reports_a_malformed_runtime_entry(runtimes, message):
    (issue,) = issues({"RUNTIMES": runtimes})
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E005"
    assert issue.msg.startswith(f"MLAPP['RUNTIMES'][{next(iter(runtimes))!r}]")
    assert message in issue.msg
    assert issue.hint


def test_check_reports_every_malformed_runtime_entry():
    found = issues({"RUNTIMES": {"a": {}, "b": 3, "onnx": {"OPTIONS": {"threads": -1}}}})
    assert ids(found) == ["mlapp.E005"] * 3


def test_check_passes_on_runtimes_in_the_new_shape_and_the_short_one():
    runtimes = {
        "onnx": {"BACKEND": "mlapp.runtimes.onnx.OnnxRuntime", "OPTIONS": {"threads": 2}},
        "torchscript": {"OPTIONS": {"graph_optimization": "basic"}},
        "torch_export": "mlapp.runtimes.torch_export.TorchExportRuntime",
    }
    assert issues({"RUNTIMES": runtimes}) == []


def test_check_warns_about_an_unimportable_runtime_backend():
    (issue,) = issues({"RUNTIMES": {"onnx": {"BACKEND": "mlapp.runtimes.nowhere.Runtime"}}})
    assert isinstance(issue, Warning)
    assert issue.id == "mlapp.W001"
    assert "'mlapp.runtimes.nowhere.Runtime'" in issue.msg


def test_check_reports_a_backend_that_is_not_a_runtime_class():
    (issue,) = issues({"RUNTIMES": {"onnx": {"BACKEND": "mlapp.runtimes.onnx"}}})
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E006"
    assert "'mlapp.runtimes.onnx' is not a runtime class" in issue.msg
    assert "mlapp.runtimes.Runtime" in issue.hint


def test_check_reports_a_permission_entry_that_is_not_a_permission_class():
    (issue,) = issues({"READ_PERMISSION_CLASSES": ["rest_framework.permissions"]})
    assert isinstance(issue, Error)
    assert issue.id == "mlapp.E006"
    assert "'rest_framework.permissions' is not a permission class" in issue.msg
    assert "BasePermission" in issue.hint


COMPOSED_PERMISSION = IsAuthenticated | IsAdminUser


def test_check_accepts_a_composed_permission():
    assert issues({"MANAGE_PERMISSION_CLASSES": ["tests.test_checks.COMPOSED_PERMISSION"]}) == []


def test_check_reports_each_unimportable_permission_class():
    found = issues({"READ_PERMISSION_CLASSES": ["no.such.A", "no.such.B"]})
    assert ids(found) == ["mlapp.E003", "mlapp.E003"]
    assert "'no.such.A'" in found[0].msg
    assert "'no.such.B'" in found[1].msg


@pytest.mark.django_db
def test_model_serving_configs_are_not_checked_while_the_global_batching_is_broken(settings):
    settings.MLAPP = {"BATCHING": 8}
    MLModel.objects.create(name="m", serving={"batching": {"max_batch_size": 4}})
    assert check_serving_configs(databases=["default"]) == []
