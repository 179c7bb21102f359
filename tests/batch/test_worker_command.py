"""``manage.py mlapp_worker`` and ``mlapp.celery``: a Celery worker for a project with no
Celery app of its own (the README's "Deploying your project")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from mlapp import launcher
from mlapp.conf import settings as mlapp_settings

REPO = Path(django_settings.BASE_DIR)


class RecordingApp:
    """A Celery app's surface the command uses; records the worker's command line."""

    main = "recording"

    def __init__(self, broker_url: str | None) -> None:
        self.conf = type("Conf", (), {"broker_url": broker_url})()
        self.argv: list[str] | None = None

    def worker_main(self, argv: list[str]) -> None:
        self.argv = argv
        self.threads = mlapp_settings.THREADS


no_broker = RecordingApp(None)
with_broker = RecordingApp("redis://user:secret@127.0.0.1:6379/0")


def test_without_a_broker_the_command_says_what_to_set():
    with (
        override_settings(MLAPP={"CELERY_APP": f"{__name__}.no_broker"}),
        pytest.raises(CommandError, match="set CELERY_BROKER_URL"),
    ):
        call_command("mlapp_worker")
    assert no_broker.argv is None


def test_the_worker_runs_prefork_with_the_cores_shared_out(capsys):
    with override_settings(MLAPP={"CELERY_APP": f"{__name__}.with_broker"}):
        call_command("mlapp_worker", "--concurrency", "1", "--queues", "batch")
    assert with_broker.argv == [
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--loglevel=INFO",
        "--queues=batch",
    ]
    assert with_broker.threads == launcher.cores()  # one process: every core's intra-op thread
    printed = capsys.readouterr().out
    assert "127.0.0.1:6379/0" in printed
    assert "secret" not in printed


def test_a_project_without_a_celery_app_gets_mlapps_with_its_defaults_under_its_settings():
    """In a fresh interpreter: settings with a broker and one Celery setting, no app."""
    code = """
import json
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework",
                    "mlapp"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CELERY_BROKER_URL="redis://127.0.0.1:6379/12",
    CELERY_WORKER_PREFETCH_MULTIPLIER=4,
)
import django
django.setup()
from mlapp.batch import jobs
app = jobs.celery_app()
app.loader.import_default_modules()
print(json.dumps([app.main, jobs.executor(), app.conf.broker_url, app.conf.task_acks_late,
                  app.conf.task_reject_on_worker_lost, app.conf.worker_prefetch_multiplier,
                  app.conf.broker_transport_options["visibility_timeout"],
                  "mlapp.run_batch_chunk" in app.tasks]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [
        "mlapp",
        "celery",
        "redis://127.0.0.1:6379/12",
        True,
        True,
        4,  # the project's setting wins over mlapp's default of 1
        300,
        True,
    ]
