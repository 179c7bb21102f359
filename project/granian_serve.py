"""granian launcher of the example project's production server (``make serve``).

granian's command line loads the application in each worker after the fork, so each worker
would read its own copy of the weights. This launcher loads it once, here (``project.wsgi``
loads the production versions), then lets granian fork its workers, which take that loaded
application: the weights are shared copy-on-write, as with gunicorn's ``preload_app``.

Sizing, as ``project/gunicorn.conf.py``: workers from the cores this process may run on
(``os.sched_getaffinity``, so ``taskset`` is honoured), ``WEB_THREADS`` blocking threads per
worker, one torch / ONNX Runtime intra-op thread per worker unless ``MLAPP_THREADS`` says
otherwise. ``HOST`` and ``PORT`` choose the address. Collected static files (the admin's) are
served by granian itself when ``STATIC_ROOT`` exists.

    python project/granian_serve.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def configure() -> dict[str, Any]:
    """Environment and granian options; call before Django or prometheus_client import."""
    cores = len(os.sched_getaffinity(0))
    workers = int(os.environ.get("WEB_WORKERS", cores))
    threads = int(os.environ.get("WEB_THREADS", 8))
    # One intra-op thread per worker unless told otherwise: the workers are the parallelism.
    os.environ.setdefault("MLAPP_THREADS", str(max(cores // workers, 1)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # prometheus-client's multiprocess mode: a fresh folder per server start.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlapp-prometheus-")
    return {
        "address": os.environ.get("HOST", "127.0.0.1"),
        "port": int(os.environ.get("PORT", "8000")),
        "workers": workers,
        "blocking_threads": threads,
    }


def main() -> None:
    options = configure()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from django.conf import settings
    from granian import Granian
    from granian.constants import Interfaces

    # Models load here, before the fork (and gc.freeze() keeps their pages shared).
    from project.wsgi import application

    static = Path(settings.STATIC_ROOT)
    if static.is_dir():  # collected (make serve does it): the admin's files, served by granian
        options["static_path_route"] = ["/" + settings.STATIC_URL.strip("/")]
        options["static_path_mount"] = [static]
    server = Granian(
        "project.wsgi:application",
        interface=Interfaces.WSGI,
        websockets=False,
        log_access=False,
        **options,
    )

    def loaded_application(*args: Any, **kwargs: Any) -> Any:
        return application

    server.serve(target_loader=loaded_application, wrap_loader=False)


if __name__ == "__main__":
    main()
