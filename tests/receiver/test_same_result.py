"""The receiver writes byte for byte the file the in-process pipeline writes, for the same spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from aura_otel.demo import run_pipeline
from aura_otel.schema import Stage

from .support import otlp_exporter, running_receiver, telemetry_bytes, two_ways


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
