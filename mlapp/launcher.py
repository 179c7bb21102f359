"""The production web server of a project with mlapp: ``manage.py mlapp_serve``.

granian's WSGI server, configured as measured (docs/performance.md):

- **the application is loaded once, before the fork**: the project's ``WSGI_APPLICATION``
  (its ``wsgi.py`` calls ``mlapp.wsgi.get_wsgi_application``, which loads the production
  versions), then granian forks its workers, which take that loaded application; weights are
  shared copy-on-write, as with gunicorn's ``preload_app``. granian's own command line would
  load the application again in every worker.
- **workers from the cores this process may run on** (``os.sched_getaffinity``: ``taskset``
  and container CPU sets are honoured), blocking threads per worker, and one torch / ONNX
  Runtime intra-op thread per worker unless told otherwise: the workers are the parallelism.
- **a dead worker is replaced** (granian's ``respawn_failed_workers``): one crashed or
  OOM-killed worker no longer ends the server. A worker that dies again within 5.5 s of its
  replacement is a crash loop, and granian then exits (for the supervisor to see).
- **stopping is bounded**: a worker has :data:`STOP_TIMEOUT` seconds to finish its requests
  (gunicorn's ``graceful_timeout``), then it is killed. A worker stops on SIGTERM from its
  first instruction: a forked worker would otherwise run the parent's handler until granian
  installs its own, and a stop in that window (right after a respawn) was lost, the server
  waiting for that worker forever (seen here).
- **prometheus-client's multiprocess mode**: ``PROMETHEUS_MULTIPROC_DIR`` is a fresh folder
  for each start (a temporary one unless set; a given one has its ``*.db`` files removed) and
  is cleaned when the server stops, so ``/metrics`` adds up every worker's samples.
  The variable must be set before ``prometheus_client`` is imported, and ``manage.py`` has
  imported it already (through the admin) when the command runs: the command prepares the
  folder, then executes itself again, once, with the same arguments.
- **collected static files** (``STATIC_ROOT`` after ``collectstatic``) are served by granian
  at ``STATIC_URL``, so the admin has its CSS with ``DEBUG = False`` and no WhiteNoise.
- the process is started as ``manage.py`` is: its folder (the project's root) first on
  ``sys.path``, never a subfolder whose modules (``project/celery.py``) would hide packages.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("mlapp.launcher")

#: Set for the second run of the command (after it executed itself again): how the metrics
#: folder was made, "created" (a temporary folder, removed at exit) or "given" (emptied).
PREPARED = "MLAPP_SERVE_METRICS_DIR"
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: Blocking threads per worker: concurrent requests of a worker meet in the micro-batcher.
DEFAULT_THREADS = 8
#: Seconds a stopping worker has to finish its requests before it is killed.
STOP_TIMEOUT = 30


#: Called in each worker after the fork, before it serves (:func:`at_worker_start`).
_worker_hooks: list[Callable[[], object]] = []
_forking = False


def forks_workers() -> bool:
    """Whether this process is loading an application for workers it will fork."""
    return _forking


def at_worker_start(hook: Callable[[], object]) -> None:
    """Call ``hook`` in every worker once forked, before it serves (a respawned one too):
    what must not cross a fork (gRPC's server) starts there."""
    _worker_hooks.append(hook)


def _load_in_worker(application: Any) -> Any:
    for hook in _worker_hooks:
        hook()
    return application


class LaunchError(Exception):
    """The server cannot start as configured; the message says what to fix."""


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs; :meth:`build` fills in the measured defaults."""

    host: str
    port: int
    workers: int
    #: Blocking (request) threads per worker.
    threads: int
    #: torch / ONNX Runtime intra-op threads per worker (``MLAPP["THREADS"]``).
    intra_op_threads: int
    #: Port of the gRPC server of every worker (``MLAPP["GRPC_PORT"]``); None: no gRPC.
    grpc_port: int | None = None

    @classmethod
    def build(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        workers: int | None = None,
        threads: int | None = None,
        intra_op_threads: int | None = None,
        grpc_port: int | None = None,
        environ: MutableMapping[str, str] = os.environ,
    ) -> ServeConfig:
        """Options first, then ``WEB_WORKERS`` / ``WEB_THREADS`` / ``MLAPP_THREADS`` /
        ``GRPC_PORT``, then the project's ``MLAPP["THREADS"]`` / ``MLAPP["GRPC_PORT"]``,
        then the cores this process may use."""
        from mlapp.conf import settings as mlapp_settings

        workers = workers or _positive(environ, "WEB_WORKERS") or cores()
        threads = threads or _positive(environ, "WEB_THREADS") or DEFAULT_THREADS
        intra_op_threads = (
            intra_op_threads
            or _positive(environ, "MLAPP_THREADS")
            or mlapp_settings.THREADS
            or max(cores() // workers, 1)
        )
        if grpc_port is None:
            grpc_port = _port(environ, "GRPC_PORT")
        if grpc_port is None:
            grpc_port = mlapp_settings.GRPC_PORT
        return cls(host, port, workers, threads, intra_op_threads, grpc_port)


def _positive(environ: MutableMapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise LaunchError(f"{name}={value!r} must be a positive integer.")
    return int(value)


def _port(environ: MutableMapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if not value:
        return None
    if not value.isdigit() or int(value) > 65535:
        raise LaunchError(f"{name}={value!r} must be a port number.")
    return int(value)


# -- the metrics folder, and the second run ------------------------------------------------


def prepare_metrics_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` a folder without samples, and say how in
    :data:`PREPARED`."""
    given = environ.get(METRICS_DIR)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        _remove_samples(path)
        environ[PREPARED] = "given"
    else:
        path = Path(tempfile.mkdtemp(prefix="mlapp-prometheus-"))
        environ[METRICS_DIR] = str(path)
        environ[PREPARED] = "created"
    return path


def clean_metrics_dir(environ: MutableMapping[str, str] = os.environ) -> None:
    """Remove what :func:`prepare_metrics_dir` made: its folder, or the samples in a given one."""
    path = environ.get(METRICS_DIR)
    if not path:
        return
    if environ.get(PREPARED) == "created":
        shutil.rmtree(path, ignore_errors=True)
    else:
        _remove_samples(Path(path))


def _remove_samples(path: Path) -> None:
    # Only prometheus-client's files: a given folder may hold other things.
    for sample in path.glob("*.db"):
        sample.unlink(missing_ok=True)


def is_prepared(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether this is the second run, with the metrics folder set before any import."""
    return environ.get(PREPARED) in {"created", "given"} and bool(environ.get(METRICS_DIR))


def run_again() -> None:
    """Execute this very command again (same interpreter options, ``-m``, arguments).

    The working directory and ``sys.argv`` are unchanged, so ``sys.path`` is built as it
    was: the folder of ``manage.py`` first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # The same interpreter and arguments this process was started with: nothing new runs.
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606


# -- the server -----------------------------------------------------------------------------


def _default_stop_signals() -> None:
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_DFL)


def stop_children_by_default() -> None:
    """Make every child forked from now on stop on SIGINT / SIGTERM until it installs its
    own handlers (granian's workers do, once started), not run the parent's."""
    os.register_at_fork(after_in_child=_default_stop_signals)


def use_intra_op_threads(count: int) -> None:
    """Make ``MLAPP["THREADS"]`` ``count`` for the models loaded in this process."""
    from django.conf import settings

    from mlapp.conf import settings as mlapp_settings

    if count == mlapp_settings.THREADS:
        return
    current = getattr(settings, "MLAPP", None) or {}
    settings.MLAPP = {**current, "THREADS": count}
    mlapp_settings.reload()


def use_grpc(host: str, port: int | None) -> None:
    """Make ``MLAPP["GRPC_PORT"]`` / ``["GRPC_HOST"]`` what the command line says."""
    from django.conf import settings

    from mlapp.conf import settings as mlapp_settings

    if port == mlapp_settings.GRPC_PORT and (port is None or host == mlapp_settings.GRPC_HOST):
        return
    current = getattr(settings, "MLAPP", None) or {}
    settings.MLAPP = {**current, "GRPC_PORT": port, "GRPC_HOST": host}
    mlapp_settings.reload()


def load_application() -> Any:
    """The project's WSGI application, loaded here; raises :class:`LaunchError` when it does
    not load mlapp's models (each worker would then load them again, and never be ready)."""
    from django.core.servers.basehttp import get_internal_wsgi_application

    from mlapp.conf import settings as mlapp_settings
    from mlapp.serving.registry import registry

    application = get_internal_wsgi_application()
    if mlapp_settings.LOAD_ON_STARTUP and not registry.startup_done:
        raise LaunchError(
            "settings.WSGI_APPLICATION does not load mlapp's models before serving: in the "
            "project's wsgi.py, use `from mlapp.wsgi import get_wsgi_application`."
        )
    return application


#: Middleware that serves the static files itself: the launcher then leaves them to it.
STATIC_MIDDLEWARE = ("whitenoise.middleware.WhiteNoiseMiddleware",)


def static_mount() -> tuple[str, Path] | None:
    """``(route, folder)`` of the collected static files, or None (not collected,
    ``STATIC_URL`` is another host's address, or the project serves them with WhiteNoise)."""
    from django.conf import settings

    root, url = getattr(settings, "STATIC_ROOT", None), settings.STATIC_URL or ""
    if any(name in STATIC_MIDDLEWARE for name in getattr(settings, "MIDDLEWARE", ())):
        return None
    if not root or not Path(root).is_dir() or "://" in url or url.startswith("//"):
        return None
    return "/" + url.strip("/"), Path(root)


def granian_target() -> str:
    """``settings.WSGI_APPLICATION`` as granian names a target (for its logs and titles)."""
    from django.conf import settings

    module, _, name = (settings.WSGI_APPLICATION or "wsgi.application").rpartition(".")
    return f"{module}:{name}"


def serve(config: ServeConfig) -> None:
    """Load the project's application, then serve it with granian until stopped.

    Call it in the second run (:func:`is_prepared`). Returns when granian stopped; the
    metrics folder is cleaned whatever the way out.
    """
    try:
        from granian import Granian
        from granian.constants import Interfaces
    except ImportError as exc:
        raise LaunchError("granian is not installed: pip install 'mlapp[serve]'.") from exc
    from django.db import connections

    try:
        # Workers must be forks of this process, whatever the platform's default: that is
        # how they share the loaded application (granian would otherwise spawn them).
        multiprocessing.set_start_method("fork", force=True)
        stop_children_by_default()
        use_intra_op_threads(config.intra_op_threads)
        use_grpc(config.host, config.grpc_port)
        global _forking
        _forking = True
        application = load_application()
        # Forked workers open their own database connections.
        connections.close_all()
        options: dict[str, Any] = {}
        mount = static_mount()
        if mount is not None:
            options.update(static_path_route=[mount[0]], static_path_mount=[mount[1]])
        server = Granian(
            granian_target(),
            address=config.host,
            port=config.port,
            interface=Interfaces.WSGI,
            workers=config.workers,
            blocking_threads=config.threads,
            websockets=False,
            log_access=False,
            respawn_failed_workers=True,
            workers_kill_timeout=STOP_TIMEOUT,
            **options,
        )
        # granian calls the loader in each worker, after the fork.
        server.serve(
            target_loader=lambda *args, **kwargs: _load_in_worker(application), wrap_loader=False
        )
    finally:
        clean_metrics_dir()
