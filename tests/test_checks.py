"""The system checks of the MLAPP settings (mlapp.checks); the settings object: test_conf."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from rest_framework.permissions import IsAdminUser, IsAuthenticated

from mlapp.checks import (
    INSTALLED_APPS_LINE,
    TOKEN_AUTH,
    check_artifact_storage,
    check_companion_apps,
    check_production_artifacts,
    check_routes,
    check_serving_configs,
    check_settings,
)
from mlapp.models import MLModel, ModelVersion


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


# --- what the host project adds: companion apps, token auth, storage, routes (issue 13)


def test_the_test_settings_add_everything_the_readme_asks_for():
    assert check_companion_apps() == []
    assert check_artifact_storage() == []
    assert check_routes() == []


@pytest.mark.parametrize("app", ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar"])
def test_a_missing_companion_app_is_an_error_naming_the_line_to_add(settings, app):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != app]
    (issue,) = check_companion_apps()
    assert issue.id == "mlapp.E007"
    assert isinstance(issue, Error)
    assert repr(app) in issue.msg
    assert f'"{app}"' in issue.hint
    assert "INSTALLED_APPS +=" in issue.hint


def test_the_hint_is_the_readme_line(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "rest_framework"]
    (issue,) = check_companion_apps()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert INSTALLED_APPS_LINE in issue.hint
    assert INSTALLED_APPS_LINE in readme


def test_token_authentication_without_authtoken_is_an_error(settings):
    settings.INSTALLED_APPS = [
        a for a in settings.INSTALLED_APPS if a != "rest_framework.authtoken"
    ]
    assert TOKEN_AUTH in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    (issue,) = check_companion_apps()
    assert issue.id == "mlapp.E008"
    assert "drf_create_token" in issue.msg
    settings.REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"]
    }
    assert check_companion_apps() == []


@pytest.mark.parametrize("media_root", ["", "media", "./var/media"])
def test_file_storage_at_a_relative_place_is_an_error(settings, media_root):
    settings.MEDIA_ROOT = media_root
    (issue,) = check_artifact_storage()
    assert issue.id == "mlapp.E009"
    assert "MEDIA_ROOT" in issue.hint
    assert "unset" in issue.msg if not media_root else repr(media_root) in issue.msg


def test_a_storage_with_an_absolute_location_passes_whatever_media_root_says(settings, tmp_path):
    settings.MEDIA_ROOT = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    with override_settings(MLAPP={"ARTIFACT_STORAGE": "artifacts"}):
        assert check_artifact_storage() == []
    assert ids(check_artifact_storage()) == ["mlapp.E009"]  # the default storage: MEDIA_ROOT


def test_a_storage_that_is_not_the_file_system_is_not_checked(settings):
    settings.MEDIA_ROOT = ""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert check_artifact_storage() == []


_v2 = 'path("", include("mlapp.api.v2.urls"))'
_native = 'path("api/mlapp/", include("mlapp.urls"))'
_metrics = 'path("metrics", metrics_view)'


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([_native], ["mlapp.W002", "mlapp.W003"]),  # the README before issue 13
        ([_v2, _native], ["mlapp.W003"]),
        ([_v2], ["mlapp.W004", "mlapp.W003"]),
        ([_v2, _native, _metrics], []),  # the example project's way
        (['path("", include("mlapp.site_urls"))', _native], []),  # the README's
        (['path("ml/", include("mlapp.site_urls"))', _native], ["mlapp.W002", "mlapp.W003"]),
    ],
)
def test_routes_mlapp_needs_are_checked(tmp_path, monkeypatch, routes, expected):
    module = f"host_urls_{abs(hash(tuple(routes)))}"
    (tmp_path / f"{module}.py").write_text(
        "from django.urls import include, path\n"
        "from mlapp.api.metrics import metrics_view\n"
        f"urlpatterns = [{', '.join(routes)}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with override_settings(ROOT_URLCONF=module):
        found = check_routes()
    assert sorted(ids(found)) == sorted(expected)
    assert all(isinstance(issue, Warning) and "README" in issue.hint for issue in found)


def test_manage_py_check_reports_a_missing_v2_route(tmp_path, monkeypatch):
    (tmp_path / "native_only_urls.py").write_text(
        f"from django.urls import include, path\nurlpatterns = [{_native}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = io.StringIO()
    with override_settings(ROOT_URLCONF="native_only_urls"):
        call_command("check", stdout=out, stderr=out)
    assert "mlapp.W002" in out.getvalue()
    assert "mlapp.W003" in out.getvalue()


# --- deploy: the production artifacts, with or without --database


@pytest.fixture
def production(db, onnx_file):
    from mlapp.versions.lifecycle import register_version

    return register_version("affine", onnx_file, promote=True)


@pytest.mark.parametrize("databases", [None, ["default"]])
def test_deploy_check_verifies_artifacts_without_database_option(production, databases):
    assert check_production_artifacts(databases=databases) == []
    with production.artifact.storage.open(production.artifact.name, "ab") as f:
        f.write(b"tampered")
    (issue,) = check_production_artifacts(databases=databases)
    assert issue.id == "mlapp.E011"
    production.artifact.storage.delete(production.artifact.name)
    (issue,) = check_production_artifacts(databases=databases)
    assert issue.id == "mlapp.E010"


def test_manage_py_check_deploy_reports_a_missing_artifact_without_database_option(
    production,
):
    production.artifact.storage.delete(production.artifact.name)
    with pytest.raises(SystemCheckError, match=r"mlapp\.E010"):
        call_command("check", "--deploy", "--fail-level", "ERROR")


def test_deploy_check_warns_when_the_database_cannot_be_read(monkeypatch):
    from django.db import OperationalError

    def unreachable(alias):
        raise OperationalError(f"connection to {alias} refused")

    monkeypatch.setattr(ModelVersion.objects, "using", unreachable)
    (issue,) = check_production_artifacts()
    assert issue.id == "mlapp.W005"
    assert isinstance(issue, Warning)
    assert "refused" in issue.msg


def test_django_filters_is_not_needed_as_an_app(settings, client, db):
    # The browsable API's filter form comes from mlapp's templates, not django-filter's.
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_filters"]
    assert check_companion_apps() == []
    page = client.get("/api/mlapp/models/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert b'name="task"' in page.content


# --- the views' schema class: mlapp's, whatever REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] says


_DRF_DEFAULT_SCHEMA = """
import django
from django.test import Client
django.setup()
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from mlapp.api.native.schema_docs import MLAppAutoSchema

