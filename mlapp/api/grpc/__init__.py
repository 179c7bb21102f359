"""The Open Inference Protocol over gRPC, served by the web process (``MLAPP["GRPC_PORT"]``).

Importing this package imports no ``grpc``: the server module is imported only where it
runs, after any fork (gRPC's threads and polling do not survive one).
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
from collections.abc import MutableMapping
from importlib import metadata
from typing import TYPE_CHECKING

from mlapp.conf import settings

if TYPE_CHECKING:
    from mlapp.api.grpc.server import GrpcServer

logger = logging.getLogger("mlapp.grpc")

#: grpc's older (iomgr) listener and endpoints instead of its EventEngine ones: measured here
#: (grpcio 1.85, one core) an empty call 20-30 % cheaper and ~40 µs quicker at c=1
#: (docs/performance.md#grpc). Experiments come and go between grpcio releases, and an
#: unknown one is logged as an error, so this applies to the releases it was measured on.
TRANSPORT_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"
MEASURED_GRPCIO = ((1, 64), (1, 85))


def grpcio_release() -> tuple[int, int] | None:
    """The installed grpcio's (major, minor); None when it is not installed."""
    try:
        major, minor = metadata.version("grpcio").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def measured_release() -> bool:
    """Whether the installed grpcio is one of the releases measured (:data:`MEASURED_GRPCIO`):
    where the transport defaults apply and the call loop serves."""
    release = grpcio_release()
    low, high = MEASURED_GRPCIO
    return release is not None and low <= release <= high


def transport_defaults(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``GRPC_EXPERIMENTS`` to :data:`TRANSPORT_EXPERIMENTS` unless it is set already, on
    the grpcio releases measured; the value in force afterwards (None: grpc's defaults).

    Read by grpc when its core starts, so this runs before ``grpc`` is first imported here (a
    host that imported grpc earlier keeps what was in force then).
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if "GRPC_EXPERIMENTS" in env:
        return env["GRPC_EXPERIMENTS"]
    if not measured_release():
        return None
    env["GRPC_EXPERIMENTS"] = TRANSPORT_EXPERIMENTS
    return TRANSPORT_EXPERIMENTS


#: The server of this process, once started.
_server: GrpcServer | None = None
#: Seconds the calls under way get to finish when the process ends (new calls are refused
#: first). Under ``mlapp_serve`` this comes after granian has drained the worker's HTTP
#: requests, within its ``STOP_TIMEOUT``.
STOP_GRACE = 10.0
#: The process whose exit stops the server (hooks are registered once per process).
_hooked: int | None = None


def message_limit() -> int | None:
    """Bytes a gRPC message may have: ``GRPC_MAX_MESSAGE_SIZE``, else the V2 REST limit."""
    if settings.GRPC_MAX_MESSAGE_SIZE is not None:
        return settings.GRPC_MAX_MESSAGE_SIZE
    from mlapp.api.v2.views import body_limit

    return body_limit()


def start(threads: int | None = None) -> GrpcServer | None:
    """Start this process's gRPC server as the settings say (once); None when off."""
    global _server, _hooked
    if settings.GRPC_PORT is None:
        return None
    if _server is not None:
        return _server
    transport_defaults()
    try:
        from mlapp.api.grpc.server import start_server
    except ImportError as exc:
        raise ImportError(
            f"MLAPP['GRPC_PORT'] is set but gRPC cannot be served ({exc}): "
            "pip install 'mlapp[grpc]'."
        ) from exc
    _server = start_server(
        settings.GRPC_HOST,
        settings.GRPC_PORT,
        max_message_size=message_limit(),
        threads=settings.GRPC_THREADS if threads is None else threads,
    )
    if _hooked != os.getpid():
        # Drained when the process ends: multiprocessing runs its finalizers at interpreter
        # exit and at the end of a multiprocessing child (granian's workers end that way,
        # skipping atexit), highest priority first: before the prediction log's last flush
        # (exitpriority 100), so the calls drained are logged.
        _hooked = os.getpid()
        multiprocessing.util.Finalize(None, stop, exitpriority=200)
    return _server


def stop(grace: float = STOP_GRACE) -> None:
    """Stop this process's gRPC server, if it runs: no new call; the calls under way get
    ``grace`` seconds to finish, then are cancelled."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.stop(grace)


def serve_beside_http() -> None:
    """Serve gRPC beside the WSGI application being loaded (``mlapp.wsgi`` calls it).

    Under ``mlapp_serve``, whose workers fork after this load, each worker starts its own
    server after the fork; in a server that does not fork (runserver), it starts now.
    """
    if settings.GRPC_PORT is None:
        return
    from mlapp import launcher

    if launcher.forks_workers():
        launcher.at_worker_start(start)
    else:
        start()
