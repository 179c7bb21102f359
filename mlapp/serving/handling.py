"""A handler over an artifact: imported from its dotted path, checked to fit, smoke-tested.

The one place that decides whether a handler may serve an artifact: its path is importable
and names a :class:`~mlapp.handlers.BaseHandler` (:func:`import_handler`, wherever a handler
is set), its example fits its public signature and its preprocess names the artifact's
inputs (:func:`handler_tensors`, at every load and upload), and its postprocess answers its
public outputs (:func:`check_outputs`). Loading (:mod:`mlapp.serving.loading`) and validation
(:mod:`mlapp.versions.validation`) call it; the artifact itself never runs here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from django.utils.module_loading import import_string

from mlapp.exceptions import ArtifactError, MLAppError, describe
from mlapp.handlers import BaseHandler
from mlapp.runtimes.tensors import Signature, sample_inputs
from mlapp.serving.inputs import validate_inputs

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlapp.models import MLModel


#: What a handler's preprocess raises on inputs it cannot read: answered as a 400.
HANDLER_INPUT_ERRORS = (ValueError, TypeError, UnicodeError, KeyError)


def handler_path(handler: BaseHandler | type[BaseHandler]) -> str:
    """The dotted path of a handler (or its class), as a model's ``handler`` names it."""
    cls = handler if isinstance(handler, type) else type(handler)
    return f"{cls.__module__}.{cls.__qualname__}"


def example_inputs(
    handler: BaseHandler | None, runtime_signature: Signature
) -> dict[str, np.ndarray]:
    """The public inputs a version is smoke-tested with: the handler's ``example`` checked
    against its public signature, or one built row of that signature."""
    if handler is None:
        return sample_inputs(runtime_signature)
    public = example_signature(handler)
    if handler.example is None:
        return sample_inputs(public)
    try:
        return validate_inputs(public, handler.example)
    except MLAppError as exc:
        raise ArtifactError(
            f"The example of the handler {handler_path(handler)} does not fit its own public "
            f"signature: {exc.message}"
        ) from None


def example_signature(handler: BaseHandler) -> Signature:
    """``handler.signature()``; ``ArtifactError`` naming the handler when it raises."""
    try:
        return handler.signature()
    except Exception as exc:
        raise ArtifactError(
            f"The handler {handler_path(handler)} cannot describe its public signature: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def check_fit(handler: BaseHandler, runtime_signature: Signature, tensors: dict[str, Any]) -> None:
    """Refuse a handler whose preprocess does not name the artifact's inputs.

    Costs no inference (the model is not run): loading calls it before serving, so a
    handler and an artifact that do not fit make the model not ready, with the reason.
    """
    if not isinstance(tensors, dict):
        raise ArtifactError(
            f"The handler {handler_path(handler)}'s preprocess returned "
            f"{type(tensors).__name__}, not a dict of arrays keyed by the artifact's inputs."
        )
    wanted = list(runtime_signature.input_names)
    missing = [n for n in wanted if n not in tensors]
    extra = [str(n) for n in tensors if n not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the artifact needs {missing}, which it does not give")
        if extra:
            parts.append(f"it gives {extra}, which the artifact does not take")
        raise ArtifactError(
            f"The handler {handler_path(handler)} does not fit this artifact: its preprocess "
            f"gives {sorted(map(str, tensors))} on its example; {'; '.join(parts)}."
        )


def handler_tensors(
    handler: BaseHandler | None, runtime_signature: Signature
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(public inputs, runtime tensors)`` of the smoke example, checked to fit the artifact.

    Raises :class:`ArtifactError` naming the handler when its example or preprocess fails.
    """
    inputs = example_inputs(handler, runtime_signature)
    if handler is None:
        return inputs, inputs
    try:
        tensors = handler.preprocess(inputs)
    except Exception as exc:
        raise ArtifactError(
            f"The handler {handler_path(handler)} failed on its own example: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    check_fit(handler, runtime_signature, tensors)
    return inputs, tensors


def check_outputs(
    handler: BaseHandler | None,
    runtime_signature: Signature,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The handler's postprocess of the smoke outputs, checked against its public outputs."""
    if handler is None:
        return outputs
    try:
        result = handler.postprocess(outputs, inputs)
    except Exception as exc:
        raise ArtifactError(
            f"The handler {handler_path(handler)}'s postprocess failed on this artifact's "
            f"outputs: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(result, dict):
        raise ArtifactError(
            f"The handler {handler_path(handler)}'s postprocess returned "
            f"{type(result).__name__}, not a dict of arrays."
        )
    missing = [n for n in example_signature(handler).output_names if n not in result]
    if missing:
        raise ArtifactError(
            f"The handler {handler_path(handler)} did not return the outputs its public "
            f"signature names: {missing}."
        )
    return result


def smoke_run(
    handler: BaseHandler | None,
    runtime_signature: Signature,
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Handler example -> preprocess -> ``run`` -> postprocess; ``ArtifactError`` on failure."""
    inputs, tensors = handler_tensors(handler, runtime_signature)
    try:
        outputs = run(tensors)
    except Exception as exc:
        reason = describe(exc)
        via = f" through the handler {handler_path(handler)}" if handler else ""
        raise ArtifactError(f"A prediction on the example{via} failed: {reason}") from None
    return check_outputs(handler, runtime_signature, inputs, outputs)


def import_handler(path: str) -> type[BaseHandler]:
    """The handler class ``path`` names; ``ArtifactError`` when it cannot be one.

    The one check of a handler path, wherever it is set (the admin, the API,
    ``register_model``, :func:`mlapp.versions.lifecycle.register_version`) or loaded.
    """
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ArtifactError(f"Cannot import handler {path!r}: {exc}") from None
    except Exception as exc:
        # Importing runs the host's module: whatever it raises, say so.
        raise ArtifactError(
            f"Cannot import handler {path!r}: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, BaseHandler)):
        raise ArtifactError(f"Handler {path!r} is not a mlapp.handlers.BaseHandler subclass.")
    return cls


def handler_class(model: MLModel) -> type[BaseHandler] | None:
    """The class ``model.handler`` names (None: no handler); ``ArtifactError`` if unusable."""
    return import_handler(model.handler) if model.handler else None


def load_handler(model: MLModel, runtime_signature: Signature) -> BaseHandler | None:
    """``model``'s handler over an artifact with ``runtime_signature`` (None: no handler)."""
    cls = handler_class(model)
    return cls(model.name, runtime_signature) if cls else None
