"""System checks: the MLAPP settings, what the host project must add (apps, routes, storage),
and, on deploy, the production artifacts."""

from __future__ import annotations

import os
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
    errors += _check_monitoring()
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


def _check_monitoring() -> list[CheckMessage]:
    """The keys of ``MLAPP["MONITORING"]`` (once it is a dict), and its redaction hook."""
    from django.utils.module_loading import import_string

    from mlapp.serving.monitorconf import log_settings

    hint = "See docs/monitoring.md for the keys of MLAPP['MONITORING']."
    try:
        found = log_settings()
    except InvalidSetting:  # not a dict: reported with the other problems
        return []
    except (KeyError, TypeError, ValueError) as exc:
        return [Error(f"MLAPP['MONITORING'] {exc}.", hint=hint, id="mlapp.E002")]
    if found.redact:
        try:
            import_string(found.redact)
        except ImportError as exc:
            message = f"MLAPP['MONITORING']['REDACT'] {found.redact!r} cannot be imported: {exc}"
            return [Error(message, hint=hint, id="mlapp.E003")]
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
    errors: list[CheckMessage] = _check_monitoring_configs()
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


def _check_monitoring_configs() -> list[CheckMessage]:
    """Each model's ``monitoring`` config (its log is off while it is unreadable)."""
    from django.db import DatabaseError

    from mlapp.models import MLModel
    from mlapp.serving.monitorconf import model_monitoring

    try:
        rows = list(MLModel.objects.values_list("name", "monitoring"))
        _ = settings.MONITORING
    except (DatabaseError, InvalidSetting):  # reported elsewhere, or not migrated yet
        return []
    errors: list[CheckMessage] = []
    for name, monitoring in rows:
        try:
            model_monitoring(monitoring)
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(
                Error(
                    f"Model {name!r}, monitoring config: {exc}; its prediction log is off.",
                    hint="Fix MLModel.monitoring in the admin (see docs/monitoring.md).",
                    obj=name,
                    id="mlapp.E012",
                )
            )
    return errors


