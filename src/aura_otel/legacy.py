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
from decimal import Decimal
from typing import Any

from . import figures
from .figures import (
    CollectionLike,
    JobStatus,
    as_dict,
    duration_seconds,
    effective_summary,
    job_status,
    parse_time,
)
from .figures import lower as _lower
from .figures import record_status as _status
from .figures import records as _records
from .figures import timestamp as legacy_timestamp
from .schema import DEFAULT_CURRENCY, ResultStatus, in_summary_currency, sum_money
from .shapes import (
    Diagnostics,
    FailureDetail,
    Operation,
    RunCostReport,
    StageCost,
    Suggestion,
    TokenStats,
    WarningDetail,
)

__all__ = [
    "CollectionLike",
    "as_dict",
    "cost_report",
    "diagnostics_summary",
    "duration_seconds",
    "effective_summary",
    "job_status",
    "legacy_timestamp",
    "optimization_suggestions",
    "parse_time",
    "run_cost_report",
]

#: The old collector's optimisation rules: a fraction of the run's cost a change would save.
CACHING_SAVINGS = Decimal("0.30")
RELIABILITY_SAVINGS = Decimal("0.10")
RETRY_THRESHOLD = 5

#: Job states (kept as names here for callers of the legacy module; :mod:`figures` owns them).
STATUS_RUNNING = JobStatus.RUNNING
STATUS_FAILED = JobStatus.FAILED
STATUS_WARN = JobStatus.WARN
STATUS_OK = JobStatus.OK


# -- helpers -------------------------------------------------------------------------------------
def _ratio(part: float, whole: float, scale: float = 1.0) -> float:
    return part / whole * scale if whole else 0.0


def _share(amount: float, fraction: Decimal) -> float:
    """``amount * fraction`` without binary drift (30% of 0.1 is 0.03, not 0.030000000000000002)."""
    return float(Decimal(repr(float(amount))) * fraction)


# -- optimisation suggestions --------------------------------------------------------------------
def _suggestions(summary: Mapping[str, Any]) -> list[Suggestion]:
    total_ops = summary.get("total_operations") or 0
    total_cost = summary.get("total_cost") or 0.0
    suggestions: list[Suggestion] = []
    if (summary.get("cache_hits") or 0) == 0 and total_ops > 0:
        suggestions.append(
            Suggestion(
                category="Caching",
                suggestion="Enable LLM response caching to reduce costs on repeated queries",
                estimatedSavings=_share(total_cost, CACHING_SAVINGS),
                qualityImpact="None",
            )
        )
    if (summary.get("total_retries") or 0) > RETRY_THRESHOLD:
        suggestions.append(
            Suggestion(
                category="Reliability",
                suggestion="High retry count detected. Review provider reliability and error handling",
                estimatedSavings=_share(total_cost, RELIABILITY_SAVINGS),
                qualityImpact="None",
            )
        )
    return suggestions


def optimization_suggestions(collection: CollectionLike) -> list[dict[str, Any]]:
    """The old collector's two rules, over the summary (or the records so far for a running job)."""
    return [s.legacy() for s in _suggestions(effective_summary(collection))]


# -- RunCostReport -------------------------------------------------------------------------------
def _stage_breakdown(
    records: Sequence[Mapping[str, Any]], cost_by_stage: Mapping[str, Any], total_cost: float
) -> dict[str, StageCost]:
    breakdown: dict[str, StageCost] = {}
    for stage_key, cost in cost_by_stage.items():
        stage = _lower(stage_key)
        mine = [r for r in records if _lower(r.get("stage")) == stage]
        cost = float(cost or 0)
        breakdown[stage] = StageCost(
            stageName=stage,
            cost=cost,
            percentageOfTotal=_ratio(cost, total_cost, 100.0),
            durationSeconds=sum(int(r.get("latency_ms") or 0) for r in mine) / 1000,
            operationCount=len(mine),
            providerName=mine[0].get("provider") if mine else None,
        )
    return breakdown


def _operations(records: Sequence[Mapping[str, Any]]) -> list[Operation]:
    return [
        Operation(
            timestamp=legacy_timestamp(r.get("started_at")),
            operationType=_lower(r.get("stage")),
            providerName=r.get("provider") or "Unknown",
            cost=float(r.get("cost_estimate") or 0),
            durationMs=int(r.get("latency_ms") or 0),
            tokensUsed=int(r.get("tokens_in") or 0) + int(r.get("tokens_out") or 0),
            cacheHit=r.get("cache_hit") is True,
        )
        for r in records
    ]


