"""The legacy views the old C# backend computed from a v1 collection.

The studio's web front end still calls ``/api/cost-tracking/run-summary/{jobId}`` and renders
the diagnostics summary, so these functions reproduce the old RunCostReport, diagnostics and
optimization suggestions field for field (``docs/run-telemetry-v1.md``), minus the old
bugs: statuses and stages are compared case-insensitively, so PascalCase files written by the
old writer give the same answers as lowercase ones.

Everything here is a pure function of one collection, given either as a validated
:class:`~aura_otel.schema.Collection` or as the v1 dict (either enum spelling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .schema import DEFAULT_CURRENCY, Collection, sum_money, summarize, to_dict

#: The old collector's optimisation rules: a fraction of the run's cost a change would save.
CACHING_SAVINGS = Decimal("0.30")
RELIABILITY_SAVINGS = Decimal("0.10")
RETRY_THRESHOLD = 5

CollectionLike = Collection | Mapping[str, Any]

#: Job states shown by the job list and the Run Details page (see :func:`job_status`).
STATUS_RUNNING = "running"
STATUS_FAILED = "failed"
STATUS_WARN = "warn"
STATUS_OK = "ok"


def as_dict(collection: CollectionLike) -> dict[str, Any]:
    """The collection as the v1 file's dict, whichever form it came in."""
    if isinstance(collection, Collection):
        return to_dict(collection)
    return dict(collection)


def _lower(value: Any) -> str:
    return str(value).lower() if value is not None else ""


def _records(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    records = doc.get("records") or []
    return [r for r in records if isinstance(r, Mapping)]


def _status(rec: Mapping[str, Any]) -> str:
    return _lower(rec.get("result_status"))


def effective_summary(collection: CollectionLike) -> dict[str, Any]:
    """The file's summary, or for a running job (no summary yet) the summary of its records so far.

    Views that must show something for a running job use this; the legacy report itself keeps
    the old rule (no summary means zero totals).
    """
    doc = as_dict(collection)
    summary = doc.get("summary")
    if isinstance(summary, Mapping):
        return dict(summary)
    return summarize(_records(doc))


# -- timestamps ----------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """A v1 date-time (string or datetime) as an aware UTC datetime; None when absent/invalid."""
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
    return parsed.astimezone(UTC)


def legacy_timestamp(value: Any) -> str | None:
    """The old backend's spelling of a date-time: UTC, ``Z``, fraction only when non-zero.

    System.Text.Json writes ``2026-11-20T10:00:00Z`` for a whole second and trims trailing zeros
    of a fraction (``...:00.1Z``); the legacy front end's golden files use that spelling.
    """
    parsed = parse_time(value)
    if parsed is None:
        return None
    text = parsed.strftime("%Y-%m-%dT%H:%M:%S")
    if parsed.microsecond:
        text += f".{parsed.microsecond:06d}".rstrip("0")
    return text + "Z"


def duration_seconds(start: Any, end: Any) -> float:
    """Seconds between two v1 date-times; 0 when either is missing (the old rule)."""
    started, ended = parse_time(start), parse_time(end)
    if started is None or ended is None:
        return 0.0
    return (ended - started).total_seconds()


# -- helpers -------------------------------------------------------------------------------------
def _ratio(part: float, whole: float, scale: float = 1.0) -> float:
    return part / whole * scale if whole else 0.0


def _share(amount: float, fraction: Decimal) -> float:
    """``amount * fraction`` without binary drift (30% of 0.1 is 0.03, not 0.030000000000000002)."""
    return float(Decimal(repr(float(amount))) * fraction)


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    # The old backend serialised with "ignore when null": absent values are left out.
    return {k: v for k, v in values.items() if v is not None}


# -- job status ----------------------------------------------------------------------------------
def job_status(collection: CollectionLike) -> str:
    """``running`` (no end time), ``failed`` (an error record or failed operations), ``warn``
    (a warning record), else ``ok``. Statuses compare case-insensitively."""
    doc = as_dict(collection)
    if not doc.get("collection_ended_at"):
        return STATUS_RUNNING
    records = _records(doc)
    summary = doc.get("summary")
    failed = summary.get("failed_operations") or 0 if isinstance(summary, Mapping) else 0
    if any(_status(r) == "error" for r in records) or failed > 0:
        return STATUS_FAILED
    if any(_status(r) == "warn" for r in records):
        return STATUS_WARN
    return STATUS_OK


# -- optimisation suggestions --------------------------------------------------------------------
def optimization_suggestions(collection: CollectionLike) -> list[dict[str, Any]]:
    """The old collector's two rules, over the summary (or the records so far for a running job)."""
    summary = effective_summary(collection)
    total_ops = summary.get("total_operations") or 0
    total_cost = summary.get("total_cost") or 0.0
    suggestions: list[dict[str, Any]] = []
    if (summary.get("cache_hits") or 0) == 0 and total_ops > 0:
        suggestions.append(
            {
                "category": "Caching",
                "suggestion": "Enable LLM response caching to reduce costs on repeated queries",
                "estimatedSavings": _share(total_cost, CACHING_SAVINGS),
                "qualityImpact": "None",
            }
        )
    if (summary.get("total_retries") or 0) > RETRY_THRESHOLD:
        suggestions.append(
            {
                "category": "Reliability",
                "suggestion": "High retry count detected. Review provider reliability and error handling",
                "estimatedSavings": _share(total_cost, RELIABILITY_SAVINGS),
                "qualityImpact": "None",
            }
        )
    return suggestions


# -- RunCostReport -------------------------------------------------------------------------------
def _stage_breakdown(
    records: Sequence[Mapping[str, Any]], cost_by_stage: Mapping[str, Any], total_cost: float
) -> dict[str, dict[str, Any]]:
    breakdown: dict[str, dict[str, Any]] = {}
    for stage_key, cost in cost_by_stage.items():
        stage = _lower(stage_key)
        mine = [r for r in records if _lower(r.get("stage")) == stage]
        cost = float(cost or 0)
        breakdown[stage] = _without_none(
            {
                "stageName": stage,
                "cost": cost,
                "percentageOfTotal": _ratio(cost, total_cost, 100.0),
                "durationSeconds": sum(int(r.get("latency_ms") or 0) for r in mine) / 1000,
                "operationCount": len(mine),
                "providerName": mine[0].get("provider") if mine else None,
            }
        )
    return breakdown


def _operations(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": legacy_timestamp(r.get("started_at")),
            "operationType": _lower(r.get("stage")),
            "providerName": r.get("provider") or "Unknown",
            "cost": float(r.get("cost_estimate") or 0),
            "durationMs": int(r.get("latency_ms") or 0),
            "tokensUsed": int(r.get("tokens_in") or 0) + int(r.get("tokens_out") or 0),
            "cacheHit": r.get("cache_hit") is True,
        }
        for r in records
    ]


