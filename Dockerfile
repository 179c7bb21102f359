# Production image: the example project served by granian (manage.py mlapp_serve).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY constraints.txt pyproject.toml README.md ./
COPY mlapp ./mlapp
# torch first and exact, so no CUDA build is pulled in.
RUN pip install -c constraints.txt torch==2.13.0 \
    && pip install -c constraints.txt '.[torch,onnx,postgres,celery,serve,grpc,demo]'

COPY manage.py ./
COPY project ./project
COPY fixtures ./fixtures

RUN useradd --create-home --uid 1000 mlapp && mkdir -p /app/var && chown mlapp /app/var
USER 1000

# Set DJANGO_ALLOWED_HOSTS and DJANGO_SECRET_KEY when running it.
ENV DJANGO_DEBUG=0 MLAPP_VAR_DIR=/app/var HOST=0.0.0.0 PORT=8000 GRPC_PORT=8001
EXPOSE 8000 8001

CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py setup_demo --no-admin && python manage.py collectstatic --noinput -v0 && exec python manage.py mlapp_serve --host \"$HOST\" --port \"$PORT\""]
