"""The operation drill-down and trace links, on jobs written by a real TracerProvider.

Spans go through the real masking processor and exporter into a jobs folder; a real server on
127.0.0.1 serves it. Nothing between the span and the page is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel import job, stage
from aura_otel.errors import ConfigurationError
from aura_otel.pricing import load_price_table
from aura_otel.server import create_app

from ..conftest import Pipeline, make_pipeline
from ..server_support import live_server

SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


class ProviderDown(Exception):
    error_code = "LLM_ERROR"


def _produce(p: Pipeline, job_id: str) -> None:
    tracer = p.provider.get_tracer("test-http-client")
    with job(job_id, project_id="studio", tracer_provider=p.provider):
        with stage("script", provider="openai", model="gpt-4o") as s:
            s.set_response_model("gpt-4o-2024-08-06")
            with tracer.start_as_current_span("POST /v1/chat/completions"):
                with tracer.start_as_current_span("chat gpt-4o") as llm:
                    llm.set_attribute("gen_ai.provider.name", "openai")
                    llm.set_attribute("gen_ai.request.model", "gpt-4o")
                    llm.set_attribute("gen_ai.usage.input_tokens", 1200)
                    llm.set_attribute("gen_ai.usage.output_tokens", 300)
            s.add_retry()
            s.set_metadata(rag_enabled=True)
        with pytest.raises(ProviderDown), stage("tts", provider="elevenlabs", model="eleven_v2"):
            raise ProviderDown(f"quota exceeded for key {SECRET}")


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    forwarded = make_pipeline(root, downstream=InMemorySpanExporter(), pricer=load_price_table())
    _produce(forwarded, "job-forwarded")
    forwarded.flush()
    forwarded.provider.shutdown()
    local = make_pipeline(root, pricer=load_price_table())
    _produce(local, "job-local")
    local.flush()
    local.provider.shutdown()
    return root


@pytest.fixture(scope="module")
def http(jobs_dir: Path) -> Iterator[httpx.Client]:
    template = "http://tempo.local:3000/explore?left=%7B%22queries%22:%5B%7B%22query%22:%22{trace_id}%22%7D%5D%7D"
    with live_server(jobs_dir, trace_url=template) as base, httpx.Client(base_url=base) as client:
        yield client


def _ops(http: httpx.Client, job_id: str) -> list[dict]:
    doc = http.get(f"/api/telemetry/{job_id}").json()
    return [http.get(f"/api/telemetry/{job_id}/ops/{n}").json() for n in range(len(doc["records"]))]


def test_a_stage_shows_its_calls_models_usage_and_rate(http: httpx.Client) -> None:
    script = _ops(http, "job-forwarded")[0]
    fields = script["fields"]
    assert fields["Provider"] == "openai"
    assert fields["Requested model"] == "gpt-4o"
    assert fields["Response model"] == "gpt-4o-2024-08-06"
    assert fields["Tokens in"] == "1,200" and fields["Tokens out"] == "300"
    assert fields["Retries"] == "1"
    assert script["metadata"]["rag_enabled"] == "true"
    # Priced by the shipped table at fold time, and the rate it used is named.
    assert any(line.startswith("Priced by table") for line in script["pricing"])
    assert any("per 1M tokens" in line for line in script["pricing"])
    names = [c["name"] for c in script["calls"]]
    assert names == ["POST /v1/chat/completions", "chat gpt-4o"]
    llm = script["calls"][1]
    assert (llm["provider"], llm["model"], llm["tokensIn"], llm["tokensOut"]) == (
        "openai",
        "gpt-4o",
        1200,
        300,
    )
    assert llm["durationMs"] >= 0 and llm["offsetMs"] >= 0


def test_a_failed_stage_shows_the_masked_exception_and_stack(http: httpx.Client) -> None:
    tts = _ops(http, "job-forwarded")[1]
    assert tts["fields"]["Error code"] == "LLM_ERROR"
    assert tts["error"]["type"].endswith("ProviderDown")
    assert "quota exceeded" in tts["error"]["message"]
    assert "Traceback" in tts["error"]["stack"] and "_produce" in tts["error"]["stack"]
    page = http.get("/jobs/job-forwarded/telemetry/ops/1").text
    assert SECRET not in page and SECRET not in http.get("/jobs/job-forwarded/telemetry").text
    assert 'id="op-error"' in page


def test_the_v1_file_has_no_new_fields(jobs_dir: Path) -> None:
    doc = orjson.loads((jobs_dir / "job-forwarded" / "telemetry.json").read_bytes())
    assert set(doc) == {
        "version",
        "job_id",
        "correlation_id",
        "collection_started_at",
        "collection_ended_at",
        "records",
        "summary",
    }
    assert "stack" not in str(doc) and "response_model" not in str(doc)


def test_trace_link_only_for_forwarded_jobs(http: httpx.Client, jobs_dir: Path) -> None:
    forwarded = http.get("/jobs/job-forwarded/telemetry").text
    local = http.get("/jobs/job-local/telemetry").text
    assert forwarded.count('class="button trace-link"') == 1
    assert (
        "http://tempo.local:3000/explore?left=" in forwarded
        and "Open trace in tempo.local" in forwarded
    )
    assert 'class="trace-id"' in local and "trace-link" not in local  # id shown, never linked


def test_operation_page_errors(http: httpx.Client) -> None:
    assert http.get("/jobs/job-forwarded/telemetry/ops/99").status_code == 404
    assert http.get("/api/telemetry/job-forwarded/ops/99").status_code == 404
    assert http.get("/jobs/..%2Fetc/telemetry/ops/0").status_code == 400
    assert http.get("/jobs/no-such-job/telemetry/ops/0").status_code == 404


def test_the_run_page_links_every_operation_without_javascript(http: httpx.Client) -> None:
    html = http.get("/jobs/job-forwarded/telemetry").text
    for n in (0, 1):
        assert f'href="/jobs/job-forwarded/telemetry/ops/{n}"' in html
        assert f'id="op-template-{n}"' in html


@pytest.mark.parametrize("url", ["http://x/trace", "ftp://x/{trace_id}", "{trace_id}"])
def test_a_bad_trace_template_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_app(tmp_path, trace_url=url)


def test_how_each_cost_came_about() -> None:
    from aura_otel.server.operation import operation

    prices = load_price_table()
    base = {
        "stage": "script",
        "latency_ms": 1,
        "result_status": "ok",
        "started_at": "2026-11-20T10:00:00Z",
        "ended_at": "2026-11-20T10:00:01Z",
    }
    cases = {
        "explicit": {**base, "cost_estimate": 0.5, "metadata": {"pricing": "explicit"}},
        "cache": {
            **base,
            "cost_estimate": 0.0,
            "cache_hit": True,
            "metadata": {"pricing": "cache_hit", "cost_saved": 0.02},
        },
        "unpriced": {
            **base,
            "provider": "openai",
            "model_id": "no-such-model",
            "tokens_in": 5,
            "metadata": {"pricing": "unpriced"},
        },
        "legacy": {**base, "cost_estimate": 0.01},
        "nothing": dict(base),
    }
    doc = {"job_id": "j", "records": list(cases.values())}
    said = {name: operation(doc, {}, n, prices).pricing for n, name in enumerate(cases)}
    assert said["explicit"][0].startswith("Explicit cost")
    assert said["cache"] == [
        "Cache hit: no provider was paid, so the cost is $0.",
        "Saved $0.0200 (what the price table would have charged).",
    ]
    assert "no-such-model" in said["unpriced"][1] and prices.version in said["unpriced"][1]
    assert said["legacy"][0].startswith("Cost as the file states it")
    assert said["nothing"][0].startswith("No cost")
    with pytest.raises(IndexError):
        operation(doc, {}, 5, prices)
