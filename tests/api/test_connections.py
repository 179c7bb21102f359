"""The front doors' close_old_connections(): Django's, in a thread that has connected."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlapp.api import connections as api_connections
from mlapp.models import ModelVersion

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_only_a_thread_that_opened_a_connection_walks_its_connections(monkeypatch):
    walked: list[str] = []
    django_close = api_connections._close_old_connections

    def close() -> None:
        walked.append(threading.current_thread().name)
        django_close()

    monkeypatch.setattr(api_connections, "_close_old_connections", close)

    def idle() -> None:
        api_connections.close_old_connections()

    def queried() -> None:
        from django.db import connection

        try:
            ModelVersion.objects.count()  # opens this thread's own connection
            api_connections.close_old_connections()
            api_connections.close_old_connections()
        finally:
            connection.close()

    for name, target in (("idle", idle), ("queried", queried), ("idle-again", idle)):
        thread = threading.Thread(target=target, name=name)
        thread.start()
        thread.join()
    assert walked == ["queried", "queried"]


def test_a_connection_opened_while_starting_up_is_known_to_the_front_doors():
    # A fresh process: the main thread queries right after django.setup(), before anything
    # imports a front door (as mlapp.startup loading models does in a sync worker's only
    # thread); that thread's old connections must still be closed after its requests.
    script = (
        "import django\n"
        "django.setup()\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
        "from mlapp.api import connections\n"
        "walked = []\n"
        "connections._close_old_connections = lambda: walked.append(True)\n"
        "connections.close_old_connections()\n"
        "print(walked)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[True]"
