"""Settings for the test suite: the example project, on SQLite or PostgreSQL.

``MLAPP_TEST_DB=postgres`` runs the suite on PostgreSQL (127.0.0.1:5432, database ``test``).
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("MLAPP_VAR_DIR", tempfile.mkdtemp(prefix="mlapp-test-var-"))

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR

if os.environ.get("MLAPP_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": "test_mlapp"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / "mlapp-test.sqlite3")},
        }
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="mlapp-test-media-"))
DEMO_MINILM_DIR = Path(os.environ.get("MLAPP_MINILM_DIR", BASE_DIR / "fixtures/build/minilm"))
MLAPP = {"THREADS": 1}
LOGGING = {"version": 1, "disable_existing_loggers": False}
