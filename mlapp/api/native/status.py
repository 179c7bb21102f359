"""What this process knows about a model: ready or not and why, and what clients send."""

from __future__ import annotations

import logging
from typing import Any

from mlapp.models import MLModel, ModelVersion
from mlapp.runtimes.tensors import Signature
from mlapp.serving.loading import load_handler
from mlapp.serving.registry import registry

logger = logging.getLogger("mlapp.api")

NO_PRODUCTION = "No production version: promote a version to serve this model."
NOT_LOADED = "Not loaded in this process."
NOT_LOADED_NO_STARTUP = (
    "Not loaded in this process: it did not load models at startup (mlapp.wsgi or "
    "mlapp.startup.load_models); the first predict loads it."
)


def readiness(
    model: MLModel, production: ModelVersion | None, states: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``{"ready", "reason", "loaded_version"}`` of ``model`` in this process.

    ``states`` is ``registry.status()``, read once per request.
    """
    state = states.get(model.name)
    if state is not None and state["ready"]:
        return {"ready": True, "reason": None, "loaded_version": state["version"]}
    if state is not None:
        return {"ready": False, "reason": state["error"], "loaded_version": None}
    if production is None:
        return {"ready": False, "reason": NO_PRODUCTION, "loaded_version": None}
    reason = NOT_LOADED if registry.startup_done else NOT_LOADED_NO_STARTUP
    return {"ready": False, "reason": reason, "loaded_version": None}


def public_signature(version: ModelVersion) -> dict[str, Any]:
    """The inputs and outputs clients send and get for ``version``: through its handler.

    A text encoder's handler takes strings (BYTES) where the artifact takes token ids. No
    model is loaded for this: the handler describes itself from the stored signature.
    """
    model = version.model
    loaded = registry.loaded().get(model.name)
    if loaded is not None and loaded.version_id == version.pk:
        return loaded.signature.to_dict()
    if not model.handler:
        return version.signature
    try:
        handler = load_handler(model, Signature.from_dict(version.signature))
        return handler.signature().to_dict() if handler else version.signature
    except Exception:
        # The handler is the host project's code: describe the artifact rather than fail.
        logger.warning("mlapp: handler of %s cannot describe itself", model, exc_info=True)
        return version.signature


def example_inputs(signature: dict[str, Any]) -> dict[str, Any]:
    """A request body that fits ``signature``: one row, zeros or a short text."""

    def value(spec: dict[str, Any], dims: list[int]) -> Any:
        if not dims:
            return "text" if spec["datatype"] == "BYTES" else 0
        size = dims[0] if dims[0] > 0 else 1
        return [value(spec, dims[1:]) for _ in range(size)]

    inputs = {
        spec["name"]: value(spec, [1, *spec["shape"][1:]] if spec["shape"] else [])
        for spec in signature.get("inputs", [])
    }
    return {"inputs": inputs}
