"""The shapes of the HTTP answers, defined once: pydantic models.

The legacy report, the diagnostics summary and the job list are built through these models,
and ``/api/openapi.json`` is generated from them, so the document cannot drift from what the
server sends. Field names are the legacy camelCase ones; field order is the order the old
backend wrote (the golden RunCostReport is compared key by key). A field whose value is
``None`` is left out of a legacy answer, as the old backend's "ignore when null" did, except in
the job list, where every key of a row is always present (``null`` for an unreadable file).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .figures import JobStatus
from .schema import ResultStatus, SelectionSource, Stage

DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def legacy(self) -> dict[str, Any]:
        """The answer as the old backend sent it: absent values left out."""
        return self.model_dump(mode="json", exclude_none=True)


class StageCost(_Shape):
    stageName: str
    cost: float
    percentageOfTotal: float
    durationSeconds: float
    operationCount: int
    providerName: str | None = None


class Operation(_Shape):
    timestamp: DateTime | None = None
    operationType: str
    providerName: str
    cost: float
    durationMs: int
    tokensUsed: int
    cacheHit: bool


class TokenStats(_Shape):
    totalInputTokens: int
    totalOutputTokens: int
    totalTokens: int
    operationCount: int
    cacheHits: int
    cacheHitRate: float
    averageTokensPerOperation: float
    averageResponseTimeMs: float
    totalCost: float
    costSavedByCache: float


class Suggestion(_Shape):
    category: str
    suggestion: str
    estimatedSavings: float
    qualityImpact: str


class RunCostReport(_Shape):
    """The legacy cost view of one job (``docs/run-telemetry-v1.md``)."""

    jobId: str
    projectId: str | None = None
    startedAt: DateTime | None = None
    completedAt: DateTime | None = None
    durationSeconds: float
    totalCost: float
    currency: str
    costByStage: dict[str, StageCost]
    costByProvider: dict[str, float]
    operations: list[Operation]
    tokenStats: TokenStats | None = None
    optimizationSuggestions: list[Suggestion]
    withinBudget: bool
    budgetLimit: float | None = None
    #: Present (true) only while the job runs: the figures are over the records so far.
    provisional: bool | None = None


class FailureDetail(_Shape):
    stage: str
    provider: str
    errorCode: str
    message: str
    timestamp: DateTime | None = None


class WarningDetail(_Shape):
    stage: str
    provider: str
    message: str
    timestamp: DateTime | None = None


class Diagnostics(_Shape):
    totalOperations: int
    successfulOperations: int
    failedOperations: int
    totalRetries: int
    warningCount: int
    averageLatency: float
    failureDetails: list[FailureDetail]
    warningDetails: list[WarningDetail]


class AnomalyFlag(_Shape):
    """Why a job in the list is flagged (the fleet view's method, docs/insights.md)."""

    kind: str
    stage: str | None
    provider: str | None
    explanation: str


class JobRow(_Shape):
    """One job in the list; every key is present, ``null`` when an unreadable file has none."""

    jobId: str
    updatedAt: DateTime
    status: JobStatus
    startedAt: DateTime | None
    completedAt: DateTime | None
    durationSeconds: float | None
    totalCost: float | None
    currency: str | None
    operationCount: int | None
    stageCount: int | None
    failedOperations: int | None
    unpricedOperations: int | None
    #: The job's anomalies against the recent history of comparable jobs (empty: none, or not
    #: judged: running, or too little history).
    anomalies: list[AnomalyFlag] = []


class JobPage(_Shape):
    items: list[JobRow]
    page: int
    pageSize: int
    totalItems: int
    totalPages: int


class Problem(_Shape):
    """An RFC 9457 problem, as every error answer of the API is."""

    type: str
    title: str
    status: int
    detail: str
    correlationId: str
    guidance: str | None = None


class TelemetrySchema(_Shape):
    version: Literal["1.0"]
    stages: list[Stage]
    resultStatuses: list[ResultStatus]
    selectionSources: list[SelectionSource]
    errorCodes: list[str]
    defaultCurrency: str
    metadataKeys: dict[str, list[str]]
    jsonSchema: dict[str, Any]


#: Every model the API answers with, by its name in ``components.schemas``.
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    RunCostReport,
    Diagnostics,
    JobPage,
    Problem,
    TelemetrySchema,
)
