"""The anomaly detector's rolling windows give the verdicts of the plain definition.

The detector keeps each baseline sorted as it slides (judging a year of jobs is a million
checks); the reference here recomputes every threshold from the last ``HISTORY`` values by
the documented rule, and both must flag exactly the same figures with the same numbers.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from aura_otel.insights.anomalies import (
    HISTORY,
    MIN_HISTORY,
    MIN_RATIO,
    job_anomalies,
    robust_threshold,
)
from aura_otel.insights.source import JobSummary, Op


def _jobs(rng: random.Random, n: int) -> list[JobSummary]:
    jobs = []
    for i in range(n):
        ops = []
        for stage in rng.sample(["script", "tts", "visuals", "render"], rng.randint(1, 4)):
            ops.append(
                Op(
                    stage=stage,
                    provider=rng.choice(["openai", "elevenlabs", ""]),
                    model="m",
                    status="ok",
                    latency_ms=int(rng.lognormvariate(7, 0.6 if rng.random() < 0.97 else 2)),
                    cost=rng.choice([None, round(rng.lognormvariate(-4, 0.5), 6), 0.0, 0.2]),
                    retries=0,
                    cache_hit=rng.random() < 0.1,
                    saved=0.0,
                    error_code="",
                    started_ns=0,
                )
            )
        jobs.append(
            JobSummary(
                job_id=f"job-{i:05d}",
                project=rng.choice(["p1", "p2", ""]),
                # ties in start times are broken by job id, in both implementations
                started=1_790_000_000 + rng.randint(0, n // 2) * 60.0,
                elapsed_ms=rng.choice([int(rng.lognormvariate(10, 0.4)), 0, 10**9]),
                status=rng.choice(["ok", "ok", "warn", "failed", "running"]),
                ops=tuple(ops),
            )
        )
    return jobs


def _reference(jobs: list[JobSummary]) -> list[tuple[str, str, str | None, float, float, float]]:
    """Every threshold recomputed from scratch from the last HISTORY values."""
    hist: dict[object, list[float]] = defaultdict(list)
    found = []

    def check(kind: str, key: object, job: JobSummary, stage: str | None, value: float) -> None:
        window = hist[key][-HISTORY:]
        if len(window) >= MIN_HISTORY and value > 0:
            threshold, median = robust_threshold(window)
            if value > threshold:
                assert value > median * MIN_RATIO
                found.append((kind, job.job_id, stage, value, threshold, median))
        hist[key].append(value)

    for job in sorted(jobs, key=lambda j: (j.started, j.job_id)):
        if job.status == "running":
            continue
        check("job_cost", ("c", job.project), job, None, job.cost)
        check("job_duration", ("t", job.project), job, None, job.elapsed_ms / 1000)
        for op in job.ops:
            key = (job.project, op.stage, op.provider)
            check("stage_latency", ("ot", key), job, op.stage, op.latency_ms / 1000)
            if op.cost is not None and not op.cache_hit:
                check("stage_cost", ("oc", key), job, op.stage, op.cost)
    return found


@pytest.mark.parametrize("seed", range(8))
def test_rolling_windows_flag_what_the_definition_flags(seed: int) -> None:
    rng = random.Random(seed)
    jobs = _jobs(rng, 1500)
    rng.shuffle(jobs)  # the detector orders the history itself
    got = [(a.kind, a.job_id, a.stage, a.value, a.threshold, a.median) for a in job_anomalies(jobs)]
    expected = _reference(jobs)
    assert expected, "the random fleet must contain outliers for the comparison to mean much"
    assert sorted(got) == sorted(expected)


def test_a_window_stays_sorted_over_nan_inf_and_repeats() -> None:
    from aura_otel.insights.anomalies import _Window

    rng = random.Random(3)
    window = _Window(HISTORY)
    kept: list[float] = []
    for _ in range(5000):
        value = rng.choice([float("nan"), float("inf"), 0.0, 1.0, 1.0, rng.random(), -2.5])
        window.append(value)
        if not math.isnan(value):  # NaN is no figure: left out
            kept = [*kept, value][-HISTORY:]
        assert window.sorted == sorted(kept)
        assert len(window) == len(kept)
