"""The example Django project around mlapp."""

try:
    # Loaded with Django so that tasks are sent through this app (shared_task, mlapp).
    from project.celery import app as celery_app
except ImportError:  # Celery is an optional extra: without it batch jobs run in-process.
    celery_app = None

__all__ = ["celery_app"]
