"""What the pages show, computed once in Python so the templates only lay it out.

Formatting rules come from ``docs/run-details-page.md``: money ``$`` with four decimals,
latency in seconds (one decimal in cards, two in the table), tokens with thousands separators,
success rate with one decimal. Every figure comes from the v1 file's summary; only a running
job (which has no summary yet) shows the summary of its records so far, labelled as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from .. import figures, legacy
from ..figures import (
    JOB_STATUS_LABELS,
    NOT_AVAILABLE,
    STATUS_ICONS,
    STATUS_RANK,
    STATUS_WORDS,
    clock,
    count,
    date_time,
    duration,
    money,
    percent,
    seconds,
)
from ..schema import STAGES

# The templates format through this module (``fmt``): the names above are its vocabulary.
__all__ = [
    "JOB_STATUS_LABELS",
    "NOT_AVAILABLE",
    "RunDetails",
    "clock",
    "count",
    "date_time",
    "duration",
    "job_url",
    "money",
    "now_text",
    "op_url",
    "percent",
    "row_cost",
    "run_details",
    "seconds",
    "short_duration",
    "sort_rows",
]

UNPRICED = figures.PRICING_UNPRICED
SORT_COLUMNS = ("stage", "status", "latency", "cost", "provider", "model", "tokens", "message")
MIN_BAR_PERCENT = 0.4  # a zero-length operation still gets a visible sliver on the timeline


def row_cost(row: Mapping[str, Any]) -> str:
    """A job list row's cost, by the Total Cost card's rule (:func:`figures.total_cost`): a
    job whose every operation is unpriced shows "unpriced", as its page does."""
    if row.get("totalCost") is None:
        return NOT_AVAILABLE
    summary = {"total_operations": row.get("operationCount") or 0, "total_cost": row["totalCost"]}
    return figures.total_cost(
        summary, row.get("unpricedOperations") or 0, row.get("operationCount") or 0
    )


def job_url(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}/telemetry"


def op_url(job_id: str, position: int) -> str:
    """An operation's own page: the drill-down works as a plain link without JavaScript."""
    return f"{job_url(job_id)}/ops/{position}"


# -- the Run Details page ------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    label: str
    value: str
    note: str = ""
    key: str = ""


@dataclass(frozen=True)
class StageRow:
    position: int
    stage: str
    scene_index: int | None
    status: str
    latency_ms: int
    cost: float | None
    provider: str | None
    model: str | None
    tokens: int | None
    message: str
    error_code: str | None
    started_at: str
    ended_at: str
    unpriced: bool = False

    @property
    def label(self) -> str:
        return self.stage if self.scene_index is None else f"{self.stage} #{self.scene_index}"

    @property
    def icon(self) -> str:
        return STATUS_ICONS.get(self.status, "?")

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)

    def sort_key(self, column: str) -> Any:
        """Value a column sorts by; the same values go into ``data-sort`` for the script."""
        return {
            "stage": (STAGES.index(self.stage) if self.stage in STAGES else 99) * 10_000
            + (self.scene_index or 0),
            "status": STATUS_RANK.get(self.status, 3),
            "latency": self.latency_ms,
            "cost": self.cost,
            "provider": (self.provider or "").lower() or None,
            "model": (self.model or "").lower() or None,
            "tokens": self.tokens,
            "message": self.message.lower() or None,
        }[column]


@dataclass(frozen=True)
class TimelineBar:
    label: str
    status: str
    left: float
    width: float
    title: str
    position: int = 0
    duration: str = ""


@dataclass(frozen=True)
class Tick:
    left: float
    label: str


def _ms_clock(value: Any) -> str:
    parsed = figures.parse_time(value)
    return parsed.strftime("%H:%M:%S.%f")[:-3] if parsed else NOT_AVAILABLE


def short_duration(ms: float) -> str:
    """A bar's duration in the unit a reader compares at a glance: ms below one second."""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.0f} min {ms % 60_000 / 1000:.0f} s"


def ticks(total_seconds: float, target: int = 6) -> list[Tick]:
    """Axis ticks at round steps (1, 2, 5 × 10ⁿ seconds), about ``target`` of them: a reader
    places a bar by the nearest tick, so ticks must fall on numbers worth reading."""
    if total_seconds <= 0:
        return []
    raw = total_seconds / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    out = []
    n = 0
    while n * step <= total_seconds * 1.0000001:
        value = n * step
        label = "0" if not value else f"{value:g} s" if value >= 1 else short_duration(value * 1000)
        out.append(Tick(round(value / total_seconds * 100, 3), label))
        n += 1
    return out


@dataclass(frozen=True)
class CostBar:
    stage: str
    cost: float
    share: float
    unpriced: int
    priced: int

    @property
    def cost_text(self) -> str:
        """A stage whose every operation has an unknown price shows "unpriced", never $0.0000."""
        return UNPRICED if self.unpriced and not self.priced else money(self.cost)


@dataclass(frozen=True)
class Issue:
    kind: str
    stage: str
    provider: str
    code: str
    message: str
    time: str


@dataclass(frozen=True)
class SortHeader:
    column: str
    label: str
    href: str
    aria_sort: str
    numeric: bool


