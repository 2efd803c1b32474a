"""One job, every view, the same figures.

The job is made by a real TracerProvider and the real exporter with the shipped price table,
and holds every case the views used to disagree on: a ``brief`` stage with nothing to price, a
priced stage, a cache hit (free, with a saving), a stage the table cannot price, and an error.
It is then read through the terminal view, the Run Details page, the job list and both HTTP
APIs on a real server, and each view must show what :mod:`aura_otel.figures` says.
"""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.trace import Status, StatusCode
from rich.console import Console

from aura_otel import conventions as c
from aura_otel import figures, legacy, terminal
from aura_otel.pricing import shipped_price_table
from aura_otel.schema import load_collection, parse_timestamp_ns, to_dict

from .conftest import Pipeline, make_pipeline
from .server_support import collection, live_server, record, write_doc

JOB = "job-figures"


def at(text: str) -> int:
    return parse_timestamp_ns(f"2026-11-20T{text}Z")


@pytest.fixture
def job(tmp_path: Path) -> Pipeline:
    pipeline = make_pipeline(tmp_path / "jobs", pricer=shipped_price_table())
    tracer = pipeline.provider.get_tracer("figures")
    from opentelemetry import trace

    root = tracer.start_span("aura.job", start_time=at("10:00:00"), attributes={c.JOB_ID: JOB})
    ctx = trace.set_span_in_context(root)

    def stage(name: str, start: str, end: str, error: bool = False, **attrs: object) -> None:
        span = tracer.start_span(
            f"aura.stage.{name}",
            context=ctx,
            start_time=at(start),
            attributes={c.STAGE: name, **attrs},
        )
        if error:
            span.set_status(Status(StatusCode.ERROR, "render timed out"))
        span.end(end_time=at(end))

    stage("brief", "10:00:00.1", "10:00:00.2")
    stage(
        "script",
        "10:00:00.2",
        "10:00:02.2",
        **{
            c.GEN_AI_PROVIDER_NAME: "openai",
            c.GEN_AI_REQUEST_MODEL: "gpt-4o",
            c.GEN_AI_USAGE_INPUT_TOKENS: 1000,
            c.GEN_AI_USAGE_OUTPUT_TOKENS: 500,
        },
    )
    stage(
        "plan",
        "10:00:02.2",
        "10:00:02.3",
        **{
            c.GEN_AI_PROVIDER_NAME: "openai",
            c.GEN_AI_REQUEST_MODEL: "gpt-4o",
            c.GEN_AI_USAGE_INPUT_TOKENS: 1000,
            c.GEN_AI_USAGE_OUTPUT_TOKENS: 500,
            c.CACHE_HIT: True,
        },
    )
    stage(
        "tts",
        "10:00:02.3",
        "10:00:05.3",
        **{c.GEN_AI_PROVIDER_NAME: "NewVoice", c.USAGE_CHARACTERS: 1200},
    )
    stage("render", "10:00:05.3", "10:00:09.3", error=True, **{"error.type": "TIMEOUT"})
    root.end(end_time=at("10:00:10"))
    pipeline.flush()
    yield pipeline
    pipeline.provider.shutdown()


