# The production image of the example project: one image, three commands.
#   web (default):  python manage.py mlapp_serve --host 0.0.0.0 --port 8000
#   batch workers:  python manage.py mlapp_worker
#   once a release: python manage.py migrate --noinput   (a compose job, a Kubernetes Job)
#   demo models:    python manage.py setup_demo --no-admin   (optional, one-shot)
# Settings come from the environment (project/settings.py): DJANGO_SECRET_KEY,
# DJANGO_ALLOWED_HOSTS, MLAPP_DB=postgres + PG*, CELERY_BROKER_URL, MLAPP_S3_BUCKET + AWS_*.
# See deploy/ (compose.yaml at the root, deploy/k8s) and docs/scaling.md.

# -- builder: the wheel and every dependency, in a virtual environment ---------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# Extras of the image; "demo" builds the demo models (setup_demo), drop it for a lean image.
ARG EXTRAS=torch,onnx,postgres,celery,serve,grpc,s3,demo

WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt ./
# torch first and exact: the CPU build, never a range that could pull a CUDA one.
RUN pip install -c constraints.txt torch==2.13.0

COPY pyproject.toml README.md ./
COPY mlapp ./mlapp
RUN pip wheel --no-deps -w /wheels . \
    && pip install -c constraints.txt "$(find /wheels -name 'mlapp-*.whl')[${EXTRAS}]"

# -- runtime: the virtual environment and the project, no compiler, no build files ---------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_DEBUG=0 \
    MLAPP_VAR_DIR=/app/var \
    DJANGO_STATIC_ROOT=/app/static \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8001

RUN useradd --create-home --uid 10001 --user-group mlapp

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY project ./project
COPY fixtures ./fixtures

# Static files are part of the image (read-only, served by mlapp_serve); var/ is the only
# folder the process writes (SQLite and local media when no database or S3 is set).
RUN python manage.py collectstatic --noinput -v0 \
    && mkdir -p /app/var \
    && chown mlapp:mlapp /app/var

USER 10001:10001
# HTTP (REST, V2, admin) and the Open Inference Protocol over gRPC (each web worker).
EXPOSE 8000 8001

# Ready only once every production model is loaded; python's urllib, no curl in the image.
HEALTHCHECK --interval=10s --timeout=4s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/v2/health/ready', timeout=3)"]

# Serving only: migrations and demo set-up are one-shot commands of their own.
CMD ["sh", "-c", "exec python manage.py mlapp_serve --host \"$HOST\" --port \"$PORT\""]
