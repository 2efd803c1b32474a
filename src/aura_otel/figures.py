"""The derived figures of a job, defined once for every view.

The terminal view, the Run Details page, the job list, the HTTP APIs and the legacy report all
show the same job; before this module each derived its own status, its own "unpriced" count and
its own money spelling, and they disagreed. Everything a view shows that the v1 file does not
state directly is computed here, so two views of one job can only differ in layout.

The rules (``docs/run-telemetry-v1.md``, ``docs/run-details-page.md``):

- a record is *unpriced* when pricing marked it so (``metadata.pricing == "unpriced"``): a
  record with nothing to price (a ``brief`` stage) has no cost and is not unpriced;
- a running job (no ``collection_ended_at``) is shown with the summary of its records so far,
  and is *abandoned* once its file has had no new activity for the configured quiet time;
- money is ``$`` and four decimals, and an absent amount is ``N/A`` everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .schema import (
    Collection,
    ResultStatus,
    format_timestamp_http,
    in_summary_currency,
    sum_money,
    summarize,
    to_dict,
)

#: Where pricing records why a record has (or lacks) a price: ``metadata[PRICING_KEY]``.
PRICING_KEY = "pricing"
#: The table could not price the record's usage: its cost is unknown, never zero.
PRICING_UNPRICED = "unpriced"
#: The cost came from the span itself; a consumer must not re-price it.
PRICING_EXPLICIT = "explicit"
#: A cache hit paid no provider: priced at zero, what it would have cost is the saving.
PRICING_CACHE_HIT = "cache_hit"
#: ``metadata[SAVED_KEY]``: what a cache hit would have cost without the cache.
SAVED_KEY = "cost_saved"

NOT_AVAILABLE = "N/A"

CollectionLike = Collection | Mapping[str, Any]


class JobStatus(StrEnum):
    """The state of a whole job, as every view names it."""

    RUNNING = "running"
    ABANDONED = "abandoned"
    FAILED = "failed"
    WARN = "warn"
    OK = "ok"
    UNREADABLE = "unreadable"


JOB_STATUS_LABELS: dict[str, str] = {
    JobStatus.RUNNING: "Running",
    JobStatus.ABANDONED: "Abandoned",
    JobStatus.FAILED: "Failed",
    JobStatus.WARN: "Warnings",
    JobStatus.OK: "Succeeded",
    JobStatus.UNREADABLE: "Unreadable",
}
#: Icons and words of a record's status; the keys are exactly :class:`ResultStatus`.
STATUS_ICONS: dict[str, str] = {
    ResultStatus.OK: "✓",
    ResultStatus.WARN: "⚠",
    ResultStatus.ERROR: "✗",
}
STATUS_WORDS: dict[str, str] = {
    ResultStatus.OK: "OK",
    ResultStatus.WARN: "Warning",
    ResultStatus.ERROR: "Error",
}
STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate(ResultStatus)}


# -- the document --------------------------------------------------------------------------------
def as_dict(collection: CollectionLike) -> dict[str, Any]:
    """The collection as the v1 file's dict, whichever form it came in."""
    if isinstance(collection, Collection):
        return to_dict(collection)
    return dict(collection)


