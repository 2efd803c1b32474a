"""The fleet view on PostgreSQL's summary tables gives the folder's figures, to the last digit.

PostgreSQL answers a period from its indexed ``job_summaries`` and reads only the earlier jobs
the anomaly baselines need; the folder walks every job. Both must agree on every chart and
every anomaly, for short periods (where the baselines reach far back before the period) and
long ones, with filters, on a real database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from aura_otel.insights import (
    Filters,
    FolderJobSource,
    compute,
    history_for,
    iter_summaries,
    job_anomalies,
    latest_start,
)
from aura_otel.insights.source import job_history
from aura_otel.schema import dumps
from aura_otel.store import JobStore
from aura_otel.stores.postgres import PostgresStore

from ..fleet_support import EPOCH_NS, Spec, build, steady_fleet, write, write_spike

PERIODS = [
    Filters(since=date(2026, 11, 1), until=date(2026, 11, 30)),
    Filters(since=date(2026, 11, 18), until=date(2026, 11, 20)),
    Filters(since=date(2026, 11, 20), until=date(2026, 11, 20)),
    Filters(since=date(2026, 11, 15), until=date(2026, 11, 20), project="alpha"),
    Filters(since=date(2026, 11, 10), until=date(2026, 11, 20), provider="openai", stage="visuals"),
    Filters(since=date(2026, 11, 1), until=date(2026, 11, 20), status="failed"),
]


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 ordinary jobs (so a 50-job baseline starts well before a short period), a spike on
    the last day, a cache-only operation history and a job that is not a v1 file."""
    root = tmp_path_factory.mktemp("fleet")
    steady_fleet(root, per_day=12, projects=("alpha", "beta", "gamma"))
    write_spike(root, visuals=5.0, tts=4.0)
    (root / "job-broken").mkdir()
    (root / "job-broken" / "telemetry.json").write_bytes(b'{"job_id": "job-broken"')
    return root


@pytest.fixture
def pg_fleet(fleet_dir: Path, request: pytest.FixtureRequest) -> str:
    from ..server.store_support import postgres_copy

    return postgres_copy(request, fleet_dir)


def _history(source: object, filters: Filters) -> list:
    """What the server reads for ``filters`` (the chosen period plus its baselines)."""
    chosen, history = history_for(source, lambda _latest: filters)  # type: ignore[arg-type]
    assert chosen is filters
    return history


def _folder(fleet_dir: Path) -> FolderJobSource:
    return FolderJobSource(JobStore(fleet_dir), persist=False)


def test_every_period_and_filter_matches_the_folder(fleet_dir: Path, pg_fleet: str) -> None:
    folder = _folder(fleet_dir)
    with PostgresStore(pg_fleet) as store:
        source = store.job_source()
        assert latest_start(source) == latest_start(folder)
        flagged = 0
        for filters in PERIODS:
            got = compute(source, filters, history=_history(source, filters)).to_json()
            assert got == compute(folder, filters).to_json(), filters
            flagged += len(got["anomalies"])
        short = _history(source, PERIODS[2])
        # A one-day period reads its own jobs and the baselines, not the whole history.
        assert 12 < len(short) < len(list(iter_summaries(folder)))
    assert flagged > 0  # the spike is judged the same way on both


def test_a_job_page_judges_against_the_same_baseline(fleet_dir: Path, pg_fleet: str) -> None:
    everything = list(iter_summaries(_folder(fleet_dir)))
    expected = job_anomalies(everything, ["job-spike"])
    assert {a.kind for a in expected} >= {"stage_latency", "job_cost"}
    with PostgresStore(pg_fleet) as store:
        source = store.job_source()
        assert job_anomalies(job_history(source, "job-spike"), ["job-spike"]) == expected
        assert job_history(source, "job-nope") == []


def test_an_existing_database_is_back_filled_on_upgrade(fleet_dir: Path, pg_fleet: str) -> None:
    import psycopg

    with psycopg.connect(pg_fleet, autocommit=True) as conn:  # back to schema version 2
        conn.execute("DROP TABLE aura_otel.op_summaries, aura_otel.job_summaries")
        conn.execute("DELETE FROM aura_otel.schema_migrations WHERE version = 3")
    with PostgresStore(pg_fleet) as store:
        with store.connection() as conn:
            counts = conn.execute(
                "SELECT count(*) FILTER (WHERE status <> 'gone'), count(*)"
                " FROM aura_otel.job_summaries"
            ).fetchone()
        assert counts == (241, 242)  # every job summarised; the broken one known as not a job
        filters = PERIODS[1]
        source = store.job_source()
        got = compute(source, filters, history=_history(source, filters))
        assert got.to_json() == compute(_folder(fleet_dir), filters).to_json()