@dataclass
class RunDetails:
    job_id: str
    status: str
    correlation_id: str
    started: str
    finished: str
    running: bool
    cards: list[Card]
    rows: list[StageRow]
    headers: list[SortHeader]
    timeline: list[TimelineBar]
    timeline_total: str
    timeline_ticks: list[Tick]
    cost_bars: list[CostBar]
    providers: list[tuple[str, int]]
    suggestions: list[dict[str, Any]]
    issues: list[Issue]
    unpriced: int
    traces: list[tuple[str, str | None]] = field(default_factory=list)
    trace_backend: str = "Jaeger"
    sort: str | None = None
    direction: str = "asc"

    @property
    def status_label(self) -> str:
        return JOB_STATUS_LABELS.get(self.status, self.status)

    @property
    def trace_links(self) -> list[str]:
        return [url for _, url in self.traces if url]

    @property
    def short_correlation(self) -> str:
        return (
            self.correlation_id[:8] + "…" if len(self.correlation_id) > 9 else self.correlation_id
        )


def _rows(records: Sequence[Mapping[str, Any]]) -> list[StageRow]:
    rows = []
    for position, rec in enumerate(records):
        rows.append(
            StageRow(
                position=position,
                stage=figures.lower(rec["stage"]),
                scene_index=rec.get("scene_index"),
                status=figures.record_status(rec),
                latency_ms=int(rec.get("latency_ms") or 0),
                cost=rec.get("cost_estimate"),
                provider=rec.get("provider"),
                model=rec.get("model_id"),
                tokens=figures.record_tokens(rec),
                message=rec.get("message") or "",
                error_code=rec.get("error_code"),
                started_at=rec["started_at"],
                ended_at=rec["ended_at"],
                unpriced=figures.is_unpriced(rec),
            )
        )
    return rows


def sort_rows(rows: list[StageRow], column: str | None, direction: str) -> list[StageRow]:
    """Rows sorted by ``column``; rows without a value (N/A, unpriced) always go last, and rows
    with equal values keep the file's order (the page's script sorts the same way)."""
    if column not in SORT_COLUMNS:
        return rows
    present = [r for r in rows if r.sort_key(column) is not None]
    missing = [r for r in rows if r.sort_key(column) is None]
    # Python's sort is stable even when reversed: ties keep the file's order both ways.
    present.sort(key=lambda r: r.sort_key(column), reverse=direction == "desc")
    return present + missing


def _headers(job_id: str, column: str | None, direction: str) -> list[SortHeader]:
    labels = {
        "stage": "Stage",
        "status": "Status",
        "latency": "Latency",
        "cost": "Cost",
        "provider": "Provider",
        "model": "Model",
        "tokens": "Tokens",
        "message": "Message",
    }
    headers = []
    for name in SORT_COLUMNS:
        active = name == column
        next_dir = "desc" if active and direction == "asc" else "asc"
        headers.append(
            SortHeader(
                column=name,
                label=labels[name],
                href=f"{job_url(job_id)}?{urlencode({'sort': name, 'dir': next_dir})}#stages",
                aria_sort=("ascending" if direction == "asc" else "descending")
                if active
                else "none",
                numeric=name in ("latency", "cost", "tokens"),
            )
        )
    return headers


def _timeline(doc: Mapping[str, Any], rows: Sequence[StageRow]) -> tuple[list[TimelineBar], float]:
    start = figures.parse_time(doc.get("collection_started_at"))
    ends = [figures.parse_time(doc.get("collection_ended_at"))] + [
        figures.parse_time(r.ended_at) for r in rows
    ]
    known_ends = [e for e in ends if e is not None]
    if start is None:
        return [], 0.0
    end = max([*known_ends, start])
    total = max((end - start).total_seconds(), 0.001)
    bars = []
    for row in rows:
        row_start = figures.parse_time(row.started_at) or start
        row_end = figures.parse_time(row.ended_at) or row_start
        left = min(max((row_start - start).total_seconds() / total * 100, 0.0), 100.0)
        width = max((row_end - row_start).total_seconds() / total * 100, MIN_BAR_PERCENT)
        left = min(left, 100.0 - MIN_BAR_PERCENT)
        width = min(width, 100.0 - left)
        offset = (row_start - start).total_seconds()
        bars.append(
            TimelineBar(
                label=row.label,
                status=row.status,
                left=round(left, 3),
                width=round(width, 3),
                title=(
                    f"{row.label}: {row.status_word}, starts at +{offset * 1000:,.0f} ms, "
                    f"lasts {row.latency_ms:,} ms ({_ms_clock(row.started_at)}–"
                    f"{_ms_clock(row.ended_at)} UTC)"
                ),
                position=row.position,
                duration=short_duration(row.latency_ms),
            )
        )
    return bars, total