@register(Tags.database, deploy=True)
def check_production_artifacts(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Deploy check: every production artifact exists in storage and matches its sha256.

    ``check --deploy`` runs it with or without ``--database``. Django hands a check the
    databases it may use only with ``--database``; a deploy check runs where the project is
    deployed, against the database it serves from, so without the option it reads the
    production versions from the database the router reads them from (one query) and, when
    that database cannot be reached, warns (``mlapp.W005``) instead of failing the command.
    """
    from django.db import DatabaseError, router

    from mlapp.models import ModelVersion
    from mlapp.runtimes.integrity import file_sha256
    from mlapp.serving.loading import local_artifact

    alias = databases[0] if databases else router.db_for_read(ModelVersion)
    try:
        versions = list(
            ModelVersion.objects.using(alias).filter(stage="production").select_related("model")
        )
    except DatabaseError as exc:
        return [
            Warning(
                f"The production artifacts were not checked: database {alias!r} cannot be "
                f"read ({exc}).",
                hint="Run `manage.py check --deploy` where the database is reachable and migrated.",
                id="mlapp.W005",
            )
        ]
    errors: list[CheckMessage] = []
    for version in versions:
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


# --- What the host project adds (README, "Adding mlapp to your project")

#: Apps mlapp's pages need, in the order INSTALLED_APPS lists them, with what each provides.
COMPANION_APPS = {
    "rest_framework": "the browsable API's templates",
    "drf_spectacular": "the Swagger UI and ReDoc page templates",
    "drf_spectacular_sidecar": "the Swagger UI and ReDoc JavaScript and CSS (static files)",
}
INSTALLED_APPS_LINE = (
    'INSTALLED_APPS += ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "mlapp"]'
)
TOKEN_AUTH = "rest_framework.authentication.TokenAuthentication"  # noqa: S105 (a class path)


@register(Tags.compatibility)
def check_companion_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The apps mlapp's pages take templates and static files from (E007), and
    ``rest_framework.authtoken`` when DRF authenticates tokens (E008)."""
    from django.apps import apps

    errors: list[CheckMessage] = [
        Error(
            f"{app!r} is not in INSTALLED_APPS: mlapp needs it for {what}.",
            hint=f"In settings.py: {INSTALLED_APPS_LINE} (README, Adding mlapp).",
            id="mlapp.E007",
        )
        for app, what in COMPANION_APPS.items()
        if not apps.is_installed(app)
    ]
    rest_framework = getattr(django_settings, "REST_FRAMEWORK", None) or {}
    classes = (
        rest_framework.get("DEFAULT_AUTHENTICATION_CLASSES", ())
        if isinstance(rest_framework, dict)
        else ()
    )
    if TOKEN_AUTH in classes and not apps.is_installed("rest_framework.authtoken"):
        errors.append(
            Error(
                "REST_FRAMEWORK authenticates with TokenAuthentication, but "
                "'rest_framework.authtoken' is not in INSTALLED_APPS: every request with a "
                "token fails, and `manage.py drf_create_token` does not exist.",
                hint='INSTALLED_APPS += ["rest_framework.authtoken"], then `manage.py migrate`.',
                id="mlapp.E008",
            )
        )
    return errors


@register(Tags.compatibility)
def check_artifact_storage(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """File system storage of artifacts at a relative place (MEDIA_ROOT unset): E009."""
    from django.core.files.storage import FileSystemStorage, InvalidStorageError, storages

    from mlapp.conf.rules import InvalidSetting

    try:
        storage = storages[settings.ARTIFACT_STORAGE]
    except (InvalidSetting, InvalidStorageError):  # reported by check_settings / Django
        return []
    if not isinstance(storage, FileSystemStorage):
        return []
    base = str(storage.base_location or "")
    if os.path.isabs(base):
        return []
    where = f"{base!r}, relative to" if base else "unset (MEDIA_ROOT is empty): artifacts go to"
    return [
        Error(
            f"Artifacts are stored in the file system at {where} the directory the process "
            "starts in; a server or worker started elsewhere answers that the artifact is "
            "missing from storage.",
            hint='Set an absolute MEDIA_ROOT, e.g. MEDIA_ROOT = BASE_DIR / "media", or give '
            'MLAPP["ARTIFACT_STORAGE"] a storage with an absolute location.',
            obj=f"STORAGES[{settings.ARTIFACT_STORAGE!r}]",
            id="mlapp.E009",
        )
    ]


def _routed_to(path: str, view: str) -> bool:
    """``path`` resolves to the view at dotted path ``view`` (compared by name: the checks
    sit beside the API in the layers, and do not import it)."""
    from django.urls import Resolver404, resolve

    try:
        func = resolve(path).func
    except Resolver404:
        return False
    return f"{func.__module__}.{getattr(func, '__name__', '')}" == view


@register(Tags.urls)
def check_routes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The native API (W004), the V2 routes (W002) and ``/metrics`` (W003) are routed."""
    from django.urls import NoReverseMatch, reverse

    if not getattr(django_settings, "ROOT_URLCONF", None):
        return []
    include = "README, Adding mlapp to your project"
    warnings: list[CheckMessage] = []
    try:
        reverse("mlapp:api-root")
    except NoReverseMatch:
        warnings.append(
            Warning(
                "The native API is not routed (no URL named 'mlapp:api-root').",
                hint=f'In urls.py: path("api/mlapp/", include("mlapp.urls")) ({include}).',
                id="mlapp.W004",
            )
        )
    if not _routed_to("/v2/health/ready", "mlapp.api.v2.views.server_ready"):
        warnings.append(
            Warning(
                "/v2/health/ready is not mlapp's: the Open Inference Protocol V2 routes are "
                "not included at the site root, and V2 clients and health probes get a 404.",
                hint=f'In urls.py, first: path("", include("mlapp.site_urls")) ({include}).',
                id="mlapp.W002",
            )
        )
    if not _routed_to("/metrics", "mlapp.api.metrics.metrics_view"):
        warnings.append(
            Warning(
                "/metrics is not routed to mlapp's metrics: Prometheus finds no serving metrics.",
                hint=f'path("", include("mlapp.site_urls")) routes it ({include}); to serve '
                "it elsewhere on purpose, add mlapp.W003 to SILENCED_SYSTEM_CHECKS.",
                id="mlapp.W003",
            )
        )
    return warnings
