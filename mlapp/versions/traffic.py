"""Managing a model's traffic policy: set it, promote its canary, end the experiment.

The admin and the native API call these, as they call :mod:`mlapp.versions.lifecycle` for
stage changes; each change is recorded in the admin's log (the model's History page) and as
a :class:`~mlapp.models.TrafficEvent` (the model page's traffic history, which also holds
the automatic rollbacks). Saving the policy moves the change marker (:mod:`mlapp.signals`):
every process applies it within ``POLL_INTERVAL``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from mlapp.exceptions import InvalidInput, StageError
from mlapp.models import MLModel, ModelVersion, TrafficEvent, TrafficPolicy
from mlapp.versions.lifecycle import log_change, promote_version

logger = logging.getLogger("mlapp.versions")

#: What a policy holds besides its model, as the API and the admin's form name it.
FIELDS = (
    "canary",
    "canary_weight",
    "sticky",
    "shadow",
    "shadow_share",
    "rollback_error_rate",
    "rollback_p99_ratio",
    "rollback_window",
    "rollback_min_requests",
)


def policy_of(model: MLModel) -> TrafficPolicy:
    """The model's policy (a new, unsaved one sending everything to production if none)."""
    found = TrafficPolicy.objects.select_related("canary", "shadow").filter(model=model).first()
    return found if found is not None else TrafficPolicy(model=model)


def record(model: MLModel, action: str, message: str, user: Any = None) -> None:
    """Write a change of the policy into the model's histories."""
    TrafficEvent.objects.create(
        model=model, action=action, message=message, user=user if _is_user(user) else None
    )
    if user is not None:
        log_change(user, model, f"Traffic: {message}")
    logger.info("mlapp: %s traffic %s by %s: %s", model.name, action, user, message)


def _is_user(user: Any) -> bool:
    return getattr(user, "pk", None) is not None


def set_policy(model: MLModel, changes: dict[str, Any], *, user: Any = None) -> TrafficPolicy:
    """Change the policy of ``model``; ``canary``/``shadow`` are version numbers (or None).

    Raises :class:`InvalidInput` naming every bad field; nothing is stored then.
    """
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown field(s) {', '.join(unknown)}; a policy has {', '.join(FIELDS)}."
        )
    with transaction.atomic():
        policy = policy_of(model)
        for name, value in changes.items():
            if name in ("canary", "shadow"):
                value = _version(model, name, value)
            setattr(policy, name, value)
        try:
            policy.full_clean(exclude=["model"])
        except ValidationError as exc:
            detail = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise InvalidInput(f"Bad traffic policy: {detail}") from None
        policy.save()
        record(model, "changed", f"policy set: {policy.describe()}.", user)
    return policy


def _version(model: MLModel, field: str, value: Any) -> ModelVersion | None:
    if value in (None, ""):
        return None
    if isinstance(value, ModelVersion):
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: a version number, not {value!r}.") from None
    found = ModelVersion.objects.filter(model=model, version=number).first()
    if found is None:
        raise InvalidInput(f"{field}: {model.name} has no version {number}.")
    return found


def promote_canary(model: MLModel, *, user: Any = None) -> ModelVersion:
    """Make the canary the production version and end the split (the shadow stays)."""
    with transaction.atomic():
        policy = policy_of(model)
        canary = policy.canary
        if policy.pk is None or canary is None:
            raise StageError(f"{model.name} has no canary to promote.")
        promoted = promote_version(canary, user=user)
        policy.canary = None
        policy.canary_weight = 0.0
        policy.save()
        record(model, "promoted", f"canary v{canary.version} promoted to production.", user)
    return promoted


def end_experiment(model: MLModel, *, user: Any = None) -> TrafficPolicy:
    """Send every request to production again: no canary, no shadow."""
    with transaction.atomic():
        policy = policy_of(model)
        if policy.pk is None:
            return policy
        before = policy.describe()
        policy.canary = policy.shadow = None
        policy.canary_weight = 0.0
        policy.save()
        record(model, "ended", f"experiment ended (was: {before}).", user)
    return policy
