"""JobMetrics and the OTLP metric exporter settings, read back through the SDK's real readers."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from aura_otel import conventions as c
from aura_otel.errors import ConfigurationError
from aura_otel.exporter import RunTelemetryExporter
from aura_otel.metrics import (
    OPERATION_DURATION_BUCKETS,
    TOKEN_USAGE_BUCKETS,
    JobMetrics,
    MetricsPipeline,
    make_otlp_metric_exporter,
)
from aura_otel.schema import record_dict

from .otlp_receivers import black_hole, http_receiver

pytestmark = pytest.mark.usefixtures("no_otel_env")


def _record(stage: str, **fields: Any) -> dict[str, Any]:
    base = {
        "job_id": "j",
        "correlation_id": "c",
        "stage": stage,
        "latency_ms": 1500,
        "result_status": "ok",
        "started_at": "2026-11-24T10:00:00Z",
        "ended_at": "2026-11-24T10:00:01.5Z",
    }
    return record_dict(**{**base, **fields})


def _collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


@pytest.fixture
def recorder() -> tuple[JobMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return JobMetrics(MeterProvider(metric_readers=[reader])), reader


def test_tokens_cost_and_duration_by_stage_provider_model(recorder: Any) -> None:
    metrics, reader = recorder
    metrics.record_collection(
        {
            "records": [
                _record(
                    "script",
                    provider="OpenAI",
                    model_id="gpt-4o",
                    tokens_in=100,
                    tokens_out=200,
                    cost_estimate=0.01,
                ),
                _record(
                    "script",
                    provider="OpenAI",
                    model_id="gpt-4o",
                    tokens_in=50,
                    tokens_out=10,
                    cost_estimate=0.02,
                ),
                _record("tts", provider="ElevenLabs", cost_estimate=0.03, retries=2),
                _record(
                    "visuals",
                    provider="StableDiffusion",
                    result_status="error",
                    error_code="TIMEOUT",
                    cost_estimate=0.05,
                    latency_ms=4000,
                ),
                _record("post"),  # no provider, no model, no usage: no GenAI measurement
            ]
        }
    )
    found = _collect(reader)
    tokens = {
        (p.attributes[c.STAGE], p.attributes[c.GEN_AI_TOKEN_TYPE]): p
        for p in found[c.METRIC_TOKEN_USAGE]
    }
    assert set(tokens) == {("script", "input"), ("script", "output")}
    assert (tokens[("script", "input")].sum, tokens[("script", "input")].count) == (150, 2)
    assert tokens[("script", "output")].sum == 210
    assert tokens[("script", "input")].attributes[c.GEN_AI_PROVIDER_NAME] == "OpenAI"
    assert tokens[("script", "input")].attributes[c.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert tuple(tokens[("script", "input")].explicit_bounds) == TOKEN_USAGE_BUCKETS

    cost = {p.attributes[c.STAGE]: p.value for p in found[c.METRIC_COST]}
    assert cost == {"script": pytest.approx(0.03), "tts": 0.03, "visuals": 0.05}

    durations = {p.attributes[c.STAGE]: p for p in found[c.METRIC_OPERATION_DURATION]}
    assert set(durations) == {"script", "tts", "visuals"}
    assert durations["visuals"].sum == 4.0
    assert durations["visuals"].attributes[c.ERROR_TYPE] == "TIMEOUT"
    assert c.ERROR_TYPE not in durations["tts"].attributes
    assert tuple(durations["tts"].explicit_bounds) == OPERATION_DURATION_BUCKETS


def test_costs_in_another_currency_are_not_added_to_the_usd_counter(recorder: Any) -> None:
    metrics, reader = recorder
    metrics.record(_record("tts", provider="x", cost_estimate=1.0, currency="EUR"))
    assert c.METRIC_COST not in _collect(reader)
    assert metrics.skipped_currency == 1


def test_pascal_case_records_are_labelled_in_lowercase(recorder: Any) -> None:
    metrics, reader = recorder
    metrics.record({**_record("script", provider="p", tokens_in=3), "stage": "Script"})
    point = _collect(reader)[c.METRIC_TOKEN_USAGE][0]
    assert point.attributes[c.STAGE] == "script"


def test_the_exporter_reports_each_finished_job_once(tmp_path: Any, recorder: Any) -> None:
    """Metrics follow the v1 file: child tokens folded into the stage, counted once."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    metrics, reader = recorder
    seen: list[str] = []

    def listener(job_id: str, collection: dict) -> None:
        seen.append(job_id)
        metrics.record_collection(collection)

    exporter = RunTelemetryExporter(tmp_path, write_interval=0, on_job_complete=listener)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(c.JOB_SPAN_NAME, attributes={c.JOB_ID: "j1"}):
        with tracer.start_as_current_span(
            "aura.stage.script", attributes={c.JOB_ID: "j1", c.STAGE: "script"}
        ):
            for _ in range(2):  # two LLM calls made by an instrumented client
                with tracer.start_as_current_span(
                    "chat gpt-4o",
                    attributes={
                        c.JOB_ID: "j1",
                        c.GEN_AI_PROVIDER_NAME: "openai",
                        c.GEN_AI_REQUEST_MODEL: "gpt-4o",
                        c.GEN_AI_USAGE_INPUT_TOKENS: 10,
                    },
                ):
                    pass
        exporter.force_flush()
        assert seen == []  # running jobs are not reported
    exporter.force_flush()
    exporter.force_flush()
    provider.shutdown()
    assert seen == ["j1"]
    points = _collect(reader)[c.METRIC_TOKEN_USAGE]
    assert [(p.attributes[c.STAGE], p.sum, p.count) for p in points] == [("script", 20, 1)]


