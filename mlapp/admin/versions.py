"""The admin of model versions: the validated upload, the version page, stage changes, "try it".

- A version is uploaded on the add page; it is validated (in a separate process) before
  anything is stored, and lands in ``staging``.
- Promote, roll back and archive each show a confirmation page and need the ``change``
  permission on model versions (:mod:`.stages`).
- "Try it" runs the version through :data:`mlapp.serving.service.service`
  (:mod:`.tryit`); view permission is enough.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from mlapp.admin import charts, edge, tryit
from mlapp.admin.confirm import ConfirmedAction, confirm, confirm_view
from mlapp.admin.display import (
    MLAppMedia,
    VersionColumns,
    confusion_matrix_of,
    example_request,
    metrics_table,
    signatures_of,
    validation_summary,
    version_link,
    version_url,
)
from mlapp.admin.forms import TryItForm, VersionUploadForm
from mlapp.admin.stages import ARCHIVE, PROMOTE, ROLL_BACK
from mlapp.models import MLModel, ModelVersion, artifact_storage
from mlapp.versions import lifecycle

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

#: Batch jobs listed on a version's page.
RECENT_JOBS = 20


def delete_files_on_commit(names: Sequence[str | None]) -> None:
    """Delete these artifact files once the transaction deleting their rows commits."""

    def delete() -> None:
        storage = artifact_storage()
        for name in names:
            if name:
                storage.delete(name)

    transaction.on_commit(delete)


class ModelVersionAdmin(VersionColumns, admin.ModelAdmin):
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
    facts = [
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
    ]
    change_fieldsets = [
        (None, {"fields": [*facts, "notes"]}),
        (_("Signature"), {"fields": ["signature_display"]}),
        (_("Metrics"), {"fields": ["validation_latency", "metrics_display", "confusion_matrix"]}),
        (_("Lineage"), {"fields": ["parent_display", "derived_display", "derived_comparison"]}),
        (_("Batch jobs"), {"fields": ["batch_jobs"]}),
    ]
    change_readonly_fields = [
        *facts,
        "signature_display",
        "validation_latency",
        "metrics_display",
        "confusion_matrix",
        "parent_display",
        "derived_display",
        "derived_comparison",
        "batch_jobs",
    ]

    # -- the upload ---------------------------------------------------------------------

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
        version = lifecycle.register_version(
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
        # lifecycle.register_version already logged the upload (who, and what it found).
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
        return HttpResponseRedirect(version_url(obj))

    # -- deletion ---------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        if obj is not None and obj.stage == ModelVersion.Stage.PRODUCTION:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        name = obj.artifact.name
        super().delete_model(request, obj)
        delete_files_on_commit([name])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        names = [v.artifact.name for v in queryset]
        super().delete_queryset(request, queryset)
        delete_files_on_commit(names)

    # -- read-only fields of the version page -------------------------------------------------

    @admin.display(description=_("artifact"))
    def artifact_name(self, obj: ModelVersion) -> str | None:
        return obj.artifact.name

    @admin.display(description=_("signature"))
    def signature_display(self, obj: ModelVersion) -> SafeString | str:
        return signatures_of(obj)

    @admin.display(description=_("validation"))
    def validation_latency(self, obj: ModelVersion) -> str:
        return validation_summary(obj)

    @admin.display(description=_("metrics"))
    def metrics_display(self, obj: ModelVersion) -> SafeString | str:
        return metrics_table(obj)

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

    @admin.display(description=_("beside its parent"))
    def derived_comparison(self, obj: ModelVersion) -> SafeString | str:
        return edge.comparison_table(obj)

    @admin.display(description=_("batch jobs"))
    def batch_jobs(self, obj: ModelVersion) -> SafeString | StrPromise:
        jobs = list(obj.jobs.select_related("version").order_by("-created_at")[:RECENT_JOBS])
        if not jobs:
            return _("No batch job has used this version.")
        return charts.batch_progress_chart(jobs)

    # -- the version's own pages: stage changes, "try it" -----------------------------------

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
            path("<path:object_id>/derive/", view(self.derive_view), name="mlapp_version_derive"),
            path("<path:object_id>/bundle/", view(self.bundle_view), name="mlapp_version_bundle"),
            path(
                "<path:object_id>/model.onnx", view(self.model_file_view), name="mlapp_version_onnx"
            ),
            path("<path:object_id>/answer/", view(self.answer_view), name="mlapp_version_answer"),
            *super().get_urls(),
        ]

    def _version(self, request: HttpRequest, object_id: str) -> ModelVersion:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404(_("No such model version."))
        return version

    def _stage_view(
        self, request: HttpRequest, object_id: str, action: ConfirmedAction
    ) -> HttpResponse:
        version = self._version(request, object_id)
        selected = [version.model] if action is ROLL_BACK else [version]
        return confirm_view(self, request, action, selected, page=version_url(version))

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, PROMOTE)

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, ARCHIVE)

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stage_view(request, object_id, ROLL_BACK)

    def derive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return edge.derive_view(self, request, self._version(request, object_id))

    def bundle_view(self, request: HttpRequest, object_id: str) -> Any:
        return edge.bundle_view(self, request, self._version(request, object_id))

    def model_file_view(self, request: HttpRequest, object_id: str) -> Any:
        return edge.model_file_view(self, request, self._version(request, object_id))

    def answer_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return edge.answer_view(self, request, self._version(request, object_id))

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tryit.try_view(self, request, self._version(request, object_id))

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
            extra.update(
                {
                    "can_promote": PROMOTE.offered(request, [version]),
                    "can_archive": ARCHIVE.offered(request, [version]),
                    # Offered on the production version's page only.
                    "can_rollback": version.stage == ModelVersion.Stage.PRODUCTION
                    and ROLL_BACK.offered(request, [version.model]),
                    "can_derive": bool(edge.derivable(version))
                    and self.has_add_permission(request),
                    "in_browser": edge.browser_context(version),
                    "try_form": TryItForm(initial={"body": json.dumps(example_request(version))}),
                }
            )
        return super().change_view(request, object_id, form_url, extra)

    # -- changelist actions ----------------------------------------------------------------

    @admin.action(description=_("Promote selected versions to production"), permissions=["change"])
    def promote_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            PROMOTE,
            list(queryset.select_related("model")),
            action_name="promote_selected",
            cancel_url=request.get_full_path(),
        )

    @admin.action(description=_("Archive selected versions"), permissions=["change"])
    def archive_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            ARCHIVE,
            list(queryset.select_related("model")),
            action_name="archive_selected",
            cancel_url=request.get_full_path(),
        )

    @admin.action(
        description=_("Roll back the models of the selected versions"), permissions=["change"]
    )
    def rollback_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            ROLL_BACK,
            list(MLModel.objects.filter(pk__in=queryset.values("model_id"))),
            action_name="rollback_selected",
            cancel_url=request.get_full_path(),
            posted=list(queryset),  # the page re-posts the selected versions, not the models
        )