def _cost_bars(summary: Mapping[str, Any], rows: Sequence[StageRow]) -> list[CostBar]:
    total = float(summary.get("total_cost") or 0)
    bars = []
    for stage, cost in (summary.get("cost_by_stage") or {}).items():
        stage = str(stage).lower()
        cost = float(cost or 0)
        unpriced = sum(1 for r in rows if r.stage == stage and r.unpriced)
        priced = sum(1 for r in rows if r.stage == stage and r.cost is not None)
        bars.append(
            CostBar(
                stage=stage,
                cost=cost,
                share=cost / total * 100 if total else 0.0,
                unpriced=unpriced,
                priced=priced,
            )
        )
    # Largest first; among equal costs, stages with no price at all go after priced ones.
    bars.sort(
        key=lambda b: (-b.cost, b.priced == 0, STAGES.index(b.stage) if b.stage in STAGES else 99)
    )
    return bars


def _issues(diagnostics: Mapping[str, Any]) -> list[Issue]:
    issues = [
        Issue(
            "Failure",
            d["stage"],
            d["provider"],
            d["errorCode"],
            d["message"],
            clock(d["timestamp"]),
        )
        for d in diagnostics["failureDetails"]
    ]
    issues += [
        Issue(
            "Warning", d["stage"], d["provider"], NOT_AVAILABLE, d["message"], clock(d["timestamp"])
        )
        for d in diagnostics["warningDetails"]
    ]
    return issues


def _cards(
    summary: Mapping[str, Any], unpriced: int, operations: int, elapsed: str = NOT_AVAILABLE
) -> list[Card]:
    ops = int(summary.get("total_operations") or 0)
    tokens_in = int(summary.get("total_tokens_in") or 0)
    tokens_out = int(summary.get("total_tokens_out") or 0)
    cost_note = (
        f"{unpriced} unpriced operation{'s' if unpriced != 1 else ''} not included"
        if unpriced
        else ""
    )
    cost_value = figures.total_cost(summary, unpriced, operations)
    return [
        Card("Total Operations", count(ops), key="operations"),
        Card(
            "Success Rate",
            percent(figures.success_rate(summary)),
            f"{summary.get('successful_operations') or 0} of {ops} succeeded",
            key="success",
        ),
        Card("Total Cost", cost_value, cost_note, key="cost"),
        Card("Elapsed", elapsed, "first start to last end", key="elapsed"),
        Card(
            "Sum of Stage Latencies",
            seconds(int(summary.get("total_latency_ms") or 0), 1),
            "stages overlap, so this can exceed Elapsed",
            key="latency",
        ),
        Card(
            "Total Tokens",
            count(tokens_in + tokens_out),
            f"{count(tokens_in)} in · {count(tokens_out)} out",
            key="tokens",
        ),
        Card("Cache Hits", count(int(summary.get("cache_hits") or 0)), key="cache"),
    ]


def run_details(
    collection: figures.CollectionLike,
    *,
    sort: str | None = None,
    direction: str = "asc",
    traces: Sequence[tuple[str, str | None]] = (),
    trace_backend: str = "Jaeger",
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> RunDetails:
    """The page's figures; a job without an end quiet for ``abandoned_after`` seconds (as of
    ``now``) is shown abandoned. The server passes its setting; None never abandons."""
    doc = figures.as_dict(collection)
    summary = figures.effective_summary(doc)
    rows = _rows(doc.get("records") or [])
    unpriced = sum(1 for r in rows if r.unpriced)
    all_unpriced = bool(rows) and unpriced == len(rows)
    status = figures.job_status(doc, now=now, abandoned_after=abandoned_after)
    direction = "desc" if direction == "desc" else "asc"
    sort = sort if sort in SORT_COLUMNS else None
    bars, total_seconds = _timeline(doc, rows)
    providers = sorted(
        (summary.get("operations_by_provider") or {}).items(), key=lambda kv: (-kv[1], kv[0])
    )
    running = figures.is_live(status)
    return RunDetails(
        job_id=doc["job_id"],
        status=status,
        correlation_id=doc.get("correlation_id") or "",
        started=date_time(doc.get("collection_started_at")),
        finished=(
            date_time(doc.get("collection_ended_at"))
            if not figures.is_running(doc)
            else "still running"
            if running
            else "never (abandoned)"
        ),
        running=running,
        cards=_cards(summary, unpriced, len(figures.records(doc)), figures.elapsed(doc)),
        rows=sort_rows(rows, sort, direction),
        headers=_headers(doc["job_id"], sort, direction),
        timeline=bars,
        timeline_total=f"{total_seconds:,.1f} s"
        if total_seconds >= 10
        else f"{total_seconds:.2f} s",
        timeline_ticks=ticks(total_seconds) if bars else [],
        cost_bars=_cost_bars(summary, rows),
        providers=providers,
        suggestions=[
            {
                **s,
                "savings": "unknown (no prices)" if all_unpriced else money(s["estimatedSavings"]),
            }
            for s in legacy.optimization_suggestions(doc)
        ],
        issues=_issues(legacy.diagnostics_summary(doc)),
        unpriced=unpriced,
        traces=list(traces),
        trace_backend=trace_backend,
        sort=sort,
        direction=direction,
    )


def now_text() -> str:
    """The time a page was rendered (UTC), so a refreshing page shows that it is live."""
    return datetime.now(UTC).strftime("%H:%M:%S UTC")