def _token_stats(summary: Mapping[str, Any]) -> dict[str, Any]:
    ops = int(summary.get("total_operations") or 0)
    tokens_in = int(summary.get("total_tokens_in") or 0)
    tokens_out = int(summary.get("total_tokens_out") or 0)
    hits = int(summary.get("cache_hits") or 0)
    return {
        "totalInputTokens": tokens_in,
        "totalOutputTokens": tokens_out,
        "totalTokens": tokens_in + tokens_out,
        "operationCount": ops,
        "cacheHits": hits,
        "cacheHitRate": _ratio(hits, ops, 100.0),
        "averageTokensPerOperation": _ratio(tokens_in + tokens_out, ops),
        "averageResponseTimeMs": _ratio(int(summary.get("total_latency_ms") or 0), ops),
        "totalCost": float(summary.get("total_cost") or 0),
        "costSavedByCache": 0.0,
    }


def run_cost_report(collection: CollectionLike) -> dict[str, Any]:
    """The legacy RunCostReport (camelCase, absent values left out) of one collection."""
    doc = as_dict(collection)
    records = _records(doc)
    summary = doc.get("summary") if isinstance(doc.get("summary"), Mapping) else None
    total_cost = float(summary.get("total_cost") or 0) if summary else 0.0
    currency = (summary or {}).get("currency") or DEFAULT_CURRENCY
    cost_by_stage = summary.get("cost_by_stage") or {} if summary else {}
    providers = summary.get("operations_by_provider") or {} if summary else {}
    report: dict[str, Any] = _without_none(
        {
            "jobId": doc.get("job_id"),
            "projectId": records[0].get("project_id") if records else None,
            "startedAt": legacy_timestamp(doc.get("collection_started_at")),
            "completedAt": legacy_timestamp(doc.get("collection_ended_at")),
            "durationSeconds": duration_seconds(
                doc.get("collection_started_at"), doc.get("collection_ended_at")
            ),
            "totalCost": total_cost,
            "currency": currency,
        }
    )
    report["costByStage"] = _stage_breakdown(records, cost_by_stage, total_cost)
    report["costByProvider"] = {
        provider: sum_money(
            r.get("cost_estimate") for r in records if r.get("provider") == provider
        )
        for provider in providers
    }
    report["operations"] = _operations(records)
    if summary is not None:
        report["tokenStats"] = _token_stats(summary)
    report["optimizationSuggestions"] = optimization_suggestions(doc)
    report["withinBudget"] = True
    return report


# -- diagnostics ---------------------------------------------------------------------------------
def diagnostics_summary(collection: CollectionLike) -> dict[str, Any]:
    """Failures and warnings of a run, counted over its records (statuses in any case)."""
    records = _records(as_dict(collection))
    failures = [r for r in records if _status(r) == "error"]
    warnings = [r for r in records if _status(r) == "warn"]
    total_latency = sum(int(r.get("latency_ms") or 0) for r in records)
    return {
        "totalOperations": len(records),
        "successfulOperations": sum(_status(r) == "ok" for r in records),
        "failedOperations": len(failures),
        "totalRetries": sum(int(r.get("retries") or 0) for r in records),
        "warningCount": len(warnings),
        "averageLatency": _ratio(total_latency, len(records)),
        "failureDetails": [
            {
                "stage": _lower(r.get("stage")),
                "provider": r.get("provider") or "Unknown",
                "errorCode": r.get("error_code") or "UNKNOWN",
                "message": r.get("message") or "No error message",
                "timestamp": legacy_timestamp(r.get("started_at")),
            }
            for r in failures
        ],
        "warningDetails": [
            {
                "stage": _lower(r.get("stage")),
                "provider": r.get("provider") or "Unknown",
                "message": r.get("message") or "No warning message",
                "timestamp": legacy_timestamp(r.get("started_at")),
            }
            for r in warnings
        ],
    }
