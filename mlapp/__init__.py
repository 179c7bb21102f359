"""mlapp: serve machine-learning models from inside a Django project.

The in-process API, for the host project's own code::

    import mlapp
    result = mlapp.predict("iris", [[5.1, 3.5, 1.4, 0.2]])
    result.outputs["label"], result.version
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlapp.serving.service import Prediction

__version__ = "0.1.0"


def predict(
    name: str,
    inputs: Any,
    *,
    version: int | None = None,
    sticky: Any = None,
    key: str | None = None,
    request_id: str | None = None,
) -> Prediction:
    """Run model ``name`` (its production version, or ``version``) on ``inputs``.

    Without a version, the model's traffic policy applies (a canary may answer); ``sticky``
    is the caller's key when the policy is sticky (by a field, a header or the user: the
    same ``sticky`` always meets the same version).

    ``inputs`` maps input names to nested lists or arrays (a bare value for a model with one
    input). Returns a :class:`mlapp.serving.service.Prediction` naming the version that answered.
    Raises subclasses of :class:`mlapp.exceptions.MLAppError` on bad input or a missing model.
    ``key`` and ``request_id`` name the request in the prediction log (feedback finds it by
    either), when the model logs it.
    """
    # Imported here so that ``import mlapp`` works before Django's app registry is ready.
    from mlapp.serving.inputs import named
    from mlapp.serving.routes import Caller
    from mlapp.serving.service import service

    caller = None if sticky is None else Caller.of_key(sticky)
    return service.predict(
        name, named(inputs), version=version, caller=caller, key=key, request_id=request_id
    )
