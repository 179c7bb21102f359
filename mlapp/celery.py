"""A Celery app for a project that has none: batch jobs on workers with no ``celery.py``.

``python manage.py mlapp_worker`` runs a worker of this app (or of the project's own app when
it has one, see :func:`mlapp.batch.jobs.celery_app`). It reads every ``CELERY_*`` Django
setting, as the app a project writes itself would; what the project leaves unset takes the
defaults below, which make a chunk survive its worker's death: acknowledged after it ran,
requeued when its worker is lost, one message prefetched at a time, and a stuck broker
answered in seconds (a 503 to the caller) rather than a hung request.

A project with its own Celery app keeps it: ``app.autodiscover_tasks()`` finds
``mlapp.tasks``; :data:`DEFAULTS` lists the settings worth copying (``CELERY_`` + the name
in upper case).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

#: Celery settings (lower-case names) for what the Django settings do not set.
DEFAULTS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_timeout": 3,
    "task_publish_retry_policy": {
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    },
    # Redis hands a dead worker's unacknowledged chunk to another worker once it is
    # visibility_timeout seconds old (at the next sweep, every interval x throttle s): longer
    # than a chunk and its retry countdown take, far shorter than kombu's hour.
    "broker_transport_options": {
        "visibility_timeout": 300,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 30,
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
    },
}


def unset_defaults() -> dict[str, Any]:
    """:data:`DEFAULTS` less what the Django settings set (Celery ranks added defaults above
    the configuration object, so they must not be added at all where the project spoke)."""
    from django.conf import settings

    return {k: v for k, v in DEFAULTS.items() if not hasattr(settings, f"CELERY_{k.upper()}")}


app = Celery("mlapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.add_defaults(unset_defaults)
app.autodiscover_tasks(["mlapp"])
