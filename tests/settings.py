"""Settings for the test suite: the example project, on SQLite or PostgreSQL.

``MLAPP_TEST_DB=postgres`` runs the suite on PostgreSQL (127.0.0.1:5432, database ``test``).
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("MLAPP_VAR_DIR", tempfile.mkdtemp(prefix="mlapp-test-var-"))
ON_POSTGRES = os.environ.get("MLAPP_TEST_DB") == "postgres"
if ON_POSTGRES:
    os.environ["MLAPP_DB"] = "postgres"

from project.settings import *  # noqa: E402,F403
from project.settings import BASE_DIR, DATABASES  # noqa: E402

if ON_POSTGRES:
    # Concurrent runs (a developer's and CI's) each need their own test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("MLAPP_TEST_DB_NAME", "test_mlapp")}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="mlapp-test-media-"))
DEMO_MINILM_DIR = Path(os.environ.get("MLAPP_MINILM_DIR", BASE_DIR / "fixtures/build/minilm"))
# The change watcher's thread never polls by itself here (in-process tests call poll() when
# they mean to; the multi-process tests run servers on project.settings). On the tests'
# in-memory shared-cache SQLite, a background poll that meets a live-server test's teardown
# flush fails it at once ("database table is locked: mlapp_changemarker", seen in CI).
MLAPP = {"THREADS": 1, "POLL_INTERVAL": 3600}
LOGGING = {"version": 1, "disable_existing_loggers": False}
