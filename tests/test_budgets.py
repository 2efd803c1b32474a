"""Budgets on a real TracerProvider: soft thresholds warn, hard thresholds stop a stage first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aura_otel
from aura_otel import budgets, job, stage
from aura_otel.budgets import BudgetRules, Budgets
from aura_otel.errors import BudgetExceeded, ConfigurationError
from aura_otel.schema import dumps, sum_money

from .conftest import Pipeline, make_pipeline
from .fleet_support import EPOCH_NS, Spec, write
from .server_support import live_server


@pytest.fixture
def ledger() -> Iterator[Budgets]:
    """A fresh ledger with a metric reader, put back to an empty one afterwards."""
    reader = InMemoryMetricReader()
    installed = budgets.install(Budgets(meter_provider=MeterProvider(metric_readers=[reader])))
    installed.reader = reader  # type: ignore[attr-defined]
    yield installed
    budgets.install(Budgets())


def _warnings_counted(ledger: Budgets) -> dict[str, int]:
    data = ledger.reader.get_metrics_data()  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "aura.budget.warnings":
                    for point in metric.data.data_points:
                        out[point.attributes["aura.budget.scope"]] = point.value
    return out


def test_a_hard_job_budget_stops_the_stage_before_it_starts(
    pipeline: Pipeline, ledger: Budgets
) -> None:
    started = []
    with job("job-b1", budget=0.05, tracer_provider=pipeline.provider):
        with stage("script", provider="openai", estimated_cost=0.03) as s:
            s.set_cost(0.03)
        with (
            pytest.raises(BudgetExceeded) as caught,
            stage("tts", provider="elevenlabs", estimated_cost=0.03),
        ):
            started.append("tts")  # never runs
    pipeline.flush()
    assert started == []
    err = caught.value
    assert isinstance(err, aura_otel.AuraOtelError) and err.error_code == "BUDGET_EXCEEDED"
    assert (err.scope, err.subject, err.limit, err.spent, err.estimated) == (
        "job",
        "job-b1",
        0.05,
        0.03,
        0.03,
    )
    assert "not started" in str(err)
    doc = pipeline.read("job-b1")
    assert [r["stage"] for r in doc["records"]] == ["script"]  # a refused stage leaves no record


def test_concurrent_stages_cannot_together_cross_a_hard_limit(
    pipeline: Pipeline, ledger: Budgets
) -> None:
    """Scenes rendered at once (``asyncio.gather``, a thread pool) are each checked before any
    has ended: the estimates of stages already started count against the limit."""
    started: list[int] = []
    refused: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def scene(i: int) -> None:
            try:
                async with stage("visuals", provider="openai", estimated_cost=0.40, scene_index=i):
                    started.append(i)
                    await gate.wait()  # every scene is under way before any ends
            except BudgetExceeded:
                refused.append(i)

        async with job("job-b-gather", budget=1.00, tracer_provider=pipeline.provider):
            tasks = [asyncio.create_task(scene(i)) for i in range(5)]
            while len(started) + len(refused) < 5:
                await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks)
            # Each started scene charged its estimate once, not twice.
            assert ledger.spent("job", "job-b-gather") == pytest.approx(0.80)

    asyncio.run(main())
    assert (started, refused) == ([0, 1], [2, 3, 4])


def test_an_explicit_cost_replaces_the_estimate_held_for_the_stage(
    pipeline: Pipeline, ledger: Budgets
) -> None:
    with job("job-b-settle", budget=1.00, tracer_provider=pipeline.provider):
        with stage("script", provider="openai", estimated_cost=0.90) as s:
            s.set_cost(0.10)
        assert ledger.spent("job", "job-b-settle") == pytest.approx(0.10)
        with stage("tts", provider="elevenlabs", estimated_cost=0.85):
            pass  # allowed: 0.10 + 0.85 <= 1.00
        assert ledger.spent("job", "job-b-settle") == pytest.approx(0.95)


def test_a_cost_that_is_no_amount_neither_raises_nor_lifts_the_hard_limit(
    pipeline: Pipeline, ledger: Budgets, caplog: pytest.LogCaptureFixture
) -> None:
    """A NaN charged once would make every later check ``nan > limit``, always false; a
    negative cost would hand money back. Such a cost is logged and the estimate stands."""
    with job("job-b-nan", budget=1.00, tracer_provider=pipeline.provider):
        for bad in [float("nan"), float("inf"), -5.0, None, "abc", 10**400]:
            with stage("script", provider="openai", estimated_cost=0.10) as s:
                s.set_cost(bad)  # type: ignore[arg-type]
        assert ledger.spent("job", "job-b-nan") == pytest.approx(0.60)
        with pytest.raises(BudgetExceeded), stage("tts", estimated_cost=0.50):
            pass
    assert caplog.text.count("is not an amount") == 6
    for bad in [float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="non-negative amount"):
            stage("tts", estimated_cost=bad)
        with pytest.raises(ValueError, match="non-negative amount"):
            job("job-b-nan", budget=bad)


def test_a_soft_threshold_warns_logs_and_counts(
    pipeline: Pipeline, ledger: Budgets, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.rules = BudgetRules.parse({"job": {"soft": 0.04, "hard": 1.0}})
    with (
        caplog.at_level(logging.WARNING, logger="aura_otel"),
        job("job-b2", tracer_provider=pipeline.provider),
    ):
        with stage("script", provider="openai", estimated_cost=0.03):
            pass
        with stage("tts", provider="elevenlabs", estimated_cost=0.03):
            pass
        with stage("render", provider="ffmpeg", estimated_cost=0.03):
            pass
    pipeline.flush()
    statuses = [(r["stage"], r["result_status"]) for r in pipeline.read("job-b2")["records"]]
    assert statuses == [("script", "ok"), ("tts", "warn"), ("render", "ok")]  # crossed once
    tts = pipeline.read("job-b2")["records"][1]
    assert tts["message"].startswith("budget: job 'job-b2' crossed its soft threshold $0.0400")
    assert any("crossed its soft threshold" in r.getMessage() for r in caplog.records)
    assert _warnings_counted(ledger) == {"job": 1}


def test_provider_thresholds_as_the_old_studio_had(pipeline: Pipeline, ledger: Budgets) -> None:
    ledger.rules = BudgetRules.parse(
        {"job": {"providers": {"OpenAI": {"soft": 0.01, "hard": 0.05}}}}
    )
    with job("job-b3", tracer_provider=pipeline.provider):
        with stage("script", provider="openai", estimated_cost=0.04):
            pass
        with stage(
            "tts", provider="elevenlabs", estimated_cost=0.50
        ):  # another provider: free to go
            pass
        with (
            pytest.raises(BudgetExceeded) as caught,
            stage("visuals", provider="openai", estimated_cost=0.02),
        ):
            pass
    assert caught.value.provider == "openai"
    pipeline.flush()
    assert pipeline.read("job-b3")["records"][0]["result_status"] == "warn"


def test_project_and_month_budgets_start_from_the_jobs_folder(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    doc = write(jobs, Spec("job-old", "alpha", EPOCH_NS))  # costs 0.09 in November 2026
    cost = sum(r.get("cost_estimate") or 0 for r in doc["records"])
    ledger = Budgets(BudgetRules.parse({"projects": {"alpha": {"hard": cost + 0.01}}}), jobs)
    ledger.check("job-new", "alpha", None, "openai", 0.01)  # exactly up to the limit: allowed
    with pytest.raises(BudgetExceeded) as caught:
        ledger.check("job-new", "alpha", None, "openai", 0.02)
    assert caught.value.scope == "project" and caught.value.spent == pytest.approx(cost)
    ledger.check("job-new", "beta", None, "openai", 5.0)  # another project: no limit
    monthly = Budgets(BudgetRules.parse({"month": {"hard": 100.0}}), jobs)
    monthly.check("job-x", None, None, None, 99.0)  # the old job is not in this month


def test_stale_figures_are_re_read_behind_the_stage_never_in_its_way(tmp_path: Path) -> None:
    """Once a scope has figures, a stale read happens on another thread: a stage checked while
    the store is slow goes on with the last figures (a check that waited for the read would
    never return here, the read being held until the check is done)."""
    import threading

    jobs = tmp_path / "jobs"
    doc = write(jobs, Spec("job-old", "alpha", EPOCH_NS))
    cost = sum(r.get("cost_estimate") or 0 for r in doc["records"])
    ledger = Budgets(BudgetRules.parse({"projects": {"alpha": {"hard": 1.0}}}), jobs)
    assert ledger.spent("project", "alpha") == pytest.approx(cost)  # first read: at once
    newer = write(jobs, Spec("job-newer", "alpha", EPOCH_NS + 3600 * 10**9))
    newer_cost = sum(r.get("cost_estimate") or 0 for r in newer["records"])

    release, reading = threading.Event(), threading.Event()
    source = ledger.store.job_source()  # type: ignore[union-attr]

    class HeldSource:
        """The real folder source, held at the read until the test lets it go."""

        def iter_summaries(self, since: object = None, until: object = None) -> object:
            reading.set()
            assert release.wait(60), "the test never released the read"
            return source.iter_summaries(since, until)

    ledger._source = HeldSource()
    ledger.refresh_every = 0.0
    done = threading.Event()

    def stage_start() -> None:
        ledger.check("job-new", "alpha", None, "openai", 0.01)
        done.set()

    checker = threading.Thread(target=stage_start)
    checker.start()
    try:
        # Readiness bounds only: the check returns while the read is still held.
        assert done.wait(60), "the stage waited for the store"
        assert reading.wait(60)
        assert ledger.spent("project", "alpha") == pytest.approx(cost)  # the last figures
    finally:
        release.set()
        checker.join(60)
    assert ledger.wait_for_refreshes(60)
    ledger.refresh_every = 3600.0
    assert ledger.spent("project", "alpha") == pytest.approx(cost + newer_cost)


def test_the_budgets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "budgets.toml"
    toml.write_text(
        "[job]\nsoft = 0.5\nhard = 1\n[job.providers.openai]\nhard = 0.4\n"
        "[projects.demo]\nhard = 20\n[month]\nsoft = 400\nhard = 500\n"
    )
    rules = BudgetRules.from_file(toml)
    assert rules.job.total.hard == 1.0 and rules.job.providers["openai"].hard == 0.4
    assert rules.projects["demo"].total.hard == 20 and rules.month.total.soft == 400
    as_json = tmp_path / "budgets.json"
    as_json.write_bytes(orjson.dumps({"job": {"hard": 2}}))
    assert BudgetRules.from_file(as_json).job.total.hard == 2.0
    for bad in (
        {"job": {"hard": -1}},
        {"job": {"soft": 3, "hard": 2}},
        {"jobs": {}},
        {"job": {"hard": "1"}},
        {"job": {"limit": 1}},
    ):
        with pytest.raises(ConfigurationError):
            BudgetRules.parse(bad)
    monkeypatch.setenv("AURA_OTEL_BUDGETS_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError):
        aura_otel.configure(tmp_path / "jobs", set_global=False)
    with pytest.raises(ValueError):
        job("j", budget=-1)
    with pytest.raises(ValueError):
        stage("script", estimated_cost=True)


def test_plain_otel_budget_attribute_and_within_budget(tmp_path: Path, ledger: Budgets) -> None:
    p = make_pipeline(tmp_path / "jobs")
    tracer = p.provider.get_tracer("plain")
    for job_id, budget in (("job-over", 0.05), ("job-under", 1.0)):
        with tracer.start_as_current_span(
            "aura.job", attributes={"aura.job.id": job_id, "aura.budget.amount": budget}
        ):
            with tracer.start_as_current_span(
                "aura.stage.script",
                attributes={
                    "aura.job.id": job_id,
                    "aura.stage": "script",
                    "gen_ai.usage.cost": 0.08,
                },
            ):
                pass
    p.flush()
    p.provider.shutdown()
    units = aura_otel.JobStore(tmp_path / "jobs").read_journal("job-over")
    assert [u["b"] for u in units.values() if u["k"] == "root"] == [0.05]
    with live_server(tmp_path / "jobs") as base:
        over = httpx.get(f"{base}/api/cost-tracking/run-summary/job-over").json()
        under = httpx.get(f"{base}/api/cost-tracking/run-summary/job-under").json()
    assert over["withinBudget"] is False and under["withinBudget"] is True


def test_project_and_month_budgets_on_postgresql_see_every_process(pg_url: str) -> None:
    """Two processes (two ledgers) share one PostgreSQL store: each sees the other's spend
    from the store as of its last read, and its own job is counted once, by its charges while
    it runs and by the stored figures once the store has it finished."""
    from aura_otel.stores.postgres import PostgresStore

    from .fleet_support import build

    rules = BudgetRules.parse({"projects": {"alpha": {"hard": 1.0}}, "month": {"hard": 10.0}})
    with PostgresStore(pg_url) as store:
        old = build(Spec("job-old", "alpha", EPOCH_NS))  # November 2026, written by anyone
        store.import_document("job-old", dumps(old), datetime.now(UTC))
        old_cost = sum_money(r.get("cost_estimate") for r in old["records"])
        first = Budgets(rules, store, refresh_every=3600.0)
        second = Budgets(rules, store, refresh_every=3600.0)
        assert first.spent("project", "alpha") == pytest.approx(old_cost)
        assert second.spent("project", "alpha") == pytest.approx(old_cost)
        with pytest.raises(BudgetExceeded) as caught:
            first.check("job-new", "alpha", None, "openai", 1.0)
        assert caught.value.scope == "project"

        # The first process runs job-new and charges 0.30 to it.
        first.charge("job-new", "alpha", None, "openai", 0.30)
        assert first.spent("project", "alpha") == pytest.approx(old_cost + 0.30)
        assert second.spent("project", "alpha") == pytest.approx(old_cost)  # not read yet
        # job-new is written, finished, with what it really cost (0.09, not the estimate).
        new = build(Spec("job-new", "alpha", EPOCH_NS + 3600 * 10**9))
        store.import_document("job-new", dumps(new), datetime.now(UTC))
        new_cost = sum_money(r.get("cost_estimate") for r in new["records"])
        second.refresh()
        first.refresh()
        assert second.spent("project", "alpha") == pytest.approx(old_cost + new_cost)
        assert first.spent("project", "alpha") == pytest.approx(old_cost + new_cost)  # once
        with pytest.raises(BudgetExceeded):
            second.check("job-third", "alpha", None, "openai", 1.0 - old_cost - new_cost + 0.01)
        second.check("job-third", "alpha", None, "openai", 1.0 - old_cost - new_cost - 0.01)


def test_a_running_job_of_this_process_counts_by_its_charges(pg_url: str) -> None:
    from aura_otel.stores.postgres import PostgresStore

    from .fleet_support import build

    rules = BudgetRules.parse({"projects": {"alpha": {"hard": 5.0}}})
    with PostgresStore(pg_url) as store:
        ledger = Budgets(rules, store, refresh_every=3600.0)
        ledger.charge("job-live", "alpha", None, "openai", 0.50)
        running = build(Spec("job-live", "alpha", EPOCH_NS))
        running["collection_ended_at"] = None  # still running: its file holds records so far
        running.pop("summary", None)
        store.import_document("job-live", dumps(running), datetime.now(UTC))
        ledger.refresh()
        assert ledger.spent("project", "alpha") == pytest.approx(0.50)


def test_an_unreachable_store_keeps_the_last_spend_and_never_fails_a_stage(
    pg_cluster, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from aura_otel.stores.postgres import PostgresStore

    from .fleet_support import build

    rules = BudgetRules.parse({"projects": {"alpha": {"hard": 1.0}}})
    with PostgresStore(pg_url) as store:  # the default wait: a busy machine may be slow to connect
        old = build(Spec("job-old", "alpha", EPOCH_NS))
        store.import_document("job-old", dumps(old), datetime.now(UTC))
        cost = sum_money(r.get("cost_estimate") for r in old["records"])
        ledger = Budgets(rules, store, refresh_every=3600.0)
        assert ledger.spent("project", "alpha") == pytest.approx(cost)
        pg_cluster.stop()
        try:
            with caplog.at_level(logging.WARNING, logger="aura_otel"):
                ledger.refresh()
            assert "not refreshed" in caplog.text
            assert ledger.spent("project", "alpha") == pytest.approx(cost)  # the last figures
            ledger.check("job-new", "alpha", None, "openai", 0.5)  # judged on them, no error
            with pytest.raises(BudgetExceeded):
                ledger.check("job-new", "alpha", None, "openai", 1.0)
        finally:
            pg_cluster.start()


def test_a_budgets_file_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path: Path) -> None:
    """Reading a FIFO nobody writes to waits for good, /dev/zero never ends: configure() and
    `aura-otel serve` (which read $AURA_OTEL_BUDGETS_FILE at start) must fail at once instead."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "budgets.json"
    os.mkfifo(fifo)
    src = Path(__file__).resolve().parents[1] / "src"
    for name in (str(fifo), "/dev/zero"):
        result = subprocess.run(
            [sys.executable, "-m", "aura_otel.cli", "serve", "--jobs-dir", str(tmp_path)],
            env={**os.environ, "PYTHONPATH": str(src), "AURA_OTEL_BUDGETS_FILE": name},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert f"budgets file {name} cannot be read" in result.stderr
        assert "not a regular file" in result.stderr
