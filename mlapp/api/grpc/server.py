"""The Open Inference Protocol gRPC service, served by the web process beside HTTP.

``inference.GRPCInferenceService`` (ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelInfer) as thin methods over :data:`mlapp.serving.service.service`, the
same data plane as the V2 REST views: the same registry, the same decoder checks
(:mod:`mlapp.api.grpc.codec`), the same permission rule, the same errors (mapped to gRPC
status codes by :func:`status_of`), metrics labelled ``protocol="grpc"``.

Thread model (measured, docs/api-grpc.md): one synchronous gRPC server per process, its
RPCs run in a pool of threads (``threads``), each RPC in one thread from decoding to the
answer, as a WSGI request is; grpc's asyncio server cost about a third more CPU per call here,
and would have to hand anything that queries the database to a thread anyway. Under
``mlapp_serve`` every worker starts its own server after the fork (gRPC's threads and
sockets do not survive a fork) on the same port, shared with ``SO_REUSEPORT``: the kernel
spreads connections over the workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
import orjson
from django.db import close_old_connections
from django.http import HttpRequest
from django.utils.datastructures import CaseInsensitiveMapping
from google.protobuf.message import DecodeError

import mlapp
from mlapp.api import permissions
from mlapp.api.errors import render_error
from mlapp.api.grpc import codec
from mlapp.api.grpc import messages as pb
from mlapp.api.grpc.pool import Pool
from mlapp.api.v2 import views
from mlapp.exceptions import ModelNotFound
from mlapp.serving.routes import Caller
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


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _version(name: str, text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ModelNotFound.no_version(name, text)
    return int(text)


class _Metadata(Mapping[str, str]):
    """A call's metadata as case-insensitive headers, built on first read: most calls never
    read it, and building it (with the caller around it) cost about as much as decoding the
    request (~10-20 µs)."""

    __slots__ = ("_headers", "_pairs")

    def __init__(self, pairs: Any) -> None:
        self._pairs = pairs
        self._headers: CaseInsensitiveMapping[str] | None = None

    def _read(self) -> CaseInsensitiveMapping[str]:
        if self._headers is None:
            self._headers = CaseInsensitiveMapping(
                {key: _text(value) or "" for key, value in self._pairs or ()}
            )
        return self._headers

    def __getitem__(self, key: str) -> str:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


class InferenceServicer:
    """The six RPCs, each a thin call of the inference service."""

    def _check_access(self, kind: str, context: grpc.ServicerContext) -> None:
        """The REST rule (:func:`mlapp.api.v2.views.check_access`): the ``MLAPP`` permission
        classes of ``kind``, with the ``authorization`` metadata as the HTTP header."""
        credentials = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                credentials = value if isinstance(value, str) else value.decode("latin-1")
        if credentials is None and permissions.open_to_anyone(kind):
            return
        request = HttpRequest()
        request.method = "POST"
        if credentials is not None:
            request.META["HTTP_AUTHORIZATION"] = credentials
        denied = views.check_access(request, kind)
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

    def server_live(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=service.live())

    def server_ready(self, request: Any, context: grpc.ServicerContext) -> Any:
        ready, _reason = service.ready()
        return pb.ServerReadyResponse(ready=ready)

    def model_ready(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_access(permissions.READ, context)
        ready, _reason = service.model_ready(request.name, _version(request.name, request.version))
        return pb.ModelReadyResponse(ready=ready)

    def server_metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_access(permissions.READ, context)
        return pb.ServerMetadataResponse(name="mlapp", version=mlapp.__version__)

    def model_metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_access(permissions.READ, context)
        meta = service.model_metadata(request.name, _version(request.name, request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=views.PLATFORMS.get(meta.format, meta.format),
            inputs=[tensor(**spec.to_dict()) for spec in meta.signature.inputs],
            outputs=[tensor(**spec.to_dict()) for spec in meta.signature.outputs],
        )

    def model_infer(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_access(permissions.PREDICT, context)
        name = request.model_name
        decoded: list[Any] = []

        def decode(signature: Any) -> dict[str, Any]:
            decoded.append(codec.decode_request(request, signature))
            return decoded[0].inputs

        # Metadata as headers (case-insensitive, as REST's), read only when something asks: a
        # traffic policy sticky by a header, or the prediction log (x-request-id and
        # x-mlapp-key name the request there, as REST's X-Request-ID and X-MLAPP-Key; the
        # request's own id when no x-request-id is sent).
        metadata = _Metadata(context.invocation_metadata())
        prediction = service.predict(
            name,
            decode,
            version=_version(name, request.model_version),
            protocol=PROTOCOL,
            caller=Caller(metadata, fields=lambda: codec.parameters(request.parameters)),
            request_id=lambda: metadata.get("x-request-id") or request.id or None,
            key=lambda: metadata.get("x-mlapp-key"),
        )
        assert prediction.signature is not None  # the service sets it
        return codec.encode_response(
            model_name=prediction.model,
            model_version=str(prediction.version),
            request=decoded[0],
            outputs=prediction.outputs,
            output_names=prediction.signature.output_names,
        )


def _guarded(
    method: Callable[[Any, grpc.ServicerContext], Any], message: Any
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    """``method`` on the request parsed as ``message``, every error answered as a status and
    a message (gRPC itself would answer a request that does not parse with INTERNAL)."""
    kind = message.DESCRIPTOR.full_name

    def handle(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            try:
                request = message.FromString(raw)
            except DecodeError:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"The request is not a valid {kind}."
                ) from None
            return method(request, context)
        except Exception as exc:
            code, text = status_of(exc)
        finally:
            # A call that queried the database closes its connection as Django would
            # after a request (CONN_MAX_AGE, unusable connections).
            close_old_connections()
        context.abort(code, text)

    return handle


def method_handlers(servicer: InferenceServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The service's method table (what a generated ``add_..._to_server`` would build)."""
    methods = {
        "ServerLive": (servicer.server_live, pb.ServerLiveRequest),
        "ServerReady": (servicer.server_ready, pb.ServerReadyRequest),
        "ModelReady": (servicer.model_ready, pb.ModelReadyRequest),
        "ServerMetadata": (servicer.server_metadata, pb.ServerMetadataRequest),
        "ModelMetadata": (servicer.model_metadata, pb.ModelMetadataRequest),
        "ModelInfer": (servicer.model_infer, pb.ModelInferRequest),
    }
    return {
        name: grpc.unary_unary_rpc_method_handler(
            _guarded(method, message),
            request_deserializer=None,  # bytes: parsed in _guarded
            response_serializer=_serialize,
        )
        for name, (method, message) in methods.items()
    }


