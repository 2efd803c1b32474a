"""ForwardingSpanProcessor against real OTLP exporters and real (working, refusing, silent)
endpoints on 127.0.0.1: spans reach a live backend, a dead one never holds up the job or the
v1 files, and every span that does not arrive is counted and reported."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from aura_otel import conventions as c
from aura_otel.exporter import RunTelemetryExporter
from aura_otel.forwarding import (
    ForwardingSpanProcessor,
    ForwardingStats,
    max_queue_size_from_env,
)

from .otlp_receivers import black_hole, grpc_receiver, http_receiver, refusing_endpoint

STAGES = ("brief", "plan", "script", "tts")


def _run_job(provider: TracerProvider, job_id: str, stages: Sequence[str] = STAGES) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(c.JOB_SPAN_NAME, attributes={c.JOB_ID: job_id}):
        for stage in stages:
            with tracer.start_as_current_span(
                f"{c.STAGE_SPAN_PREFIX}{stage}",
                attributes={c.JOB_ID: job_id, c.STAGE: stage, c.GEN_AI_USAGE_INPUT_TOKENS: 7},
            ):
                pass


class _Pipeline:
    """A TracerProvider with the v1 exporter and a forwarding processor, as configure() builds."""

    def __init__(self, jobs_dir: Path, forwarding: ForwardingSpanProcessor) -> None:
        self.v1 = RunTelemetryExporter(jobs_dir, write_interval=0)
        self.forwarding = forwarding
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.v1))
        self.provider.add_span_processor(forwarding)

    def v1_doc(self, job_id: str) -> dict:
        self.v1.force_flush()
        return json.loads((self.v1.store.root / job_id / "telemetry.json").read_text())


def _assert_complete(doc: dict, job_id: str, stages: Sequence[str] = STAGES) -> None:
    assert doc["job_id"] == job_id
    assert [r["stage"] for r in doc["records"]] == list(stages)
    assert doc["summary"]["total_operations"] == len(stages)
    assert "collection_ended_at" in doc


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


# -- a live backend ------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_reach_a_live_backend_and_are_counted(jobs_dir: Path, protocol: str) -> None:
    receiver = http_receiver if protocol == "http/protobuf" else grpc_receiver
    with receiver() as (endpoint, received):
        if protocol == "grpc":
            exporter: SpanExporter = GrpcSpanExporter(endpoint=endpoint, insecure=True)
        else:
            exporter = HttpSpanExporter(endpoint=f"{endpoint}/v1/traces")
        pipe = _Pipeline(jobs_dir, ForwardingSpanProcessor(exporter))
        _run_job(pipe.provider, "job-live")
        assert pipe.forwarding.force_flush()
        assert received.wait_for(lambda r: len(r.spans) == len(STAGES) + 1)
        pipe.provider.shutdown()
    names = sorted(s.name for s in received.spans)
    assert names == sorted([c.JOB_SPAN_NAME, *(f"aura.stage.{s}" for s in STAGES)])
    assert all(s.attributes[c.JOB_ID] == "job-live" for s in received.spans)
    stats = pipe.forwarding.stats()
    assert stats["spans_exported"] == len(STAGES) + 1
    assert stats["spans_failed"] == stats["spans_dropped"] == stats["spans_in_flight"] == 0
    _assert_complete(pipe.v1_doc("job-live"), "job-live")


# -- dead backends -------------------------------------------------------------------------------
def test_a_refusing_endpoint_loses_nothing_silently(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with refusing_endpoint() as endpoint:
        exporter = HttpSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=1)
        pipe = _Pipeline(jobs_dir, ForwardingSpanProcessor(exporter, schedule_delay_millis=10))
        _run_job(pipe.provider, "job-refused")
        _assert_complete(pipe.v1_doc("job-refused"), "job-refused")
        with caplog.at_level(logging.INFO, logger="aura_otel"):
            pipe.provider.shutdown()
    stats = pipe.forwarding.stats()
    total = len(STAGES) + 1
    assert stats["spans_exported"] == 0
    assert stats["spans_failed"] + stats["spans_dropped"] + stats["spans_in_flight"] == total
    assert stats["spans_failed"] > 0 and stats["export_failures"] > 0
    line = next(r for r in caplog.records if "OTLP forwarding" in r.getMessage())
    assert line.levelno == logging.WARNING
    assert f"failed={stats['spans_failed']}" in line.getMessage()


def test_a_black_holed_endpoint_never_holds_up_the_job_or_the_files(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The job ends and its file is complete while the backend has not answered anything."""
    with black_hole() as hole:
        exporter = HttpSpanExporter(endpoint=f"{hole.endpoint}/v1/traces", timeout=600)
        forwarding = ForwardingSpanProcessor(
            exporter, schedule_delay_millis=10, shutdown_timeout_millis=300
        )
        pipe = _Pipeline(jobs_dir, forwarding)
        for n in range(3):
            _run_job(pipe.provider, f"job-hole-{n}")
        for n in range(3):
            _assert_complete(pipe.v1_doc(f"job-hole-{n}"), f"job-hole-{n}")
        before = forwarding.stats()
        assert before["spans_exported"] == before["spans_failed"] == 0  # nothing answered yet
        assert forwarding.force_flush(timeout_millis=200) is False  # bounded, reports the miss
        with caplog.at_level(logging.INFO, logger="aura_otel"):
            pipe.provider.shutdown()  # returns although the export still hangs
    stats = forwarding.stats()
    total = 3 * (len(STAGES) + 1)
    assert stats["spans_exported"] == 0
    assert stats["spans_dropped"] + stats["spans_in_flight"] + stats["spans_failed"] == total
    message = next(r.getMessage() for r in caplog.records if "OTLP forwarding" in r.getMessage())
    assert "after waiting" in message and "exported=0" in message


