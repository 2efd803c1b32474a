"""OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The request arrives as raw bytes and is parsed here, so a malformed message is answered
INVALID_ARGUMENT with a reason (grpcio's own deserialiser would answer an opaque error). The
message size limit (also after decompression) is grpcio's ``max_receive_message_length``.
"Retry later" answers carry retry info both ways exporters read it: the standard
``grpc-status-details-bin`` (a ``google.rpc.Status`` holding ``RetryInfo``) and the
``google.rpc.retryinfo-bin`` trailer the Python exporter looks for.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..masking.logs import mask_line
from .admission import Refusal
from .decode import PayloadError, parse_protobuf
from .ingest import Unavailable

if TYPE_CHECKING:
    from .service import FoldReceiver

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
logger = logging.getLogger("aura_otel.receiver")


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    retry_after: int | None = None,
) -> NoReturn:
    message = mask_line(message)  # a refusal may quote what the sender sent
    if retry_after is not None:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after))
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
        context.set_trailing_metadata(
            (
                ("grpc-status-details-bin", status.SerializeToString()),
                ("google.rpc.retryinfo-bin", info.SerializeToString()),
            )
        )
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort always raises


def _token_ok(context: grpc.ServicerContext, token: bytes) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, given = value.strip().partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)
    return False


def _handler(receiver: FoldReceiver) -> Any:
    config = receiver.config
    token = config.access_token.encode() if config.access_token else None
    stats = receiver.stats
    retry = config.retry_after_seconds

    def export(
        messages: Iterator[bytes], context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        stats.add("requests")
        if token is not None and not _token_ok(context, token):
            stats.add("requests_unauthorized")
            _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "this receiver requires 'authorization: Bearer <token>' metadata",
            )
        data = _first_message(
            messages, context, config.receive_timeout, lambda: stats.add("requests_stalled")
        )
        if data is None:
            # Stalled (counted as the call was cancelled), or grpcio ended the call itself (a
            # message over the size limit, the caller gone): it has answered already.
            _abort(context, grpc.StatusCode.CANCELLED, "no request message in time")
        refusal = receiver.admission.enter()
        if refusal is Refusal.BUSY:
            stats.add("requests_refused_overload")
            _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many requests at once; retry later",
                retry,
            )
        if refusal is Refusal.BACKLOG:
            stats.add("requests_refused_backlog")
            _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "the receiver is catching up with its files; retry later",
                retry,
            )
        try:
            try:
                request = parse_protobuf(data)
                outcome = receiver.ingestor.ingest(request)
            except PayloadError as exc:
                stats.add("requests_malformed")
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            except Unavailable as exc:
                stats.add("requests_refused_backlog")
                _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), retry)
            except Exception:
                # A bug, logged by aura-otel's (masked) logger rather than grpcio's; nothing
                # was acknowledged. (context.abort raises too, but only from the handlers.)
                logger.exception("aura-otel: the receiver failed on a request")
                _abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    "the receiver failed on this request; retry later",
                    retry,
                )
        finally:
            receiver.admission.leave()
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            # A unary call on the wire, served as client-streaming: grpcio reads a unary
            # request before calling its handler, in the handler's thread and with no time
            # limit, so a caller that never sends its message (a token-less one included)
            # would hold that thread for good. Served this way, the token is checked from
            # the call's headers first and the message is awaited with a time limit.
            "Export": grpc.stream_unary_rpc_method_handler(
                export,
                request_deserializer=None,  # raw bytes: parsed (and refused with a reason) above
                response_serializer=ExportTraceServiceResponse.SerializeToString,
            ),
        },
    )


def _first_message(
    messages: Iterator[bytes],
    context: grpc.ServicerContext,
    timeout: float,
    on_stall: Callable[[], object],
) -> bytes | None:
    """The call's request message; None when it did not come within ``timeout`` (``on_stall``
    is called, then the call cancelled: the stall is counted before the caller can see its
    answer) or grpcio ended the call first (a message over the size limit, the caller gone)."""

    def expire() -> None:
        on_stall()
        context.cancel()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        return next(messages, None)
    except grpc.RpcError:
        return None
    finally:
        timer.cancel()


#: A worker asks each client to reconnect after about this long (gRPC's own
#: ``max_connection_age``: a GOAWAY that clients obey transparently, calls in flight finish).
#: ``SO_REUSEPORT`` spreads connections, not calls, and a gRPC client sends everything over one
#: long-lived connection: without this, one collector would keep one worker busy for good.
#: grpcio gives a server no way to close a connection after a call when it is the busier
#: worker (as OTLP/HTTP does, see ``.balance``), so the redraw is blind, and frequent: an
#: unlucky split lasts about this long, and a reconnect costs a handshake every 2 s.
WORKER_CONNECTION_AGE_MS = 2_000
WORKER_CONNECTION_OPTIONS = (
    ("grpc.max_connection_age_ms", WORKER_CONNECTION_AGE_MS),
    ("grpc.max_connection_age_grace_ms", 120_000),  # a call in flight may take that long
)


def create_grpc_server(receiver: FoldReceiver, host: str, port: int) -> tuple[grpc.Server, int]:
    """A started-later gRPC server bound to ``host:port``; returns it and the bound port."""
    config = receiver.config
    # Workers beyond the admission limit only wait to be told "retry later", which is cheap.
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.max_concurrent_requests + 4, thread_name_prefix="aura-otel-grpc"
        ),
        handlers=[_handler(receiver)],
        options=[
            ("grpc.max_receive_message_length", config.max_decompressed_bytes),
            # Only a supervisor's workers share a port; otherwise a second receiver on the
            # same port must fail to start rather than silently split the traffic.
            ("grpc.so_reuseport", 1 if config.worker else 0),
            *(WORKER_CONNECTION_OPTIONS if config.worker else ()),
        ],
    )
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(target)
    if bound == 0:
        raise OSError(f"could not listen for OTLP/gRPC on {target}")
    return server, bound
