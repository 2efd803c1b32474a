"""Real receivers and real senders for the receiver tests.

A receiver here is the real :class:`FoldReceiver` on 127.0.0.1 with ports picked by the kernel,
stopped by its context manager. A sender is a real ``TracerProvider`` whose spans go both to
the in-process pipeline (stamping, masking, the v1 exporter) and, unmasked, through a real OTLP
exporter to the receiver: the same spans, folded both ways.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from aura_otel import JobContextProcessor, RunTelemetryExporter
from aura_otel.masking import MaskingSpanProcessor
from aura_otel.pricing import load_price_table
from aura_otel.receiver import FoldReceiver, ReceiverConfig, create_receiver

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


class ManualClock:
    """The receiver's clock, stepped by the test: quiet periods and timeouts without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running_receiver(
    jobs_dir: Path, *, clock: Any = None, **settings: Any
) -> Iterator[FoldReceiver]:
    settings.setdefault("http", "127.0.0.1:0")
    settings.setdefault("grpc", "127.0.0.1:0")
    config = ReceiverConfig(jobs_dir=str(jobs_dir), **settings)
    receiver = create_receiver(config, **({"clock": clock} if clock is not None else {}))
    with receiver:
        yield receiver


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


def otlp_exporter(receiver: FoldReceiver, protocol: str, **kwargs: Any) -> SpanExporter:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=receiver.url("grpc"), insecure=True, **kwargs)
    return HttpSpanExporter(endpoint=receiver.url("http") + "/v1/traces", **kwargs)


@dataclass
class TwoWays:
    """One TracerProvider; its spans folded in-process into ``local_dir`` and sent over OTLP."""

    provider: TracerProvider
    local: RunTelemetryExporter
    local_dir: Path
    otlp: BatchSpanProcessor

    def flush(self) -> None:
        self.provider.force_flush()
        self.local.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


def two_ways(local_dir: Path, exporter: SpanExporter, service_name: str = "worker") -> TwoWays:
    # As configure() builds it: the shipped price table, as the receiver uses by default.
    local = RunTelemetryExporter(local_dir, pricer=load_price_table(None))
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(
        MaskingSpanProcessor(BatchSpanProcessor(local, schedule_delay_millis=50))
    )
    otlp = BatchSpanProcessor(exporter, schedule_delay_millis=50)
    provider.add_span_processor(otlp)
    return TwoWays(provider, local, local_dir, otlp)


def telemetry_bytes(jobs_dir: Path, job_id: str) -> bytes:
    return (jobs_dir / job_id / "telemetry.json").read_bytes()


def telemetry(jobs_dir: Path, job_id: str) -> dict[str, Any]:
    return orjson.loads(telemetry_bytes(jobs_dir, job_id))


def journal_span_ids(jobs_dir: Path, job_id: str) -> set[str]:
    from aura_otel.store import JobStore

    return set(JobStore(jobs_dir).read_journal(job_id))


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    """Readiness only (a process started, a request arrived): a generous bound, never a pace."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class CollectProcess:
    """``aura-otel collect`` as a real subprocess (for kill -9 and the command itself)."""

    def __init__(
        self,
        jobs_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aura_otel.cli",
                "collect",
                "--jobs-dir",
                str(jobs_dir),
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self.http_url = self.grpc_target = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("OTLP/HTTP listening on "):
                    self.http_url = line.split(" on ", 1)[1].strip().removesuffix("/v1/traces")
                elif line.startswith("OTLP/gRPC listening on "):
                    self.grpc_target = line.split(" on ", 1)[1].strip()
                if self.http_url and self.grpc_target:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not (self.http_url and self.grpc_target):
            self.proc.kill()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"aura-otel collect did not start: {self.lines} {stderr}")

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


# -- spans made by the real SDK, encoded by the real OTLP encoder --------------------------------
def record_spans(build: Any, service_name: str = "worker") -> list[Any]:
    """Run ``build(tracer)`` under a real provider (with job-id stamping); its finished spans."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests.receiver"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def encode(spans: list[Any]) -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans)


def otlp_json(spans: list[Any]) -> bytes:
    """The OTLP/JSON body for ``spans``: protobuf JSON with hex ids, as the spec writes it."""
    return otlp_json_request(encode(spans))


def otlp_json_request(request: Any) -> bytes:
    """The OTLP/JSON body for an ``ExportTraceServiceRequest``."""
    import base64

    from google.protobuf import json_format

    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        link[key] = base64.b64decode(link[key]).hex()
    return orjson.dumps(doc)


def demo_job_spans(
    job_id: str,
    *,
    root: bool = True,
    stages: tuple[str, ...] = ("brief", "script", "tts"),
    secret: str | None = None,
) -> list[Any]:
    """A small job's spans (root last, as a job ends), via the real SDK."""
    from aura_otel import conventions as c

    def build(tracer: Any) -> None:
        attrs = {c.JOB_ID: job_id, c.CORRELATION_ID: f"corr-{job_id}"}
        if not root:
            # The stages of a job whose root never arrives: parent them to a span nobody sends.
            from opentelemetry import trace as api

            parent = api.set_span_in_context(
                api.NonRecordingSpan(
                    api.SpanContext(
                        0x1F2E3D4C5B6A79881F2E3D4C5B6A7988,
                        0x0123456789ABCDEF,
                        True,
                        api.TraceFlags(api.TraceFlags.SAMPLED),
                    )
                )
            )
            for i, name in enumerate(stages):
                with tracer.start_as_current_span(
                    f"aura.stage.{name}",
                    context=parent,
                    attributes={**attrs, c.STAGE: name, "aura.meta.seq": i},
                ):
                    pass
            return
        with tracer.start_as_current_span(c.JOB_SPAN_NAME, attributes=attrs):
            for i, name in enumerate(stages):
                extra = {"aura.meta.note": secret} if secret else {}
                with tracer.start_as_current_span(
                    f"aura.stage.{name}",
                    attributes={
                        c.STAGE: name,
                        c.GEN_AI_PROVIDER_NAME: "openai",
                        c.GEN_AI_REQUEST_MODEL: "gpt-4o",
                        c.GEN_AI_USAGE_INPUT_TOKENS: 100 + i,
                        c.GEN_AI_USAGE_OUTPUT_TOKENS: 50 + i,
                        "aura.meta.seq": i,
                        **extra,
                    },
                ):
                    pass

    return record_spans(build)


def stop_writer(book) -> None:
    """Stop the book's writer thread only: requests are still taken (and logged), and the
    test writes the rounds itself, so nothing depends on when the writer would have run."""
    book._stopped.set()
    book.write_soon()
    book._thread.join(60)
    assert not book._thread.is_alive()


def post_job(receiver: FoldReceiver, job_id: str) -> httpx.Response:
    """The demo job's spans, as one OTLP/HTTP protobuf request."""
    return httpx.post(
        receiver.url("http") + "/v1/traces",
        content=encode(demo_job_spans(job_id)).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=120,
    )


def folded_units(spans: list[Any]) -> dict[str, Any]:
    """``spans`` as the fold makes them, units by span id: what a receiver's log and a
    job's journal hold."""
    from aura_otel.fold import fold_span

    units: dict[str, Any] = {}
    for span in spans:
        item = fold_span(span)
        assert item is not None
        units[item.span_id] = item.unit
    return units
