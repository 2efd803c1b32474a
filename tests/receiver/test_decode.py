"""Decoding a sender's trace state: W3C syntax kept, anything else dropped without a log line."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aura_otel.receiver.decode import to_spans


def _decode(trace_state: str):
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x05" * 16, b"\x06" * 8, "s"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    span.trace_state = trace_state
    (decoded,) = to_spans(request).spans
    return decoded.context.trace_state


def test_a_valid_trace_state_is_kept_member_by_member() -> None:
    state = _decode("congo=t61rcWkgMzE, rojo@vendor=00f067aa0ba902b7,,")
    assert list(state.items()) == [("congo", "t61rcWkgMzE"), ("rojo@vendor", "00f067aa0ba902b7")]


@pytest.mark.parametrize(
    "header",
    [
        "vendor=ok,x\nLOG aura_otel.receiver ERROR: forged line from a sender",
        "Upper=1",
        "a=1,a=2",
        ",".join(f"k{i}=v" for i in range(33)),
        "k=" + "v" * 300,
    ],
)
def test_an_invalid_trace_state_is_dropped_and_never_logged(
    header: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert not list(_decode(header).items())
    assert [r.getMessage() for r in caplog.records] == []
