"""The Open Inference Protocol gRPC service, served by the web process beside HTTP.

``inference.GRPCInferenceService`` (ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelInfer) as thin methods over :data:`mlapp.serving.service.service`, the
same data plane as the V2 REST views: the same registry, the same decoder checks
(:mod:`mlapp.api.grpc.codec`), the same permission rule, the same errors (mapped to gRPC
status codes by :func:`status_of`), metrics labelled ``protocol="grpc"``.

Thread model (measured, docs/api-grpc.md): one server per process, each call run by one of
``threads`` threads from its arrival to its answer, as a WSGI request is: the call loop on
gRPC's core (:mod:`mlapp.api.grpc.loop`) on the grpcio releases it was tested on, else
``grpc.server`` with a pool (:mod:`mlapp.api.grpc.pool`), both over the same handlers
(:func:`handlers`). grpc's asyncio server cost about a third more CPU per call than
``grpc.server`` here, and would have to hand anything that queries the database to a thread
anyway. Under
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
from django.http import HttpRequest
from django.utils.datastructures import CaseInsensitiveMapping
from google.protobuf.message import DecodeError

import mlapp
from mlapp.api import permissions
from mlapp.api.connections import close_old_connections
from mlapp.api.errors import render_error
from mlapp.api.grpc import codec
from mlapp.api.grpc import messages as pb
from mlapp.api.grpc.loop import Abort, CallLoop, Handler, Metadata
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


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for ``exc``, as the REST API would answer it.

    A 500 answers the class's default message (the exception is logged whole, never echoed).
    """
    if isinstance(exc, Abort):
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

    def _check_access(self, kind: str, metadata: Metadata) -> None:
        """The REST rule (:func:`mlapp.api.v2.views.check_access`): the ``MLAPP`` permission
        classes of ``kind``, with the ``authorization`` metadata as the HTTP header."""
        credentials = None
        for key, value in metadata or ():
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
            raise Abort(code, message)

    # -- the RPCs -------------------------------------------------------------------------

    def server_live(self, request: Any, metadata: Metadata) -> Any:
        return pb.ServerLiveResponse(live=service.live())

    def server_ready(self, request: Any, metadata: Metadata) -> Any:
        ready, _reason = service.ready()
        return pb.ServerReadyResponse(ready=ready)

    def model_ready(self, request: Any, metadata: Metadata) -> Any:
        self._check_access(permissions.READ, metadata)
        ready, _reason = service.model_ready(request.name, _version(request.name, request.version))
        return pb.ModelReadyResponse(ready=ready)

    def server_metadata(self, request: Any, metadata: Metadata) -> Any:
        self._check_access(permissions.READ, metadata)
        return pb.ServerMetadataResponse(name="mlapp", version=mlapp.__version__)

    def model_metadata(self, request: Any, metadata: Metadata) -> Any:
        self._check_access(permissions.READ, metadata)
        meta = service.model_metadata(request.name, _version(request.name, request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=views.PLATFORMS.get(meta.format, meta.format),
            inputs=[tensor(**spec.to_dict()) for spec in meta.signature.inputs],
            outputs=[tensor(**spec.to_dict()) for spec in meta.signature.outputs],
        )

    def model_infer(self, request: Any, metadata: Metadata) -> Any:
        self._check_access(permissions.PREDICT, metadata)
        name = request.model_name
        decoded: list[Any] = []

        def decode(signature: Any) -> dict[str, Any]:
            decoded.append(codec.decode_request(request, signature))
            return decoded[0].inputs

        # Metadata as headers (case-insensitive, as REST's), read only when something asks: a
        # traffic policy sticky by a header, or the prediction log (x-request-id and
        # x-mlapp-key name the request there, as REST's X-Request-ID and X-MLAPP-Key; the
        # request's own id when no x-request-id is sent).
        headers = _Metadata(metadata)
        prediction = service.predict(
            name,
            decode,
            version=_version(name, request.model_version),
            protocol=PROTOCOL,
            caller=Caller(headers, fields=lambda: codec.parameters(request.parameters)),
            request_id=lambda: headers.get("x-request-id") or request.id or None,
            key=lambda: headers.get("x-mlapp-key"),
        )
        assert prediction.signature is not None  # the service sets it
        return codec.encode_response(
            model_name=prediction.model,
            model_version=str(prediction.version),
            request=decoded[0],
            outputs=prediction.outputs,
            output_names=prediction.signature.output_names,
        )


def _guarded(method: Callable[[Any, Metadata], Any], message: Any) -> Handler:
    """``method`` on the request parsed as ``message``, its answer serialized; every error
    raised as :class:`Abort` with the status and message the REST API's answer maps to (gRPC
    itself would answer a request that does not parse, or an exception, with INTERNAL)."""
    kind = message.DESCRIPTOR.full_name
    parse = message.FromString

    def handle(raw: bytes, metadata: Metadata) -> bytes:
        try:
            try:
                request = parse(raw)
            except DecodeError:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"The request is not a valid {kind}."
                ) from None
            return method(request, metadata).SerializeToString()
        except Exception as exc:  # an Abort keeps its status (status_of)
            code, text = status_of(exc)
            raise Abort(code, text) from None
        finally:
            # A call that queried the database closes its connection as Django would
            # after a request (CONN_MAX_AGE, unusable connections).
            close_old_connections()

    return handle


