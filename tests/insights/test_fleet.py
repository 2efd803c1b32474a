"""The fleet view's figures, anomalies and downloads, over real job files.

Every expected number is recomputed here from the generated files themselves (sums, nearest-
rank percentiles, counts), not copied from the code under test.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import orjson
import pytest

from aura_otel.insights import Filters, FolderJobSource, compute, iter_summaries
from aura_otel.schema import Collection, load_collection, sum_money
from aura_otel.store import JobStore

from ..fleet_support import DAY_NS, EPOCH_NS, Spec, steady_fleet, write
from ..server_support import live_server

ALL = Filters(since=date(2026, 11, 1), until=date(2026, 11, 30))


def _docs(root: Path) -> list[dict]:
    return [orjson.loads(p.read_bytes()) for p in sorted(root.glob("*/telemetry.json"))]


def _nearest_rank(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(1, math.ceil(q / 100 * len(values))) - 1]


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("steady")
    steady_fleet(root)
    return root


def test_costs_latencies_and_rates_match_the_files(steady: Path) -> None:
    fleet = compute(FolderJobSource(JobStore(steady)), ALL)
    docs = _docs(steady)
    records = [r for d in docs for r in d["records"]]
    assert fleet.jobs == len(docs) == 100 and fleet.operations == len(records)
    per_day: dict[str, list[float]] = {}
    for d in docs:
        per_day.setdefault(d["collection_started_at"][:10], []).extend(
            r["cost_estimate"] for r in d["records"] if r.get("cost_estimate") is not None
        )
    rows = {r[0]: r[1] for r in fleet.tables["cost_per_day"].rows}
    assert len(rows) == 30
    for day, costs in per_day.items():
        assert rows[day] == sum_money(costs)
    by_stage = {r[0]: r[1] for r in fleet.tables["cost_by_stage"].rows}
    assert by_stage["tts"] == sum_money(r["cost_estimate"] for r in records if r["stage"] == "tts")
    assert "render" not in by_stage  # no cost recorded: not a $0 bar
    lat = {r[0]: r for r in fleet.tables["latency_by_stage"].rows}
    renders = [r["latency_ms"] / 1000 for r in records if r["stage"] == "render"]
    assert lat["render"][2] == round(_nearest_rank(renders, 50), 3)
    assert lat["render"][3] == round(_nearest_rank(renders, 95), 3)
    rel = {r[0]: r for r in fleet.tables["provider_reliability"].rows}
    tts = [r for r in records if r["provider"] == "elevenlabs"]
    errors = sum(r["result_status"] == "error" for r in tts)
    assert errors > 0 and rel["elevenlabs"][1:4] == [len(tts), errors, round(errors / len(tts), 4)]
    hits = [r for r in records if r.get("cache_hit")]
    assert fleet.cache_hits == len(hits) == 40  # the first and fifth job of each day
    assert fleet.saved == sum_money(r["metadata"]["cost_saved"] for r in hits)
    top = fleet.tables["expensive_jobs"].rows
    costs = sorted(
        (
            sum_money(
                r["cost_estimate"] for r in d["records"] if r.get("cost_estimate") is not None
            ),
            d["job_id"],
        )
        for d in docs
    )
    assert top[0][0] == costs[-1][1] and len(top) == 10


def test_filters_narrow_jobs_and_operations(steady: Path) -> None:
    source = FolderJobSource(JobStore(steady))
    alpha = compute(source, Filters(since=ALL.since, until=ALL.until, project="alpha"))
    assert (
        alpha.jobs == 60
    )  # projects alternate over five jobs a day: alpha, beta, alpha, beta, alpha
    openai = compute(source, Filters(since=ALL.since, until=ALL.until, provider="openai"))
    assert {r[0] for r in openai.tables["cost_by_provider"].rows} == {"openai"}
    assert {r[0] for r in openai.tables["latency_by_stage"].rows} == {"script", "visuals"}
    failed = compute(source, Filters(since=ALL.since, until=ALL.until, status="failed"))
    assert 0 < failed.jobs < 100
    one_day = compute(source, Filters(since=date(2026, 11, 3), until=date(2026, 11, 3)))
    assert one_day.jobs == 5 and len(one_day.tables["cost_per_day"].rows) == 1


def test_a_steady_fleet_has_no_anomalies_where_fixed_thresholds_cry_wolf(steady: Path) -> None:
    fleet = compute(FolderJobSource(JobStore(steady)), ALL)
    assert fleet.anomalies == []
    # The old studio's rule (an operation over 60 s is slow) flags about half the renders,
    # which always take about a minute.
    records = [r for d in _docs(steady) for r in d["records"]]
    assert sum(r["latency_ms"] > 60_000 for r in records) > 20


def test_a_job_far_above_its_history_is_flagged_stage_by_stage(tmp_path: Path) -> None:
    steady_fleet(tmp_path)
    write(
        tmp_path,
        Spec(
            "job-spike",
            "alpha",
            EPOCH_NS + 19 * DAY_NS + 23 * 3600 * 10**9,
            stage_scale={"visuals": 5.0},
        ),
    )
    fleet = compute(FolderJobSource(JobStore(tmp_path)), ALL)
    kinds = {(a.kind, a.job_id, a.stage) for a in fleet.anomalies}
    assert ("stage_latency", "job-spike", "visuals") in kinds
    assert ("stage_cost", "job-spike", "visuals") in kinds
    assert ("job_cost", "job-spike", None) in kinds
    assert {a.job_id for a in fleet.anomalies} == {"job-spike"}
    # Verdicts memoised for this history answer the same, in the same order.
    verdicts: dict = {}
    source = FolderJobSource(JobStore(tmp_path))
    first = compute(source, ALL, verdicts=verdicts).anomalies
    assert (
        "job-spike" in verdicts
        and compute(source, ALL, verdicts=verdicts).anomalies == first == fleet.anomalies
    )


def test_a_provider_error_jump_and_a_latency_trend(tmp_path: Path) -> None:
    steady_fleet(tmp_path, days=17)
    for day in (17, 18, 19):
        for n in range(5):
            write(
                tmp_path,
                Spec(
                    f"job-late-{day}-{n}",
                    "alpha",
                    EPOCH_NS + day * DAY_NS + (n + 1) * 3600 * 10**9,
                    fail_provider="elevenlabs" if day == 19 else "",
                    stage_scale={"render": 1.6},
                ),
            )
    fleet = compute(
        FolderJobSource(JobStore(tmp_path)),
        Filters(since=date(2026, 11, 1), until=date(2026, 11, 20)),
    )
    jumps = [a for a in fleet.anomalies if a.kind == "provider_errors"]
    assert [a.provider for a in jumps] == ["elevenlabs"]
    trends = [a for a in fleet.anomalies if a.kind == "stage_trend"]
    assert [a.stage for a in trends] == ["render"]


class CollectionsOnly:
    """A store that only lists collections (as a new backend first would)."""

    def __init__(self, collections: list[Collection]) -> None:
        self.collections = collections

    def iter_collections(self, since=None, until=None) -> Iterator[Collection]:
        return iter(self.collections)


def test_any_job_source_gives_the_same_figures(steady: Path) -> None:
    plain = CollectionsOnly(
        [load_collection(p.read_bytes()) for p in steady.glob("*/telemetry.json")]
    )
    folder = FolderJobSource(JobStore(steady))
    assert compute(plain, ALL).to_json() == compute(folder, ALL).to_json()


def test_the_summary_cache_follows_file_changes(tmp_path: Path) -> None:
    source = FolderJobSource(JobStore(tmp_path))
    write(tmp_path, Spec("job-one", "alpha", EPOCH_NS))
    before = compute(source, ALL).total_cost
    write(tmp_path, Spec("job-one", "alpha", EPOCH_NS, scale=2.0))
    assert compute(source, ALL).total_cost == pytest.approx(before * 2, rel=1e-6)
    (tmp_path / "job-bad").mkdir()
    (tmp_path / "job-bad" / "telemetry.json").write_bytes(b"{not json")
    assert len(list(iter_summaries(source))) == 1


@pytest.fixture(scope="module")
def http(steady: Path) -> Iterator[httpx.Client]:
    with live_server(steady) as base, httpx.Client(base_url=base) as client:
        yield client


def test_api_page_and_downloads(http: httpx.Client) -> None:
    body = http.get("/api/insights", params={"since": "2026-11-01", "until": "2026-11-30"}).json()
    assert body["totals"]["jobs"] == 100 and set(body["charts"]) >= {
        "cost_per_day",
        "cost_by_stage",
        "cost_by_provider",
        "cost_by_model",
        "latency_by_stage",
        "latency_by_provider",
        "provider_reliability",
        "cache",
        "expensive_jobs",
        "slowest_jobs",
    }
    csv_response = http.get(
        "/api/insights/cost_by_stage.csv", params={"since": "2026-11-01", "until": "2026-11-30"}
    )
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert (
        'filename="cost_by_stage_2026-11-01_2026-11-30.csv"'
        in csv_response.headers["content-disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(csv_response.text)))
    assert [(r["stage"], float(r["cost"])) for r in rows] == [
        (r["stage"], r["cost"]) for r in body["charts"]["cost_by_stage"]["rows"]
    ]
    page = http.get("/insights").text  # default period: the 30 days up to the latest job
    assert page.count('<svg class="chart"') == 9 and '<rect class="bar"' in page
    assert http.get("/api/insights", params={"since": "yesterday"}).status_code == 400
    assert (
        http.get("/api/insights", params={"since": "2026-11-05", "until": "2026-11-01"}).status_code
        == 400
    )
    assert http.get("/api/insights/nope.csv").status_code == 404
    assert http.get("/api/insights/cost_by_stage.xml").status_code == 404


def test_a_period_at_the_start_of_the_calendar_is_answered(http: httpx.Client) -> None:
    """``until`` in the first days of year 1 has no 30 days before it: the period starts on
    the first day there is, on every fleet endpoint, never a 500."""
    for path in ("/api/insights", "/api/insights/metrics", "/insights", "/api/insights/cache.csv"):
        answer = http.get(path, params={"until": "0001-01-05"})
        assert answer.status_code == 200, (path, answer.text)
    body = http.get("/api/insights", params={"until": "0001-01-05"}).json()
    assert body["period"] == {"since": "0001-01-01", "until": "0001-01-05"}
    assert body["totals"]["jobs"] == 0


def test_anomalies_as_a_metric(tmp_path: Path) -> None:
    steady_fleet(tmp_path)
    write(
        tmp_path,
        Spec(
            "job-spike",
            "alpha",
            EPOCH_NS + 19 * DAY_NS + 23 * 3600 * 10**9,
            stage_scale={"visuals": 5.0},
        ),
    )
    with live_server(tmp_path) as base:
        response = httpx.get(f"{base}/api/insights/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if not line.startswith("#")
    )
    assert lines['aura_insights_anomalies{kind="stage_latency"}'] == "1"
    assert lines['aura_insights_anomalies{kind="provider_errors"}'] == "0"
    assert lines["aura_insights_jobs"] == "101"


def test_csv_cells_cannot_become_formulas(tmp_path: Path) -> None:
    write(tmp_path, Spec("job-1", '=HYPERLINK("http://evil")', EPOCH_NS))
    fleet = compute(FolderJobSource(JobStore(tmp_path)), ALL)
    assert "'=HYPERLINK" in fleet.tables["expensive_jobs"].to_csv()


def test_postgresql_gives_the_same_fleet_as_the_folder(
    steady: Path, request: pytest.FixtureRequest
) -> None:
    """The fleet view reads through the store interface: the same jobs in PostgreSQL give the
    same figures, and a job rewritten there is picked up by the summary cache."""
    from aura_otel.stores.postgres import PostgresStore

    from ..server.store_support import postgres_copy

    url = postgres_copy(request, steady)
    with PostgresStore(url) as store:
        source = FolderJobSource(store)
        folder = compute(FolderJobSource(JobStore(steady)), ALL).to_json()
        assert compute(source, ALL).to_json() == folder
        first = store.job_entries()
        assert len(first) == 100
        job_id = first[-1][0]
        doc = orjson.loads(store.read_bytes(job_id))
        for record in doc["records"]:
            if record.get("cost_estimate") is not None:
                record["cost_estimate"] *= 3
        with store.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE aura_otel.jobs SET document = %s, updated_at = now() WHERE job_id = %s",
                (orjson.dumps(doc), job_id),
            )
        assert (
            compute(source, ALL).total_cost
            > compute(FolderJobSource(JobStore(steady)), ALL).total_cost
        )


def test_a_running_job_turns_abandoned_when_its_quiet_time_is_over(tmp_path: Path) -> None:
    """The fleet's figures say until when they hold: a job they call running is abandoned
    once ``abandoned_after`` has passed since its file's latest moment, not before."""
    from datetime import datetime, timedelta

    from aura_otel import figures

    from ..server_support import running_job, write_doc

    write_doc(tmp_path, running_job("live-1"))
    source = FolderJobSource(JobStore(tmp_path))
    (job,) = iter_summaries(source)
    last = job.last_active()
    assert last is not None and last == figures.last_activity(running_job("live-1"))
    period = Filters(since=date(2026, 11, 20), until=date(2026, 11, 20))

    def status(now: datetime) -> tuple[str, float | None]:
        fleet = compute(source, period, now=now, abandoned_after=60)
        (row,) = fleet.tables["expensive_jobs"].rows
        return row[-1], fleet.expires

    before, expires = status(last + timedelta(seconds=59))
    assert before == "running" and expires == (last + timedelta(seconds=60)).timestamp()
    assert status(last + timedelta(seconds=61)) == ("abandoned", None)
    # Without a quiet time, the file's own status (the server passes --abandoned-after).
    assert compute(source, period).tables["expensive_jobs"].rows[0][-1] == "running"
