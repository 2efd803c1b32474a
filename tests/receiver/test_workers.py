"""``aura-otel collect --workers 2``: two receiver processes on the same ports, one jobs folder.

Jobs whose requests reach different workers still become one complete file each; a clean stop
leaves the marker; a killed supervisor takes its workers with it and the next start loses
nothing that was acknowledged.
"""

from __future__ import annotations

import socket

import httpx
import orjson
from opentelemetry.sdk.trace.export import SpanExportResult

from aura_otel import conventions as c

from .support import CollectProcess, demo_job_spans, encode, wait_for


def _refused(host_port: tuple[str, int]) -> bool:
    try:
        socket.create_connection(host_port, timeout=5).close()
    except OSError:
        return True
    return False


def test_two_workers_fold_jobs_split_across_them(tmp_path):
    jobs_dir = tmp_path / "jobs"
    receiver = CollectProcess(jobs_dir, "--workers", "2")
    try:
        assert any("2 workers" in line for line in receiver.lines)
        # Each job's stages and root go in separate requests on fresh connections, so the
        # kernel may hand them to either worker.
        for n in range(12):
            spans = demo_job_spans(f"w-{n}")
            for part in (
                [s for s in spans if s.name != c.JOB_SPAN_NAME],
                [s for s in spans if s.name == c.JOB_SPAN_NAME],
            ):
                response = httpx.post(
                    receiver.http_url + "/v1/traces",
                    content=encode(part).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
                    timeout=30,
                )
                assert response.status_code == 200
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=receiver.grpc_target, insecure=True, timeout=30)
        assert exporter.export(demo_job_spans("w-grpc")) is SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        assert receiver.stop() == 0  # SIGTERM: every worker writes its files, then exits
    assert not list(jobs_dir.glob(".aura-receiver-wal.*"))
    for job_id in [f"w-{n}" for n in range(12)] + ["w-grpc"]:
        doc = orjson.loads((jobs_dir / job_id / "telemetry.json").read_bytes())
        assert doc["summary"]["total_operations"] == 3, job_id


def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path):
    jobs_dir = tmp_path / "jobs"
    first = CollectProcess(jobs_dir, "--workers", "2", "--write-interval", "3600")
    try:
        body = encode(demo_job_spans("k-1")).SerializeToString()
        response = httpx.post(
            first.http_url + "/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        first.kill9()
    host, port = first.http_url.removeprefix("http://").rsplit(":", 1)
    wait_for(lambda: _refused((host, int(port))), "the workers to stop with their supervisor")

    second = CollectProcess(jobs_dir, "--workers", "2")
    try:
        doc = orjson.loads((jobs_dir / "k-1" / "telemetry.json").read_bytes())
        assert doc["summary"]["total_operations"] == 3
    finally:
        assert second.stop() == 0
