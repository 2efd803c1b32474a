"""The public API is exactly what ``__all__`` says: adding or removing a name is a decision."""

from __future__ import annotations

import inspect

import aura_otel

PUBLIC = {
    "AuraOtelError", "BudgetExceeded", "Collection", "ConfigurationError", "CorruptTelemetryError",
    "InvalidJobIdError", "JobContextProcessor", "JobHandle", "JobStore", "JobValidationError",
    "MaskingRules", "MaskingSpanProcessor", "Record", "ResultStatus", "RunTelemetryExporter",
    "SelectionSource", "Stage", "StageHandle", "Summary", "Telemetry", "TelemetryNotFoundError",
    "TelemetryTooLargeError", "UnsafeFileError",
    "__version__", "bind_context", "configure", "continue_job", "current_job", "current_stage",
    "inject_context", "job", "load_collection", "stage", "validate_job_id",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(aura_otel.__all__) == PUBLIC
    assert len(aura_otel.__all__) == len(PUBLIC)  # no duplicates


def test_every_public_name_exists_and_is_documented() -> None:
    for name in aura_otel.__all__:
        obj = getattr(aura_otel, name)
        if name != "__version__":
            assert inspect.getdoc(obj), f"aura_otel.{name} has no docstring"


def test_errors_form_one_tree() -> None:
    errors = [getattr(aura_otel, n) for n in aura_otel.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, aura_otel.AuraOtelError) for e in errors)
