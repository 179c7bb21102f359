"""The admin: models and their versions, validated uploads, stage changes, "try it", charts.

- A version is uploaded on the ModelVersion add page; it is validated (in a separate
  process) before anything is stored, and lands in ``staging``.
- Promote, roll back and archive each show a confirmation page, need the ``change``
  permission on model versions, and go through :mod:`mlapp.versions.lifecycle` (the same
  functions as the API), which records them in the admin log and tells every process to swap.
- "Try it" runs the version through :data:`mlapp.serving.service.service`; view permission
  is enough.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mlapp import charts
from mlapp.exceptions import MLAppError
from mlapp.forms import TryItForm, VersionUploadForm
from mlapp.models import BatchJob, MLModel, ModelVersion
from mlapp.runtimes.tensors import Signature, TensorSpec
from mlapp.serving.inputs import named
from mlapp.serving.loading import load_handler
from mlapp.serving.registry import registry
from mlapp.serving.service import service
from mlapp.serving.stats import request_stats
from mlapp.versions import lifecycle as versions

logger = logging.getLogger("mlapp.admin")

PRODUCTION = ModelVersion.Stage.PRODUCTION
STAGING = ModelVersion.Stage.STAGING
ARCHIVED = ModelVersion.Stage.ARCHIVED

#: Metrics shown first in lists, when a version has them.
KEY_METRICS = ("accuracy", "f1", "precision", "recall", "auc", "r2", "mae", "mse", "rmse", "loss")
#: Batch jobs drawn on a model's page.
RECENT_JOBS = 8


class MLAppMedia:
    css = {"all": ["mlapp/admin.css"]}


# -- small renderers shared by the pages ---------------------------------------------------


def stage_badge(stage: str) -> SafeString:
    label = ModelVersion.Stage(stage).label if stage in ModelVersion.Stage.values else stage
    return format_html('<span class="mlapp-stage mlapp-stage-{}">{}</span>', stage, label)


def key_metrics(version: ModelVersion, limit: int = 3) -> str:
    metrics = version.metrics or {}
    shown = [
        f"{name} {metrics[name]:.3g}"
        for name in KEY_METRICS
        if isinstance(metrics.get(name), (int, float)) and not isinstance(metrics[name], bool)
    ][:limit]
    predict = (metrics.get("validation") or {}).get("predict_seconds")
    if isinstance(predict, (int, float)):
        shown.append(f"smoke predict {1000 * predict:.1f} ms")
    return " · ".join(shown) or "—"


def version_link(version: ModelVersion | None) -> SafeString | str:
    if version is None:
        return "—"
    url = reverse("admin:mlapp_modelversion_change", args=[version.pk])
    return format_html('<a href="{}">v{}</a>', url, version.version)


def public_signature(version: ModelVersion) -> tuple[Signature, Any]:
    """What clients send and get (the handler's signature when the model has one)."""
    runtime_signature = Signature.from_dict(version.signature)
    try:
        handler = load_handler(version.model, runtime_signature)
    except MLAppError:
        handler = None
    return (handler.signature() if handler else runtime_signature), handler


def example_request(version: ModelVersion) -> dict[str, Any]:
    """A valid predict body for ``version``: the handler's ``example`` if it has one,
    otherwise one row built from the signature."""
    signature, handler = public_signature(version)
    example = getattr(handler, "example", None)
    if isinstance(example, dict):
        return {"inputs": example}
    return {"inputs": {spec.name: _example_value(spec) for spec in signature.inputs}}


def _example_value(spec: TensorSpec) -> Any:
    shape = [(1 if i == 0 else 4) if d < 0 else d for i, d in enumerate(spec.shape)]
    if spec.datatype == "BYTES":
        fill: Any = "Hello, world."
    elif spec.datatype == "BOOL":
        fill = False
    elif spec.datatype.startswith("FP"):
        fill = 0.5
    else:
        fill = 0
    return np.full(shape, fill, dtype=object).tolist() if shape else fill


def signature_table(signature: Signature) -> SafeString:
    rows = [
        (direction, spec.name, spec.datatype, json.dumps(list(spec.shape)))
        for direction, group in (("input", signature.inputs), ("output", signature.outputs))
        for spec in group
    ]
    return format_html(
        '<table class="mlapp-table"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        _("direction"),
        _("name"),
        _("datatype"),
        _("shape"),
        format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            rows,
        ),
    )


