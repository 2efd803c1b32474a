"""The receiver writes byte for byte the file the in-process pipeline writes, for the same spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from aura_otel.demo import run_pipeline
from aura_otel.schema import Stage

from .support import (
    demo_job_spans,
    encode,
    otlp_exporter,
    otlp_json_request,
    running_receiver,
    telemetry_bytes,
    two_ways,
)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("fail_at", [None, Stage.TTS])
def test_demo_job_is_byte_identical(tmp_path, monkeypatch, protocol, fail_at):
    with running_receiver(tmp_path / "received") as receiver:
        sender = two_ways(tmp_path / "local", otlp_exporter(receiver, protocol))
        # The demo uses the global tracer provider, as an application does.
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", sender.provider)
        try:
            run_pipeline("demo-job-1", speed=0.0, fail_at=fail_at)
        except Exception:
            assert fail_at is not None
        sender.flush()
        receiver.flush()
        sender.shutdown()
    local = telemetry_bytes(tmp_path / "local", "demo-job-1")
    assert telemetry_bytes(tmp_path / "received", "demo-job-1") == local


def _wire_twin(spans: list, stand_ins: list) -> Any:
    """The OTLP request of ``stand_ins`` (the same job with a value ``encode`` can hold in
    place of the odd one) carrying ``spans``' ids and times: the wire body of the very spans
    folded in-process, once the stand-in value's bytes are replaced."""
    request = encode(stand_ins)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for sent, span in zip(ss.spans, spans, strict=True):
                sent.trace_id = span.context.trace_id.to_bytes(16, "big")
                sent.span_id = span.context.span_id.to_bytes(8, "big")
                if span.parent is not None:
                    sent.parent_span_id = span.parent.span_id.to_bytes(8, "big")
                sent.start_time_unix_nano = span.start_time
                sent.end_time_unix_nano = span.end_time
    return request


def _received(jobs_dir: Path, body: bytes, content_type: str, job_id: str) -> bytes:
    """The file a real receiver writes for one OTLP/HTTP request (which it must accept)."""
    with running_receiver(jobs_dir, grpc=None) as receiver:
        response = httpx.post(
            receiver.url("http") + "/v1/traces",
            content=body,
            headers={"Content-Type": content_type},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        receiver.flush()
    return telemetry_bytes(jobs_dir, job_id)


#: What a JavaScript service sends for a string cut in the middle of an emoji: protobufjs
#: writes the lone surrogate as its three (invalid UTF-8) bytes, ``JSON.stringify`` as an escape.
_LONE_SURROGATE_ON_THE_WIRE = {"protobuf": b"\xed\xa0\xbd", "json": b"\\ud83d"}


@pytest.mark.parametrize("encoding", sorted(_LONE_SURROGATE_ON_THE_WIRE))
def test_a_lone_surrogate_costs_only_itself_as_in_process(tmp_path, encoding):
    """In-process, a lone surrogate becomes U+FFFD and everything else is written; received,
    the same string must not cost the whole request (a 400 is not retried: every span lost)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from aura_otel import RunTelemetryExporter
    from aura_otel.masking import MaskingSpanProcessor
    from aura_otel.pricing import load_price_table

    spans = demo_job_spans("cut-emoji-1", secret="clip-\ud83d.mp4")
    local = RunTelemetryExporter(tmp_path / "local", pricer=load_price_table(None))
    masking = MaskingSpanProcessor(SimpleSpanProcessor(local))
    for span in spans:
        masking.on_end(span)
    masking.force_flush()
    local.force_flush()
    expected = telemetry_bytes(tmp_path / "local", "cut-emoji-1")
    assert "clip-\ufffd.mp4".encode() in expected

    placeholder = "clip-@S@.mp4"  # as long as the surrogate's bytes: length prefixes hold
    request = _wire_twin(spans, demo_job_spans("cut-emoji-1", secret=placeholder))
    if encoding == "json":
        body, content_type = otlp_json_request(request), "application/json"
    else:
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    body = body.replace(b"@S@", _LONE_SURROGATE_ON_THE_WIRE[encoding])
    assert _received(tmp_path / "received", body, content_type, "cut-emoji-1") == expected


@pytest.mark.parametrize(
    "on_the_wire, value",
    [
        # What the JavaScript SDK sends for an integral number past int64 (it writes every
        # integral number as intValue): one odd value, not a reason to refuse the batch.
        (b"100000000000000000000", 10**20),
        (b"1e+21", 10**21),  # JSON.stringify's spelling from 1e21 on
        (b'"-9223372036854775809"', -(2**63) - 1),
    ],
)
def test_an_integer_past_int64_in_otlp_json_costs_only_itself(tmp_path, on_the_wire, value):
    """In-process, an integer JSON cannot hold as a number is written as its decimal string
    and everything else is kept; received as OTLP/JSON it must give the same file."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from aura_otel import RunTelemetryExporter
    from aura_otel.pricing import load_price_table

    spans = demo_job_spans("big-int-1", secret=value)
    local = RunTelemetryExporter(tmp_path / "local", pricer=load_price_table(None))
    processor = SimpleSpanProcessor(local)
    for span in spans:
        processor.on_end(span)
    local.force_flush()
    expected = telemetry_bytes(tmp_path / "local", "big-int-1")
    assert f'"{value}"'.encode() in expected

    request = _wire_twin(spans, demo_job_spans("big-int-1", secret=12345))
    body = otlp_json_request(request).replace(b'"intValue":"12345"', b'"intValue":' + on_the_wire)
    assert _received(tmp_path / "received", body, "application/json", "big-int-1") == expected
