"""End to end: every corpus secret, in every location of a span, through a real TracerProvider
to both real exporters. Nothing may survive in the v1 files, nor in what the OTLP exporter sent
to a real HTTP receiver on 127.0.0.1 (decoded with opentelemetry-proto)."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.exporter import RunTelemetryExporter
from aura_otel.masking import MaskingRules, MaskingSpanProcessor

from .corpus import BENIGN, secrets

SECRETS = secrets()
STAGES = ["brief", "plan", "script", "ssml", "tts", "visuals", "render", "post"]
JOB_ID = "job-e2e-0001"
#: A correlation id that looks exactly like a secret (32 hex digits): structural, so it survives.
CORRELATION_ID = "0123456789abcdef0123456789abcdef"


class _Receiver:
    """A minimal OTLP/HTTP traces endpoint: keeps every request body, raw and decoded."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.requests: list[ExportTraceServiceRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.bodies.append(body)
                receiver.requests.append(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    with _Receiver() as r:
        yield r


def _proto_strings(message: Message) -> Iterator[str]:
    """Every string field, at any depth, of a decoded protobuf message (keys included)."""
    for field, value in message.ListFields():
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:  # protobuf < 5
            repeated = field.label == FieldDescriptor.LABEL_REPEATED
        values = value if repeated else [value]
        for item in values:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _proto_strings(item)
            elif field.type == FieldDescriptor.TYPE_STRING:
                yield item


def _json_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _json_strings(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _json_strings(value)


def _emit(provider: TracerProvider, texts: list[str]) -> tuple[int, str]:
    """One stage span per text, the text in every location. Returns (trace id, its hex)."""
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span(
        c.JOB_SPAN_NAME, attributes={c.JOB_ID: JOB_ID, c.CORRELATION_ID: CORRELATION_ID}
    ) as root:
        trace_hex = f"{root.get_span_context().trace_id:032x}"
        for i, text in enumerate(texts):
            stage = STAGES[i % len(STAGES)]
            link = trace_api.Link(root.get_span_context(), {"link.note": text, f"link.{text}": "k"})
            with tracer.start_as_current_span(f"aura.stage.{stage} {text}", links=[link]) as span:
                span.set_attributes(
                    {
                        c.JOB_ID: JOB_ID,
                        c.CORRELATION_ID: CORRELATION_ID,
                        c.STAGE: stage,
                        "aura.meta.note": text,
                        f"aura.meta.{text}": "value under a secret key",
                        "aura.meta.list": ["plain", text],
                        "aura.meta_json.nested": json.dumps(
                            {"a": {"b": [text, 1]}, text: "x", "note": text}
                        ),
                        c.FALLBACK_REASON: text,
                        c.GEN_AI_REQUEST_MODEL: text,
                        c.RESULT_MESSAGE: text,
                        "custom.attribute": text,
                    }
                )
                span.add_event(text, {"detail": text, "nested.list": [text]})
                try:
                    raise RuntimeError(f"provider refused: {text}")
                except RuntimeError as exc:
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"failed: {text}"))
                span.set_attribute("late.attribute", text)  # set after everything else
        with tracer.start_as_current_span("aura.stage.post") as span:
            span.set_attributes(
                {
                    c.JOB_ID: JOB_ID,
                    c.STAGE: "post",
                    c.RESULT_MESSAGE: f"see trace {trace_hex} for job {JOB_ID}",
                }
            )
    return root.get_span_context().trace_id, trace_hex


def _run(tmp_path: Path, receiver: _Receiver, texts: list[str], resource_texts: list[str]):
    jobs_dir = tmp_path / "jobs"
    v1 = RunTelemetryExporter(jobs_dir, write_interval=0.05)
    otlp = OTLPSpanExporter(endpoint=receiver.endpoint, timeout=10)
    resource = Resource(
        {
            "service.name": "e2e",
            **{f"corpus.{i}": t for i, t in enumerate(resource_texts)},
            **{f"corpus.name.{t}": "k" for t in resource_texts[:50]},
        }
    )
    provider = TracerProvider(resource=resource)
    processor = MaskingSpanProcessor(v1, otlp, rules=MaskingRules(), mask_logs=False)
    provider.add_span_processor(processor)
    try:
        trace_id, trace_hex = _emit(provider, texts)
        assert provider.force_flush(30_000)
        v1.force_flush()
    finally:
        provider.shutdown()
    return jobs_dir, processor, trace_id, trace_hex