def records(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The records of a v1 dict, ignoring anything that is not one."""
    return [r for r in doc.get("records") or [] if isinstance(r, Mapping)]


def lower(value: Any) -> str:
    """An enum value as lowercase text; files may spell enums in PascalCase."""
    return str(value).lower() if value is not None else ""


def record_status(record: Mapping[str, Any]) -> str:
    """A record's status in lowercase (``ok``, ``warn``, ``error``), whatever the file's case."""
    return lower(record.get("result_status"))


def is_running(doc: Mapping[str, Any]) -> bool:
    return not doc.get("collection_ended_at")


def effective_summary(collection: CollectionLike) -> dict[str, Any]:
    """The file's summary, or for a running job (no summary yet) the summary of its records.

    Every view of a running job, the legacy report included, shows these figures so far.
    """
    doc = as_dict(collection)
    summary = doc.get("summary")
    if isinstance(summary, Mapping):
        return dict(summary)
    return summarize(records(doc))


# -- pricing -------------------------------------------------------------------------------------
def pricing_of(record: Mapping[str, Any]) -> str | None:
    """Why a record has the cost it has (``metadata.pricing``), if the writer said."""
    metadata = record.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    value = metadata.get(PRICING_KEY)
    return value if isinstance(value, str) else None


def is_unpriced(record: Mapping[str, Any]) -> bool:
    """A record the table could not price: its cost is unknown, which is not the same as free.

    A record with no cost and nothing to price is not unpriced: there was nothing to pay for.
    """
    return pricing_of(record) == PRICING_UNPRICED


def count_unpriced(recs: Iterable[Mapping[str, Any]]) -> int:
    """How many operations have an unknown price: views show this count, never $0."""
    return sum(1 for rec in recs if is_unpriced(rec))


def cost_saved(record: Mapping[str, Any]) -> float:
    """What a cache hit would have cost without the cache (0 for any other record)."""
    metadata = record.get("metadata")
    if not isinstance(metadata, Mapping):
        return 0.0
    value = metadata.get(SAVED_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: saturates, as money sums do
        return sys.float_info.max


def total_saved(recs: Iterable[Mapping[str, Any]]) -> float:
    """What the job's cache hits saved, summed as money."""
    amounts = [cost_saved(r) for r in recs]
    return sum_money(a for a in amounts if a) if any(amounts) else 0.0


# -- time ----------------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """A v1 date-time (string or datetime) as an aware UTC datetime; None when absent/invalid.

    The one parser of the views: naive times are UTC, as v1 writes only UTC.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # out of range once in UTC: as unusable as an invalid one
        return None


def timestamp(value: Any) -> str | None:
    """A v1 date-time in the one spelling that leaves the server, in any API
    (:func:`~aura_otel.schema.format_timestamp_http`); None when absent or invalid."""
    parsed = parse_time(value)
    return None if parsed is None else format_timestamp_http(parsed)


def duration_seconds(start: Any, end: Any) -> float:
    """Seconds between two v1 date-times; 0 when either is missing (the old rule) or the end
    comes first (a clock that stepped back: the Elapsed card's rule too)."""
    started, ended = parse_time(start), parse_time(end)
    if started is None or ended is None:
        return 0.0
    return max((ended - started).total_seconds(), 0.0)


def last_activity(doc: Mapping[str, Any]) -> datetime | None:
    """The latest moment the file knows of: its start, or the end of its latest record.

    Taken from the file's own contents, not its modification time, so every view (and a copy
    of the file elsewhere) judges a job's quiet time alike.
    """
    moments = [parse_time(doc.get("collection_started_at"))]
    moments += [parse_time(r.get("ended_at")) for r in records(doc)]
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def is_abandoned(
    last: datetime | None, *, now: datetime | None = None, abandoned_after: float | None
) -> bool:
    """Whether a job without an end, last active at ``last``, has been quiet for too long."""
    if last is None or abandoned_after is None:
        return False
    moment = now if now is not None else datetime.now(UTC)
    # Compared in seconds: a timedelta cannot hold a quiet time past a billion days (1e15 s).
    return (moment - last).total_seconds() > abandoned_after


# -- status --------------------------------------------------------------------------------------
def job_status(
    collection: CollectionLike,
    *,
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> JobStatus:
    """``running`` or ``abandoned`` without an end, else ``failed``, ``warn`` or ``ok``.

    A job without an end whose latest activity is more than ``abandoned_after`` seconds before
    ``now`` is abandoned: its process was killed mid-run and no span will ever close it. The
    file stays as written; only what the views call it changes. ``abandoned_after=None``
    never abandons (the status of the file alone, as a pure function of it).
    """
    doc = as_dict(collection)
    recs = records(doc)
    if is_running(doc):
        if abandoned_after is not None and is_abandoned(
            last_activity(doc), now=now, abandoned_after=abandoned_after
        ):
            return JobStatus.ABANDONED
        return JobStatus.RUNNING
    summary = doc.get("summary")
    failed = summary.get("failed_operations") or 0 if isinstance(summary, Mapping) else 0
    statuses = {record_status(r) for r in recs}
    if ResultStatus.ERROR in statuses or failed > 0:
        return JobStatus.FAILED
    if ResultStatus.WARN in statuses:
        return JobStatus.WARN
    return JobStatus.OK


def is_live(status: str) -> bool:
    """Views of a job in this state refresh themselves; an abandoned job never changes."""
    return status == JobStatus.RUNNING


# -- formatting ----------------------------------------------------------------------------------
def money(amount: float | None) -> str:
    """``$`` and four decimals; ``N/A`` when there is no amount (an unknown price is shown by
    :func:`record_cost`, which knows why the amount is missing)."""
    return NOT_AVAILABLE if amount is None else f"${amount:,.4f}"


def record_cost(record: Mapping[str, Any]) -> str:
    """A record's cost cell: ``unpriced`` when the price is unknown, else :func:`money`."""
    if is_unpriced(record):
        return PRICING_UNPRICED
    amount = record.get("cost_estimate")
    if amount is not None and not in_summary_currency(record):
        return f"{amount:,.4f} {record.get('currency')}"  # never a $ on another currency
    return money(amount)


def total_cost(summary: Mapping[str, Any], unpriced: int, operations: int) -> str:
    """The Total Cost figure: ``unpriced`` when every operation lacks a price (a $0.0000
    total would claim the job was free). ``unpriced`` is counted over the file's records, so
    ``operations`` is their number too (a hand-edited summary may count others)."""
    if unpriced and unpriced == operations:
        return PRICING_UNPRICED
    return money(float(summary.get("total_cost") or 0))


def seconds(latency_ms: float | None, decimals: int) -> str:
    return NOT_AVAILABLE if latency_ms is None else f"{latency_ms / 1000:,.{decimals}f} s"


def count(value: int | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:,}"


def percent(value: float) -> str:
    return f"{value:.1f}%"


def clock(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.strftime("%H:%M:%S") if parsed else NOT_AVAILABLE


def date_time(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else NOT_AVAILABLE


def duration(seconds_value: float | None) -> str:
    if seconds_value is None:
        return NOT_AVAILABLE
    if seconds_value < 60:
        return f"{seconds_value:.1f} s"
    minutes, secs = divmod(round(seconds_value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def record_tokens(record: Mapping[str, Any]) -> int | None:
    """Tokens in plus out; None when the record reports neither (shown as N/A, not 0)."""
    tokens_in, tokens_out = record.get("tokens_in"), record.get("tokens_out")
    if tokens_in is None and tokens_out is None:
        return None
    return int(tokens_in or 0) + int(tokens_out or 0)


def success_rate(summary: Mapping[str, Any]) -> float:
    """successful / total * 100, 0 with no operations (never stored, always derived)."""
    total = summary.get("total_operations") or 0
    return (summary.get("successful_operations") or 0) / total * 100 if total else 0.0


def elapsed(collection: CollectionLike) -> str:
    """The job's wall-clock time, first start to last end (so far, for a running job), one
    decimal: stages overlap and wait, so it is not the sum of their latencies."""
    doc = as_dict(collection)
    start = parse_time(doc.get("collection_started_at"))
    if start is None:
        return NOT_AVAILABLE
    end = parse_time(doc.get("collection_ended_at")) or last_activity(doc) or start
    return seconds(max((end - start).total_seconds(), 0.0) * 1000, 1)


def headline(
    collection: CollectionLike,
    *,
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> dict[str, Any]:
    """The figures every view of a job shows, as values (tests compare views against this)."""
    doc = as_dict(collection)
    summary = effective_summary(doc)
    recs: Sequence[Mapping[str, Any]] = records(doc)
    unpriced = count_unpriced(recs)
    return {
        "status": job_status(doc, now=now, abandoned_after=abandoned_after),
        "operations": int(summary.get("total_operations") or 0),
        "success_rate": percent(success_rate(summary)),
        "total_cost": total_cost(summary, unpriced, len(recs)),
        "unpriced": unpriced,
        "latency": seconds(int(summary.get("total_latency_ms") or 0), 1),
        "elapsed": elapsed(doc),
        "tokens": int(summary.get("total_tokens_in") or 0)
        + int(summary.get("total_tokens_out") or 0),
        "cache_hits": int(summary.get("cache_hits") or 0),
        "saved": total_saved(recs),
        "record_costs": [record_cost(r) for r in recs],
    }


# -- budgets -------------------------------------------------------------------------------------
#: The start of the message of a job stopped by a hard budget threshold (aura_otel.budgets).
BUDGET_EXCEEDED_PREFIX = "budget exceeded"


def within_budget(
    collection: CollectionLike,
    budget: float | None = None,
    provider_limits: Mapping[str, float] | None = None,
) -> bool:
    """Whether a job stayed within its hard thresholds: its total cost within ``budget``, each
    provider's within its limit (names compared case-insensitively), and no stage refused by
    a hard threshold. Crossing a soft threshold is a warning, still within budget."""
    doc = as_dict(collection)
    recs = records(doc)
    if any(str(r.get("message") or "").startswith(BUDGET_EXCEEDED_PREFIX) for r in recs):
        return False
    recs = [r for r in recs if in_summary_currency(r)]  # the budget is in dollars
    costs = [r.get("cost_estimate") for r in recs if r.get("cost_estimate") is not None]
    if budget is not None and costs and sum_money(costs) > budget + 1e-12:
        return False
    for provider, limit in (provider_limits or {}).items():
        spent = [
            r.get("cost_estimate")
            for r in recs
            if str(r.get("provider") or "").lower() == provider.lower()
            and r.get("cost_estimate") is not None
        ]
        if spent and sum_money(spent) > limit + 1e-12:
            return False
    return True
