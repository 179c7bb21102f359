"""gunicorn configuration of the example project: the measured alternative to granian.

``make serve`` runs granian (``manage.py mlapp_serve``): on this project's benchmark it
answered more requests per core than gunicorn's gthread worker (docs/performance.md). This
file is for deployments that prefer gunicorn::

    gunicorn -c project/gunicorn.conf.py project.wsgi:application

Weights are loaded once in the master (``preload_app``: project.wsgi loads the production
versions) and shared copy-on-write by the forked workers. Each worker serves several
requests at once on threads (gthread), so concurrent requests can meet in the micro-batcher;
the intra-op thread pools of torch / ONNX Runtime are sized so that workers x threads do not
oversubscribe the cores this process may run on (it may be started under ``taskset``).
"""

import os
import shutil
import tempfile

_cores = len(os.sched_getaffinity(0))

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", _cores))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 8))
preload_app = True
keepalive = 5
timeout = 60
accesslog = None
errorlog = "-"

# One intra-op thread per worker unless told otherwise: the workers are the parallelism.
os.environ.setdefault("MLAPP_THREADS", str(max(_cores // workers, 1)))

# prometheus-client's multiprocess mode: a fresh folder per server start.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlapp-prometheus-")
else:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):
    from mlapp.serving.metrics import process_exited

    process_exited(worker.pid)