def confusion_matrix_of(version: ModelVersion | None) -> SafeString | str:
    metrics = (version.metrics or {}) if version else {}
    matrix, labels = metrics.get("confusion_matrix"), metrics.get("labels")
    if not (
        isinstance(matrix, list)
        and matrix
        and all(isinstance(row, list) and len(row) == len(matrix) for row in matrix)
        and all(isinstance(v, int) for row in matrix for v in row)
    ):
        return "—"
    if not (isinstance(labels, list) and len(labels) == len(matrix)):
        labels = [str(i) for i in range(len(matrix))]
    return charts.confusion_matrix_chart(matrix, labels)


# -- stage changes: plan, confirm, apply -----------------------------------------------------


@dataclass
class StageChange:
    """One line of a confirmation page: ``version`` goes from one stage to another."""

    version: ModelVersion
    from_stage: str
    to_stage: str

    @property
    def url(self) -> str:
        return reverse("admin:mlapp_modelversion_change", args=[self.version.pk])

    @property
    def from_badge(self) -> SafeString:
        return stage_badge(self.from_stage)

    @property
    def to_badge(self) -> SafeString:
        return stage_badge(self.to_stage)


@dataclass
class StagePlan:
    """What a stage action would do: the changes, the targets to act on, what is refused."""

    changes: list[StageChange]
    targets: list[Any]
    refused: list[str]


def promote_plan(selected: Iterable[ModelVersion]) -> StagePlan:
    plan = StagePlan([], [], [])
    by_model: dict[int, list[ModelVersion]] = defaultdict(list)
    for version in selected:
        by_model[version.model_id].append(version)
    for group in by_model.values():
        version = group[0]
        if len(group) > 1:
            numbers = ", ".join(f"v{v.version}" for v in sorted(group, key=lambda v: v.version))
            plan.refused.append(
                f"{version.model.name}: {numbers} selected; a model has one production version."
            )
            continue
        if version.stage == PRODUCTION:
            plan.refused.append(f"{version} is already in production.")
            continue
        plan.targets.append(version)
        plan.changes.append(StageChange(version, version.stage, PRODUCTION))
        current = version.model.production_version
        if current is not None:
            plan.changes.append(StageChange(current, PRODUCTION, ARCHIVED))
    return plan


def rollback_plan(models: Iterable[MLModel]) -> StagePlan:
    plan = StagePlan([], [], [])
    for model in models:
        target = versions.rollback_target(model)
        if target is None:
            plan.refused.append(f"{model.name} has no earlier production version to roll back to.")
            continue
        plan.targets.append(model)
        plan.changes.append(StageChange(target, target.stage, PRODUCTION))
        current = model.production_version
        if current is not None:
            plan.changes.append(StageChange(current, PRODUCTION, ARCHIVED))
    return plan


def archive_plan(selected: Iterable[ModelVersion]) -> StagePlan:
    plan = StagePlan([], [], [])
    for version in selected:
        if version.stage == PRODUCTION:
            plan.refused.append(
                f"{version} is in production: promote another version or roll back first."
            )
        elif version.stage == ARCHIVED:
            plan.refused.append(f"{version} is already archived.")
        else:
            plan.targets.append(version)
            plan.changes.append(StageChange(version, version.stage, ARCHIVED))
    return plan


#: What each stage action does, for the confirmation page and the messages.
STAGE_ACTIONS: dict[str, dict[str, Any]] = {
    "promote": {
        "plan": promote_plan,
        "apply": lambda target, user: versions.promote_version(target, user=user),
        "title": _("Promote to production"),
        "question": _(
            "Every web process will load the new version, warm it and swap it in within "
            "about a second; the previous production version answers until then and is "
            "archived."
        ),
        "button": _("Yes, promote"),
        "done": lambda n: ngettext(
            "Promoted %(count)d version to production.",
            "Promoted %(count)d versions to production.",
            n,
        ),
    },
    "rollback": {
        "plan": rollback_plan,
        "apply": lambda target, user: versions.rollback(target, user=user),
        "title": _("Roll back"),
        "question": _(
            "The version that was in production before the current one comes back; the "
            "current one is archived. Every web process swaps within about a second."
        ),
        "button": _("Yes, roll back"),
        "done": lambda n: ngettext(
            "Rolled back %(count)d model.", "Rolled back %(count)d models.", n
        ),
    },
    "archive": {
        "plan": archive_plan,
        "apply": lambda target, user: versions.archive_version(target, user=user),
        "title": _("Archive"),
        "question": _("Archived versions stay stored and can be promoted again later."),
        "button": _("Yes, archive"),
        "done": lambda n: ngettext(
            "Archived %(count)d version.", "Archived %(count)d versions.", n
        ),
    },
}


