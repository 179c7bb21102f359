"""compose.yaml: valid against the Compose specification's JSON schema (the copy that
check-jsonschema ships, read offline), and the topology docs/scaling.md describes: two web
replicas behind HAProxy, two Celery workers, PostgreSQL, Redis, S3-compatible storage, and a
migrate job every server waits for. No Docker engine here: the HAProxy configuration is
checked by haproxy itself when it is installed (required under CI=true)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def schema() -> dict:
    vendored = resources.files("check_jsonschema.builtin_schemas") / "vendor/compose-spec.json"
    return json.loads(vendored.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_is_valid_against_the_compose_specification(schema, compose):
    assert _errors(schema, compose) == []


def test_the_schema_check_refuses_a_broken_file(schema, compose):
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["deploy"]["replicas"] = "two"
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "after_a_while"
    assert len(_errors(schema, broken)) == 2


def test_web_and_workers_run_two_replicas_of_one_image(compose):
    services = compose["services"]
    for name in ("web", "worker"):
        assert services[name]["deploy"]["replicas"] == 2
    images = {services[name]["image"] for name in ("web", "worker", "migrate")}
    assert images == {"mlapp:latest"}
    # web runs the image's command (mlapp_serve); workers and the job say theirs.
    assert "command" not in services["web"]
    assert services["worker"]["command"][:3] == ["python", "manage.py", "mlapp_worker"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_servers_start_after_the_migrations_completed(compose):
    services = compose["services"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_node_shares_the_database_the_broker_and_the_object_storage(compose):
    services = compose["services"]
    env = services["web"]["environment"]
    assert env["MLAPP_DB"] == "postgres"
    assert env["PGHOST"] == "postgres"
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
    assert env["MLAPP_S3_ENDPOINT_URL"] == "http://minio:9000"
    for name in ("worker", "migrate"):
        assert services[name]["environment"] == env
    assert {"postgres", "redis", "minio", "bucket", "lb"} <= set(services)
    assert "mlapp-artifacts" in services["bucket"]["command"][0]


def test_secrets_are_required_not_defaulted(compose):
    env = compose["services"]["web"]["environment"]
    for name in ("DJANGO_SECRET_KEY", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert ":?" in env[name], f"{name} must be required: ${{VAR:?message}}"


def test_the_load_balancer_configuration_is_valid_for_haproxy():
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        if CI:
            pytest.fail("haproxy is not installed; CI=true requires it (apt-get install haproxy)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    config = ROOT / "deploy/haproxy/compose.cfg"
    done = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/v2/health/ready" in config.read_text()
    # HTTP and gRPC both balanced over the web replicas.
    assert "server-template web 8 web:8000" in config.read_text()
    assert "web:8001 proto h2" in config.read_text()
