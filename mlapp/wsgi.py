"""WSGI entry point that loads the production models before serving.

In the host project's ``wsgi.py``::

    from mlapp.wsgi import get_wsgi_application
    application = get_wsgi_application()
"""

from __future__ import annotations

from typing import Any


def get_wsgi_application() -> Any:
    from django.core.wsgi import get_wsgi_application as django_wsgi_application

    application = django_wsgi_application()
    from mlapp.startup import load_models

    load_models()
    # A preloading server forks its workers next: they must not share the connection the
    # master used to read the model rows (each opens its own on first use).
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
    from mlapp.api.grpc import serve_beside_http

    serve_beside_http()
    from mlapp.api.v2 import fastpath

    return fastpath.wrap(application)