def _token_stats(summary: Mapping[str, Any], saved: float) -> TokenStats:
    ops = int(summary.get("total_operations") or 0)
    tokens_in = int(summary.get("total_tokens_in") or 0)
    tokens_out = int(summary.get("total_tokens_out") or 0)
    hits = int(summary.get("cache_hits") or 0)
    return TokenStats(
        totalInputTokens=tokens_in,
        totalOutputTokens=tokens_out,
        totalTokens=tokens_in + tokens_out,
        operationCount=ops,
        cacheHits=hits,
        cacheHitRate=_ratio(hits, ops, 100.0),
        averageTokensPerOperation=_ratio(tokens_in + tokens_out, ops),
        averageResponseTimeMs=_ratio(int(summary.get("total_latency_ms") or 0), ops),
        totalCost=float(summary.get("total_cost") or 0),
        costSavedByCache=saved,
    )


def cost_report(
    collection: CollectionLike,
    *,
    budget: float | None = None,
    provider_limits: Mapping[str, float] | None = None,
) -> RunCostReport:
    """The legacy RunCostReport of one collection, as its model.

    A running job's report is computed over its records so far, every figure from the same
    :func:`~aura_otel.figures.effective_summary` (a total of $0 beside savings computed from
    the records would contradict itself), and says ``provisional: true``.
    """
    doc = as_dict(collection)
    records = _records(doc)
    summary = effective_summary(doc)
    total_cost = float(summary.get("total_cost") or 0)
    providers = summary.get("operations_by_provider") or {}
    return RunCostReport(
        jobId=str(doc.get("job_id")),
        projectId=records[0].get("project_id") if records else None,
        startedAt=legacy_timestamp(doc.get("collection_started_at")),
        completedAt=legacy_timestamp(doc.get("collection_ended_at")),
        durationSeconds=duration_seconds(
            doc.get("collection_started_at"), doc.get("collection_ended_at")
        ),
        totalCost=total_cost,
        currency=summary.get("currency") or DEFAULT_CURRENCY,
        costByStage=_stage_breakdown(records, summary.get("cost_by_stage") or {}, total_cost),
        costByProvider={
            provider: sum_money(
                r.get("cost_estimate")
                for r in records
                if r.get("provider") == provider and in_summary_currency(r)
            )
            for provider in providers
        },
        operations=_operations(records),
        tokenStats=_token_stats(summary, figures.total_saved(records)),
        optimizationSuggestions=_suggestions(summary),
        withinBudget=figures.within_budget(doc, budget, provider_limits),
        provisional=True if figures.is_running(doc) else None,
    )


def run_cost_report(
    collection: CollectionLike,
    *,
    budget: float | None = None,
    provider_limits: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The legacy RunCostReport (camelCase, absent values left out) of one collection.

    ``withinBudget`` is judged against the job's hard thresholds (its ``aura.budget.amount``
    and the budgets file's per-provider ones); without any it is true, as the old studio said
    of a job it had no budget for."""
    return cost_report(collection, budget=budget, provider_limits=provider_limits).legacy()


# -- diagnostics ---------------------------------------------------------------------------------
def diagnostics_summary(collection: CollectionLike) -> dict[str, Any]:
    """Failures and warnings of a run, counted over its records (statuses in any case)."""
    records = _records(as_dict(collection))
    failures = [r for r in records if _status(r) == ResultStatus.ERROR]
    warnings = [r for r in records if _status(r) == ResultStatus.WARN]
    total_latency = sum(int(r.get("latency_ms") or 0) for r in records)
    return Diagnostics(
        totalOperations=len(records),
        successfulOperations=sum(_status(r) == ResultStatus.OK for r in records),
        failedOperations=len(failures),
        totalRetries=sum(int(r.get("retries") or 0) for r in records),
        warningCount=len(warnings),
        averageLatency=_ratio(total_latency, len(records)),
        failureDetails=[
            FailureDetail(
                stage=_lower(r.get("stage")),
                provider=r.get("provider") or "Unknown",
                errorCode=r.get("error_code") or "UNKNOWN",
                message=r.get("message") or "No error message",
                timestamp=legacy_timestamp(r.get("started_at")),
            )
            for r in failures
        ],
        warningDetails=[
            WarningDetail(
                stage=_lower(r.get("stage")),
                provider=r.get("provider") or "Unknown",
                message=r.get("message") or "No warning message",
                timestamp=legacy_timestamp(r.get("started_at")),
            )
            for r in warnings
        ],
    ).model_dump(mode="json")