def test_every_view_shows_the_same_figures(job: Pipeline) -> None:
    doc = job.read(JOB)
    head = figures.headline(doc)
    # What the figures are, in words: the brief stage is neither priced nor unpriced, the cache
    # hit is free and saved what the script cost, one stage is unpriced, one failed.
    assert head["status"] == "failed"
    assert head["unpriced"] == 1 and head["operations"] == 5
    script, plan = doc["records"][1], doc["records"][2]
    assert head["record_costs"] == [
        "N/A",
        figures.money(script["cost_estimate"]),
        "$0.0000",
        "unpriced",
        "N/A",
    ]
    assert head["saved"] == script["cost_estimate"] > 0
    assert plan["metadata"] == {"pricing": "cache_hit", "cost_saved": script["cost_estimate"]}
    assert head["total_cost"] == figures.money(script["cost_estimate"])

    # The terminal.
    out = io.StringIO()
    terminal.render(doc, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert f"{head['total_cost']} + 1 unpriced" in text
    assert head["success_rate"] in text and head["latency"] in text
    assert "FAILED" in text
    stage_rows = {
        line.split("│")[1].strip(): line
        for line in text.splitlines()
        if line.count("│") > 5
        and line.split("│")[1].strip() in {"brief", "script", "plan", "tts", "render"}
    }
    for rec, cost in zip(doc["records"], head["record_costs"], strict=True):
        assert cost in stage_rows[rec["stage"]].split("│")[4], rec["stage"]

    with live_server(job.jobs_dir) as base, httpx.Client(base_url=base, timeout=10) as http:
        # The v1 API and the legacy report.
        api = http.get(f"/api/telemetry/{JOB}").json()
        assert figures.headline(api) == head
        report = http.get(f"/api/cost-tracking/run-summary/{JOB}").json()
        assert report["totalCost"] == api["summary"]["total_cost"] == script["cost_estimate"]
        assert report["tokenStats"]["costSavedByCache"] == head["saved"]
        assert report["tokenStats"]["cacheHits"] == head["cache_hits"] == 1
        assert [op["cost"] for op in report["operations"]] == [
            rec.get("cost_estimate") or 0 for rec in api["records"]
        ]
        assert "provisional" not in report
        # The job list.
        row = http.get("/api/jobs").json()["items"][0]
        assert (
            row["status"],
            row["unpricedOperations"],
            row["totalCost"],
            row["operationCount"],
        ) == (head["status"], head["unpriced"], report["totalCost"], head["operations"])
        listing = html.unescape(http.get("/jobs").text)
        assert f"{head['total_cost']} +1 unpriced" in re.sub(r"<[^>]+>", "", listing)
        assert ">Failed<" in listing
        # The Run Details page.
        page = html.unescape(http.get(f"/jobs/{JOB}/telemetry").text)
    cards = dict(
        re.findall(
            r'data-card="(\w+)">\s*<span class="card-label">[^<]*</span>\s*'
            r'<span class="card-value">([^<]*)</span>',
            page,
        )
    )
    assert cards == {
        "operations": str(head["operations"]),
        "success": head["success_rate"],
        "cost": head["total_cost"],
        "latency": head["latency"],
        "elapsed": head["elapsed"],
        "tokens": figures.count(head["tokens"]),
        "cache": str(head["cache_hits"]),
    }
    costs = [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r'<td data-column="cost"[^>]*>(.*?)</td>', page)
    ]
    assert costs == head["record_costs"]
    assert 'id="unpriced-note">1 operation had no known price' in page


def test_the_api_and_the_legacy_report_spell_an_instant_alike(tmp_path: Path) -> None:
    """One spelling for both: the golden report's, for the golden input's instants."""
    from .server_support import ADAPTER_CASE, ADAPTER_REPORT, put_example

    put_example(tmp_path, ADAPTER_CASE, "job-cost1")
    golden_input = orjson.loads(ADAPTER_CASE.read_bytes())
    golden_report = orjson.loads(ADAPTER_REPORT.read_bytes())
    with live_server(tmp_path) as base, httpx.Client(base_url=base, timeout=10) as http:
        api = http.get("/api/telemetry/job-cost1").json()
        report = http.get("/api/cost-tracking/run-summary/job-cost1").json()
    assert (
        api["collection_started_at"]
        == golden_input["collection_started_at"]
        == report["startedAt"]
        == golden_report["startedAt"]
        == "2026-11-20T10:00:00Z"
    )
    assert api["collection_ended_at"] == report["completedAt"] == golden_report["completedAt"]
    assert (
        [r["started_at"] for r in api["records"]]
        == [r["started_at"] for r in golden_input["records"]]
        == [op["timestamp"] for op in report["operations"]]
        == [op["timestamp"] for op in golden_report["operations"]]
    )


# -- abandoned jobs ------------------------------------------------------------------------------
def running(job_id: str) -> dict:
    return collection(
        job_id, [record(job_id, "script", 0.0, 1500, cost_estimate=0.02)], finished_s=None
    )


def test_a_quiet_job_without_an_end_is_abandoned() -> None:
    doc = running("quiet")
    last = figures.last_activity(doc)
    assert last == datetime(2026, 11, 20, 10, 0, 1, 500000, tzinfo=UTC)
    hour = 3600.0
    assert (
        figures.job_status(doc, now=last + timedelta(seconds=hour), abandoned_after=hour)
        == "running"
    )
    assert (
        figures.job_status(doc, now=last + timedelta(seconds=hour + 1), abandoned_after=hour)
        == "abandoned"
    )
    assert figures.job_status(doc) == "running"  # no quiet time given: the file's own state
    assert not figures.is_live("abandoned") and figures.is_live("running")


def test_a_quiet_time_beyond_any_calendar_never_abandons(tmp_path: Path) -> None:
    """``--abandoned-after 1e15`` (settings accept any finite number: "never, in practice")
    keeps a job running in every view instead of failing them all."""
    doc = running("patient")
    assert figures.job_status(doc, abandoned_after=1e15) == "running"
    write_doc(tmp_path, doc)
    with live_server(tmp_path, abandoned_after=1e15) as base, httpx.Client(base_url=base) as http:
        assert http.get("/api/jobs").json()["items"][0]["status"] == "running"
        assert http.get("/jobs").status_code == 200
        assert 'id="running-notice"' in http.get("/jobs/patient/telemetry").text


