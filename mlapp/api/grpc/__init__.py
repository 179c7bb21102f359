"""The Open Inference Protocol over gRPC, served by the web process (``MLAPP["GRPC_PORT"]``).

Importing this package imports no ``grpc``: the server module is imported only where it
runs, after any fork (gRPC's threads and polling do not survive one).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlapp.conf import settings

if TYPE_CHECKING:
    from mlapp.api.grpc.server import GrpcServer

logger = logging.getLogger("mlapp.grpc")

#: The server of this process, once started.
_server: GrpcServer | None = None


def message_limit() -> int | None:
    """Bytes a gRPC message may have: ``GRPC_MAX_MESSAGE_SIZE``, else the V2 REST limit."""
    if settings.GRPC_MAX_MESSAGE_SIZE is not None:
        return settings.GRPC_MAX_MESSAGE_SIZE
    from mlapp.api.v2.views import body_limit

    return body_limit()


def start(threads: int = 8) -> GrpcServer | None:
    """Start this process's gRPC server as the settings say (once); None when off."""
    global _server
    if settings.GRPC_PORT is None:
        return None
    if _server is not None:
        return _server
    try:
        from mlapp.api.grpc.server import start_server
    except ImportError as exc:
        raise ImportError(
            f"MLAPP['GRPC_PORT'] is set but gRPC cannot be served ({exc}): "
            "pip install 'mlapp[grpc]'."
        ) from exc
    _server = start_server(
        settings.GRPC_HOST, settings.GRPC_PORT, max_message_size=message_limit(), threads=threads
    )
    return _server


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
