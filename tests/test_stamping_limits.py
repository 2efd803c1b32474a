"""Stamping writes the job's ids into a new span exactly as ``Span.set_attributes`` would.

The stamping processor puts the ids straight into the span's attribute dict when the SDK's
path would do nothing more; under span limits (a full span, a length limit that cuts the id)
it must take the SDK's own path, with the SDK's outcome: dropped counts, cut values.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel import JobContextProcessor

JOB = {"aura.job.id": "job-stamp-1", "aura.correlation.id": "corr-0123456789"}


def _child_of_job(
    limits: SpanLimits | None, stamping: bool, **child_attrs: str
) -> tuple[dict, int]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits) if limits else TracerProvider()
    if stamping:
        provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("aura.job", attributes=JOB):
        with tracer.start_as_current_span("child", attributes=child_attrs or None):
            pass
    child = next(s for s in memory.get_finished_spans() if s.name == "child")
    return dict(child.attributes), child.dropped_attributes


def _sdk_outcome(limits: SpanLimits | None, **child_attrs: str) -> tuple[dict, int]:
    """What ``set_attributes`` of the same ids gives, without the stamping processor."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits) if limits else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span(
        "child", attributes=child_attrs or None
    ) as span:
        span.set_attributes(JOB)
    child = memory.get_finished_spans()[0]
    return dict(child.attributes), child.dropped_attributes


def test_stamps_match_the_sdk_path_without_limits() -> None:
    assert _child_of_job(None, True, a="1") == _sdk_outcome(None, a="1")


def test_a_full_span_drops_its_oldest_attributes_as_the_sdk_does() -> None:
    limits = SpanLimits(max_span_attributes=2)
    assert _child_of_job(limits, True, a="1", b="2") == _sdk_outcome(limits, a="1", b="2")


def test_a_length_limit_cuts_the_stamped_ids_as_the_sdk_does() -> None:
    limits = SpanLimits(max_span_attribute_length=6)
    attrs, dropped = _child_of_job(limits, True)
    assert (attrs, dropped) == _sdk_outcome(limits)
    assert attrs["aura.job.id"] == "job-st"