def test_views_show_an_abandoned_job_and_stop_refreshing(tmp_path: Path) -> None:
    """The example is dated 2026-11-20; with a one-minute quiet time it is long abandoned."""
    path = write_doc(tmp_path, running("killed"))
    before = path.read_bytes()
    with live_server(tmp_path, abandoned_after=60) as base, httpx.Client(base_url=base) as http:
        assert http.get("/api/jobs").json()["items"][0]["status"] == "abandoned"
        listing = http.get("/jobs").text
        page = http.get("/jobs/killed/telemetry").text
        report = http.get("/api/cost-tracking/run-summary/killed").json()
    assert 'badge-abandoned">Abandoned<' in listing and "data-refresh-seconds" not in listing
    assert 'id="abandoned-notice"' in page and "data-refresh-seconds" not in page
    assert 'id="running-notice"' not in page
    assert report["provisional"] is True  # still no end: its figures are what it recorded
    assert path.read_bytes() == before  # the file stays as written
    out = io.StringIO()
    terminal.render(
        to_dict(load_collection(before)), Console(file=out, width=200), abandoned_after=60
    )
    assert "ABANDONED" in out.getvalue()
    assert legacy.job_status(to_dict(load_collection(before))) == "running"  # the file alone


def test_a_job_without_any_price_is_unpriced_in_the_list_as_on_its_page(tmp_path: Path) -> None:
    job_id = "nothing-priced"
    meta = {"pricing": "unpriced"}
    write_doc(
        tmp_path,
        collection(
            job_id,
            [
                record(job_id, "tts", 0.0, 1000, provider="NewVoice", metadata=meta),
                record(job_id, "visuals", 1.0, 1000, provider="NewImages", metadata=meta),
            ],
            finished_s=3.0,
        ),
    )
    with live_server(tmp_path) as base, httpx.Client(base_url=base, timeout=10) as http:
        listing = re.sub(r"<[^>]+>", "", http.get("/jobs").text)
        page = http.get(f"/jobs/{job_id}/telemetry").text
    assert re.search(r"\bunpriced\s*\n", listing) and "$0.0000" not in listing
    assert '<span class="card-value">unpriced</span>' in page


def test_odd_files_show_the_same_figures_in_the_list_the_report_and_the_page(
    tmp_path: Path,
) -> None:
    """An end before the start (a clock stepped back) is 0 s everywhere; a summary that
    counts more operations than the file has records cannot make the list and the page
    disagree on whether the job is unpriced."""
    meta = {"pricing": "unpriced"}
    skewed = collection("skewed", [record("skewed", "tts", 0.0, 1000)], finished_s=3.0)
    skewed["collection_ended_at"] = "2026-11-20T09:59:00Z"
    skewed["collection_started_at"] = "2026-11-20T10:00:00Z"
    recs = [
        record("mismatch", s, 0.0, 1000, provider="New", metadata=meta) for s in ("tts", "visuals")
    ]
    mismatch = collection("mismatch", recs, finished_s=3.0)
    mismatch["summary"]["total_operations"] = 3
    mismatch["summary"]["total_cost"] = 0.09
    for doc in (skewed, mismatch):
        write_doc(tmp_path, doc)
    with live_server(tmp_path) as base, httpx.Client(base_url=base, timeout=10) as http:
        rows = {r["jobId"]: r for r in http.get("/api/jobs").json()["items"]}
        report = http.get("/api/cost-tracking/run-summary/skewed").json()
        listing = re.sub(r"<[^>]+>", "", http.get("/jobs").text)
        page = http.get("/jobs/mismatch/telemetry").text
    assert rows["skewed"]["durationSeconds"] == 0.0
    assert report["durationSeconds"] == 0.0
    assert figures.headline(skewed)["elapsed"] == "0.0 s"
    assert figures.headline(mismatch)["total_cost"] == "unpriced"
    assert '<span class="card-value">unpriced</span>' in page
    assert re.search(r"\bunpriced\s*\n", listing)


def test_a_cost_in_another_currency_is_never_shown_in_dollars() -> None:
    assert figures.record_cost({"cost_estimate": 0.1, "currency": "EUR"}) == "0.1000 EUR"
    assert figures.record_cost({"cost_estimate": 0.1, "currency": "usd"}) == "$0.1000"
    assert figures.record_cost({"cost_estimate": 0.1}) == "$0.1000"
