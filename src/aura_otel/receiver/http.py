"""OTLP/HTTP: ``POST /v1/traces`` with protobuf or JSON bodies, gzip or not.

Answers follow the OTLP specification: 200 with an ``ExportTraceServiceResponse`` (a partial
success names the rejected count and why), 400 for a body that does not decode, 413 over the
size limits (on the wire and decompressed), 415 for another content type or encoding, 401
without the access token, and 429/503 with ``Retry-After`` when the receiver cannot take the
request now. Error bodies are ``google.rpc.Status`` in the request's encoding. Checks that need
no body (token, type, declared size, load) come before the body is read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

import anyio
import orjson
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..masking.logs import mask_line
from .admission import Refusal
from .decode import JSON, PROTOBUF, PayloadError, decompress, media_type, parse
from .ingest import Unavailable

if TYPE_CHECKING:
    from .service import FoldReceiver

logger = logging.getLogger("aura_otel.receiver")
_GRPC_CODE = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}
_COUNTER = {
    400: "requests_malformed",
    401: "requests_unauthorized",
    413: "requests_too_large",
    415: "requests_unsupported",
    429: "requests_refused_overload",
    503: "requests_refused_backlog",
}


def _encode(message: Message, content_type: str) -> tuple[bytes, str]:
    if content_type == JSON:
        return orjson.dumps(json_format.MessageToDict(message)), JSON
    return message.SerializeToString(), PROTOBUF


#: A worker without its supervisor's load table (see :mod:`.balance`; not Linux) closes a
#: sender's keep-alive connection after this many requests on it. ``SO_REUSEPORT`` spreads
#: *connections* over the workers, not requests: a sender's persistent connection (an
#: exporter, a collector) would stay on the worker it first reached, and a few of them can load
#: one worker while another idles. Reconnecting draws a worker again (nginx's
#: ``keepalive_requests`` does the same), blindly: the load table's rule does better.
REQUESTS_PER_CONNECTION = 8
_MAX_TRACKED_CONNECTIONS = 4096


class _ConnectionTurns:
    """Requests seen per client connection (its address and port), to say when to close it."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._seen: dict[object, int] = {}

    def close_now(self, client: object) -> bool:
        if not isinstance(client, (tuple, list)):
            return False  # no address known (a Unix socket): nothing to turn over by
        client = tuple(client)  # ASGI servers give a tuple or a list
        seen = self._seen
        count = seen.get(client, 0) + 1
        if count >= self.every:
            seen.pop(client, None)
            return True
        if len(seen) >= _MAX_TRACKED_CONNECTIONS:
            seen.clear()  # connections that went away are never told: forget them all at once
        seen[client] = count
        return False


def authorized(header: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` (scheme in any case), compared in constant time."""
    scheme, _, value = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


def create_http_app(receiver: FoldReceiver) -> Starlette:
    config = receiver.config
    token = config.access_token.encode() if config.access_token else None
    stats = receiver.stats
    retry_after = str(config.retry_after_seconds)

    def failure(
        status: int, message: str, content_type: str, counter: str | None = None
    ) -> Response:
        stats.add(counter or _COUNTER[status])
        body, media = _encode(
            # Masked: a refusal may quote what the sender sent (a header, a value).
            status_pb2.Status(code=_GRPC_CODE[status], message=mask_line(message)),
            content_type if content_type in (JSON, PROTOBUF) else JSON,
        )
        headers = {}
        if status in (429, 503):
            headers["Retry-After"] = retry_after
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="aura-otel"'
        return Response(body, status_code=status, media_type=media, headers=headers)

    async def read_body(request: Request) -> bytes:
        limit = config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise PayloadError(
                413, f"the body ({declared} bytes) exceeds the limit of {limit} bytes"
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadError(413, f"the body exceeds the limit of {limit} bytes")
        return bytes(body)

    def handle(body: bytes, content_type: str, encoding: str | None) -> Response:
        raw = decompress(body, encoding, config.max_decompressed_bytes)
        request = parse(raw, content_type)
        outcome = receiver.ingestor.ingest(request)
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        data, media = _encode(response, content_type)
        return Response(data, status_code=200, media_type=media)

    turns = _ConnectionTurns(REQUESTS_PER_CONNECTION) if config.worker else None

    async def traces(request: Request) -> Response:
        response = await answer(request)
        # Only after a body read to its end: closing with unread bytes would reset the
        # connection under a sender still writing (a refusal answers before reading).
        if response.status_code == 200:
            loads = receiver.admission.loads
            if loads is not None:
                close = loads.busier_than_another()  # see .balance
            else:
                close = turns is not None and turns.close_now(request.scope.get("client"))
            if close:
                response.headers["Connection"] = "close"  # the sender reconnects: see above
        return response

    async def answer(request: Request) -> Response:
        stats.add("requests")
        content_type = media_type(request.headers.get("content-type"))
        if token is not None and not authorized(request.headers.get("authorization"), token):
            return failure(
                401,
                "this receiver requires 'Authorization: Bearer <token>' "
                "(OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>)",
                content_type,
            )
        if content_type not in (PROTOBUF, JSON):
            return failure(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}: send {PROTOBUF} or {JSON}",
                content_type,
            )
        refusal = receiver.admission.enter()
        if refusal is not None:
            if refusal is Refusal.BUSY:
                return failure(429, "too many requests at once; retry later", content_type)
            return failure(
                503, "the receiver is catching up with its files; retry later", content_type
            )
        try:
            try:
                try:
                    with anyio.fail_after(config.receive_timeout):
                        body = await read_body(request)
                except TimeoutError:
                    # A stalled sender (or a connection the network half-dropped) must not
                    # hold its slot for as long as it stays open. Retryable: a slow link's
                    # next try may make it; the connection closes (its body is unread).
                    response = failure(
                        503,
                        f"the request body did not arrive within {config.receive_timeout:g} s;"
                        " retry later",
                        content_type,
                        counter="requests_stalled",
                    )
                    response.headers["Connection"] = "close"
                    return response
                return await anyio.to_thread.run_sync(
                    handle, body, content_type, request.headers.get("content-encoding")
                )
            except PayloadError as exc:
                return failure(exc.status, exc.message, content_type)
            except Unavailable as exc:
                return failure(503, str(exc), content_type)
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is listening; nothing was stored
            except Exception:
                # A bug must not reach uvicorn's own (unmasked) error log with span data in its
                # message: aura-otel's logger masks it. Nothing was acknowledged; retryable.
                logger.exception("aura-otel: the receiver failed on a request")
                return failure(
                    503, "the receiver failed on this request; retry later", content_type
                )
        finally:
            receiver.admission.leave()

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])


class PromptServer(uvicorn.Server):
    """uvicorn's server, whose stop takes effect at once instead of at its next 0.1 s tick.

    A receiver's stop is on the clock of whoever waits for its files (a deploy, a test, the
    benchmark); uvicorn notices ``should_exit`` only between sleeps. The loop below is
    uvicorn's own (the same ticks, which refresh the ``Date`` header), except that its sleep
    ends early when :meth:`exit_now` is called from another thread.
    """

    #: uvicorn's tick: how often the ``Date`` header is refreshed (every 10th) and, without
    #: :meth:`exit_now`, how late a stop may be noticed.
    tick_seconds = 0.1
    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # after _wake: exit_now reads them in turn
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    def exit_now(self) -> None:
        """Stop serving (thread-safe): answered requests finish, new connections are refused."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop already closed: the server is stopped
                pass