def handlers(servicer: InferenceServicer) -> dict[str, Handler]:
    """The service's methods by path (``/inference.GRPCInferenceService/ModelInfer``)."""
    methods = {
        "ServerLive": (servicer.server_live, pb.ServerLiveRequest),
        "ServerReady": (servicer.server_ready, pb.ServerReadyRequest),
        "ModelReady": (servicer.model_ready, pb.ModelReadyRequest),
        "ServerMetadata": (servicer.server_metadata, pb.ServerMetadataRequest),
        "ModelMetadata": (servicer.model_metadata, pb.ModelMetadataRequest),
        "ModelInfer": (servicer.model_infer, pb.ModelInferRequest),
    }
    return {
        f"/{SERVICE}/{name}": _guarded(method, message)
        for name, (method, message) in methods.items()
    }


def _method_handler(handler: Handler) -> grpc.RpcMethodHandler:
    """``handler`` as ``grpc.server`` runs it (bytes in and out, :class:`Abort` as a status)."""

    def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return handler(raw, context.invocation_metadata())
        except Abort as abort:
            context.abort(abort.code, abort.message)
            raise AssertionError("grpc's context.abort raises") from None

    return grpc.unary_unary_rpc_method_handler(handle)


#: How a process serves its calls: ``"loop"`` (:class:`~mlapp.api.grpc.loop.CallLoop`, on
#: the grpcio releases it was tested on) or ``"grpc"`` (``grpc.server`` and a thread pool).
ENGINES = ("loop", "grpc")


def default_engine() -> str:
    """``"loop"`` on the grpcio releases measured (:data:`mlapp.api.grpc.MEASURED_GRPCIO`),
    else ``"grpc"``: the loop stands on grpc's internal binding, which may change."""
    from mlapp.api.grpc import measured_release

    return "loop" if measured_release() else "grpc"


class GrpcServer:
    """A gRPC server of this process, its RPCs run by ``threads`` threads."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_message_size: int | None,
        threads: int = 8,
        engine: str | None = None,
    ) -> None:
        if engine is not None and engine not in ENGINES:
            raise ValueError(f"Unknown gRPC engine {engine!r}: one of {', '.join(ENGINES)}.")
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.threads = threads
        self.engine = engine or default_engine()
        self.bound_port: int | None = None
        self._loop: CallLoop | None = None
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
        address = f"{self.host}:{self.port}"
        methods = handlers(InferenceServicer())
        if self.engine == "loop":
            loop = CallLoop(methods, options=self.options(), threads=self.threads)
            try:
                bound = loop.add_insecure_port(address)
            except RuntimeError as exc:
                raise RuntimeError(f"The gRPC server cannot listen on {address}: {exc}") from None
            loop.start()
            self._loop, self.bound_port = loop, bound
            return bound
        # grpc's ThreadPoolExecutor would do, at more cost a call (mlapp.api.grpc.pool).
        self._pool = pool = Pool(self.threads)
        server = grpc.server(pool, options=self.options())
        # Registered methods: gRPC's core matches the method's path itself and hands the call
        # to its handler, where a generic handler is looked up in Python on every call.
        prefix = f"/{SERVICE}/"
        server.add_registered_method_handlers(
            SERVICE,
            {path.removeprefix(prefix): _method_handler(h) for path, h in methods.items()},
        )
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
        if self._loop is not None:
            self._loop.stop(grace)
            self._loop = None
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def start_server(
    host: str,
    port: int,
    *,
    max_message_size: int | None,
    threads: int = 8,
    engine: str | None = None,
) -> GrpcServer:
    """Serve the gRPC service of this process on ``host:port``; the server, started."""
    server = GrpcServer(
        host, port, max_message_size=max_message_size, threads=threads, engine=engine
    )
    bound = server.start()
    logger.info("mlapp: gRPC (Open Inference Protocol) on %s:%d (%s)", host, bound, server.engine)
    return server
