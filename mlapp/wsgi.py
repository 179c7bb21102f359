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
    return application
