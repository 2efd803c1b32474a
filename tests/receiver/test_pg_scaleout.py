"""Scale-out on one machine: two ``aura-otel collect`` receivers sharing one PostgreSQL.

A test-side splitter plays the Collector's load-balancing exporter: each job's spans go to one
receiver chosen by a hash of its id, and some jobs' spans (as after a change of the backend
list) go to both, a few of them twice. The union in PostgreSQL must equal, byte for byte, what
a single receiver writes for the same spans. Every answer is read straight after the 200:
what a receiver acknowledged is already committed.
"""

from __future__ import annotations

import zlib

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel import JobContextProcessor
from aura_otel.demo import run_pipeline
from aura_otel.schema import Stage
from aura_otel.stores.postgres import PostgresStore

from .support import CollectProcess, encode, running_receiver, telemetry_bytes, wait_for

PROTOBUF = {"content-type": "application/x-protobuf"}
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
FAILS = [None, Stage.TTS, None, Stage.RENDER, None, Stage.SCRIPT, None, None]


def demo_spans(monkeypatch: pytest.MonkeyPatch, job_ids: list[str]) -> dict[str, list]:
    """Each demo job's finished spans, by job id, made by the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "studio"}))
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    spans: dict[str, list] = {}
    for n, job_id in enumerate(job_ids):
        memory.clear()
        try:
            run_pipeline(job_id, speed=0.0, fail_at=FAILS[n % len(FAILS)])
        except Exception:
            assert FAILS[n % len(FAILS)] is not None
        spans[job_id] = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def post(url: str, spans: list) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/traces", content=encode(spans).SerializeToString(), headers=PROTOBUF, timeout=60
    )


def split(job_ids: list[str], spans: dict[str, list]) -> tuple[list[list], list[list], set[str]]:
    """Requests for receiver 0 and 1: by hash of the job id; every third job to both."""
    batches: tuple[list[list], list[list]] = ([], [])
    both = set()
    for n, job_id in enumerate(job_ids):
        job_spans = spans[job_id]
        if n % 3 == 0:
            both.add(job_id)
            # Rerouted mid-job: alternate spans to each, and the first three to both.
            for i, span in enumerate(job_spans):
                batches[i % 2].append([span])
            batches[1].append(job_spans[:3])
        else:
            target = zlib.crc32(job_id.encode()) % 2
            for i in range(0, len(job_spans), 4):
                batches[target].append(job_spans[i : i + 4])
    return batches[0], batches[1], both


def test_two_receivers_one_database_equal_one_receiver(tmp_path, monkeypatch, pg_url):
    job_ids = [f"scale-{n:02d}" for n in range(12)]
    spans = demo_spans(monkeypatch, job_ids)
    # The reference: one receiver (the folder store) given every span.
    with running_receiver(tmp_path / "single") as single:
        for job_id in job_ids:
            assert post(single.url("http"), spans[job_id]).status_code == 200
        single.flush()
    receivers = [CollectProcess(tmp_path / "unused", "--store", pg_url) for _ in range(2)]
    try:
        first, second, both = split(job_ids, spans)
        assert both and len(first) > 3 and len(second) > 3
        for one, other in zip(first, second, strict=False):  # interleaved, as in production
            assert post(receivers[0].http_url, one).status_code == 200
            assert post(receivers[1].http_url, other).status_code == 200
        for rest in first[len(second) :]:
            assert post(receivers[0].http_url, rest).status_code == 200
        for rest in second[len(first) :]:
            assert post(receivers[1].http_url, rest).status_code == 200
        # Read at once: an acknowledged span is already committed (no flush, no waiting).
        with PostgresStore(pg_url, migrate=False) as store:
            for job_id in job_ids:
                assert store.read_bytes(job_id) == telemetry_bytes(tmp_path / "single", job_id), (
                    job_id
                )
                assert len(store.read_units(job_id)) == len(spans[job_id])
            assert sorted(store.job_ids()) == job_ids
    finally:
        for receiver in receivers:
            assert receiver.stop() == 0
    assert not (tmp_path / "unused").exists()  # nothing went to a jobs folder


def grpc_export(target: str, body: bytes) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Export",
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        return call(body, timeout=60)


def test_database_slow_or_down_is_retryable_and_recovers(tmp_path, monkeypatch, pg_cluster, pg_url):
    import psycopg

    spans = demo_spans(monkeypatch, ["slow-job", "down-job", "later-job"])
    receiver = CollectProcess(tmp_path / "unused", "--store", pg_url, "--store-timeout", "2")
    try:
        assert post(receiver.http_url, spans["slow-job"][:2]).status_code == 200
        # Slow: another session holds the job's row, so the write cannot finish in time.
        with psycopg.connect(pg_url) as blocker:
            blocker.execute("SELECT 1 FROM aura_otel.jobs WHERE job_id = 'slow-job' FOR UPDATE")
            answer = post(receiver.http_url, spans["slow-job"][2:])
            assert answer.status_code == 503 and answer.headers["retry-after"]
            with pytest.raises(grpc.RpcError) as err:
                grpc_export(receiver.grpc_target, encode(spans["slow-job"][2:]).SerializeToString())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            blocker.rollback()
        assert post(receiver.http_url, spans["slow-job"][2:]).status_code == 200  # the retry
        with PostgresStore(pg_url, migrate=False) as store:
            assert len(store.read_units("slow-job")) == len(spans["slow-job"])

        # Down: the whole cluster stops; nothing is acknowledged, and it comes back by itself.
        pg_cluster.stop()
        try:
            answer = post(receiver.http_url, spans["down-job"])
            assert answer.status_code == 503 and answer.headers["retry-after"]
            with pytest.raises(grpc.RpcError) as err:
                grpc_export(receiver.grpc_target, encode(spans["down-job"]).SerializeToString())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            pg_cluster.start()
        answers: list[int] = []

        def accepted() -> bool:  # a sender retrying, as OTLP exporters do after a 503
            answers.append(post(receiver.http_url, spans["down-job"]).status_code)
            return answers[-1] == 200

        wait_for(accepted, "the receiver to store again after PostgreSQL returned")
        assert set(answers) <= {200, 503}
        assert (
            grpc_export(receiver.grpc_target, encode(spans["later-job"]).SerializeToString())
            is not None
        )
        with PostgresStore(pg_url, migrate=False) as store:
            assert len(store.read_units("down-job")) == len(spans["down-job"])
            assert len(store.read_units("later-job")) == len(spans["later-job"])
    finally:
        assert receiver.stop() == 0


def test_workers_share_the_store(tmp_path, monkeypatch, pg_url):
    """``--workers 2`` with ``--store``: each worker process writes PostgreSQL, none a folder."""
    spans = demo_spans(monkeypatch, ["worker-a", "worker-b", "worker-c"])
    receiver = CollectProcess(tmp_path / "unused", "--store", pg_url, "--workers", "2")
    try:
        for job_spans in spans.values():
            assert post(receiver.http_url, job_spans).status_code == 200
        with PostgresStore(pg_url, migrate=False) as store:
            for job_id, job_spans in spans.items():
                assert len(store.read_units(job_id)) == len(job_spans)
    finally:
        assert receiver.stop() == 0
    assert not (tmp_path / "unused").exists()
