"""Forwarding the masked spans never holds up the receiver: a black-holed forward endpoint
(accepts connections, never answers) costs neither an answer nor a file, and what it never got
is counted."""

from __future__ import annotations

import httpx

from aura_otel.exporter import was_forwarded
from aura_otel.store import JobStore

from ..otlp_receivers import black_hole
from .support import demo_job_spans, encode, running_receiver, telemetry


def test_a_black_holed_forward_target_blocks_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "16")  # a small queue: overflow is counted
    with black_hole() as hole:
        with running_receiver(
            tmp_path / "jobs", grpc=None, forward_endpoint=hole.endpoint
        ) as receiver:
            # One request: its 40 spans reach the forwarder at once, so at most 16 queued and 16
            # in flight can be taken, whatever the machine's pace; the rest is dropped.
            spans = [s for n in range(10) for s in demo_job_spans(f"fw-{n}")]
            response = httpx.post(
                receiver.url("http") + "/v1/traces",
                content=encode(spans).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
                timeout=60,
            )
            assert response.status_code == 200
            receiver.flush()
            for n in range(10):
                assert telemetry(tmp_path / "jobs", f"fw-{n}")["summary"]["total_operations"] == 3
                # The journal says the job was forwarded: the server offers its trace link.
                assert was_forwarded(JobStore(tmp_path / "jobs").read_journal(f"fw-{n}"))
            forwarding = receiver.counters()["forwarding"]
            assert forwarding["spans_exported"] == 0
            assert forwarding["spans_dropped"] > 0  # the queue overflowed: counted, not waited for
            assert forwarding["spans_queued"] + forwarding["spans_dropped"] == 40
        # stop() returned: the forwarding shutdown is bounded whatever the target does.
        final = receiver.counters()["forwarding"]
        assert final["spans_exported"] == 0
        assert final["spans_dropped"] + final["spans_failed"] + final["spans_in_flight"] == 40
