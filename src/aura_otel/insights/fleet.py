"""The fleet figures: a period and filters in, one table per chart out.

Each chart is a :class:`Table` (columns and rows) so that the SVG, the CSV and the JSON
download show the very same numbers. Money is summed with :func:`aura_otel.schema.sum_money`
(the one rule for adding costs); an unpriced operation adds nothing to a cost and is counted
apart, never as $0.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..figures import JobStatus
from ..schema import sum_money
from .anomalies import (
    Anomaly,
    job_anomalies,
    provider_error_jumps,
    stage_latency_trends,
)
from .source import JobSource, JobSummary, Op, iter_summaries

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP_JOBS = 10
FILTER_NAMES = ("project", "provider", "model", "stage", "status")


@dataclass(frozen=True)
class Filters:
    since: date
    until: date  # inclusive: the last day shown
    project: str = ""
    provider: str = ""
    model: str = ""
    stage: str = ""
    status: str = ""

    @property
    def start(self) -> datetime:
        return datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        last = datetime(self.until.year, self.until.month, self.until.day, tzinfo=UTC)
        try:
            return last + timedelta(days=1)
        except OverflowError:  # until 9999-12-31: the end of time
            return datetime.max.replace(tzinfo=UTC)

    def query(self) -> dict[str, str]:
        values = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        values.update({name: getattr(self, name) for name in FILTER_NAMES if getattr(self, name)})
        return values

    def op_matches(self, op: Op) -> bool:
        return (
            (not self.provider or op.provider == self.provider)
            and (not self.model or op.model == self.model)
            and (not self.stage or op.stage == self.stage)
        )

    def job_matches(self, job: JobSummary, status: str) -> bool:
        """``status``: the job's as the views name it now (see :meth:`JobSummary.status_at`)."""
        return (not self.project or job.project == self.project) and (
            not self.status or status == self.status
        )


def parse_filters(params: Mapping[str, str], latest: datetime | None) -> Filters:
    """Filters from query parameters; ValueError with a readable message when one is bad.

    Without dates the period is the 30 days up to the latest job's day (not today: a folder
    of older jobs still shows something).
    """

    def day(name: str) -> date | None:
        raw = (params.get(name) or "").strip()
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{name} must be a date like 2026-11-20, not {raw!r}") from None

    until = day("until") or (latest or datetime.now(UTC)).date()
    # The default period starts no earlier than the calendar does (until=0001-01-05).
    since = day("since") or date.fromordinal(max(1, until.toordinal() - (DEFAULT_DAYS - 1)))
    if since > until:
        raise ValueError("since must not be after until")
    if (until - since).days >= MAX_DAYS:
        raise ValueError(f"a period is at most {MAX_DAYS} days")
    text = {name: (params.get(name) or "").strip()[:200] for name in FILTER_NAMES}
    return Filters(since=since, until=until, **text)


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    kind: str = "bar"  # bar | column | pair | table
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "chart": self.key,
            "title": self.title,
            "columns": self.columns,
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None else _csv_safe(v) for v in row])
        return out.getvalue()


def _csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @) is quoted with ``'``:
    job ids and provider names come from spans."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@dataclass
class Fleet:
    filters: Filters
    jobs: int
    operations: int
    total_cost: float
    unpriced: int
    cache_hits: int
    saved: float
    tables: dict[str, Table] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)
    #: Epoch seconds at which a job these figures call running turns abandoned (None: none
    #: will): the figures hold until then, however the clock moves.
    expires: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "period": {
                "since": self.filters.since.isoformat(),
                "until": self.filters.until.isoformat(),
            },
            "filters": {n: getattr(self.filters, n) or None for n in FILTER_NAMES},
            "totals": {
                "jobs": self.jobs,
                "operations": self.operations,
                "cost": self.total_cost,
                "unpricedOperations": self.unpriced,
                "cacheHits": self.cache_hits,
                "cacheSaved": self.saved,
            },
            "charts": {key: table.to_json() for key, table in self.tables.items()},
            "anomalies": [a.to_json() for a in self.anomalies],
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (a value that really occurred)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[rank - 1]


def _money(values: Iterable[float]) -> float:
    values = list(values)
    return sum_money(values) if values else 0.0


