"""``kill -9`` of the receiver mid-stream: after a restart, every acknowledged span is in its
job's file. The receiver is the real ``aura-otel collect`` command in its own process."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aura_otel import conventions as c

from .support import CollectProcess

SPANS_PER_REQUEST = 6
REQUESTS_PER_JOB = 4


def request_for(n: int) -> tuple[bytes, str, list[str]]:
    """Request ``n``: stage spans of job ``n // 4`` (its root in every fourth), each marked."""
    job = n // REQUESTS_PER_JOB
    job_id = f"dur-{job}"
    trace_id = (job + 1).to_bytes(16, "big")
    root_id = ((job + 1) << 32).to_bytes(8, "big")
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    marks = []
    for i in range(SPANS_PER_REQUEST):
        mark = f"{n}-{i}"
        marks.append(mark)
        span = spans.add(
            trace_id=trace_id,
            span_id=(((job + 1) << 32) + n * 100 + i + 1).to_bytes(8, "big"),
            parent_span_id=root_id,
            name="aura.stage.visuals",
            start_time_unix_nano=10**18 + n * 1000 + i,
            end_time_unix_nano=10**18 + n * 1000 + i + 1,
        )
        span.attributes.extend(
            [
                KeyValue(key=c.JOB_ID, value=AnyValue(string_value=job_id)),
                KeyValue(key=c.STAGE, value=AnyValue(string_value="visuals")),
                KeyValue(key="aura.meta.mark", value=AnyValue(string_value=mark)),
            ]
        )
    if n % REQUESTS_PER_JOB == REQUESTS_PER_JOB - 1:
        root = spans.add(
            trace_id=trace_id,
            span_id=root_id,
            name=c.JOB_SPAN_NAME,
            start_time_unix_nano=10**18,
            end_time_unix_nano=10**18 + 10**9,
        )
        root.attributes.append(KeyValue(key=c.JOB_ID, value=AnyValue(string_value=job_id)))
    return request.SerializeToString(), job_id, marks


@pytest.mark.parametrize("write_interval", ["0.25", "3600"])
def test_kill_9_mid_stream_then_restart_loses_nothing_acknowledged(tmp_path, write_interval):
    """With a write interval of an hour the first process never writes a journal or a file:
    everything the second one shows comes from the write-ahead log the first one synced before
    acknowledging."""
    jobs_dir = tmp_path / "jobs"
    first = CollectProcess(jobs_dir, "--write-interval", write_interval)
    acknowledged: dict[str, set[str]] = {}
    answered = threading.Event()
    count = [0]

    def stream() -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while True:
                body, job_id, marks = request_for(n)
                try:
                    response = client.post(
                        first.http_url + "/v1/traces",
                        content=body,
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                except httpx.TransportError:
                    return  # the receiver died under this request: it acknowledged nothing
                if response.status_code != 200:
                    return
                acknowledged.setdefault(job_id, set()).update(marks)
                count[0] += 1
                if count[0] >= 40:
                    answered.set()
                n += 1

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        assert answered.wait(120), "the receiver acknowledged fewer than 40 requests"
    finally:
        first.kill9()  # mid-stream: the sender is still posting
    sender.join(60)
    assert not sender.is_alive()
    if write_interval == "3600":  # only the write-ahead log holds the spans
        assert not list(jobs_dir.glob("*/telemetry.json"))
        assert not list(jobs_dir.glob("*/.aura-units.jsonl"))

    # The killed receiver's log: what it acknowledged and had not yet journaled and synced.
    dead = set(jobs_dir.glob(".aura-receiver-wal.*"))
    assert dead
    second = CollectProcess(jobs_dir)  # replays before it listens (and prints its addresses)
    try:
        # It replayed the dead log and removed it; the one segment left is its own.
        (own,) = jobs_dir.glob(".aura-receiver-wal.*")
        assert own not in dead
        missing = []
        for job_id, marks in acknowledged.items():
            doc = orjson.loads((jobs_dir / job_id / "telemetry.json").read_bytes())
            found = {r["metadata"]["mark"] for r in doc["records"]}
            missing += sorted(marks - found)
            if len(marks) == SPANS_PER_REQUEST * REQUESTS_PER_JOB:  # its root was acknowledged
                assert doc["collection_ended_at"] is not None, job_id
        assert missing == []
        assert count[0] >= 40
        # And it keeps serving: the stream continues where it stopped.
        body, job_id, _ = request_for(10_000)
        response = httpx.post(
            second.http_url + "/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        assert second.stop() == 0
    assert not list(jobs_dir.glob(".aura-receiver-wal.*"))  # a clean stop leaves nothing to replay