def _serialize(response: Any) -> bytes:
    return response.SerializeToString()


class GrpcServer:
    """A gRPC server of this process, its RPCs in a pool of ``threads`` threads."""

    def __init__(
        self, host: str, port: int, *, max_message_size: int | None, threads: int = 8
    ) -> None:
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.threads = threads
        self.bound_port: int | None = None
        self._server: grpc.Server | None = None
        self._pool: Pool | None = None

    def options(self) -> list[tuple[str, Any]]:
        limit = -1 if self.max_message_size is None else self.max_message_size
        return [
            # Every worker binds the same port; the kernel spreads connections over them.
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]

    def start(self) -> int:
        """Start serving; returns the bound port. Raises when the port cannot be bound."""
        # grpc's ThreadPoolExecutor would do, at more cost a call (mlapp.api.grpc.pool).
        self._pool = pool = Pool(self.threads)
        server = grpc.server(pool, options=self.options())
        # Registered methods: gRPC's core matches the method's path itself and hands the call
        # to its handler, where a generic handler is looked up in Python on every call.
        server.add_registered_method_handlers(SERVICE, method_handlers(InferenceServicer()))
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            pool.shutdown(wait=False)
            raise RuntimeError(f"The gRPC server cannot listen on {address}: {exc}") from None
        server.start()
        self._server, self.bound_port = server, bound
        return bound

    def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls, let running ones finish within ``grace`` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def start_server(
    host: str, port: int, *, max_message_size: int | None, threads: int = 8
) -> GrpcServer:
    """Serve the gRPC service of this process on ``host:port``; the server, started."""
    server = GrpcServer(host, port, max_message_size=max_message_size, threads=threads)
    bound = server.start()
    logger.info("mlapp: gRPC (Open Inference Protocol) on %s:%d", host, bound)
    return server
