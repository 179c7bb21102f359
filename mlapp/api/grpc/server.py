"""The Open Inference Protocol gRPC service, served by the web process beside HTTP.

``inference.GRPCInferenceService`` (ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelInfer) as thin methods over :data:`mlapp.serving.service.service`, the
same data plane as the V2 REST views: the same registry, the same decoder checks
(:mod:`mlapp.api.grpc.codec`), the same permission rule, the same errors (mapped to gRPC
status codes by :func:`status_of`), metrics labelled ``protocol="grpc"``.

Thread model (measured, docs/api-grpc.md): one ``grpc.aio`` server per process, on an event
loop in a thread of its own. A prediction for a version the process holds with batching off
runs on the loop itself (no thread hop: the model call is the work); anything that may query
the database or wait (metadata, readiness, a credentials check, a version to load, a
batcher queue) runs in a small thread pool. Under ``mlapp_serve`` every worker starts its
own server after the fork (gRPC's threads and sockets do not survive a fork) on the same
port, shared with ``SO_REUSEPORT``: the kernel spreads connections over the workers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import orjson
from django.db import close_old_connections
from django.http import HttpRequest
from google.protobuf.message import DecodeError

import mlapp
from mlapp.api import permissions
from mlapp.api.errors import render_error
from mlapp.api.grpc import codec
from mlapp.api.grpc import messages as pb
from mlapp.api.v2 import views
from mlapp.exceptions import ModelNotFound
from mlapp.serving.service import service

logger = logging.getLogger("mlapp.grpc")

SERVICE = "inference.GRPCInferenceService"
PROTOCOL = "grpc"
#: HTTP status of an mlapp error -> the gRPC status code that means the same.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

T = TypeVar("T")


class RpcError(Exception):
    """An answer other than OK, with its gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for ``exc``, as the REST API would answer it.

    A 500 answers the class's default message (the exception is logged whole, never echoed).
    """
    if isinstance(exc, RpcError):
        return exc.code, exc.message
    answer = render_error(exc)
    return STATUS_CODES.get(answer.status, grpc.StatusCode.INTERNAL), answer.message


def _version(name: str, text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ModelNotFound.no_version(name, text)
    return int(text)


class InferenceServicer:
    """The six RPCs, each a thin call of the inference service."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.executor = executor

    async def _in_thread(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the pool: it may query the database (a connection per thread,
        closed when Django would close it after a request)."""

        def call() -> T:
            try:
                return func()
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def _check_access(self, kind: str, context: grpc.aio.ServicerContext) -> None:
        """The REST rule (:func:`mlapp.api.v2.views.check_access`): the ``MLAPP`` permission
        classes of ``kind``, with the ``authorization`` metadata as the HTTP header."""
        credentials = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                credentials = value if isinstance(value, str) else value.decode("latin-1")
        if credentials is None and permissions.open_to_anyone(kind):
            return

        def check() -> Any:
            request = HttpRequest()
            request.method = "POST"
            if credentials is not None:
                request.META["HTTP_AUTHORIZATION"] = credentials
            return views.check_access(request, kind)

        denied = await self._in_thread(check)
        if denied is not None:
            message = orjson.loads(denied.content).get("error", "Access denied.")
            # No credentials, or credentials refused: UNAUTHENTICATED (REST answers 403 for
            # the first when its first authentication class names no scheme); credentials
            # that authenticate a user the permission refuses: PERMISSION_DENIED.
            code = (
                grpc.StatusCode.UNAUTHENTICATED
                if denied.status_code == 401 or credentials is None
                else grpc.StatusCode.PERMISSION_DENIED
            )
            raise RpcError(code, message)

    # -- the RPCs -------------------------------------------------------------------------

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=service.live())

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready, _reason = service.ready()
        return pb.ServerReadyResponse(ready=ready)

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_access(permissions.READ, context)
        number = _version(request.name, request.version)
        ready, _reason = await self._in_thread(lambda: service.model_ready(request.name, number))
        return pb.ModelReadyResponse(ready=ready)

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_access(permissions.READ, context)
        return pb.ServerMetadataResponse(name="mlapp", version=mlapp.__version__)

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_access(permissions.READ, context)
        number = _version(request.name, request.version)
        meta = await self._in_thread(lambda: service.model_metadata(request.name, number))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=views.PLATFORMS.get(meta.format, meta.format),
            inputs=[tensor(**spec.to_dict()) for spec in meta.signature.inputs],
            outputs=[tensor(**spec.to_dict()) for spec in meta.signature.outputs],
        )

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._check_access(permissions.PREDICT, context)
        name = request.model_name
        number = _version(name, request.model_version)
        decoded: list[Any] = []

        def decode(signature: Any) -> dict[str, Any]:
            decoded.append(codec.decode_request(request, signature))
            return decoded[0].inputs

        def predict() -> Any:
            prediction = service.predict(name, decode, version=number, protocol=PROTOCOL)
            assert prediction.signature is not None  # the service sets it
            return codec.encode_response(
                model_name=prediction.model,
                model_version=str(prediction.version),
                request=decoded[0],
                outputs=prediction.outputs,
                output_names=prediction.signature.output_names,
            )

        if service.answers_now(name, number):
            return predict()
        return await self._in_thread(predict)


def _guarded(
    method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], message: Any
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    """``method`` on the request parsed as ``message``, every error answered as a status and
    a message (gRPC itself would answer a request that does not parse with INTERNAL)."""
    kind = message.DESCRIPTOR.full_name

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            try:
                request = message.FromString(raw)
            except DecodeError:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"The request is not a valid {kind}."
                ) from None
            return await method(request, context)
        except Exception as exc:
            code, text = status_of(exc)
        await context.abort(code, text)

    return handle


def generic_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The service's method table (what a generated ``add_..._to_server`` would build)."""
    methods = {
        "ServerLive": (servicer.server_live, pb.ServerLiveRequest),
        "ServerReady": (servicer.server_ready, pb.ServerReadyRequest),
        "ModelReady": (servicer.model_ready, pb.ModelReadyRequest),
        "ServerMetadata": (servicer.server_metadata, pb.ServerMetadataRequest),
        "ModelMetadata": (servicer.model_metadata, pb.ModelMetadataRequest),
        "ModelInfer": (servicer.model_infer, pb.ModelInferRequest),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                _guarded(method, message),
                request_deserializer=None,  # bytes: parsed in _guarded
                response_serializer=lambda response: response.SerializeToString(),
            )
            for name, (method, message) in methods.items()
        },
    )


