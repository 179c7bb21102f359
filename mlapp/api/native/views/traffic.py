"""A model's traffic policy: read and change it, promote its canary, end the experiment."""

from __future__ import annotations

import math
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from mlapp.api.native import schema_docs as docs
from mlapp.api.native.base import MLAppAPIView, get_model, request_user
from mlapp.api.native.schema_docs import extend_schema
from mlapp.api.permissions import MANAGE
from mlapp.exceptions import InvalidInput
from mlapp.models import MLModel
from mlapp.serving.traffic_stats import shadow_summary, traffic_summary
from mlapp.versions.traffic import end_experiment, policy_of, promote_canary, set_policy


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def policy_body(model: MLModel) -> dict[str, Any]:
    """The policy of ``model`` with each version's traffic and the shadow comparisons."""
    policy = policy_of(model)
    return {
        "model": model.name,
        "production": getattr(model.production_version, "version", None),
        "canary": policy.canary.version if policy.canary else None,
        "canary_weight": policy.canary_weight,
        "sticky": policy.sticky,
        "shadow": policy.shadow.version if policy.shadow else None,
        "shadow_share": policy.shadow_share,
        "rollback_error_rate": policy.rollback_error_rate,
        "rollback_p99_ratio": policy.rollback_p99_ratio,
        "rollback_window": policy.rollback_window,
        "rollback_min_requests": policy.rollback_min_requests,
        "summary": policy.describe(),
        "traffic": [
            {
                "version": t.version,
                "requests": t.requests,
                "errors": t.errors,
                "error_rate": t.error_rate,
                "mean_ms": t.mean_ms,
                "p99_ms": _finite(t.p99_ms),
            }
            for t in traffic_summary(model.name)
        ],
        "shadow_comparisons": [
            {
                "answered": s.answered,
                "shadow": s.shadow,
                "requests": s.requests,
                "errors": s.errors,
                "label_agreement": s.agreement,
                "mean_cosine": s.mean_cosine,
                "max_abs_diff": s.max_abs_diff,
            }
            for s in shadow_summary(model.name)
        ],
        "history": [
            {"at": e.created_at.isoformat(), "action": e.action, "message": e.message}
            for e in model.traffic_events.all()[:20]
        ],
    }


@extend_schema(tags=["manage"], request=docs.TRAFFIC_POLICY, responses=docs.TRAFFIC_RESPONSES)
class TrafficView(MLAppAPIView):
    """The model's traffic policy (canary, sticky split, shadow, automatic rollback), each
    version's recent traffic and the shadow's agreement; PUT or PATCH changes the policy
    (the fields given; canary and shadow are version numbers, null removes them)."""

    read_access = write_access = MANAGE

    def get(self, request: Request, name: str) -> Response:
        return Response(policy_body(get_model(name)))

    def patch(self, request: Request, name: str) -> Response:
        model = get_model(name)
        if not isinstance(request.data, dict):
            raise InvalidInput("Send a JSON object of policy fields.")
        set_policy(model, dict(request.data), user=request_user(request))
        return Response(policy_body(model))

    put = patch


@extend_schema(tags=["manage"], request=None, responses=docs.TRAFFIC_RESPONSES)
class PromoteCanaryView(MLAppAPIView):
    """Make the canary the production version and end the split."""

    read_access = write_access = MANAGE

    def post(self, request: Request, name: str) -> Response:
        model = get_model(name)
        promote_canary(model, user=request_user(request))
        return Response(policy_body(model))


@extend_schema(tags=["manage"], request=None, responses=docs.TRAFFIC_RESPONSES)
class EndExperimentView(MLAppAPIView):
    """Send every request to production again: no canary, no shadow."""

    read_access = write_access = MANAGE

    def post(self, request: Request, name: str) -> Response:
        model = get_model(name)
        end_experiment(model, user=request_user(request))
        return Response(policy_body(model))
