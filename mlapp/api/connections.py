"""Closing a front door's database connections after a request, as Django's handler does.

Django closes a request's connections when they are past ``CONN_MAX_AGE`` or unusable, on
``request_finished``. The V2 fast path and the gRPC calls do not send that signal (it runs
every receiver a host project connected), so they call :func:`close_old_connections`. Most
of their requests query nothing in a thread that never connected: this skips the walk over
the thread's connections then (Django's own check looks each alias up in a context-local,
a few µs a request, more with cold caches after a model's call).
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import close_old_connections as _close_old_connections
from django.db import connections
from django.db.backends.signals import connection_created

_thread = threading.local()


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Sent in the thread that opened the connection: Django's connections are per thread.
    _thread.connected = True


connection_created.connect(_connected, dispatch_uid="mlapp.api.connections")
# Imported by mlapp's AppConfig.ready(), before mlapp queries anything; a connection this
# thread opened earlier (another app's ready()) counts too.
if any(c.connection is not None for c in connections.all(initialized_only=True)):
    _thread.connected = True


def close_old_connections() -> None:
    """Django's ``close_old_connections()``, in a thread that has opened a connection."""
    if getattr(_thread, "connected", False):
        _close_old_connections()