generator = SchemaGenerator(urlconf="mlapp.urls")
generator._initialise_endpoints()
endpoints = generator._get_paths_and_endpoints()
assert len(endpoints) > 20, endpoints
for path, _, method, view in endpoints:
    assert isinstance(view.schema, MLAppAutoSchema), (path, method, type(view.schema).__mro__)
# What drf-spectacular's deploy check does, over the whole site.
spectacular_settings.DEFAULT_GENERATOR_CLASS().get_schema(request=None, public=True)
client = Client()
for url in ["/api/mlapp/schema/", "/api/mlapp/schema/swagger/", "/api/mlapp/schema/redoc/"]:
    assert client.get(url).status_code == 200, url
print("ok")
"""


def test_the_views_use_mlapps_schema_class_whatever_default_schema_class_says(tmp_path):
    # drf-spectacular derives a decorated method's schema class from DEFAULT_SCHEMA_CLASS as
    # it is when the views are imported; a project that never set it (DRF's own AutoSchema)
    # had the schema, the docs pages and check --deploy fail: "Incompatible AutoSchema".
    (tmp_path / "drf_default_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        'REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_SCHEMA_CLASS": '
        '"rest_framework.schemas.openapi.AutoSchema"}\n'
        "ALLOWED_HOSTS = ['testserver']\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "drf_default_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _DRF_DEFAULT_SCHEMA],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
