"""Anomalies: what is far outside the recent history of comparable work.

The old studio flagged an operation slower than 60 s or dearer than $1. A fixed threshold is
wrong in both directions: a 4-minute render is normal and a 20-second script call is not, and
it never notices a stage that doubled from 2 s to 4 s. Here every figure is compared with the
recent history of the same kind of work, with robust statistics (median and MAD), which a
few past outliers cannot drag: see ``docs/insights.md``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .source import JobSummary

#: How many earlier comparable jobs (or operations) form the baseline.
HISTORY = 50
#: Fewer earlier comparable jobs than this: no verdict (too little history to judge).
MIN_HISTORY = 10
#: How many robust standard deviations above the median counts as far outside.
K = 3.5
#: MAD × 1.4826 estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
#: A figure must also exceed the median by this factor: a tight history (MAD near 0) would
#: otherwise flag a job that is a few milliseconds slower.
MIN_RATIO = 1.25
#: Error-rate jump: z-score of the recent rate against the baseline rate, and minimum errors.
ERROR_Z = 3.0
MIN_RECENT_ERRORS = 3
#: Latency trend: recent days compared with the days before them.
RECENT_DAYS = 3


@dataclass(frozen=True)
class Anomaly:
    kind: (
        str  # job_cost | job_duration | stage_cost | stage_latency | provider_errors | stage_trend
    )
    subject: str  # a job id, a provider or a stage
    job_id: str | None
    stage: str | None
    provider: str | None
    value: float
    threshold: float
    median: float
    history: int
    explanation: str
    at: str

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "jobId": self.job_id,
            "stage": self.stage,
            "provider": self.provider,
            "value": self.value,
            "threshold": self.threshold,
            "median": self.median,
            "history": self.history,
            "explanation": self.explanation,
            "at": self.at,
        }


def _median(values: list[float]) -> float:
    values.sort()
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def robust_threshold(history: Iterable[float], k: float = K) -> tuple[float, float]:
    """(threshold, median) of a history: max(median + k·1.4826·MAD, median × MIN_RATIO)."""
    values = list(history)
    median = _median(values)
    mad = _median([abs(x - median) for x in values])
    return max(median + k * MAD_SCALE * mad, median * MIN_RATIO), median


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Window:
    """The last ``size`` values, kept in arrival order and in sorted order at once.

    Judging a year of jobs checks about a million figures against their windows: sorting a
    window per check was most of the first request's time. Kept sorted, the median is a lookup
    and an update is two binary searches on a list of at most ``size`` floats.
    """

    __slots__ = ("_order", "_size", "sorted")

    def __init__(self, size: int) -> None:
        self._order: deque[float] = deque()
        self._size = size
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def append(self, value: float) -> None:
        if math.isnan(value):  # NaN is no figure, and would break the sorted order
            return
        if len(self._order) == self._size:
            old = self._order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
        self._order.append(value)
        insort(self.sorted, value)


def _sorted_median(values: list[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def _check(window: _Window, value: float) -> tuple[float, float] | None:
    if len(window) < MIN_HISTORY or value <= 0:
        return None
    values = window.sorted
    # The threshold is never below median × MIN_RATIO: most figures are ordinary and end
    # here, without the MAD (judging a year of jobs the first time is mostly medians).
    if value <= _sorted_median(values) * MIN_RATIO:
        return None
    threshold, median = robust_threshold(values)
    return (threshold, median) if value > threshold else None


def job_anomalies(
    jobs: Iterable[JobSummary],
    in_period: Iterable[str] | None = None,
    history: int = HISTORY,
    verdicts: dict[str, list[Anomaly]] | None = None,
) -> list[Anomaly]:
    """Jobs (and their stages) far above the last ``history`` comparable ones before them.

    Comparable jobs are those of the same project; comparable stage operations are those of
    the same project, stage and provider. ``jobs`` is the whole history (any order); verdicts
    are given for the ids in ``in_period`` (all when None) but every job feeds the baseline.

    ``verdicts`` memoises per-job results for one unchanged history: walking the baselines is
    cheap, the medians are not, and the fleet view asks about the same jobs on every request.
    """
    wanted = None if in_period is None else set(in_period)
    if verdicts is not None and wanted is not None and wanted.issubset(verdicts):
        # Every judged job already has its verdict for this history: no walk at all.
        return [a for job_id in sorted(wanted) for a in verdicts[job_id]]
    pool = list(jobs)
    if wanted is not None:
        # Only the judged jobs' projects, and nothing after the last judged job, can matter:
        # a job page judges one job without walking the whole fleet.
        judged = [j for j in pool if j.job_id in wanted]
        projects = {j.project for j in judged}
        last = max((j.started for j in judged), default=float("-inf"))
        pool = [j for j in pool if j.project in projects and j.started <= last]
    ordered = sorted(pool, key=lambda j: (j.started, j.job_id))
    cost_hist: dict[str, _Window] = defaultdict(lambda: _Window(history))
    time_hist: dict[str, _Window] = defaultdict(lambda: _Window(history))
    op_cost: dict[tuple[str, str, str], _Window] = defaultdict(lambda: _Window(history))
    op_time: dict[tuple[str, str, str], _Window] = defaultdict(lambda: _Window(history))
    found: list[Anomaly] = []
    for job in ordered:
        if job.status == "running":
            continue
        judge = wanted is None or job.job_id in wanted
        known = verdicts.get(job.job_id) if verdicts is not None and judge else None
        if known is not None:
            found.extend(known)
            judge = False
        start = len(found)
        cost = job.cost
        if judge:
            for kind, value, window, unit in (
                ("job_cost", cost, cost_hist[job.project], "$"),
                ("job_duration", job.elapsed_ms / 1000, time_hist[job.project], "s"),
            ):
                hit = _check(window, value)
                if hit:
                    threshold, median = hit
                    found.append(
                        Anomaly(
                            kind,
                            job.job_id,
                            job.job_id,
                            None,
                            None,
                            value,
                            threshold,
                            median,
                            len(window),
                            f"{_fmt(value, unit)} against a median of "
                            f"{_fmt(median, unit)} over the last {len(window)} jobs of project "
                            f"{job.project or '(none)'} (threshold {_fmt(threshold, unit)})",
                            _day(job.started),
                        )
                    )
        cost_hist[job.project].append(cost)
        time_hist[job.project].append(job.elapsed_ms / 1000)
        for op in job.ops:
            key = (job.project, op.stage, op.provider)
            checks = [("stage_latency", op.latency_ms / 1000, op_time[key], "s")]
            if op.cost is not None and not op.cache_hit:
                # A cache hit costs 0 by design: it is not comparable work for a cost baseline.
                checks.append(("stage_cost", op.cost, op_cost[key], "$"))
            for kind, value, window, unit in checks:
                if judge:
                    hit = _check(window, value)
                    if hit:
                        threshold, median = hit
                        found.append(
                            Anomaly(
                                kind,
                                f"{job.job_id} · {op.stage}",
                                job.job_id,
                                op.stage,
                                op.provider or None,
                                value,
                                threshold,
                                median,
                                len(window),
                                f"{op.stage} ({op.provider or 'no provider'}) took "
                                f"{_fmt(value, unit)} against a median of {_fmt(median, unit)} "
                                f"over its last {len(window)} runs (threshold "
                                f"{_fmt(threshold, unit)})",
                                _day(job.started),
                            )
                        )
                window.append(value)
        if verdicts is not None and known is None and (wanted is None or job.job_id in wanted):
            verdicts[job.job_id] = found[start:]
    return found


def _fmt(value: float, unit: str) -> str:
    return f"${value:,.4f}" if unit == "$" else f"{value:,.2f} s"


def provider_error_jumps(jobs: Iterable[JobSummary], since: float, until: float) -> list[Anomaly]:
    """Providers whose error rate in the last day of the period jumped above the period before.

    A binomial z-test: with ``p`` the baseline rate and ``n`` the recent operations, the
    recent rate must exceed ``p + 3·sqrt(p(1-p)/n)`` (and count at least three errors), so a
    provider with one failure in four calls is not flagged, while 30 failures in 100 against
    a usual 2% is.
    """
    split = max(since, until - 86400)
    base: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    recent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for job in jobs:
        for op in job.ops:
            if not op.provider:
                continue
            at = op.started_ns / 1e9 or job.started
            if not since <= at < until:
                continue
            bucket = recent if at >= split else base
            bucket[op.provider][0] += op.status == "error"
            bucket[op.provider][1] += 1
    found = []
    for provider, (errors, total) in sorted(recent.items()):
        b_errors, b_total = base.get(provider, [0, 0])
        if errors < MIN_RECENT_ERRORS or b_total < MIN_HISTORY:
            continue
        p = max(b_errors / b_total, 1 / (b_total + 1))  # never 0: a clean past is not certainty
        rate = errors / total
        threshold = p + ERROR_Z * math.sqrt(p * (1 - p) / total)
        if rate > threshold:
            found.append(
                Anomaly(
                    "provider_errors",
                    provider,
                    None,
                    None,
                    provider,
                    rate,
                    threshold,
                    b_errors / b_total,
                    b_total,
                    f"{provider}: {errors} of {total} operations failed in the last day "
                    f"({rate:.1%}) against {b_errors / b_total:.1%} before (threshold {threshold:.1%})",
                    _day(split),
                )
            )
    return found


def stage_latency_trends(jobs: Iterable[JobSummary], since: float, until: float) -> list[Anomaly]:
    """Stages whose median latency over the last days rose far above their earlier days.

    Daily medians damp single slow runs; the recent median of them is compared with the
    earlier days' median + K·MAD (and at least MIN_RATIO above it).
    """
    daily: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        if not since <= job.started < until:
            continue
        day = int(job.started // 86400)
        for op in job.ops:
            daily[op.stage][day].append(op.latency_ms / 1000)
    last_day = int((until - 1) // 86400)
    found = []
    for stage, days in sorted(daily.items()):
        medians = {d: _median(v) for d, v in days.items()}
        earlier = [m for d, m in medians.items() if d <= last_day - RECENT_DAYS]
        recent = [m for d, m in medians.items() if d > last_day - RECENT_DAYS]
        if len(earlier) < 5 or not recent:
            continue
        threshold, median = robust_threshold(earlier)
        value = _median(recent)
        if value > threshold:
            found.append(
                Anomaly(
                    "stage_trend",
                    stage,
                    None,
                    stage,
                    None,
                    value,
                    threshold,
                    median,
                    len(earlier),
                    f"{stage}: median latency {value:.2f} s over the last {RECENT_DAYS} days against "
                    f"{median:.2f} s on the {len(earlier)} days before (threshold {threshold:.2f} s)",
                    _day(until),
                )
            )
    return found