def _latency_table(key: str, title: str, groups: Mapping[str, list[float]]) -> Table:
    rows = []
    for name, values in sorted(groups.items()):
        values.sort()
        rows.append(
            [name, len(values), round(percentile(values, 50), 3), round(percentile(values, 95), 3)]
        )
    return Table(key, title, ["name", "operations", "p50Seconds", "p95Seconds"], rows, "pair", "s")


def compute(
    source: JobSource,
    filters: Filters,
    *,
    history: Iterable[JobSummary] | None = None,
    verdicts: dict[str, list[Anomaly]] | None = None,
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> Fleet:
    """The fleet figures for ``filters``; ``history`` (default: every job of the source)
    feeds the anomaly baselines, which reach back before the period. A running job quiet for
    longer than ``abandoned_after`` seconds before ``now`` is abandoned, as in the job list."""
    everything = list(history) if history is not None else list(iter_summaries(source))
    start, end = filters.start.timestamp(), filters.end.timestamp()
    in_period = [j for j in everything if start <= j.started < end]
    now = now if now is not None else datetime.now(UTC)
    statuses = {j.job_id: j.status_at(now, abandoned_after) for j in in_period}
    expires = None
    if abandoned_after is not None:
        turning = [
            last.timestamp() + abandoned_after
            for j in in_period
            if statuses[j.job_id] == JobStatus.RUNNING and (last := j.last_active()) is not None
        ]
        expires = min(turning, default=None)
    choices: dict[str, set[str]] = {n: set() for n in FILTER_NAMES}
    for job in in_period:
        choices["project"].add(job.project)
        choices["status"].add(statuses[job.job_id])
        for op in job.ops:
            choices["provider"].add(op.provider)
            choices["model"].add(op.model)
            choices["stage"].add(op.stage)
    per_day: dict[str, list[float]] = defaultdict(list)
    by: dict[str, dict[str, list[float]]] = {
        k: defaultdict(list) for k in ("stage", "provider", "model")
    }
    lat: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in ("stage", "provider")}
    reliability: dict[str, list[int]] = defaultdict(
        lambda: [0, 0, 0, 0]
    )  # ops, errors, retried, retries
    cache = [0, 0]
    saved: list[float] = []
    unpriced = 0
    job_rows: list[tuple[str, str, float, int, str]] = []
    matched_ids = []
    for job in in_period:
        status = statuses[job.job_id]
        if not filters.job_matches(job, status):
            continue
        ops = [op for op in job.ops if filters.op_matches(op)]
        if not ops and (filters.provider or filters.model or filters.stage):
            continue
        matched_ids.append(job.job_id)
        costs = [op.cost for op in ops if op.cost is not None]
        job_cost = _money(costs)
        per_day[job.day].append(job_cost)
        job_rows.append((job.job_id, job.project, job_cost, job.elapsed_ms, status))
        for op in ops:
            if op.cost is not None:
                by["stage"][op.stage].append(op.cost)
                by["provider"][op.provider or "(none)"].append(op.cost)
                by["model"][op.model or "(none)"].append(op.cost)
            lat["stage"][op.stage].append(op.latency_ms / 1000)
            lat["provider"][op.provider or "(none)"].append(op.latency_ms / 1000)
            r = reliability[op.provider or "(none)"]
            r[0] += 1
            r[1] += op.status == "error"
            r[2] += op.retries > 0
            r[3] += op.retries
            cache[0] += 1
            cache[1] += op.cache_hit
            if op.saved:
                saved.append(op.saved)
        unpriced += sum(1 for op in ops if op.unpriced)
    tables: dict[str, Table] = {}
    day = filters.since
    days = []
    while day <= filters.until:
        key = day.isoformat()
        days.append([key, _money(per_day.get(key, [])), len(per_day.get(key, []))])
        if day == date.max:  # a period ending on 9999-12-31 has no next day
            break
        day += timedelta(days=1)
    tables["cost_per_day"] = Table(
        "cost_per_day", "Cost per day", ["day", "cost", "jobs"], days, "column", "$"
    )
    for name in ("stage", "provider", "model"):
        totals = sorted(
            ((k, _money(v), len(v)) for k, v in by[name].items()), key=lambda r: (-r[1], r[0])
        )
        rows: list[list[Any]] = [list(r) for r in totals]
        tables[f"cost_by_{name}"] = Table(
            f"cost_by_{name}",
            f"Cost by {name}",
            [name, "cost", "pricedOperations"],
            rows,
            "bar",
            "$",
        )
    tables["latency_by_stage"] = _latency_table(
        "latency_by_stage", "Latency by stage (p50 / p95)", lat["stage"]
    )
    tables["latency_by_provider"] = _latency_table(
        "latency_by_provider", "Latency by provider (p50 / p95)", lat["provider"]
    )
    tables["provider_reliability"] = Table(
        "provider_reliability",
        "Error and retry rates by provider",
        [
            "provider",
            "operations",
            "errors",
            "errorRate",
            "retriedOperations",
            "retryRate",
            "retries",
        ],
        [
            [p, n, e, round(e / n, 4) if n else 0.0, rt, round(rt / n, 4) if n else 0.0, rs]
            for p, (n, e, rt, rs) in sorted(reliability.items())
        ],
        "pair",
        "%",
    )
    total_saved = _money(saved)
    tables["cache"] = Table(
        "cache",
        "Cache hits and savings",
        ["operations", "cacheHits", "hitRate", "saved"],
        [[cache[0], cache[1], round(cache[1] / cache[0], 4) if cache[0] else 0.0, total_saved]],
        "table",
    )
    expensive = sorted(job_rows, key=lambda r: (-r[2], r[0]))[:TOP_JOBS]
    slowest = sorted(job_rows, key=lambda r: (-r[3], r[0]))[:TOP_JOBS]
    cols = ["jobId", "project", "cost", "elapsedSeconds", "status"]
    tables["expensive_jobs"] = Table(
        "expensive_jobs",
        "Most expensive jobs",
        cols,
        [[j, p, c, ms / 1000, s] for j, p, c, ms, s in expensive],
        "bar",
        "$",
    )
    tables["slowest_jobs"] = Table(
        "slowest_jobs",
        "Slowest jobs",
        cols,
        [[j, p, c, ms / 1000, s] for j, p, c, ms, s in slowest],
        "bar",
        "s",
    )
    anomalies = sorted(
        job_anomalies(everything, matched_ids, verdicts=verdicts),
        key=lambda a: (a.at, a.job_id or "", a.kind, a.subject),
    )
    anomalies += provider_error_jumps(in_period, start, end)
    anomalies += stage_latency_trends(in_period, start, end)
    tables["anomalies"] = Table(
        "anomalies",
        "Anomalies",
        [
            "kind",
            "subject",
            "jobId",
            "value",
            "threshold",
            "median",
            "history",
            "at",
            "explanation",
        ],
        [
            [
                a.kind,
                a.subject,
                a.job_id,
                round(a.value, 6),
                round(a.threshold, 6),
                round(a.median, 6),
                a.history,
                a.at,
                a.explanation,
            ]
            for a in anomalies
        ],
        "table",
    )
    return Fleet(
        filters=filters,
        jobs=len(job_rows),
        operations=cache[0],
        total_cost=_money(r[2] for r in job_rows),
        unpriced=unpriced,
        cache_hits=cache[1],
        saved=total_saved,
        tables=tables,
        anomalies=anomalies,
        choices={k: sorted(v - {""}) for k, v in choices.items()},
        expires=expires,
    )


ANOMALY_KINDS = (
    "job_cost",
    "job_duration",
    "stage_cost",
    "stage_latency",
    "provider_errors",
    "stage_trend",
)


def prometheus_text(fleet: Fleet) -> str:
    """``aura_insights_anomalies{kind=...}`` (every kind, zeros included, so an alert rule
    sees the series before the first anomaly) and the period's totals."""
    counts = dict.fromkeys(ANOMALY_KINDS, 0)
    for anomaly in fleet.anomalies:
        counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
    lines = [
        "# HELP aura_insights_anomalies Anomalies in the period, by kind (docs/insights.md).",
        "# TYPE aura_insights_anomalies gauge",
        *(f'aura_insights_anomalies{{kind="{kind}"}} {n}' for kind, n in counts.items()),
        "# HELP aura_insights_jobs Jobs in the period matching the filters.",
        "# TYPE aura_insights_jobs gauge",
        f"aura_insights_jobs {fleet.jobs}",
        "# HELP aura_insights_cost_usd Cost of the period's jobs (unpriced operations excluded).",
        "# TYPE aura_insights_cost_usd gauge",
        f"aura_insights_cost_usd {fleet.total_cost}",
    ]
    return "\n".join(lines) + "\n"
