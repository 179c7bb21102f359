"""The front doors' close_old_connections(): Django's, in a thread that has connected."""

from __future__ import annotations

import threading

import pytest

from mlapp.api import connections as api_connections
from mlapp.models import ModelVersion


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