def test_a_failing_listener_is_counted_and_the_file_still_written(tmp_path: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    def listener(job_id: str, collection: dict) -> None:
        raise RuntimeError("metrics backend bug")

    exporter = RunTelemetryExporter(tmp_path, write_interval=0, on_job_complete=listener)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span(
        c.JOB_SPAN_NAME, attributes={c.JOB_ID: "j2"}
    ):
        pass
    provider.shutdown()
    assert (tmp_path / "j2" / "telemetry.json").is_file()
    assert exporter.stats.snapshot()["listener_errors"] == 1


# -- exporter settings -----------------------------------------------------------------------------
def test_no_endpoint_no_metric_exporter() -> None:
    assert make_otlp_metric_exporter() is None


def test_a_traces_only_endpoint_does_not_enable_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    assert make_otlp_metric_exporter() is None


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4318/v1/metrics", "http://127.0.0.1:4318/v1/metrics"),
    ],
)
def test_an_endpoint_argument_is_a_base_url(argument: str, expected: str) -> None:
    exporter = make_otlp_metric_exporter(argument, "http/protobuf")
    assert isinstance(exporter, HttpMetrics)
    assert exporter._endpoint == expected


def test_protocol_and_endpoint_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert isinstance(make_otlp_metric_exporter(), GrpcMetrics)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    assert isinstance(make_otlp_metric_exporter(), HttpMetrics)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError, match="http/json"):
        make_otlp_metric_exporter()


def test_shutdown_against_a_black_hole_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter would wait 10 minutes for an answer; flush and shutdown give up on time
    (were they unbounded, the test would hit pytest's timeout)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "600")
    with black_hole() as hole:
        exporter = make_otlp_metric_exporter(hole.endpoint, "http/protobuf")
        assert exporter is not None
        pipeline = MetricsPipeline(
            exporter, export_interval_millis=60_000, shutdown_timeout_millis=200
        )
        pipeline.recorder.record(_record("script", provider="p", tokens_in=5))
        assert pipeline.force_flush() is False  # the backend never answered
        pipeline.shutdown()  # returns although the export still hangs
        assert pipeline.shutdown() is True  # idempotent
        pipeline.recorder.record(_record("script", provider="p", tokens_in=5))  # harmless after


@pytest.mark.parametrize("left_millis", [0.0, 5_000.0])
def test_no_shutdown_is_started_once_the_backend_took_the_whole_budget(
    left_millis: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the trace forwarding already waited the shared budget out, metrics start no
    shutdown that would still be talking to the backend while the interpreter exits (gRPC's
    core aborts the process then); with time left, the last metrics are sent."""
    from aura_otel import metrics
    from aura_otel.forwarding import SharedDeadline

    started: list[str] = []
    run_bounded = metrics.run_bounded

    def watched(target: Any, timeout_millis: float, name: str) -> bool:
        started.append(name)
        return run_bounded(target, timeout_millis, name)

    monkeypatch.setattr(metrics, "run_bounded", watched)  # observed, still run
    with http_receiver() as (endpoint, received):
        exporter = make_otlp_metric_exporter(endpoint, "http/protobuf")
        assert exporter is not None
        deadline = SharedDeadline()
        pipeline = MetricsPipeline(exporter, export_interval_millis=600_000, deadline=deadline)
        pipeline.recorder.record(_record("script", provider="p", tokens_in=5))
        with deadline.window(left_millis):
            finished = pipeline.shutdown()
        assert finished is (left_millis > 0)
        assert started == (["metrics-shutdown"] if left_millis else [])
        assert bool(received.metrics) is (left_millis > 0)
