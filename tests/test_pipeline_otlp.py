"""configure() with OTLP: forwarding and metrics through the standard OTEL_* variables or an
argument, against real OTLP receivers, refusing ports and black holes on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from aura_otel import Stage, configure, job, stage
from aura_otel import conventions as c
from aura_otel.pipeline import Telemetry

from .otlp_receivers import (
    Received,
    black_hole,
    grpc_receiver,
    http_receiver,
    refusing_endpoint,
)

pytestmark = pytest.mark.usefixtures("no_otel_env")


@pytest.fixture
def telemetries() -> Iterator[list[Telemetry]]:
    made: list[Telemetry] = []
    yield made
    for telemetry in made:
        telemetry.shutdown()


def _configure(
    tmp_path: Path, made: list[Telemetry], service_name: str = "studio", **kwargs: Any
) -> Telemetry:
    telemetry = configure(
        tmp_path / "jobs",
        tracer_provider=TracerProvider(resource=Resource.create({"service.name": service_name})),
        set_global=False,
        propagate_threads=False,
        write_interval=0,
        pricing=False,
        **kwargs,
    )
    made.append(telemetry)
    return telemetry


def _run_job(telemetry: Telemetry, job_id: str) -> None:
    """Three stages with GenAI usage and cost, one of them failing with a handled error."""
    with job(job_id, tracer_provider=telemetry.tracer_provider):
        with stage(Stage.SCRIPT, provider="openai", model="gpt-4o") as s:
            s.record_usage(tokens_in=1800, tokens_out=1200)
            s.set_cost(0.1)
        with stage(Stage.TTS, provider="elevenlabs", model="eleven_v2") as s:
            s.record_usage(characters=1200)
            s.set_cost(0.2)
        with stage(Stage.VISUALS, provider="openai", model="gpt-image-1") as s:
            s.set_result("error", "image refused", error_code="LLM_ERROR")


SPAN_NAMES = sorted(["aura.job", "aura.stage.script", "aura.stage.tts", "aura.stage.visuals"])


def _v1(telemetry: Telemetry, job_id: str) -> dict:
    telemetry.force_flush()
    assert telemetry.jobs_dir is not None
    return json.loads((Path(telemetry.jobs_dir) / job_id / "telemetry.json").read_text())


def _assert_complete(doc: dict, job_id: str) -> None:
    assert doc["job_id"] == job_id
    assert [r["stage"] for r in doc["records"]] == ["script", "tts", "visuals"]
    assert doc["summary"]["total_cost"] == 0.3
    assert "collection_ended_at" in doc


def _points(received: Received, name: str) -> list[Any]:
    with received.lock:
        return [p for _, points in received.metrics.get(name, []) for p in points]


def _attrs(point: Any) -> dict[str, Any]:
    from .otlp_receivers import any_value

    return {kv.key: any_value(kv.value) for kv in point.attributes}


# -- off by default ------------------------------------------------------------------------------
def test_no_endpoint_means_no_forwarding_no_metrics_no_error(
    tmp_path: Path, telemetries: list
) -> None:
    telemetry = _configure(tmp_path, telemetries)
    assert telemetry.forwarding is None and telemetry.metrics is None
    assert telemetry.forwarding_stats() == {}
    _run_job(telemetry, "job-local")
    _assert_complete(_v1(telemetry, "job-local"), "job-local")


def test_a_traces_only_endpoint_forwards_spans_but_exports_no_metrics(
    tmp_path: Path, telemetries: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{endpoint}/v1/traces")
        telemetry = _configure(tmp_path, telemetries)
        assert telemetry.forwarding is not None and telemetry.metrics is None
        _run_job(telemetry, "job-traces-only")
        telemetry.force_flush()
        assert received.wait_for(lambda r: len(r.spans) == len(SPAN_NAMES))
        telemetry.shutdown()


# -- a live backend through the standard variables -----------------------------------------------
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_env_endpoint_forwards_spans_and_metrics(
    tmp_path: Path, telemetries: list, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    receiver = http_receiver if protocol == "http/protobuf" else grpc_receiver
    with receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        if protocol == "grpc":
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        telemetry = _configure(tmp_path, telemetries, service_name="studio-api")
        _run_job(telemetry, "job-otlp")
        _assert_complete(_v1(telemetry, "job-otlp"), "job-otlp")
        assert received.wait_for(lambda r: len(r.spans) == len(SPAN_NAMES))
        assert received.wait_for(lambda r: c.METRIC_COST in r.metrics)
        telemetry.shutdown()

    assert sorted(s.name for s in received.spans) == SPAN_NAMES
    assert {s.attributes[c.JOB_ID] for s in received.spans} == {"job-otlp"}
    script = next(s for s in received.spans if s.name == "aura.stage.script")
    assert script.attributes[c.GEN_AI_USAGE_INPUT_TOKENS] == 1800
    stats = telemetry.forwarding_stats()
    assert stats["spans_exported"] == len(SPAN_NAMES)
    assert stats["spans_failed"] == stats["spans_dropped"] == 0

    tokens = {
        (a[c.STAGE], a[c.GEN_AI_TOKEN_TYPE]): p
        for p in _points(received, c.METRIC_TOKEN_USAGE)
        for a in [_attrs(p)]
    }
    assert tokens[("script", "input")].sum == 1800 and tokens[("script", "output")].sum == 1200
    assert _attrs(tokens[("script", "input")])[c.GEN_AI_PROVIDER_NAME] == "openai"
    assert list(tokens[("script", "input")].explicit_bounds)[:3] == [1, 4, 16]
    cost = {_attrs(p)[c.STAGE]: p.as_double for p in _points(received, c.METRIC_COST)}
    assert cost == {"script": pytest.approx(0.1), "tts": pytest.approx(0.2)}
    durations = {
        _attrs(p)[c.STAGE]: _attrs(p) for p in _points(received, c.METRIC_OPERATION_DURATION)
    }
    assert durations["visuals"][c.ERROR_TYPE] == "LLM_ERROR"
    assert c.ERROR_TYPE not in durations["script"]
    resource = received.spans[0].resource
    assert resource["service.name"] == "studio-api"


def test_metrics_go_out_with_the_resource_masked_as_the_spans_have_it(
    tmp_path: Path, telemetries: list
) -> None:
    key = "AKIAZ3X7Q2LMNP4RT6WK"
    resource = Resource.create({"service.name": "studio", "deployment.note": f"aws {key}"})
    with http_receiver() as (endpoint, received):
        telemetry = configure(
            tmp_path / "jobs",
            tracer_provider=TracerProvider(resource=resource),
            set_global=False,
            propagate_threads=False,
            write_interval=0,
            pricing=False,
            otlp_endpoint=endpoint,
        )
        telemetries.append(telemetry)
        _run_job(telemetry, "job-resource")
        telemetry.force_flush()
        assert received.wait_for(lambda r: c.METRIC_COST in r.metrics)
        assert received.wait_for(lambda r: len(r.spans) == len(SPAN_NAMES))
        telemetry.shutdown()
    with received.lock:
        metric_resources = list(received.metric_resources)
    span_resources = [s.resource for s in received.spans]
    assert metric_resources and span_resources
    for seen in [*metric_resources, *span_resources]:
        assert seen["deployment.note"] == "aws [REDACTED]"
        assert seen["service.name"] == "studio"


def test_headers_and_compression_come_from_the_standard_variables(
    tmp_path: Path, telemetries: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=studio-7,authorization=Api-Key%20k1"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        telemetry = _configure(tmp_path, telemetries)
        _run_job(telemetry, "job-headers")
        telemetry.force_flush()
        assert received.wait_for(lambda r: len(r.spans) == len(SPAN_NAMES))
        telemetry.shutdown()
    first = received.headers[0]
    assert first["x-tenant"] == "studio-7"
    assert first["authorization"] == "Api-Key k1"
    assert first["content-encoding"] == "gzip"


def test_an_endpoint_argument_works_without_any_variable(tmp_path: Path, telemetries: list) -> None:
    with http_receiver() as (endpoint, received):
        telemetry = _configure(tmp_path, telemetries, otlp_endpoint=endpoint)
        _run_job(telemetry, "job-arg")
        telemetry.force_flush()
        assert received.wait_for(lambda r: len(r.spans) == len(SPAN_NAMES))
        assert received.wait_for(lambda r: c.METRIC_TOKEN_USAGE in r.metrics)
        telemetry.shutdown()


def test_metrics_can_be_turned_off_with_the_standard_variable(
    tmp_path: Path, telemetries: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_receiver() as (endpoint, _received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        telemetry = _configure(tmp_path, telemetries)
        assert telemetry.forwarding is not None and telemetry.metrics is None
        assert _configure(tmp_path, telemetries, metrics=False).metrics is None
        for made in telemetries:
            made.shutdown()


# -- dead backends never slow the job or cost the v1 files ---------------------------------------
def test_a_refusing_endpoint_keeps_files_complete_and_counts_failures(
    tmp_path: Path,
    telemetries: list,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with refusing_endpoint() as endpoint:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        telemetry = _configure(tmp_path, telemetries, otlp_shutdown_timeout=3)
        for n in range(3):
            _run_job(telemetry, f"job-refused-{n}")
        for n in range(3):
            _assert_complete(_v1(telemetry, f"job-refused-{n}"), f"job-refused-{n}")
        with caplog.at_level(logging.INFO, logger="aura_otel"):
            telemetry.shutdown()
    stats = telemetry.forwarding_stats()
    assert stats["spans_exported"] == 0
    assert stats["spans_failed"] + stats["spans_dropped"] + stats["spans_in_flight"] == 3 * len(
        SPAN_NAMES
    )
    assert stats["export_failures"] >= 1
    lines = [r.getMessage() for r in caplog.records if "OTLP forwarding" in r.getMessage()]
    assert lines and f"failed={stats['spans_failed']}" in lines[0]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_black_holed_endpoint_never_holds_up_the_job(
    tmp_path: Path, telemetries: list, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """Jobs end and their files are complete while the backend has answered nothing at all."""
    with black_hole() as hole:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hole.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        # The exporter would wait 10 minutes: an unbounded flush or shutdown hits pytest's timeout.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "600")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        telemetry = _configure(tmp_path, telemetries, otlp_shutdown_timeout=0.3)
        for n in range(5):
            _run_job(telemetry, f"job-hole-{n}")
        for n in range(5):
            _assert_complete(_v1(telemetry, f"job-hole-{n}"), f"job-hole-{n}")
        stats = telemetry.forwarding_stats()
        assert stats["spans_exported"] == stats["spans_failed"] == 0  # no answer, ever
        telemetry.shutdown()  # bounded: returns although exports still hang
    stats = telemetry.forwarding_stats()
    assert stats["spans_exported"] == 0
    total = 5 * len(SPAN_NAMES)
    assert stats["spans_dropped"] + stats["spans_in_flight"] + stats["spans_failed"] == total


@pytest.mark.parametrize("bad", [-1, float("nan"), "5", True])
def test_a_negative_shutdown_budget_is_a_configuration_error(
    tmp_path: Path, telemetries: list, bad: float
) -> None:
    from aura_otel.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="otlp_shutdown_timeout"):
        _configure(
            tmp_path, telemetries, otlp_endpoint="http://127.0.0.1:9", otlp_shutdown_timeout=bad
        )


def test_a_bad_setting_after_the_metrics_starts_nothing(tmp_path: Path, telemetries: list) -> None:
    import threading

    from aura_otel.errors import ConfigurationError

    before = {t.ident for t in threading.enumerate()}
    with http_receiver() as (endpoint, received):
        with pytest.raises(ConfigurationError, match="enum case"):
            _configure(tmp_path, telemetries, otlp_endpoint=endpoint, enum_case="shouting")
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not [t for t in leftover if "Metric" in t.name or "aura-otel" in t.name], leftover
    assert not received.metrics