def test_a_full_queue_drops_new_spans_and_counts_each(jobs_dir: Path) -> None:
    with black_hole() as hole:
        exporter = HttpSpanExporter(endpoint=f"{hole.endpoint}/v1/traces", timeout=600)
        forwarding = ForwardingSpanProcessor(
            exporter, max_queue_size=4, schedule_delay_millis=60_000, shutdown_timeout_millis=200
        )
        pipe = _Pipeline(jobs_dir, forwarding)
        stages = ("brief", "plan", "script", "ssml", "tts", "visuals", "render", "post")
        _run_job(pipe.provider, "job-burst", stages)
        stats = forwarding.stats()
        assert stats["spans_queued"] + stats["spans_dropped"] == len(stages) + 1
        assert stats["spans_queued"] <= 4 + stats["spans_in_flight"]
        assert stats["spans_dropped"] >= len(stages) + 1 - 8
        _assert_complete(pipe.v1_doc("job-burst"), "job-burst", stages)
        pipe.provider.shutdown()


class _Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("backend client bug")

    def shutdown(self) -> None:
        raise RuntimeError("and again")


def test_an_exporter_that_raises_is_contained_and_counted(jobs_dir: Path) -> None:
    forwarding = ForwardingSpanProcessor(_Raising(), schedule_delay_millis=10)
    pipe = _Pipeline(jobs_dir, forwarding)
    _run_job(pipe.provider, "job-raise")
    assert forwarding.force_flush()
    pipe.provider.shutdown()
    stats = forwarding.stats()
    assert stats["spans_failed"] == len(STAGES) + 1
    assert stats["export_failures"] >= 1
    _assert_complete(
        json.loads((jobs_dir / "job-raise" / "telemetry.json").read_text()), "job-raise"
    )


def test_spans_ending_after_shutdown_are_counted_as_dropped(jobs_dir: Path) -> None:
    forwarding = ForwardingSpanProcessor(_Raising())
    forwarding.shutdown()
    provider = TracerProvider()
    provider.add_span_processor(forwarding)
    provider.get_tracer("t").start_span("late").end()
    assert forwarding.stats()["spans_dropped"] == 1
    forwarding.shutdown()  # idempotent


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [("", 2048), ("64", 64), ("0", 2048), ("many", 2048)])
def test_queue_size_follows_otel_bsp_max_queue_size(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", raw)
    assert max_queue_size_from_env() == expected


def test_stats_are_consistent_under_concurrent_producers() -> None:
    stats = ForwardingStats()
    admitted: list[int] = []

    def produce() -> None:
        admitted.append(sum(stats.try_queue(100) for _ in range(1000)))

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert sum(admitted) == snap["spans_queued"] == 100
    assert snap["spans_dropped"] == 3900
    assert stats.abandon_unsent() == 100
    assert stats.snapshot()["spans_dropped"] == 4000 and stats.snapshot()["spans_pending"] == 0


@pytest.fixture(autouse=True)
def _no_global_otlp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_BSP_MAX_QUEUE_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
