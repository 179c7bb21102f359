"""The admin of traffic policies: the policy inline on the model page, its chart, and the
one-click "promote the canary" and "end the experiment" (each confirmed, then reported)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import ForeignKey
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mlapp.admin import charts
from mlapp.exceptions import MLAppError
from mlapp.models import MLModel, ModelVersion, TrafficPolicy
from mlapp.serving.traffic_stats import shadow_summary, traffic_summary
from mlapp.versions.traffic import FIELDS, end_experiment, policy_of, promote_canary, record

#: Seconds of traffic the model page shows.
PAGE_WINDOW = 600


class TrafficPolicyInline(admin.StackedInline):
    """The model's traffic policy, edited with the model; saving it is recorded."""

    model = TrafficPolicy
    fields = FIELDS
    extra = 0
    max_num = 1
    can_delete = False
    verbose_name = _("traffic policy")
    verbose_name_plural = _("traffic policy (canary, shadow, automatic rollback)")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        self._parent = obj  # the choices of canary and shadow: this model's versions
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name in ("canary", "shadow"):
            kwargs["queryset"] = ModelVersion.objects.filter(
                model=getattr(self, "_parent", None)
            ).exclude(stage=ModelVersion.Stage.ARCHIVED)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def record_inline_change(request: HttpRequest, formset: Any) -> None:
    """Write a saved policy inline into the model's histories (as stage changes are)."""
    for form in formset.forms:
        if form.has_changed() and form.instance.pk is not None:
            policy = form.instance
            record(policy.model, "changed", f"policy set: {policy.describe()}.", request.user)


def traffic_panel(model: MLModel) -> SafeString:
    """The split, each version's requests, errors and latency, and the shadow agreement."""
    policy = policy_of(model)
    production = model.production_version
    return charts.traffic_chart(
        traffic_summary(model.name, PAGE_WINDOW),
        shadow_summary(model.name),
        production=production.version if production else None,
        canary=policy.canary.version if policy.canary and policy.canary_weight else None,
        weight=policy.canary_weight,
        window_s=PAGE_WINDOW,
    )


#: The one-click actions: what they do, and how they are asked.
ACTIONS = {
    "promote-canary": (
        promote_canary,
        _("Promote the canary of %(name)s?"),
        _("The canary v%(canary)s becomes the production version; the split ends."),
        _("Canary of %(name)s promoted."),
    ),
    "end-experiment": (
        end_experiment,
        _("End the experiment on %(name)s?"),
        _("Every request goes to the production version again: no canary, no shadow."),
        _("Experiment on %(name)s ended."),
    ),
}


def offered(model: MLModel) -> dict[str, bool]:
    policy = policy_of(model)
    return {
        "can_promote_canary": policy.canary_id is not None,
        "can_end_experiment": policy.canary_id is not None or policy.shadow_id is not None,
    }


def action_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, model: MLModel, action: str
) -> HttpResponse:
    """Ask (GET), then act (POST) and report on the model page."""
    run, title, explanation, done = ACTIONS[action]
    page = reverse("admin:mlapp_mlmodel_change", args=[model.pk])
    policy = policy_of(model)
    names = {"name": model.name, "canary": policy.canary.version if policy.canary else "-"}
    if request.method == "POST":
        try:
            run(model, user=request.user)
        except MLAppError as exc:
            model_admin.message_user(request, exc.message, messages.ERROR)
        else:
            model_admin.message_user(request, done % names, messages.SUCCESS)
        return HttpResponseRedirect(page)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": MLModel._meta,
        "original": model,
        "title": title % names,
        "explanation": explanation % names,
        "policy": policy.describe(),
        "cancel_url": page,
    }
    return TemplateResponse(request, "admin/mlapp/mlmodel/traffic_confirmation.html", context)
