"""deploy/k8s: the base and the production overlay, built as kustomize builds them, every
resource valid against the Kubernetes 1.37 schemas that kubernetes-validate ships (strict:
an unknown field fails), and the deployment the docs describe: probes on the V2 health
routes, resources, a preStop, a PodDisruptionBudget and an HPA on the web Deployment, workers,
Services that select pods, a migrate Job, settings from a ConfigMap and a Secret."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
from django.conf import settings

from tests.deploy import kustomize

ROOT = Path(settings.BASE_DIR)
K8S = ROOT / "deploy/k8s"
VERSION = "1.37.0"


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize.build(K8S / "base")


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return kustomize.build(K8S / "overlays/production")


def _one(resources: list[dict], kind: str, name: str) -> dict:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _container(resources: list[dict], deployment: str) -> dict:
    kind = "Job" if deployment.endswith("migrate") else "Deployment"
    (container,) = _one(resources, kind, deployment)["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("build", ["base", "production"])
def test_every_resource_is_valid_against_the_kubernetes_schemas(build, request):
    resources = request.getfixturevalue(build)
    kinds = {r["kind"] for r in resources}
    assert kinds >= {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert kinds >= {"Job", "ConfigMap", "Secret"}
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{build}: {name}: {error.message} at {list(error.path)}")


def test_the_validator_refuses_a_broken_resource(base):
    web = copy.deepcopy(_one(base, "Deployment", "mlapp-web"))
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, VERSION, strict=True)
    web = copy.deepcopy(_one(base, "Deployment", "mlapp-web"))
    web["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, VERSION, strict=True)


def test_web_probes_ask_the_v2_health_routes(base):
    web = _container(base, "mlapp-web")
    assert web["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert web["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert web["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # Loading models is not a liveness failure: the startup probe allows minutes.
    startup = web["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in {"localhost", "127.0.0.1"}  # always allowed by the project


def test_web_pods_stop_gracefully_and_declare_resources(base):
    deployment = _one(base, "Deployment", "mlapp-web")
    pod = deployment["spec"]["template"]["spec"]
    web = _container(base, "mlapp-web")
    assert web["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    preStop = int(web["lifecycle"]["preStop"]["exec"]["command"][1])
    from mlapp.launcher import STOP_TIMEOUT

    assert pod["terminationGracePeriodSeconds"] > preStop + STOP_TIMEOUT
    assert web["resources"]["requests"]["cpu"]
    assert web["resources"]["limits"]["memory"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_web_commands_serve_and_the_job_migrates(base):
    assert _container(base, "mlapp-web")["command"][2] == "mlapp_serve"
    assert _container(base, "mlapp-worker")["command"][2] == "mlapp_worker"
    assert _container(base, "mlapp-migrate")["command"][2:4] == ["migrate", "--noinput"]
    images = {_container(base, n)["image"] for n in ("mlapp-web", "mlapp-worker", "mlapp-migrate")}
    assert images == {"mlapp:latest"}


def test_disruption_budget_autoscaler_and_service_select_the_web_pods(base):
    pod_labels = _one(base, "Deployment", "mlapp-web")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return selector.items() <= pod_labels.items()

    assert selects(
        _one(base, "PodDisruptionBudget", "mlapp-web")["spec"]["selector"]["matchLabels"]
    )
    assert selects(_one(base, "Service", "mlapp-web")["spec"]["selector"])
    ports = {p["name"]: p for p in _container(base, "mlapp-web")["ports"]}
    config = _one(base, "ConfigMap", "mlapp-config")["data"]
    assert ports["grpc"]["containerPort"] == int(config["GRPC_PORT"])
    service = {p["targetPort"] for p in _one(base, "Service", "mlapp-web")["spec"]["ports"]}
    assert service == {"http", "grpc"}
    hpa = _one(base, "HorizontalPodAutoscaler", "mlapp-web")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mlapp-web",
    }
    assert hpa["minReplicas"] >= 2
    assert (
        _one(base, "PodDisruptionBudget", "mlapp-web")["spec"]["minAvailable"] < hpa["minReplicas"]
    )


def test_settings_come_from_the_config_map_and_the_secret(base):
    config = _one(base, "ConfigMap", "mlapp-config")["data"]
    secret = _one(base, "Secret", "mlapp-secrets")["stringData"]
    assert {"MLAPP_DB", "CELERY_BROKER_URL", "MLAPP_S3_BUCKET"} <= set(config)
    assert {"DJANGO_SECRET_KEY", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    assert not set(config) & set(secret)
    for name in ("mlapp-web", "mlapp-worker", "mlapp-migrate"):
        sources = _container(base, name)["envFrom"]
        assert {"configMapRef": {"name": "mlapp-config"}} in sources
        assert {"secretRef": {"name": "mlapp-secrets"}} in sources


def test_the_overlay_patches_land_where_they_say(base, production):
    assert {r["metadata"].get("namespace") for r in production if r["kind"] != "Namespace"} == {
        "mlapp"
    }
    web = _container(production, "mlapp-web")
    assert web["image"] == "mlapp:0.1.0"
    assert web["resources"]["requests"]["cpu"] == "4"
    assert {"name": "WEB_WORKERS", "value": "4"} in web["env"]
    hpa = _one(production, "HorizontalPodAutoscaler", "mlapp-web")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
    assert _one(production, "Deployment", "mlapp-worker")["spec"]["replicas"] == 4
    # The base is untouched by the overlay's build.
    assert _container(base, "mlapp-web")["resources"]["requests"]["cpu"] == "2"


def test_the_build_refuses_what_it_does_not_understand(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas: []\n")
    with pytest.raises(kustomize.Unsupported):
        kustomize.build(tmp_path)
