"""The admin of batch jobs: status, a progress bar, counts, errors, cancel and resume actions.

Jobs are created by the API, ``manage.py run_batch`` and the host's code, not here: the
pages are read-only apart from cancelling and resuming, which ask for confirmation first
(:mod:`.confirm`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mlapp import batch
from mlapp.admin.confirm import ConfirmedAction, Plan, confirm
from mlapp.models import BatchJob

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

STATUS_COLOURS: dict[str, str] = {
    BatchJob.Status.PENDING: "#777",
    BatchJob.Status.RUNNING: "#2a6ebb",
    BatchJob.Status.SUCCEEDED: "#2e7d32",
    BatchJob.Status.FAILED: "#c62828",
    BatchJob.Status.CANCELLED: "#a66a00",
}
#: Failed items shown on a job's page.
ITEM_ERRORS_SHOWN = 20


class JobAction(ConfirmedAction):
    """A confirmed action on jobs: the ones it left alone are counted in one warning."""

    def skipped(self, count: int) -> str:
        raise NotImplementedError("JobAction subclasses must implement skipped()")

    def left_alone(self, plan: Plan, unchanged: int) -> list[str]:
        count = len(plan.refused) + unchanged
        return [self.skipped(count)] if count else []


class CancelJobs(JobAction):
    """Selected: jobs. Active ones are cancelled; finished ones are left as they are."""

    permission = "mlapp.change_batchjob"
    template = "admin/mlapp/batchjob/cancel_confirmation.html"
    title = _("Cancel batch jobs?")
    question = _(
        "These jobs will stop: chunks already running finish and keep their results, chunks "
        "not yet started do nothing."
    )
    button = _("Yes, cancel them")

    def plan(self, selected: Sequence[BatchJob]) -> Plan:
        plan = Plan()
        active = set(
            BatchJob.objects.active()
            .filter(pk__in=[job.pk for job in selected])
            .values_list("pk", flat=True)
        )
        for job in selected:
            (plan.targets if job.pk in active else plan.refused).append(job)
        return plan

    def apply(self, target: BatchJob, user: Any) -> bool:
        return batch.cancel(target)

    def done(self, count: int) -> str:
        return ngettext(
            "Cancelled %(count)d batch job: its chunks not yet started do nothing.",
            "Cancelled %(count)d batch jobs: their chunks not yet started do nothing.",
            count,
        ) % {"count": count}

    def skipped(self, count: int) -> str:
        return ngettext(
            "%(count)d job had already finished and was left as it was.",
            "%(count)d jobs had already finished and were left as they were.",
            count,
        ) % {"count": count}


CANCEL = CancelJobs()


class ResumeJobs(JobAction):
    """Selected: jobs. Failed, cancelled and stuck ones go on where they stopped."""

    permission = "mlapp.change_batchjob"
    template = "admin/mlapp/batchjob/resume_confirmation.html"
    title = _("Resume batch jobs?")
    question = _(
        "These jobs will go on where they stopped: the predictions already stored are kept, "
        "the missing items run."
    )
    button = _("Yes, resume them")

    def plan(self, selected: Sequence[BatchJob]) -> Plan:
        plan = Plan()
        for job in selected:
            (plan.targets if batch.resumable(job) else plan.refused).append(job)
        return plan

    def apply(self, target: BatchJob, user: Any) -> bool:
        batch.resume(target)
        return True

    def done(self, count: int) -> str:
        return ngettext(
            "Resumed %(count)d batch job: its missing items are queued.",
            "Resumed %(count)d batch jobs: their missing items are queued.",
            count,
        ) % {"count": count}

    def skipped(self, count: int) -> str:
        return ngettext(
            "%(count)d job succeeded or is still making progress, and was left as it was.",
            "%(count)d jobs succeeded or are still making progress, and were left as they were.",
            count,
        ) % {"count": count}


RESUME = ResumeJobs()


class BatchJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "version",
        "source",
        "status_badge",
        "progress",
        "counts",
        "created_by",
        "created_at",
        "duration",
    ]
    list_display_links = ["id", "version"]
    list_filter = ["status", "version__model"]
    list_select_related = ["version__model", "created_by"]
    search_fields = ["=id", "source_name", "source_file", "version__model__name"]
    date_hierarchy = "created_at"
    actions = ["cancel_selected", "resume_selected"]
    fields = (
        "version",
        "source",
        "source_params",
        "status_badge",
        "progress",
        "counts",
        "error",
        "item_errors",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return CANCEL.has_permission(request)

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return RESUME.has_permission(request)

    # -- columns ------------------------------------------------------------------------

    @admin.display(description=_("source"))
    def source(self, obj: BatchJob) -> str:
        if obj.source_name:
            return f"{obj.source_name} (registered)"
        name = obj.source_file.name  # a FieldFile is true when it has a name
        return os.path.basename(name) if name else "-"

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: BatchJob) -> SafeString:
        return format_html(
            '<strong style="color: {}">{}</strong>',
            STATUS_COLOURS.get(obj.status, "inherit"),
            obj.get_status_display(),
        )

    @admin.display(description=_("progress"))
    def progress(self, obj: BatchJob) -> SafeString:
        handled = obj.done + obj.failed
        percent = 100 * handled / obj.total if obj.total else 0
        return format_html(
            '<progress max="{}" value="{}" title="{}/{}"></progress> {}%',
            max(obj.total, 1),
            handled,
            handled,
            obj.total,
            f"{percent:.0f}",
        )

    @admin.display(description=_("done / failed / total"))
    def counts(self, obj: BatchJob) -> SafeString:
        failed = (
            format_html('<strong style="color: #c62828">{}</strong>', obj.failed)
            if obj.failed
            else "0"
        )
        return format_html("{} / {} / {}", obj.done, failed, obj.total)

    @admin.display(description=_("duration"))
    def duration(self, obj: BatchJob) -> str | StrPromise:
        if not obj.started_at:
            return "-"
        end = obj.finished_at
        if end is None:
            return _("running")
        return f"{(end - obj.started_at).total_seconds():.1f}s"

    @admin.display(description=_("failed items"))
    def item_errors(self, obj: BatchJob) -> SafeString | str:
        failed = obj.predictions.exclude(error="").order_by("pk")
        rows = list(failed.values_list("key", "error")[:ITEM_ERRORS_SHOWN])
        if not rows:
            return "-"
        more = obj.failed - len(rows)
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>{}",
            _("key"),
            _("error"),
            format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", rows),
            format_html("<p>… {} more</p>", more) if more > 0 else "",
        )

    # -- cancel ------------------------------------------------------------------------------

    @admin.action(description=_("Cancel selected batch jobs"), permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            CANCEL,
            list(queryset.select_related("version__model")),
            action_name="cancel_selected",
            cancel_url=request.get_full_path(),
        )

    # -- resume ------------------------------------------------------------------------------

    @admin.action(
        description=_("Resume selected failed, cancelled or stuck jobs"), permissions=["resume"]
    )
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return confirm(
            self,
            request,
            RESUME,
            list(queryset.select_related("version__model")),
            action_name="resume_selected",
            cancel_url=request.get_full_path(),
        )
