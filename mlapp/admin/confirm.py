"""One way for an admin action to ask first, in the shape of Django's ``delete_selected``.

The action shows what it would do on a confirmation page, needs its permission, acts only on
the POST that confirms it (``post=yes``), and reports what it did with counts. The stage
actions (promote, roll back, archive) and cancelling batch jobs use it, from a changelist
(:func:`confirm`) or from an object's own page (:func:`confirm_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from mlapp.exceptions import MLAppError

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


@dataclass
class Plan:
    """What an action would do with the selected objects."""

    #: What the action acts on once confirmed.
    targets: list[Any] = field(default_factory=list)
    #: What the page says will change (the action decides what a line is).
    changes: list[Any] = field(default_factory=list)
    #: What is left alone: reasons, or the objects themselves (the action decides).
    refused: list[Any] = field(default_factory=list)


class ConfirmedAction:
    """An admin action that asks first. Subclasses set the words and the permission, and
    implement :meth:`plan`, :meth:`apply` and :meth:`done`."""

    #: ``app_label.codename`` the user needs to see the page and to act.
    permission: str
    #: The confirmation page; it extends ``admin/mlapp/confirmation.html``.
    template: str
    title: StrOrPromise
    question: StrOrPromise
    button: StrOrPromise

    def has_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.has_perm(self.permission)

    def offered(self, request: HttpRequest, selected: Sequence[Any]) -> bool:
        """Whether a page offers this action on ``selected``: allowed, and something to do."""
        return self.has_permission(request) and bool(self.plan(selected).targets)

    def plan(self, selected: Sequence[Any]) -> Plan:
        raise NotImplementedError("ConfirmedAction subclasses must implement plan()")

    def apply(self, target: Any, user: Any) -> bool:
        """Act on one target: True when done, False when it was left as it was.

        An :class:`~mlapp.exceptions.MLAppError` is reported as this target's failure.
        """
        raise NotImplementedError("ConfirmedAction subclasses must implement apply()")

    def done(self, count: int) -> str:
        """The success message for ``count`` targets done."""
        raise NotImplementedError("ConfirmedAction subclasses must implement done()")

    def left_alone(self, plan: Plan, unchanged: int) -> list[str]:
        """Warnings for what was not done: by default, the plan's reasons one by one."""
        return [str(reason) for reason in plan.refused]


def confirm(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    action: ConfirmedAction,
    selected: Sequence[Any],
    *,
    action_name: str | None = None,
    cancel_url: str,
    posted: Sequence[Any] | None = None,
) -> HttpResponse | None:
    """The confirmation page of ``action`` over ``selected``, or, on the confirming POST, the
    action done and reported (None: the caller goes back to its list).

    ``action_name`` is the changelist action the page posts back to (None: an object's own
    page, which posts to itself); the page posts back ``posted`` (default ``selected``) as
    the selected objects. On a changelist, a plan with nothing to do reports why at once.
    """
    if not action.has_permission(request):
        raise PermissionDenied
    plan = action.plan(selected)
    if request.method == "POST" and request.POST.get("post") == "yes":
        _act(modeladmin, request, action, plan)
        return None
    if not plan.targets and action_name is not None:
        for warning in action.left_alone(plan, 0):
            modeladmin.message_user(request, warning, messages.WARNING)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": action.title,
        "question": action.question,
        "button": action.button,
        "plan": plan,
        "action_name": action_name,
        "selected": selected if posted is None else posted,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "cancel_url": cancel_url,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, action.template, context)


def confirm_view(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    action: ConfirmedAction,
    selected: Sequence[Any],
    *,
    page: str,
) -> HttpResponse:
    """:func:`confirm` as an object's own page: back to ``page`` once done or cancelled."""
    response = confirm(modeladmin, request, action, selected, cancel_url=page)
    return response if response is not None else HttpResponseRedirect(page)


def _act(
    modeladmin: admin.ModelAdmin, request: HttpRequest, action: ConfirmedAction, plan: Plan
) -> None:
    done = unchanged = 0
    for target in plan.targets:
        try:
            acted = action.apply(target, request.user)
        except MLAppError as exc:
            modeladmin.message_user(request, f"{target}: {exc.message}", messages.ERROR)
            continue
        if acted:
            done += 1
        else:
            unchanged += 1
    if done:
        modeladmin.message_user(request, action.done(done), messages.SUCCESS)
    for warning in action.left_alone(plan, unchanged):
        modeladmin.message_user(request, warning, messages.WARNING)
