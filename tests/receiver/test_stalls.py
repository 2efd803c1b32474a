"""Senders that stall: each costs a bounded wait, never the receiver.

A real receiver; the stalled senders are real connections that send headers and then nothing
(the gRPC ones through grpcio's own client, with a request stream that never yields). What is
asserted is the answer each one gets, not how long it took.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aura_otel.receiver.grpc import SERVICE

from .support import demo_job_spans, encode, post_job, running_receiver, telemetry

TOKEN = "stall-test-token-0123456789"


def _never(release: threading.Event) -> Iterator[bytes]:
    release.wait()
    return
    yield b""  # a generator that yields nothing until released


def test_grpc_callers_without_a_token_are_refused_before_their_message(tmp_path) -> None:
    """More token-less callers than the receiver has threads, none sending its message: an
    authorized call is still served (each was refused from its headers alone)."""
    release = threading.Event()
    with running_receiver(
        tmp_path / "jobs", http=None, access_token=TOKEN, max_concurrent_requests=2
    ) as receiver:
        target = receiver.url("grpc").removeprefix("http://")
        with grpc.insecure_channel(target) as channel:
            export = channel.stream_unary(
                f"/{SERVICE}/Export", response_deserializer=ExportTraceServiceResponse.FromString
            )
            stalled = [export.future(_never(release)) for _ in range(12)]
            try:
                body = encode(demo_job_spans("after-stall")).SerializeToString()
                answer = export(
                    iter([body]), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=120
                )
                assert not answer.HasField("partial_success")
                codes = {call.exception().code() for call in stalled}
            finally:
                release.set()
        assert codes == {grpc.StatusCode.UNAUTHENTICATED}
        receiver.flush()
        assert telemetry(tmp_path / "jobs", "after-stall")["collection_ended_at"] is not None


def test_a_grpc_caller_that_never_sends_its_message_is_cancelled(tmp_path) -> None:
    release = threading.Event()
    with running_receiver(tmp_path / "jobs", http=None, receive_timeout=0.5) as receiver:
        target = receiver.url("grpc").removeprefix("http://")
        with grpc.insecure_channel(target) as channel:
            export = channel.stream_unary(
                f"/{SERVICE}/Export", response_deserializer=ExportTraceServiceResponse.FromString
            )
            try:
                call = export.future(_never(release))
                code = call.exception(timeout=120).code()
            finally:
                release.set()
        # CANCELLED: retryable for OTLP exporters.
        assert code == grpc.StatusCode.CANCELLED
        assert receiver.stats.snapshot()["requests_stalled"] == 1


def test_an_http_body_that_stops_coming_is_answered_retry_later(tmp_path) -> None:
    with running_receiver(tmp_path / "jobs", grpc=None, receive_timeout=0.5) as receiver:
        host, port = receiver.addresses["http"]
        with socket.create_connection((host, port), timeout=120) as sock:
            sock.sendall(
                f"POST /v1/traces HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n".encode()
                + b"\x0a" * 10
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 503")
        assert "retry-after:" in head and "connection: close" in head
        assert receiver.stats.snapshot()["requests_stalled"] == 1
        assert not any(p.is_dir() for p in (tmp_path / "jobs").iterdir())
        assert post_job(receiver, "after-stall").status_code == 200


def test_a_grpc_message_over_the_limit_is_refused_and_not_counted_as_a_stall(tmp_path) -> None:
    with running_receiver(
        tmp_path / "jobs",
        http=None,
        max_request_bytes=64 * 1024,
        max_decompressed_bytes=64 * 1024,
    ) as receiver:
        target = receiver.url("grpc").removeprefix("http://")
        with grpc.insecure_channel(target) as channel:
            export = channel.unary_unary(
                f"/{SERVICE}/Export", response_deserializer=ExportTraceServiceResponse.FromString
            )
            with pytest.raises(grpc.RpcError) as refused:
                export(b"\x0a" * (128 * 1024), timeout=120)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert receiver.stats.snapshot()["requests_stalled"] == 0