class StageActionsMixin:
    """Confirmation page + apply for the stage actions, as changelist actions or per object."""

    def _stage_action(
        self,
        request: HttpRequest,
        kind: str,
        selected: Sequence[Any],
        *,
        action_name: str | None = None,
        cancel_url: str,
        success_url: str | None = None,
    ) -> HttpResponse | None:
        spec = STAGE_ACTIONS[kind]
        plan: StagePlan = spec["plan"](selected)
        if request.method == "POST" and request.POST.get("post") == "yes":
            done = 0
            for target in plan.targets:
                try:
                    spec["apply"](target, request.user)
                except MLAppError as exc:
                    self.message_user(request, f"{target}: {exc.message}", messages.ERROR)
                else:
                    done += 1
            if done:
                self.message_user(request, spec["done"](done) % {"count": done}, messages.SUCCESS)
            for reason in plan.refused:
                self.message_user(request, reason, messages.WARNING)
            return HttpResponseRedirect(success_url) if success_url else None
        if not plan.targets and action_name is not None:
            # Nothing to confirm: say why, stay on the list.
            for reason in plan.refused:
                self.message_user(request, reason, messages.WARNING)
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "title": spec["title"],
            "question": spec["question"],
            "button": spec["button"],
            "plan": plan,
            "action_name": action_name,
            "selected": selected,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": cancel_url,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/mlapp/stage_confirmation.html", context)


# -- ModelVersion ----------------------------------------------------------------------------