def test_a_document_rewritten_outside_the_store_is_resummarised(pg_fleet: str) -> None:
    filters = PERIODS[2]
    with PostgresStore(pg_fleet) as store:
        source = store.job_source()
        before = compute(source, filters, history=_history(source, filters))
        doc = orjson.loads(store.read_bytes("job-spike"))
        for record in doc["records"]:
            if record.get("cost_estimate") is not None:
                record["cost_estimate"] *= 3
        with store.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE aura_otel.jobs SET document = %s, updated_at = clock_timestamp()"
                " WHERE job_id = 'job-spike'",
                (orjson.dumps(doc),),
            )
        after = compute(source, filters, history=_history(source, filters))
        assert after.total_cost > before.total_cost


def test_spans_merged_into_postgresql_are_summarised_in_the_same_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    from ..test_store_pg import demo_jobs

    local = demo_jobs(tmp_path, monkeypatch)
    folder = FolderJobSource(local, persist=False)
    with PostgresStore(pg_url) as store:
        for job_id in local.job_ids():
            store.merge(job_id, local.read_journal(job_id))
        with store.connection() as conn:
            stamps = conn.execute(
                "SELECT count(*) FROM aura_otel.jobs j JOIN aura_otel.job_summaries s"
                " USING (job_id) WHERE s.source_updated_at = j.updated_at"
            ).fetchone()
        assert stamps == (3,)
        source = store.job_source()
        latest = latest_start(source)
        assert latest is not None and latest == latest_start(folder)
        day = datetime.fromtimestamp(latest, UTC).date()
        filters = Filters(since=day, until=day)
        got = compute(source, filters, history=_history(source, filters))
        assert got.jobs == 3 and got.to_json() == compute(folder, filters).to_json()


@pytest.mark.parametrize("kind", ["folder", "postgres"])
def test_the_server_memo_follows_every_change(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """The server keeps the figures of a query while no job changes; a rewritten job or a new
    one gives new figures at the next request, on either store."""
    from starlette.testclient import TestClient

    from aura_otel.server import create_app

    steady_fleet(tmp_path, days=3)
    params = {"since": "2026-11-01", "until": "2026-11-03"}
    if kind == "postgres":
        from ..server.store_support import postgres_copy

        store = PostgresStore(postgres_copy(request, tmp_path))
        request.addfinalizer(store.close)
        target: object = store
    else:
        target = tmp_path
    client = TestClient(create_app(target), base_url="http://127.0.0.1")  # type: ignore[arg-type]
    first = client.get("/api/insights", params=params).json()
    assert client.get("/api/insights", params=params).json() == first
    doc = build(Spec("job-d00-01", "beta", EPOCH_NS + 2 * 3600 * 10**9, scale=4.0))
    extra = build(Spec("job-new", "beta", EPOCH_NS + 5 * 3600 * 10**9))
    if kind == "postgres":
        with store.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE aura_otel.jobs SET document = %s, updated_at = clock_timestamp()"
                " WHERE job_id = 'job-d00-01'",
                (dumps(doc),),
            )
        store.import_document("job-new", dumps(extra), datetime.now(UTC))
    else:
        write(tmp_path, Spec("job-d00-01", "beta", EPOCH_NS + 2 * 3600 * 10**9, scale=4.0))
        write(tmp_path, Spec("job-new", "beta", EPOCH_NS + 5 * 3600 * 10**9))
    after = client.get("/api/insights", params=params).json()
    assert after["totals"]["jobs"] == first["totals"]["jobs"] + 1
    assert after["totals"]["cost"] > first["totals"]["cost"]