def test_no_corpus_secret_survives_in_v1_files_or_otlp(tmp_path: Path, receiver: _Receiver) -> None:
    texts = [s.text for s in SECRETS]
    jobs_dir, processor, trace_id, trace_hex = _run(tmp_path, receiver, texts, texts)
    stats = processor.stats()
    assert stats["spans_dropped"] == 0

    # -- the v1 side: every file the exporter wrote, raw and as decoded JSON strings
    files = [p for p in jobs_dir.rglob("*") if p.is_file()]
    assert (jobs_dir / JOB_ID / "telemetry.json") in files
    v1_strings: list[str] = []
    v1_raw = b""
    for path in files:
        raw = path.read_bytes()
        v1_raw += raw
        for line in raw.splitlines() or [raw]:
            try:
                v1_strings.extend(_json_strings(orjson.loads(line)))
            except orjson.JSONDecodeError:
                pass
        try:
            v1_strings.extend(_json_strings(orjson.loads(raw)))
        except orjson.JSONDecodeError:
            pass
    v1_text = "\n".join(v1_strings)

    # -- the OTLP side: the decoded requests and the raw bodies
    assert receiver.requests, "the OTLP exporter sent nothing"
    proto_text = "\n".join(s for r in receiver.requests for s in _proto_strings(r))
    proto_raw = b"".join(receiver.bodies)

    leaks = []
    for secret in SECRETS:
        for needle in secret.needles:
            encoded = needle.encode()
            if needle in v1_text or encoded in v1_raw:
                leaks.append(("v1", secret.rule, needle))
            if needle in proto_text or encoded in proto_raw:
                leaks.append(("otlp", secret.rule, needle))
    assert leaks == []

    # -- and what must survive did
    doc = orjson.loads((jobs_dir / JOB_ID / "telemetry.json").read_bytes())
    assert doc["job_id"] == JOB_ID
    assert doc["correlation_id"] == CORRELATION_ID
    assert len(doc["records"]) == len(texts) + 1
    assert all(r["correlation_id"] == CORRELATION_ID for r in doc["records"])
    assert doc["records"][-1]["message"] == f"see trace {trace_hex} for job {JOB_ID}"
    assert all(
        r["message"] == "[REDACTED]" or "[REDACTED]" in r["message"] for r in doc["records"][:-1]
    )
    spans = [
        s
        for r in receiver.requests
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert len(spans) == len(texts) + 2
    assert {s.trace_id for s in spans} == {trace_id.to_bytes(16, "big")}
    assert CORRELATION_ID in proto_text and JOB_ID in proto_text


def test_benign_corpus_survives_end_to_end(tmp_path: Path, receiver: _Receiver) -> None:
    jobs_dir, processor, _, _ = _run(tmp_path, receiver, BENIGN, BENIGN)
    doc = orjson.loads((jobs_dir / JOB_ID / "telemetry.json").read_bytes())
    records = doc["records"][:-1]
    assert [r["metadata"]["note"] for r in records] == BENIGN
    assert [r["fallback_reason"] for r in records] == BENIGN
    assert [r["message"] for r in records] == BENIGN
    assert [json.loads(json.dumps(r["metadata"]["nested"]))["note"] for r in records] == BENIGN
    resource = receiver.requests[0].resource_spans[0].resource
    values = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert [values[f"corpus.{i}"] for i in range(len(BENIGN))] == BENIGN
    spans = [
        s
        for r in receiver.requests
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    stage_spans = [s for s in spans if s.name.startswith("aura.stage.") and s.events]
    assert [s.name.split(" ", 1)[1] for s in stage_spans] == BENIGN
    assert [s.events[0].name for s in stage_spans] == BENIGN
    assert [s.status.message for s in stage_spans] == [f"failed: {b}" for b in BENIGN]
    assert processor.stats()["values_failed_closed"] == 0


def test_configure_installs_masking_on_both_paths(
    tmp_path: Path, receiver: _Receiver, monkeypatch
) -> None:
    """The default wiring: ``configure()`` puts masking in front of the v1 files and OTLP, and
    reads extra rules from the environment."""
    from aura_otel.pipeline import configure

    monkeypatch.setenv(c.ENV_MASK_EXTRA_PATTERNS, '["ACME-[0-9]{6}"]')
    base = receiver.endpoint.removesuffix("/v1/traces")
    telemetry = configure(
        tmp_path / "jobs",
        otlp_endpoint=base,
        tracer_provider=TracerProvider(),
        set_global=False,
        propagate_threads=False,
        metrics=False,
        pricing=False,
    )
    sample = [s for s in SECRETS if s.rule in ("openai", "pem", "email", "key_value")][:12]
    texts = [s.text for s in sample] + ["customer ACME-123456 complained"]
    try:
        _emit(telemetry.tracer_provider, texts)
        assert telemetry.force_flush(30_000)
    finally:
        telemetry.shutdown()
    v1_raw = b"".join(p.read_bytes() for p in (tmp_path / "jobs").rglob("*") if p.is_file())
    proto_text = "\n".join(s for r in receiver.requests for s in _proto_strings(r))
    assert receiver.requests and v1_raw
    for needle in [n for s in sample for n in s.needles] + ["ACME-123456"]:
        assert needle.encode() not in v1_raw
        assert needle not in proto_text