@admin.register(ModelVersion)
class ModelVersionAdmin(StageActionsMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "model",
        "version",
        "stage_display",
        "format",
        "size_display",
        "sha256_short",
        "created_by",
        "created_at",
        "metrics_summary",
    ]
    list_display_links = ["__str__"]
    list_filter = ["stage", "format", "model"]
    search_fields = ["model__name", "sha256", "notes"]
    list_select_related = ["model", "created_by"]
    date_hierarchy = "created_at"
    actions = ["promote_selected", "archive_selected", "rollback_selected"]
    Media = MLAppMedia
    change_form_template = "admin/mlapp/modelversion/change_form.html"
    add_fieldsets = [
        (None, {"fields": ["model", "artifact_file", "signature_file", "notes"]}),
    ]
    change_fieldsets = [
        (
            None,
            {
                "fields": [
                    "model",
                    "version",
                    "stage_display",
                    "format",
                    "size_display",
                    "sha256",
                    "artifact_name",
                    "created_by",
                    "created_at",
                    "stage_changed_at",
                    "promoted_at",
                    "notes",
                ]
            },
        ),
        (_("Signature"), {"fields": ["signature_display"]}),
        (_("Metrics"), {"fields": ["validation_latency", "metrics_display", "confusion_matrix"]}),
        (_("Lineage"), {"fields": ["parent_display", "derived_display"]}),
        (_("Batch jobs"), {"fields": ["batch_jobs"]}),
    ]
    change_readonly_fields = [
        "model",
        "version",
        "stage_display",
        "format",
        "size_display",
        "sha256",
        "artifact_name",
        "created_by",
        "created_at",
        "stage_changed_at",
        "promoted_at",
        "signature_display",
        "validation_latency",
        "metrics_display",
        "confusion_matrix",
        "parent_display",
        "derived_display",
        "batch_jobs",
    ]

    # -- forms ------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        return [] if obj is None else self.change_readonly_fields

    def get_form(
        self, request: HttpRequest, obj: ModelVersion | None = None, change: bool = False, **kw: Any
    ) -> Any:
        if obj is None:
            kw["form"] = VersionUploadForm
        return super().get_form(request, obj, change=change, **kw)

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        upload = form.cleaned_data["artifact_file"]
        version = versions.register_version(
            obj.model.name,
            upload,
            signature=form.cleaned_data.get("signature_file"),
            notes=obj.notes,
            filename=upload.name,
            created_by=request.user,
            report=form.report,
        )
        # The admin goes on with ``obj`` (log, redirect): make it the stored version.
        for field in ModelVersion._meta.concrete_fields:
            setattr(obj, field.attname, getattr(version, field.attname))
        obj._state.adding = False

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # mlapp.versions.register_version already logged the upload (who, and what it found).
        return None

    def response_add(
        self, request: HttpRequest, obj: ModelVersion, post_url_continue: str | None = None
    ) -> HttpResponse:
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        predict = (obj.metrics.get("validation") or {}).get("predict_seconds", 0.0)
        self.message_user(
            request,
            format_html(
                "{} validated and stored in staging ({}, {}, sha256 {}…, smoke prediction "
                "{} ms). Try it, then promote it when it is ready.",
                obj,
                obj.format,
                filesizeformat(obj.size),
                obj.sha256[:12],
                f"{1000 * predict:.1f}",
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:mlapp_modelversion_change", args=[obj.pk]))

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        if obj is not None and obj.stage == PRODUCTION:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        name = obj.artifact.name
        super().delete_model(request, obj)
        _delete_files_on_commit([name])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        names = [v.artifact.name for v in queryset]
        super().delete_queryset(request, queryset)
        _delete_files_on_commit(names)

    # -- columns and read-only fields -----------------------------------------------------

    @admin.display(description=_("stage"), ordering="stage")
    def stage_display(self, obj: ModelVersion) -> SafeString:
        return stage_badge(obj.stage)

    @admin.display(description=_("size"), ordering="size")
    def size_display(self, obj: ModelVersion) -> str:
        return filesizeformat(obj.size)

    @admin.display(description=_("sha256"))
    def sha256_short(self, obj: ModelVersion) -> SafeString:
        return format_html('<code title="{}">{}</code>', obj.sha256, obj.sha256[:12])

    @admin.display(description=_("key metrics"))
    def metrics_summary(self, obj: ModelVersion) -> str:
        return key_metrics(obj)

    @admin.display(description=_("artifact"))
    def artifact_name(self, obj: ModelVersion) -> str:
        return obj.artifact.name

    @admin.display(description=_("signature"))
    def signature_display(self, obj: ModelVersion) -> SafeString | str:
        try:
            signature, handler = public_signature(obj)
        except MLAppError as exc:
            return exc.message
        table = signature_table(signature)
        if handler is None:
            return table
        return format_html(
            '{}<p class="help">{}</p>{}',
            table,
            _("Clients send and get the handler's tensors above; the artifact itself runs:"),
            signature_table(Signature.from_dict(obj.signature)),
        )

    @admin.display(description=_("validation"))
    def validation_latency(self, obj: ModelVersion) -> str:
        report = (obj.metrics or {}).get("validation") or {}
        if not report:
            return "—"
        return _("loaded in %(load).1f ms, smoke prediction (2 rows) in %(predict).2f ms") % {
            "load": 1000 * float(report.get("load_seconds", 0)),
            "predict": 1000 * float(report.get("predict_seconds", 0)),
        }

    @admin.display(description=_("metrics"))
    def metrics_display(self, obj: ModelVersion) -> SafeString | str:
        rows = [
            (name, value if isinstance(value, str) else json.dumps(value))
            for name, value in sorted((obj.metrics or {}).items())
            if name not in {"confusion_matrix", "labels", "validation"}
        ]
        if not rows:
            return "—"
        return format_html(
            '<table class="mlapp-table"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td><code>{}</code></td></tr>", rows),
        )

    @admin.display(description=_("confusion matrix"))
    def confusion_matrix(self, obj: ModelVersion) -> SafeString | str:
        return confusion_matrix_of(obj)

    @admin.display(description=_("derived from"))
    def parent_display(self, obj: ModelVersion) -> SafeString | str:
        return version_link(obj.parent)

    @admin.display(description=_("derived versions"))
    def derived_display(self, obj: ModelVersion) -> SafeString | str:
        derived = list(obj.derived.order_by("version"))
        if not derived:
            return "—"
        return format_html_join(", ", "{} ({})", ((version_link(v), v.format) for v in derived))

    @admin.display(description=_("batch jobs"))
    def batch_jobs(self, obj: ModelVersion) -> SafeString | str:
        jobs = list(obj.jobs.select_related("version").order_by("-created_at")[:20])
        if not jobs:
            return _("No batch job has used this version.")
        return charts.batch_progress_chart(jobs)

    # -- extra pages -----------------------------------------------------------------------

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/promote/", view(self.promote_view), name="mlapp_version_promote"
            ),
            path(
                "<path:object_id>/archive/", view(self.archive_view), name="mlapp_version_archive"
            ),
            path(
                "<path:object_id>/rollback/",
                view(self.rollback_view),
                name="mlapp_version_rollback",
            ),
            path("<path:object_id>/try/", view(self.try_view), name="mlapp_version_try"),
            *super().get_urls(),
        ]

    def _version(self, request: HttpRequest, object_id: str) -> ModelVersion:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404(_("No such model version."))
        return version

    def _stage_view(self, request: HttpRequest, object_id: str, kind: str) -> HttpResponse:
        version = self._version(request, object_id)
        if not self.has_change_permission(request, version):
            raise PermissionDenied
        page = reverse("admin:mlapp_modelversion_change", args=[version.pk])
        selected = [version.model] if kind == "rollback" else [version]
        response = self._stage_action(request, kind, selected, cancel_url=page, success_url=page)
        assert response is not None
        return response

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, "promote")

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, "archive")

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, "rollback")

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        version = self._version(request, object_id)
        if not self.has_view_or_change_permission(request, version):
            raise PermissionDenied
        result = error = None
        latency_ms = None
        if request.method == "POST":
            form = TryItForm(request.POST)
            if form.is_valid():
                started = time.perf_counter()
                try:
                    prediction = service.predict(
                        version.model.name,
                        named(form.cleaned_data["body"]),
                        version=version.version,
                    )
                except MLAppError as exc:
                    error = exc.message
                except Exception as exc:
                    logger.exception("mlapp: try it on %s failed", version)
                    error = _("The model raised an unexpected %(error)s (see the server log).") % {
                        "error": type(exc).__name__
                    }
                else:
                    result = json.dumps(prediction.to_dict(), indent=2)
                latency_ms = 1000 * (time.perf_counter() - started)
        else:
            form = TryItForm(initial={"body": json.dumps(example_request(version))})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Try %(version)s") % {"version": version},
            "original": version,
            "form": form,
            "result": result,
            "error": error,
            "latency_ms": latency_ms,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/mlapp/modelversion/try_it.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        version = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if version is not None:
            can_change = self.has_change_permission(request, version)
            extra.update(
                {
                    "can_promote": can_change and version.stage != PRODUCTION,
                    "can_archive": can_change and version.stage == STAGING,
                    "can_rollback": can_change
                    and version.stage == PRODUCTION
                    and versions.rollback_target(version.model) is not None,
                    "try_form": TryItForm(initial={"body": json.dumps(example_request(version))}),
                }
            )
        return super().change_view(request, object_id, form_url, extra)

    # -- changelist actions ----------------------------------------------------------------

    @admin.action(description=_("Promote selected versions to production"), permissions=["change"])
    def promote_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._stage_action(
            request,
            "promote",
            list(queryset.select_related("model")),
            action_name="promote_selected",
            cancel_url=request.get_full_path(),
        )

    @admin.action(description=_("Archive selected versions"), permissions=["change"])
    def archive_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._stage_action(
            request,
            "archive",
            list(queryset.select_related("model")),
            action_name="archive_selected",
            cancel_url=request.get_full_path(),
        )

    @admin.action(
        description=_("Roll back the models of the selected versions"), permissions=["change"]
    )
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        models = MLModel.objects.filter(pk__in=queryset.values("model_id"))
        response = self._stage_action(
            request,
            "rollback",
            list(models),
            action_name="rollback_selected",
            cancel_url=request.get_full_path(),
        )
        if isinstance(response, TemplateResponse):
            # The page re-posts the selected versions, not the models.
            response.context_data["selected"] = list(queryset)
        return response


