"""RunTelemetryExporter(downstream=...): a user's own TracerProvider gets the v1 files and a
trace backend from one masking processor and one exporter, without configure()."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from aura_otel import (
    JobContextProcessor,
    MaskingSpanProcessor,
    RunTelemetryExporter,
    Stage,
    job,
    stage,
)
from aura_otel import conventions as c

from .otlp_receivers import black_hole, http_receiver


def _provider(exporter: RunTelemetryExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(MaskingSpanProcessor(exporter))
    return provider


def _job(provider: TracerProvider, job_id: str) -> None:
    with job(job_id, tracer_provider=provider):
        with stage(Stage.SCRIPT, provider="openai", model="gpt-4o") as s:
            s.record_usage(tokens_in=10, tokens_out=20)
        with stage(Stage.RENDER):
            pass


def test_every_received_span_is_forwarded_and_written(tmp_path: Path) -> None:
    with http_receiver() as (endpoint, received):
        exporter = RunTelemetryExporter(
            tmp_path, downstream=OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
        )
        provider = _provider(exporter)
        _job(provider, "job-own-provider")
        provider.force_flush()
        assert exporter.force_flush()  # pushes the downstream queue now, not on its next tick
        assert received.wait_for(lambda r: len(r.spans) == 3)
        provider.shutdown()
    assert sorted(s.name for s in received.spans) == [
        "aura.job",
        "aura.stage.render",
        "aura.stage.script",
    ]
    assert {s.attributes[c.JOB_ID] for s in received.spans} == {"job-own-provider"}
    doc = json.loads((tmp_path / "job-own-provider" / "telemetry.json").read_text())
    assert [r["stage"] for r in doc["records"]] == ["script", "render"]
    stats = exporter.forwarding_stats()
    assert stats["spans_exported"] == 3 and stats["spans_failed"] == stats["spans_dropped"] == 0


def test_a_dead_downstream_costs_nothing_but_counted_spans(tmp_path: Path) -> None:
    with black_hole() as hole:
        downstream = OTLPSpanExporter(endpoint=f"{hole.endpoint}/v1/traces", timeout=600)
        exporter = RunTelemetryExporter(tmp_path, downstream=downstream)
        provider = _provider(exporter)
        _job(provider, "job-dead-backend")
        provider.force_flush(timeout_millis=300)
        exporter.force_flush(timeout_millis=300)
        doc = json.loads((tmp_path / "job-dead-backend" / "telemetry.json").read_text())
        assert doc["summary"]["total_operations"] == 2
        assert exporter.forwarding_stats()["spans_exported"] == 0
        provider.shutdown()
    stats = exporter.forwarding_stats()
    assert stats["spans_dropped"] + stats["spans_in_flight"] + stats["spans_failed"] == 3
    assert exporter.stats.snapshot()["spans_received"] == 3


def test_without_downstream_there_is_nothing_to_count(tmp_path: Path) -> None:
    exporter = RunTelemetryExporter(tmp_path)
    assert exporter.forwarding_stats() == {}
    exporter.shutdown()
