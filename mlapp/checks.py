"""System checks for the MLAPP settings (``manage.py check``) and, on deploy, artifacts."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from mlapp.conf import settings
from mlapp.conf.defaults import DEFAULTS
from mlapp.conf.rules import BATCHING_HINT, InvalidSetting, Problem
from mlapp.serving.config import BatchingConfig


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``MLAPP``: unknown keys (E001), then every problem of a known key (``mlapp.conf``)."""
    raw = getattr(django_settings, "MLAPP", None)
    if raw is not None and not isinstance(raw, dict):
        return [
            Error(
                f"MLAPP must be a dict, not {type(raw).__name__}.",
                hint='e.g. MLAPP = {"THREADS": 1}',
                id="mlapp.E001",
            )
        ]
    errors: list[CheckMessage] = [
        Error(
            f"Unknown MLAPP setting {key!r}.",
            hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
            id="mlapp.E001",
        )
        for key in sorted(set(settings.user_settings) - set(DEFAULTS))
    ]
    errors += [_message(problem) for problem in settings.problems()]
    errors += _check_batching()
    return errors


def _message(problem: Problem) -> CheckMessage:
    level = Warning if ".W" in problem.id else Error
    return level(problem.message, hint=problem.hint, id=problem.id)


def _check_batching() -> list[CheckMessage]:
    """The keys of ``MLAPP["BATCHING"]`` (once it is a dict): the serving layer's rules."""
    try:
        BatchingConfig.from_dict(settings.BATCHING)
    except InvalidSetting:  # not a dict: reported with the other problems
        return []
    except (TypeError, ValueError) as exc:
        return [Error(f"MLAPP['BATCHING'] {exc}.", hint=BATCHING_HINT, id="mlapp.E002")]
    return []


@register(Tags.database)
def check_serving_configs(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Each model's ``serving["batching"]``, merged over ``MLAPP["BATCHING"]``, is valid.

    A database check: ``manage.py check --database default`` and ``migrate`` run it. A model
    with a bad config is served unbatched (and logged) until it is fixed.
    """
    if not databases:
        return []
    from django.db import DatabaseError

    from mlapp.models import MLModel
    from mlapp.serving.config import serving_batching

    try:
        _ = settings.BATCHING
    except InvalidSetting:  # what models override is broken: reported by check_settings
        return []
    try:
        rows = list(MLModel.objects.values_list("name", "serving"))
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    errors: list[CheckMessage] = []
    for name, serving in rows:
        try:
            serving_batching(serving)
        except ValueError as exc:
            errors.append(
                Error(
                    f"Model {name!r}, serving config: {exc}.",
                    hint=f'Fix MLModel.serving["batching"] in the admin; {BATCHING_HINT}',
                    obj=name,
                    id="mlapp.E004",
                )
            )
    return errors


@register(Tags.database, deploy=True)
def check_production_artifacts(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Deploy check: every production artifact exists in storage and matches its sha256."""
    if not databases:
        return []
    from mlapp.models import ModelVersion
    from mlapp.runtimes.integrity import file_sha256
    from mlapp.serving.loading import local_artifact

    errors: list[CheckMessage] = []
    for version in ModelVersion.objects.filter(stage="production").select_related("model"):
        try:
            with local_artifact(version) as path:
                digest = file_sha256(path)
        except OSError as exc:
            errors.append(
                Error(
                    f"The artifact of {version} cannot be read: {exc}",
                    hint="Restore the file or promote another version.",
                    id="mlapp.E010",
                )
            )
            continue
        if digest != version.sha256:
            errors.append(
                Error(
                    f"The artifact of {version} does not match its sha256.",
                    hint="The file was changed after upload; upload it again.",
                    id="mlapp.E011",
                )
            )
    return errors