def _delete_files_on_commit(names: Sequence[str]) -> None:
    from mlapp.models import artifact_storage

    def delete() -> None:
        storage = artifact_storage()
        for name in names:
            if name:
                storage.delete(name)

    transaction.on_commit(delete)


# -- MLModel ---------------------------------------------------------------------------------


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-version"]
    fields = [
        "version",
        "stage_display",
        "format",
        "size_display",
        "sha256_short",
        "created_by",
        "created_at",
        "metrics_summary",
    ]
    readonly_fields = fields
    verbose_name_plural = _("versions")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # New versions go through the upload page, which validates them.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("created_by")

    stage_display = ModelVersionAdmin.stage_display
    size_display = ModelVersionAdmin.size_display
    sha256_short = ModelVersionAdmin.sha256_short
    metrics_summary = ModelVersionAdmin.metrics_summary


@admin.register(MLModel)
class MLModelAdmin(StageActionsMixin, admin.ModelAdmin):
    list_display = ["name", "task", "production", "version_count", "loaded_here", "updated_at"]
    list_filter = [
        "task",
        ("versions__stage", admin.ChoicesFieldListFilter),
        ("versions__format", admin.AllValuesFieldListFilter),
    ]
    search_fields = ["name", "description", "handler"]
    inlines = [ModelVersionInline]
    actions = ["rollback_selected"]
    Media = MLAppMedia
    change_form_template = "admin/mlapp/mlmodel/change_form.html"
    activity_fields = ["loaded_here", "activity", "jobs_progress", "confusion_matrix"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        production = ModelVersion.objects.filter(stage=PRODUCTION)
        return (
            super()
            .get_queryset(request)
            .annotate(version_count=Count("versions", distinct=True))
            .prefetch_related(Prefetch("versions", production, to_attr="production_list"))
        )

    def get_fieldsets(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        fieldsets: list[Any] = [
            (None, {"fields": ["name", "description", "task", "handler", "serving"]}),
        ]
        if obj is not None:
            fieldsets.append((_("Activity"), {"fields": self.activity_fields}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        return self.activity_fields if obj is not None else []

    def delete_model(self, request: HttpRequest, obj: MLModel) -> None:
        names = list(obj.versions.values_list("artifact", flat=True))
        super().delete_model(request, obj)
        _delete_files_on_commit(names)

    def has_delete_permission(self, request: HttpRequest, obj: MLModel | None = None) -> bool:
        # A production version is never deleted (nor its model from under the servers).
        if obj is not None and obj.production_version is not None:
            return False
        return super().has_delete_permission(request, obj)

    # -- columns ---------------------------------------------------------------------------

    @admin.display(description=_("production"))
    def production(self, obj: MLModel) -> SafeString | str:
        current = (getattr(obj, "production_list", None) or [None])[0]
        return version_link(current) if current is not None else "—"

    @admin.display(description=_("versions"), ordering="version_count")
    def version_count(self, obj: MLModel) -> int:
        return obj.version_count

    @admin.display(description=_("in this process"))
    def loaded_here(self, obj: MLModel) -> SafeString | str:
        state = registry.status().get(obj.name)
        if state is None:
            return _("not loaded")
        if state["ready"]:
            return format_html('<span class="mlapp-ok">v{} {}</span>', state["version"], _("ready"))
        return format_html('<span class="mlapp-error">{}</span>', state["error"])

    @admin.display(description=_("recent requests"))
    def activity(self, obj: MLModel) -> SafeString:
        return charts.latency_volume_chart(request_stats.recent(obj.name))

    @admin.display(description=_("batch jobs"))
    def jobs_progress(self, obj: MLModel) -> SafeString:
        jobs = BatchJob.objects.filter(version__model=obj).select_related("version")
        return charts.batch_progress_chart(list(jobs.order_by("-created_at")[:RECENT_JOBS]))

    @admin.display(description=_("confusion matrix (production version, at training time)"))
    def confusion_matrix(self, obj: MLModel) -> SafeString | str:
        return confusion_matrix_of(obj.production_version)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        model = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if model is not None:
            extra["can_upload"] = request.user.has_perm("mlapp.add_modelversion")
            extra["can_rollback"] = (
                _can_change_versions(request) and versions.rollback_target(model) is not None
            )
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/rollback/", view(self.rollback_view), name="mlapp_model_rollback"
            ),
            *super().get_urls(),
        ]

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        model = self.get_object(request, object_id)
        if model is None:
            raise Http404(_("No such model."))
        if not _can_change_versions(request):
            raise PermissionDenied
        page = reverse("admin:mlapp_mlmodel_change", args=[model.pk])
        response = self._stage_action(
            request, "rollback", [model], cancel_url=page, success_url=page
        )
        assert response is not None
        return response

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return _can_change_versions(request)

    @admin.action(description=_("Roll back selected models"), permissions=["rollback"])
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._stage_action(
            request,
            "rollback",
            list(queryset),
            action_name="rollback_selected",
            cancel_url=request.get_full_path(),
        )


def _can_change_versions(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.has_perm("mlapp.change_modelversion")


# Batch jobs have their own admin module (status, progress, cancel), registered on import.
from mlapp import admin_batch  # noqa: E402,F401
