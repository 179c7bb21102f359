"""The example project's Celery app: ``celery -A project worker`` runs batch job chunks.

The broker comes from the environment (``MLAPP_BROKER_URL`` or ``CELERY_BROKER_URL``, e.g.
``redis://127.0.0.1:6379/0``); with none, mlapp runs batch jobs in-process instead.
Every ``CELERY_*`` Django setting configures this app (see project/settings.py).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
