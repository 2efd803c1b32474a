"""aura-otel: where every second and every cent of a video job went, without leaking a secret.

The public API. Everything else is an implementation detail and may change.
"""

from __future__ import annotations

from .errors import (
    AuraOtelError,
    BudgetExceeded,
    ConfigurationError,
    CorruptTelemetryError,
    InvalidJobIdError,
    JobValidationError,
    TelemetryNotFoundError,
    TelemetryTooLargeError,
    UnsafeFileError,
)
from .exporter import RunTelemetryExporter
from .instrument import (
    JobContextProcessor,
    JobHandle,
    StageHandle,
    bind_context,
    continue_job,
    current_job,
    current_stage,
    inject_context,
    job,
    stage,
)
from .masking import MaskingRules, MaskingSpanProcessor
from .pipeline import Telemetry, configure
from .schema import (
    Collection,
    Record,
    ResultStatus,
    SelectionSource,
    Stage,
    Summary,
    load_collection,
    validate_job_id,
)
from .store import JobStore

__version__ = "0.1.0"

__all__ = [
    "AuraOtelError",
    "BudgetExceeded",
    "Collection",
    "ConfigurationError",
    "CorruptTelemetryError",
    "InvalidJobIdError",
    "JobContextProcessor",
    "JobHandle",
    "JobStore",
    "JobValidationError",
    "MaskingRules",
    "MaskingSpanProcessor",
    "Record",
    "ResultStatus",
    "RunTelemetryExporter",
    "SelectionSource",
    "Stage",
    "StageHandle",
    "Summary",
    "Telemetry",
    "TelemetryNotFoundError",
    "TelemetryTooLargeError",
    "UnsafeFileError",
    "__version__",
    "bind_context",
    "configure",
    "continue_job",
    "current_job",
    "current_stage",
    "inject_context",
    "job",
    "load_collection",
    "stage",
    "validate_job_id",
]
