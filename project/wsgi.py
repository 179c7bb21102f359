"""WSGI entry of the example project: production models load before it serves."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from mlapp.wsgi import get_wsgi_application

application = get_wsgi_application()
