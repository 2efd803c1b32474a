"""The token rule of the web server, applied to the receiver: loopback by default; any other
address only with an access token, which every request must present as a bearer token."""

from __future__ import annotations

import subprocess
import sys

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from aura_otel.errors import ConfigurationError
from aura_otel.receiver import ReceiverConfig, create_receiver

from .support import SRC, demo_job_spans, encode, otlp_exporter, running_receiver, telemetry

TOKEN = "s3cret-receiver-token-0123456789"


@pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.10:4318", "[::]:0"])
def test_a_network_address_needs_a_token(tmp_path, address):
    with pytest.raises(ConfigurationError, match="access token"):
        create_receiver(ReceiverConfig(jobs_dir=str(tmp_path), http=address, grpc=None))
    with pytest.raises(ConfigurationError, match="access token"):
        create_receiver(ReceiverConfig(jobs_dir=str(tmp_path), http=None, grpc=address))
    # With a token the same settings are accepted (not started: tests bind 127.0.0.1 only).
    create_receiver(
        ReceiverConfig(jobs_dir=str(tmp_path), http=address, grpc=None, access_token=TOKEN)
    ).ingestor.masking.shutdown()


def test_the_command_refuses_a_network_address_without_a_token(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aura_otel.cli",
            "collect",
            "--jobs-dir",
            str(tmp_path),
            "--http",
            "0.0.0.0:0",
            "--grpc",
            "off",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "refusing to listen on '0.0.0.0'" in result.stderr
    assert "AURA_OTEL_ACCESS_TOKEN" in result.stderr


def test_an_empty_token_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="empty"):
        create_receiver(ReceiverConfig(jobs_dir=str(tmp_path), access_token="  "))


@pytest.mark.parametrize("token", [" padded-token-123", "padded-token-123 ", "pässwort-123456"])
def test_a_token_no_header_can_carry_is_a_configuration_error(tmp_path, token):
    """It would be accepted at start and then never match: refused at start instead."""
    with pytest.raises(ConfigurationError, match="visible ASCII"):
        create_receiver(ReceiverConfig(jobs_dir=str(tmp_path), access_token=token))


def test_every_request_must_carry_the_token(tmp_path):
    body = encode(demo_job_spans("tok-1")).SerializeToString()
    with running_receiver(tmp_path / "jobs", access_token=TOKEN) as receiver:
        url = receiver.url("http") + "/v1/traces"
        proto = {"Content-Type": "application/x-protobuf"}
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            response = httpx.post(url, content=body, headers={**proto, **headers})
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert not (tmp_path / "jobs" / "tok-1").exists()

        # gRPC: the same rule, from the metadata.
        spans = demo_job_spans("tok-2")
        refused = otlp_exporter(receiver, "grpc", timeout=10)
        assert refused.export(spans) is SpanExportResult.FAILURE
        refused.shutdown()
        with grpc.insecure_channel(receiver.url("grpc")) as channel:
            call = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=None,
                response_deserializer=None,
            )
            with pytest.raises(grpc.RpcError) as caught:
                call(body, timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # Real exporters with the header (what OTEL_EXPORTER_OTLP_HEADERS sets) get through.
        header = {"authorization": f"Bearer {TOKEN}"}
        for protocol, job_id in (("http", "tok-3"), ("grpc", "tok-4")):
            exporter = otlp_exporter(receiver, protocol, headers=header)
            assert exporter.export(demo_job_spans(job_id)) is SpanExportResult.SUCCESS
            exporter.shutdown()
        receiver.flush()
        assert telemetry(tmp_path / "jobs", "tok-3")["summary"]["total_operations"] == 3
        assert telemetry(tmp_path / "jobs", "tok-4")["summary"]["total_operations"] == 3
        assert receiver.counters()["requests_unauthorized"] == 6
