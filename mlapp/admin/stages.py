"""The stage actions: promote, roll back, archive, each confirmed first (:mod:`.confirm`).

Each plans what would change with the rules of :mod:`mlapp.versions.lifecycle` and acts
through its functions (the same as the API's), which log the change and tell every process
to swap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mlapp.admin.confirm import ConfirmedAction, Plan
from mlapp.admin.display import stage_badge, version_url
from mlapp.exceptions import StageError
from mlapp.models import ModelVersion
from mlapp.versions import lifecycle

PRODUCTION = ModelVersion.Stage.PRODUCTION
ARCHIVED = ModelVersion.Stage.ARCHIVED


@dataclass
class StageChange:
    """One line of a confirmation page: ``version`` goes from one stage to another."""

    version: ModelVersion
    from_stage: str
    to_stage: str

    @property
    def url(self) -> str:
        return version_url(self.version)

    @property
    def from_badge(self) -> SafeString:
        return stage_badge(self.from_stage)

    @property
    def to_badge(self) -> SafeString:
        return stage_badge(self.to_stage)


def _becomes_production(plan: Plan, version: ModelVersion) -> None:
    """``version`` goes to production; the current production version is archived."""
    plan.changes.append(StageChange(version, version.stage, PRODUCTION))
    current = version.model.production_version
    if current is not None:
        plan.changes.append(StageChange(current, PRODUCTION, ARCHIVED))


class StageAction(ConfirmedAction):
    permission = "mlapp.change_modelversion"
    template = "admin/mlapp/stage_confirmation.html"


class Promote(StageAction):
    title = _("Promote to production")
    question = _(
        "Every web process will load the new version, warm it and swap it in within about a "
        "second; the previous production version answers until then and is archived."
    )
    button = _("Yes, promote")

    def plan(self, selected: Sequence[ModelVersion]) -> Plan:
        plan = Plan()
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
            elif version.stage == PRODUCTION:
                plan.refused.append(f"{version} is already in production.")
            else:
                plan.targets.append(version)
                _becomes_production(plan, version)
        return plan

    def apply(self, target: ModelVersion, user: Any) -> bool:
        lifecycle.promote_version(target, user=user)
        return True

    def done(self, count: int) -> str:
        return ngettext(
            "Promoted %(count)d version to production.",
            "Promoted %(count)d versions to production.",
            count,
        ) % {"count": count}


class RollBack(StageAction):
    """Selected: models."""

    title = _("Roll back")
    question = _(
        "The version that was in production before the current one comes back; the current "
        "one is archived. Every web process swaps within about a second."
    )
    button = _("Yes, roll back")

    def plan(self, selected: Sequence[Any]) -> Plan:
        plan = Plan()
        for model in selected:
            try:
                target = lifecycle.required_rollback_target(model)
            except StageError as exc:
                plan.refused.append(exc.message)
                continue
            plan.targets.append(model)
            _becomes_production(plan, target)
        return plan

    def apply(self, target: Any, user: Any) -> bool:
        lifecycle.rollback(target, user=user)
        return True

    def done(self, count: int) -> str:
        return ngettext("Rolled back %(count)d model.", "Rolled back %(count)d models.", count) % {
            "count": count
        }


class Archive(StageAction):
    title = _("Archive")
    question = _("Archived versions stay stored and can be promoted again later.")
    button = _("Yes, archive")

    def plan(self, selected: Sequence[ModelVersion]) -> Plan:
        plan = Plan()
        for version in selected:
            try:
                lifecycle.check_archivable(version)
            except StageError as exc:
                plan.refused.append(exc.message)
                continue
            if version.stage == ARCHIVED:
                plan.refused.append(f"{version} is already archived.")
            else:
                plan.targets.append(version)
                plan.changes.append(StageChange(version, version.stage, ARCHIVED))
        return plan

    def apply(self, target: ModelVersion, user: Any) -> bool:
        lifecycle.archive_version(target, user=user)
        return True

    def done(self, count: int) -> str:
        return ngettext("Archived %(count)d version.", "Archived %(count)d versions.", count) % {
            "count": count
        }


PROMOTE = Promote()
ROLL_BACK = RollBack()
ARCHIVE = Archive()
