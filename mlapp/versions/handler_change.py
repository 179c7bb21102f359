"""A change of a model's handler as its clients see it: the public signature before and after.

A handler decides what clients send and get. Changing it changes the production version's
public signature under every caller (the host's views, batch sources, V2 clients), so each
front door that sets a handler asks for a confirmation when the signature would change: the
admin with a confirmation page, the API and ``register_model`` with an explicit flag.
"""

from __future__ import annotations

from typing import Any

from mlapp.models import MLModel
from mlapp.runtimes.tensors import Signature
from mlapp.serving.handling import import_handler, load_handler

#: How the API and ``register_model`` confirm such a change.
CONFIRM_HINT = (
    "confirm it with confirm_handler_change=true (API) or --confirm-handler-change (register_model)"
)


def describe(signature: Signature | None) -> str:
    """A signature on one line, for messages and the model's history."""
    if signature is None:
        return "unknown"

    def specs(items: Any) -> str:
        return ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in items) or "none"

    return f"inputs {specs(signature.inputs)}; outputs {specs(signature.outputs)}"


def signature_change(model: MLModel, new_handler: str) -> tuple[Signature | None, Signature] | None:
    """``(before, after)``: the public signature of ``model``'s production version with its
    handler and with ``new_handler``, when they differ (None: no change, no production
    version to compare, or a handler path that its own check refuses)."""
    production = model.production_version
    if production is None:
        return None
    runtime = Signature.from_dict(production.signature)
    try:
        cls = import_handler(new_handler) if new_handler else None
        after = cls(model.name, runtime).signature() if cls else runtime
    except Exception:
        return None  # the handler check says what is wrong with it
    before: Signature | None
    try:
        handler = load_handler(model, runtime)
        before = handler.signature() if handler else runtime
    except Exception:
        before = None  # the current handler is broken: any change is worth a look
    return None if before == after else (before, after)


def change_message(model: MLModel, new_handler: str, change: tuple[Any, Any] | None) -> str:
    """The history line of a handler change (``change``: from :func:`signature_change`)."""
    message = f"Handler: {model.handler or 'none'} → {new_handler or 'none'}."
    if change is not None:
        message += (
            f" Public signature changed (confirmed): {describe(change[0])} → {describe(change[1])}."
        )
    return message


def unconfirmed_message(model: MLModel, new_handler: str, change: tuple[Any, Any]) -> str:
    """Why a handler change waits for a confirmation."""
    production = model.production_version
    return (
        f"Changing the handler of {model.name!r} to {new_handler or 'none'!r} changes the "
        f"public signature of its production version {production.version if production else ''}"
        f" from {describe(change[0])} to {describe(change[1])}: {CONFIRM_HINT}."
    )
