"""OTLP/gRPC answers, with a real grpcio channel against a real receiver on 127.0.0.1."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from aura_otel.receiver.grpc import SERVICE

from .support import demo_job_spans, encode, journal_span_ids, running_receiver, telemetry


@pytest.fixture
def receiver(tmp_path):
    with running_receiver(
        tmp_path / "jobs", http=None, max_request_bytes=64 * 1024, max_decompressed_bytes=256 * 1024
    ) as r:
        yield r


def export(receiver, body: bytes, *, compression=None, metadata=()) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(
        receiver.url("grpc"), options=[("grpc.max_send_message_length", 256 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/Export",
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        return call(body, timeout=30, compression=compression, metadata=metadata)


def nothing_written(tmp_path) -> bool:
    jobs = tmp_path / "jobs"
    return not jobs.exists() or not [p for p in jobs.iterdir() if p.is_dir()]


def test_export_and_gzip(tmp_path, receiver):
    answer = export(receiver, encode(demo_job_spans("g-1")).SerializeToString())
    assert not answer.HasField("partial_success")
    zipped = export(
        receiver,
        encode(demo_job_spans("g-2")).SerializeToString(),
        compression=grpc.Compression.Gzip,
    )
    assert not zipped.HasField("partial_success")
    receiver.flush()
    assert telemetry(tmp_path / "jobs", "g-1")["summary"]["total_operations"] == 3
    assert telemetry(tmp_path / "jobs", "g-2")["summary"]["total_operations"] == 3


def test_malformed_is_invalid_argument_and_nothing_is_written(tmp_path, receiver):
    with pytest.raises(grpc.RpcError) as caught:
        export(receiver, b"\xff\xff\xff\xff not protobuf")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP" in caught.value.details()
    assert nothing_written(tmp_path)
    export(receiver, encode(demo_job_spans("after-1")).SerializeToString())  # still serving


def test_empty_request_is_valid(tmp_path, receiver):
    assert export(receiver, b"") == ExportTraceServiceResponse()
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_over_the_size_limit_is_resource_exhausted(tmp_path, receiver, compression):
    # Gzip: 1 MiB of one repeated secret compresses to a few KiB; the limit is on the inflated size.
    body = encode(demo_job_spans("big-1", secret="x" * (1024 * 1024))).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        export(receiver, body, compression=compression)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert nothing_written(tmp_path)
    export(receiver, encode(demo_job_spans("after-1")).SerializeToString())


def test_partial_success(tmp_path, receiver):
    answer = export(
        receiver, encode(demo_job_spans("ok-1") + demo_job_spans("bad/id")).SerializeToString()
    )
    assert answer.partial_success.rejected_spans == 4
    assert "unsafe aura.job.id" in answer.partial_success.error_message
    receiver.flush()
    assert len(journal_span_ids(tmp_path / "jobs", "ok-1")) == 4
