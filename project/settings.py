"""Settings of the example project: a plain Django site with mlapp installed.

Embedded defaults (SQLite in var/, local media, no broker) unless the environment says
otherwise: DATABASE_URL-free on purpose, a few MLAPP_* variables are enough here.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MLAPP_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
# The loopback names stay allowed: a container's HEALTHCHECK and the probes of deploy/k8s
# ask for them (Host: localhost), whatever names the site serves.
ALLOWED_HOSTS = [
    *os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","),
    "127.0.0.1",
    "localhost",
]
ALLOWED_HOSTS = list(dict.fromkeys(host for host in ALLOWED_HOSTS if host))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "mlapp",
    "project.demo",
    "project.flowers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("MLAPP_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            # Persistent connections, checked before reuse (a restarted PostgreSQL).
            "CONN_MAX_AGE": int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # WAL + a busy timeout: a batch job may write while the server reads.
            "OPTIONS": {
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The image collects them at build time into a read-only folder of its own.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or VAR_DIR / "static")
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT") or VAR_DIR / "media")

# Artifacts in S3-compatible object storage (django-storages), shared by every web and worker
# node, when a bucket is named; credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID
# and AWS_SECRET_ACCESS_KEY, a role). Else the local MEDIA_ROOT (one machine).
if os.environ.get("MLAPP_S3_BUCKET"):
    STORAGES = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ["MLAPP_S3_BUCKET"],
                # MinIO, Ceph, moto...: the server's address; unset for AWS itself.
                "endpoint_url": os.environ.get("MLAPP_S3_ENDPOINT_URL") or None,
                "region_name": os.environ.get("MLAPP_S3_REGION") or None,
                # A stored artifact is never replaced under its name (the sha256 guards it too).
                "file_overwrite": False,
                "default_acl": None,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Service-to-service clients: "Authorization: Token <key>" (manage.py drf_create_token).
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mlapp",
    "DESCRIPTION": "Models served from inside Django: native JSON API.",
    "VERSION": "0.1.0",
    # Swagger UI and ReDoc from local static files (drf-spectacular-sidecar): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

MLAPP = {
    "THREADS": int(os.environ["MLAPP_THREADS"]) if os.environ.get("MLAPP_THREADS") else None,
    # Rows per Celery task of a batch job (bench/scaleout.py makes more, smaller chunks).
    "BATCH_CHUNK_SIZE": int(os.environ.get("MLAPP_BATCH_CHUNK_SIZE") or 1000),
    # Batch jobs go through this app when it has a broker; else they run in-process.
    "CELERY_APP": "project.celery.app",
    # V2 inference skips URL resolving and the middleware above (none of it needs to see
    # model traffic here): about 250 µs less CPU a request (docs/performance.md).
    "V2_SKIP_MIDDLEWARE": os.environ.get("MLAPP_V2_SKIP_MIDDLEWARE", "1") == "1",
    # The Open Inference Protocol over gRPC beside HTTP when GRPC_PORT is set (make demo and
    # make serve set it: 8001 unless told otherwise).
    "GRPC_PORT": int(os.environ["GRPC_PORT"]) if os.environ.get("GRPC_PORT") else None,
    # Seconds between writes of the prediction log (tests stretch it to prove the writes at
    # a graceful stop).
    "MONITORING": {"FLUSH_INTERVAL": float(os.environ.get("MLAPP_LOG_FLUSH_INTERVAL") or 1.0)},
    # The example app's table as a batch source (project/flowers/sources.py).
    "BATCH_SOURCES": {
        "flowers": {
            "queryset": "project.flowers.sources.flowers",
            "inputs": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
            "key": "pk",
        },
    },
    # Derived int8 / ONNX versions of the demo classifiers are measured on their ten
    # held-out fixture rows (the admin's Derive button, manage.py derive_version).
    "DERIVE_SAMPLES": {
        name: str(BASE_DIR / "fixtures" / name / "samples.json") for name in ("iris", "digits")
    },
}

# Threads serving gRPC calls, when given (bench/grpc_run.py --grpc-threads); else mlapp's
# default.
if os.environ.get("MLAPP_GRPC_THREADS"):
    MLAPP["GRPC_THREADS"] = int(os.environ["MLAPP_GRPC_THREADS"])

# Celery runs batch job chunks when a broker is set (e.g. redis://127.0.0.1:6379/0); with
# none, batch jobs run in a background thread of the process that submits them.
CELERY_BROKER_URL = os.environ.get("MLAPP_BROKER_URL") or os.environ.get("CELERY_BROKER_URL")
# A chunk is acknowledged after it ran, and requeued when its worker dies. When a whole
# worker dies (SIGKILL, a lost machine), Redis hands its unacknowledged messages to another
# worker once they are visibility_timeout seconds old, at the next sweep of the unacked
# set (every unacked_restore_interval x unacked_restore_throttle s; kombu's default is
# 10 x 10 = 100 s). Measured (tests/batch/measure_redelivery.py): 60 s / 5 s / 1 ->
# redelivered 64.7 s after the kill; the defaults (3600 s / 10 s / 10) -> over an hour.
# visibility_timeout must exceed the longest chunk plus its retry countdown (<= 30 s), or a
# chunk still running is handed out again (harmless: writes are idempotent, but wasted).
# The socket and publish limits keep a stuck broker from holding a request (503 instead).
# JSON in MLAPP_CELERY_TRANSPORT_OPTIONS overrides, e.g. '{"visibility_timeout": 300}'.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 60,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 30,
    "socket_connect_timeout": 3,
    "socket_timeout": 5,
    **json.loads(os.environ.get("MLAPP_CELERY_TRANSPORT_OPTIONS") or "{}"),
}

# Where the demo's MiniLM build lives (tokenizer.json next to model.onnx).
DEMO_MINILM_DIR = Path(os.environ.get("MLAPP_MINILM_DIR", BASE_DIR / "fixtures/build/minilm"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"mlapp": {"handlers": ["console"], "level": "INFO"}},
}
