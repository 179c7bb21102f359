"""``kustomize build`` for the features deploy/k8s uses, so its output can be validated
offline (no kustomize binary here): resources (files and bases), ``labels`` pairs,
``namespace``, ``images`` tags and JSON 6902 ``patches`` by kind and name (applied with the
jsonpatch library). A kustomization using anything else is refused, never half-built."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonpatch
import yaml

KNOWN = {"apiVersion", "kind", "resources", "labels", "namespace", "images", "patches"}
#: Kinds that are not namespaced (kustomize leaves them alone).
CLUSTER_KINDS = {"Namespace"}


class Unsupported(Exception):
    pass


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(folder: Path) -> list[dict]:
    """The resources ``kustomize build folder`` would print."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise Unsupported(f"{folder}: {sorted(unknown)} not understood by this build")
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        resources += build(path) if path.is_dir() else load_documents(path)
    for label in kustomization.get("labels", []):
        if set(label) - {"pairs"}:
            raise Unsupported(f"{folder}: labels {sorted(label)}")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_KINDS:
                resource["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        if set(image) - {"name", "newTag"}:
            raise Unsupported(f"{folder}: images {sorted(image)}")
        for container in _containers(resources):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image['name']}:{image['newTag']}"
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((folder / patch["path"]).read_text())
        targets = [r for r in resources if _matches(r, patch["target"])]
        if len(targets) != 1:
            raise Unsupported(f"{folder}: patch {patch['path']} matches {len(targets)} resources")
        index = resources.index(targets[0])
        resources[index] = jsonpatch.apply_patch(targets[0], operations)
    return copy.deepcopy(resources)


def _matches(resource: dict, target: dict) -> bool:
    if set(target) - {"kind", "name"}:
        raise Unsupported(f"patch target {sorted(target)}")
    return resource["kind"] == target["kind"] and resource["metadata"]["name"] == target["name"]


def _containers(resources: list[dict]) -> list[dict]:
    found = []
    for resource in resources:
        spec = resource.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        found += pod.get("containers", []) + pod.get("initContainers", [])
    return found
