"""Overload is answered "retry later" (429 + Retry-After, RESOURCE_EXHAUSTED + RetryInfo), and
the real OTLP exporters obey: they wait, retry, and their spans end up in the file.

The receiver admits one request at a time here; a request whose body the test sends in two
halves holds that slot for exactly as long as the test wants, so the overload is deterministic.
"""

from __future__ import annotations

import socket
import threading

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from .support import demo_job_spans, encode, otlp_exporter, running_receiver, telemetry, wait_for


class HeldRequest:
    """A POST whose body is only half sent: it occupies an admission slot until released."""

    def __init__(self, receiver, body: bytes) -> None:
        host, port = receiver.addresses["http"]
        self.sock = socket.create_connection((host, port), timeout=60)
        self.body = body
        head = (
            f"POST /v1/traces HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def release(self) -> bytes:
        self.sock.sendall(self.body[len(self.body) // 2 :])
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(65536)
        self.sock.close()
        return answer


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_real_exporter_retries_until_the_receiver_has_room(tmp_path, protocol):
    with running_receiver(
        tmp_path / "jobs", max_concurrent_requests=1, retry_after_seconds=1
    ) as receiver:
        held = HeldRequest(receiver, encode(demo_job_spans("held-1")).SerializeToString())
        wait_for(lambda: receiver.counters()["requests_in_flight"] == 1, "the held request")

        exporter = otlp_exporter(receiver, protocol, timeout=60)
        outcome: list[SpanExportResult] = []
        sender = threading.Thread(
            target=lambda: outcome.append(exporter.export(demo_job_spans("retry-1")))
        )
        sender.start()
        refused = "requests_refused_overload"
        wait_for(lambda: receiver.counters()[refused] >= 1, "the exporter to be told to retry")
        assert not outcome  # it has not given up: it waits for the Retry-After / RetryInfo delay

        assert held.release().startswith(b"HTTP/1.1 200")
        sender.join(120)
        assert outcome == [SpanExportResult.SUCCESS]
        exporter.shutdown()
        receiver.flush()
        assert telemetry(tmp_path / "jobs", "retry-1")["summary"]["total_operations"] == 3
        assert telemetry(tmp_path / "jobs", "held-1")["summary"]["total_operations"] == 3
        assert receiver.counters()["requests_refused_overload"] >= 1


def test_the_refusal_itself(tmp_path):
    import httpx

    with running_receiver(
        tmp_path / "jobs", grpc=None, max_concurrent_requests=1, retry_after_seconds=7
    ) as receiver:
        held = HeldRequest(receiver, encode(demo_job_spans("held-2")).SerializeToString())
        wait_for(lambda: receiver.counters()["requests_in_flight"] == 1, "the held request")
        response = httpx.post(
            receiver.url("http") + "/v1/traces",
            content=b"",
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        held.release()
