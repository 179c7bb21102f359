"""What this process knows about a model, as the native API shows it: ready or not and why,
and what clients send (both from the inference service)."""

from __future__ import annotations

import logging
from typing import Any

from mlapp.exceptions import ModelNotReady
from mlapp.models import MLModel, ModelVersion
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.api")

NO_PRODUCTION = "No production version: promote a version to serve this model."
NOT_LOADED = "Not loaded in this process."
NOT_LOADED_NO_STARTUP = (
    "Not loaded in this process: it did not load models at startup (mlapp.wsgi or "
    "mlapp.startup.load_models); the first predict loads it."
)


def readiness(model: MLModel, production: ModelVersion | None) -> dict[str, Any]:
    """``{"ready", "reason", "loaded_version"}`` of ``model`` in this process.

    A model that answers with an earlier version, because its production version failed to
    load, is ready, and its reason says so.
    """
    loaded = service.loaded_version(model.name)
    if loaded is not None:
        return {"ready": True, "reason": service.stale_reason(model.name), "loaded_version": loaded}
    error = service.load_error(model.name)
    if error is not None:
        reason = error
    elif production is None:
        reason = NO_PRODUCTION
    else:
        reason = NOT_LOADED if service.loads_at_startup else NOT_LOADED_NO_STARTUP
    return {"ready": False, "reason": reason, "loaded_version": None}


def public_signature(version: ModelVersion) -> dict[str, Any]:
    """What clients send to and get from ``version``, for display.

    A version whose handler cannot describe itself is shown with its artifact's signature
    (its readiness says why it cannot serve): a listing never fails on one model.
    """
    try:
        return service.public_signature(version).to_dict()
    except ModelNotReady as exc:
        logger.warning("mlapp: %s", exc.message)
        return version.signature


def example_request(version: ModelVersion) -> dict[str, Any] | None:
    """A predict body ``version`` takes (None when it cannot be described)."""
    try:
        return {"inputs": service.example_inputs(version)}
    except ModelNotReady:
        return None