class GrpcServer:
    """A ``grpc.aio`` server on an event loop in a daemon thread of this process."""

    def __init__(
        self, host: str, port: int, *, max_message_size: int | None, threads: int = 4
    ) -> None:
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="mlapp-grpc")
        self.bound_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._grace = 1.0
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlapp-grpc", daemon=True)

    def options(self) -> list[tuple[str, Any]]:
        limit = -1 if self.max_message_size is None else self.max_message_size
        return [
            # Every worker binds the same port; the kernel spreads connections over them.
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; returns the bound port. Raises when the port cannot be bound."""
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"The gRPC server did not start within {timeout} s.")
        if self._error is not None:
            raise self._error
        assert self.bound_port is not None
        return self.bound_port

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server(options=self.options())
        server.add_generic_rpc_handlers((generic_handler(InferenceServicer(self.executor)),))
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"The gRPC server cannot listen on {address}: {exc}") from None
        await server.start()
        self._stopping = asyncio.Event()
        self.bound_port = bound
        self._started.set()
        await self._stopping.wait()
        await server.stop(self._grace)

    def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls, let running ones finish within ``grace`` seconds."""
        loop, stopping = self._loop, self._stopping
        if loop is None or stopping is None or loop.is_closed():
            return
        self._grace = grace
        loop.call_soon_threadsafe(stopping.set)
        self._thread.join(grace + 5)
        self.executor.shutdown(wait=False)


def start_server(
    host: str, port: int, *, max_message_size: int | None, threads: int = 4
) -> GrpcServer:
    """Serve the gRPC service of this process on ``host:port``; the server, started."""
    server = GrpcServer(host, port, max_message_size=max_message_size, threads=threads)
    bound = server.start()
    logger.info("mlapp: gRPC (Open Inference Protocol) on %s:%d", host, bound)
    return server