@pytest.mark.parametrize("kind", ["folder", "postgres"])
def test_the_job_list_flags_anomalous_jobs(
    fleet_dir: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """The job list (API and page) flags the jobs the fleet view flags, with the same
    explanations, and only those."""
    from starlette.testclient import TestClient

    from aura_otel.server import create_app

    everything = list(iter_summaries(_folder(fleet_dir)))
    expected = job_anomalies(everything)
    flagged = {a.job_id for a in expected}
    assert "job-spike" in flagged
    target: object = fleet_dir
    if kind == "postgres":
        store = PostgresStore(request.getfixturevalue("pg_fleet"))
        request.addfinalizer(store.close)
        target = store
    client = TestClient(create_app(target), base_url="http://127.0.0.1")  # type: ignore[arg-type]
    if kind == "folder":
        # A folder server judges the list once it has read the fleet (never a parse of every
        # file for a list page after a start).
        cold = client.get("/api/jobs", params={"q": "spike"}).json()
        assert cold["items"][0]["anomalies"] == []
        assert client.get("/jobs/job-spike/telemetry").status_code == 200
    seen: dict[str, list[dict]] = {}
    for page in (1, 2):
        body = client.get("/api/jobs", params={"page": page, "pageSize": 200}).json()
        seen.update({item["jobId"]: item["anomalies"] for item in body["items"]})
    assert len(seen) == 242
    assert {job_id for job_id, flags in seen.items() if flags} == flagged
    assert [f["explanation"] for f in seen["job-spike"]] == [
        a.explanation for a in expected if a.job_id == "job-spike"
    ]
    html = client.get("/jobs", params={"q": "spike"}).text
    assert 'class="badge badge-anomaly" href="/jobs/job-spike/telemetry#job-anomalies"' in html
    assert "badge-anomaly" not in client.get("/jobs", params={"q": "job-d00-0"}).text


def test_a_number_no_summary_can_keep_never_breaks_a_write(pg_url: str) -> None:
    """A hand-made document with a 100-digit latency is stored (the write must not fail for
    the fleet view's sake) and left out of the fleet, as on the folder."""
    doc = build(Spec("job-odd", "alpha", EPOCH_NS))
    data = dumps(doc).replace(b'"latency_ms":', b'"latency_ms":' + b"9" * 100 + b',"x":', 1)
    with PostgresStore(pg_url) as store:
        assert store.import_document("job-odd", data, datetime.now(UTC))
        store.import_document(
            "job-ok", dumps(build(Spec("job-ok", "alpha", EPOCH_NS))), datetime.now(UTC)
        )
        source = store.job_source()
        assert [s.job_id for s in iter_summaries(source)] == ["job-ok"]


def test_a_cost_in_another_currency_is_no_dollar_in_the_fleet_on_both_stores(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The fleet adds dollars only, as the files' summaries do; a database summarised by the
    earlier rule (the euro counted as dollars) is summarised again when it is upgraded."""
    from dataclasses import replace

    import psycopg

    from aura_otel.insights.source import summary_from_row, summary_row

    from ..server.store_support import postgres_copy
    from ..server_support import collection, record, write_doc

    def job(job_id: str, currency: str) -> dict:
        rec = record(job_id, "script", 0.1, 900, cost_estimate=0.25, currency=currency)
        return collection(job_id, [rec], finished_s=2)

    write_doc(tmp_path, job("in-dollars", "USD"))
    write_doc(tmp_path, job("in-euros", "EUR"))
    assert (
        orjson.loads((tmp_path / "in-euros" / "telemetry.json").read_bytes())["summary"][
            "total_cost"
        ]
        == 0
    )
    period = Filters(since=date(2026, 11, 20), until=date(2026, 11, 20))
    expected = compute(_folder(tmp_path), period).to_json()
    assert expected["totals"]["jobs"] == 2 and expected["totals"]["cost"] == 0.25
    url = postgres_copy(request, tmp_path)
    with PostgresStore(url) as store:
        source = store.job_source()
        assert compute(source, period, history=_history(source, period)).to_json() == expected
    with psycopg.connect(url, autocommit=True) as conn:  # as schema 3 left it: euros counted
        (row,) = conn.execute(
            "SELECT summary FROM aura_otel.job_summaries WHERE job_id = 'in-euros'"
        ).fetchone()
        old = summary_from_row(orjson.loads(bytes(row)))
        old = replace(old, ops=tuple(op._replace(cost=0.25) for op in old.ops))
        conn.execute(
            "UPDATE aura_otel.job_summaries SET summary = %s WHERE job_id = 'in-euros'",
            (orjson.dumps(summary_row(old)),),
        )
        conn.execute("DELETE FROM aura_otel.schema_migrations WHERE version = 4")
    with PostgresStore(url) as store:  # upgrades to 4: summarised again
        source = store.job_source()
        assert compute(source, period, history=_history(source, period)).to_json() == expected
