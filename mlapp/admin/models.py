"""The admin of models: their versions inline, activity charts, and roll back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mlapp.admin import charts
from mlapp.admin.confirm import confirm, confirm_view
from mlapp.admin.display import (
    MLAppMedia,
    VersionColumns,
    confusion_matrix_of,
    signature_table,
    version_link,
)
from mlapp.admin.forms import MLModelForm
from mlapp.admin.monitoring import monitoring_page
from mlapp.admin.stages import ROLL_BACK
from mlapp.admin.versions import delete_files_on_commit
from mlapp.models import BatchJob, MLModel, ModelVersion
from mlapp.runtimes.tensors import Signature
from mlapp.serving.service import service
from mlapp.serving.stats import request_stats
from mlapp.versions.handler_change import change_message, signature_change
from mlapp.versions.lifecycle import log_change

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import StrPromise, WithAnnotations

    class _Counted(TypedDict):
        """What :meth:`MLModelAdmin.get_queryset` annotates the models with."""

        version_count: int


#: Batch jobs drawn on a model's page.
RECENT_JOBS = 8
#: The POST field that confirms a handler change which changes the public signature.
CONFIRM_HANDLER = "confirm_handler_change"


class ModelVersionInline(VersionColumns, admin.TabularInline):
    model = ModelVersion
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-version"]
    fields = (
        "version",
        "stage_display",
        "format",
        "size_display",
        "sha256_short",
        "created_by",
        "created_at",
        "metrics_summary",
    )
    readonly_fields = fields
    verbose_name_plural = _("versions")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # New versions go through the upload page, which validates them.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("created_by")


class MLModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "production", "version_count", "loaded_here", "updated_at"]
    list_filter = [
        "task",
        ("versions__stage", admin.ChoicesFieldListFilter),
        ("versions__format", admin.AllValuesFieldListFilter),
    ]
    search_fields = ["name", "description", "handler"]
    inlines = [ModelVersionInline]
    form = MLModelForm
    actions = ["rollback_selected"]
    Media = MLAppMedia
    change_form_template = "admin/mlapp/mlmodel/change_form.html"
    activity_fields = ["loaded_here", "activity", "jobs_progress", "confusion_matrix"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        production = ModelVersion.objects.filter(stage=ModelVersion.Stage.PRODUCTION)
        return (
            super()
            .get_queryset(request)
            .annotate(version_count=Count("versions", distinct=True))
            .prefetch_related(Prefetch("versions", production, to_attr="production_list"))
        )

    def get_fieldsets(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        fieldsets: list[Any] = [
            (None, {"fields": ["name", "description", "task", "handler", "serving", "monitoring"]}),
        ]
        if obj is not None:
            fieldsets.append((_("Activity"), {"fields": self.activity_fields}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        return self.activity_fields if obj is not None else []

    def save_model(self, request: HttpRequest, obj: MLModel, form: Any, change: bool) -> None:
        message = None
        if change and "handler" in form.changed_data:
            stored = MLModel.objects.get(pk=obj.pk)
            message = change_message(stored, obj.handler, signature_change(stored, obj.handler))
        super().save_model(request, obj, form, change)
        if message is not None:
            log_change(request.user, obj, message)

    def delete_model(self, request: HttpRequest, obj: MLModel) -> None:
        names = list(obj.versions.values_list("artifact", flat=True))
        super().delete_model(request, obj)
        delete_files_on_commit(names)

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
    def version_count(self, obj: WithAnnotations[MLModel, _Counted]) -> int:
        return obj.version_count

    @admin.display(description=_("in this process"))
    def loaded_here(self, obj: MLModel) -> SafeString | StrPromise:
        loaded = service.loaded_version(obj.name)
        if loaded is not None:
            return format_html('<span class="mlapp-ok">v{} {}</span>', loaded, _("ready"))
        error = service.load_error(obj.name)
        if error is None:
            return _("not loaded")
        return format_html('<span class="mlapp-error">{}</span>', error)

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

    # -- roll back ---------------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        model = self.get_object(request, object_id)
        if (
            model is not None
            and request.method == "POST"
            and request.POST.get(CONFIRM_HANDLER) != "yes"
            and self.has_change_permission(request, model)
        ):
            new_handler = request.POST.get("handler", model.handler).strip()
            if new_handler != model.handler:
                change = signature_change(model, new_handler)
                if change is not None:
                    return self.handler_confirmation(request, model, new_handler, change)
        extra = dict(extra_context or {})
        if model is not None:
            extra["can_upload"] = request.user.has_perm("mlapp.add_modelversion")
            extra["can_rollback"] = ROLL_BACK.offered(request, [model])
        return super().change_view(request, object_id, form_url, extra)

    def handler_confirmation(
        self,
        request: HttpRequest,
        model: MLModel,
        new_handler: str,
        change: tuple[Signature | None, Signature],
    ) -> TemplateResponse:
        """Ask before a handler change that changes what clients send and get.

        The page posts the same form back with :data:`CONFIRM_HANDLER` set.
        """
        before, after = change
        reposted = [
            (key, value)
            for key, values in request.POST.lists()
            if key not in ("csrfmiddlewaretoken", CONFIRM_HANDLER)
            for value in values
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": model,
            "title": _("Change the public signature of %(name)s?") % {"name": model.name},
            "old_handler": model.handler,
            "new_handler": new_handler,
            "before": signature_table(before) if before is not None else None,
            "after": signature_table(after),
            "reposted": reposted,
            "confirm_field": CONFIRM_HANDLER,
            "cancel_url": reverse("admin:mlapp_mlmodel_change", args=[model.pk]),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/mlapp/mlmodel/handler_confirmation.html", context)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/rollback/", view(self.rollback_view), name="mlapp_model_rollback"
            ),
            path(
                "<path:object_id>/monitoring/",
                view(self.monitoring_view),
                name="mlapp_model_monitoring",
            ),
            *super().get_urls(),
        ]

    def monitoring_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The model's monitoring page: logged traffic, live accuracy, drift, last requests."""
        model = self.get_object(request, object_id)
        if model is None:
            raise Http404(_("No such model."))
        if not self.has_view_permission(request, model):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "model": model,
            "title": _("Monitoring of %(name)s") % {"name": model.name},
            **monitoring_page(model),
        }
        return TemplateResponse(request, "admin/mlapp/mlmodel/monitoring.html", context)

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        model = self.get_object(request, object_id)
        if model is None:
            raise Http404(_("No such model."))
        page = reverse("admin:mlapp_mlmodel_change", args=[model.pk])
        return confirm_view(self, request, ROLL_BACK, [model], page=page)

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return ROLL_BACK.has_permission(request)

    @admin.action(description=_("Roll back selected models"), permissions=["rollback"])
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            ROLL_BACK,
            list(queryset),
            action_name="rollback_selected",
            cancel_url=request.get_full_path(),
        )
