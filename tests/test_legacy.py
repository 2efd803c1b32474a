"""The legacy adapter: RunCostReport, diagnostics, suggestions, job status."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from aura_otel import legacy
from aura_otel.schema import load_collection, to_dict
from tests.server_support import (
    ADAPTER_CASE,
    ADAPTER_REPORT,
    REFERENCE,
    REFERENCE_PASCAL,
    collection,
    record,
    running_job,
    unpriced_job,
)


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Deep equality; numbers within 1e-9 (the spec's tolerance for rates)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected and type(actual) is type(expected), (
            f"{path}: {actual!r} != {expected!r}"
        )
    else:
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), path
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=1e-9), (
            f"{path}: {actual} != {expected}"
        )


def load(path) -> Any:
    return load_collection(path.read_bytes())


# -- RunCostReport -------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["model", "dict"])
def test_adapter_reference_case_matches_the_golden_report(form: str) -> None:
    source = load(ADAPTER_CASE) if form == "model" else orjson.loads(ADAPTER_CASE.read_bytes())
    expected = orjson.loads(ADAPTER_REPORT.read_bytes())
    assert_same(legacy.run_cost_report(source), expected)


def test_adapter_reference_case_figures_from_the_spec_text() -> None:
    report = legacy.run_cost_report(load(ADAPTER_CASE))
    assert report["durationSeconds"] == 300
    assert report["costByStage"]["script"]["cost"] == 0.05
    assert report["costByStage"]["script"]["operationCount"] == 1
    assert report["costByProvider"]["OpenAI"] == 0.05
    assert report["tokenStats"]["totalTokens"] == 300
    assert report["tokenStats"]["cacheHitRate"] == 50
    assert len(report["operations"]) == 2
    assert "projectId" not in report and "budgetLimit" not in report


def test_pascal_case_file_gives_the_same_report_and_diagnostics() -> None:
    lower_model, pascal_model = load(REFERENCE), load(REFERENCE_PASCAL)
    pascal_raw = orjson.loads(REFERENCE_PASCAL.read_bytes())
    assert pascal_raw["records"][0]["stage"] == "Script"  # the file really is PascalCase
    for pascal in (pascal_model, pascal_raw):
        assert legacy.run_cost_report(pascal) == legacy.run_cost_report(lower_model)
        assert legacy.diagnostics_summary(pascal) == legacy.diagnostics_summary(lower_model)
    assert legacy.diagnostics_summary(pascal_raw)["failedOperations"] == 1


def test_report_of_reference_job() -> None:
    report = legacy.run_cost_report(load(REFERENCE))
    assert report["totalCost"] == 0.09
    assert [op["operationType"] for op in report["operations"]] == ["script", "tts", "visuals"]
    assert report["operations"][0]["timestamp"] == "2026-11-20T10:00:00.1Z"
    assert report["costByStage"]["visuals"]["percentageOfTotal"] == pytest.approx(
        0.05 / 0.09 * 100, abs=1e-9
    )
    assert report["costByStage"]["tts"]["durationSeconds"] == 5.0
    assert report["tokenStats"]["averageResponseTimeMs"] == 3000
    # a cache hit and only 2 retries: neither of the old rules fires
    assert report["optimizationSuggestions"] == []


def test_project_id_comes_from_the_first_record() -> None:
    doc = collection(
        "p1",
        [
            record("p1", "script", 0, 10, project_id="proj-7"),
            record("p1", "tts", 1, 10, project_id="proj-8"),
        ],
        finished_s=2,
    )
    assert legacy.run_cost_report(doc)["projectId"] == "proj-7"


def test_stage_provider_is_the_first_records_and_missing_provider_is_unknown() -> None:
    doc = collection(
        "p2",
        [
            record("p2", "visuals", 0, 100, provider="A", cost_estimate=0.1),
            record("p2", "visuals", 1, 300, provider="B", cost_estimate=0.2),
            record("p2", "render", 2, 100),
        ],
        finished_s=3,
    )
    report = legacy.run_cost_report(doc)
    visuals = report["costByStage"]["visuals"]
    assert visuals == {
        "stageName": "visuals",
        "cost": 0.3,
        "percentageOfTotal": 100.0,
        "durationSeconds": 0.4,
        "operationCount": 2,
        "providerName": "A",
    }
    assert "providerName" not in report["costByStage"]["render"]
    assert report["costByStage"]["render"]["percentageOfTotal"] == 0
    assert report["operations"][2]["providerName"] == "Unknown"
    assert report["operations"][2]["cost"] == 0
    assert report["operations"][2]["cacheHit"] is False


def test_cost_by_provider_sums_without_float_drift() -> None:
    doc = collection(
        "p3",
        [
            record("p3", "script", 0, 1, provider="X", cost_estimate=0.1),
            record("p3", "tts", 1, 1, provider="X", cost_estimate=0.2),
        ],
        finished_s=2,
    )
    report = legacy.run_cost_report(doc)
    assert report["costByProvider"] == {"X": 0.3}
    assert report["totalCost"] == 0.3


def test_running_job_report_is_provisional_and_consistent() -> None:
    """Every figure of a running job's report is over the records so far, from one summary:
    the savings a suggestion promises are a share of the total the report states."""
    report = legacy.run_cost_report(running_job("r1"))
    assert report["provisional"] is True
    assert "completedAt" not in report
    assert report["durationSeconds"] == 0  # the old rule: no end, no duration
    assert report["totalCost"] == 0.02
    assert report["costByStage"]["script"]["cost"] == 0.02
    assert report["costByStage"]["script"]["percentageOfTotal"] == 100
    assert report["costByStage"]["brief"]["cost"] == 0
    assert report["costByProvider"] == {"OpenAI": 0.02}
    assert report["tokenStats"]["totalCost"] == report["totalCost"]
    assert report["tokenStats"]["operationCount"] == len(report["operations"]) == 2
    caching = next(s for s in report["optimizationSuggestions"] if s["category"] == "Caching")
    assert caching["estimatedSavings"] == pytest.approx(report["totalCost"] * 0.3)


def test_finished_job_report_is_not_provisional() -> None:
    assert "provisional" not in legacy.run_cost_report(load(ADAPTER_CASE))


def test_rates_are_zero_without_operations() -> None:
    report = legacy.run_cost_report(collection("e1", [], finished_s=1))
    stats = report["tokenStats"]
    assert stats["operationCount"] == 0
    assert stats["cacheHitRate"] == 0 and stats["averageTokensPerOperation"] == 0
    assert stats["averageResponseTimeMs"] == 0
    assert report["optimizationSuggestions"] == []
    assert legacy.diagnostics_summary(collection("e1", [], finished_s=1))["averageLatency"] == 0


# -- suggestions ---------------------------------------------------------------------------------
def test_caching_suggestion_without_cache_hits() -> None:
    doc = collection("s1", [record("s1", "script", 0, 1, cost_estimate=0.1)], finished_s=1)
    assert legacy.optimization_suggestions(doc) == [
        {
            "category": "Caching",
            "suggestion": "Enable LLM response caching to reduce costs on repeated queries",
            "estimatedSavings": 0.03,  # 30% of 0.1, exactly
            "qualityImpact": "None",
        }
    ]


@pytest.mark.parametrize(("retries", "fires"), [(5, False), (6, True)])
def test_reliability_suggestion_above_five_retries(retries: int, fires: bool) -> None:
    doc = collection(
        "s2",
        [
            record("s2", "tts", 0, 1, cost_estimate=0.5, cache_hit=True, retries=3),
            record("s2", "tts", 1, 1, cost_estimate=0.5, retries=retries - 3),
        ],
        finished_s=2,
    )
    suggestions = legacy.optimization_suggestions(doc)
    if fires:
        assert suggestions == [
            {
                "category": "Reliability",
                "suggestion": "High retry count detected. Review provider reliability and error handling",
                "estimatedSavings": 0.1,
                "qualityImpact": "None",
            }
        ]
    else:
        assert suggestions == []
    assert legacy.run_cost_report(doc)["optimizationSuggestions"] == suggestions


# -- diagnostics ---------------------------------------------------------------------------------
def test_diagnostics_of_the_reference_job() -> None:
    diag = legacy.diagnostics_summary(load(REFERENCE))
    assert diag == {
        "totalOperations": 3,
        "successfulOperations": 2,
        "failedOperations": 1,
        "totalRetries": 2,
        "warningCount": 0,
        "averageLatency": 3000.0,
        "failureDetails": [
            {
                "stage": "visuals",
                "provider": "StableDiffusion",
                "errorCode": "TIMEOUT",
                "message": "Image generation timed out after 1500 ms",
                "timestamp": "2026-11-20T10:00:08Z",
            }
        ],
        "warningDetails": [],
    }


def test_diagnostics_defaults_and_mixed_case_statuses() -> None:
    doc = collection(
        "d1",
        [
            record("d1", "script", 0, 100),
            record("d1", "tts", 1, 200),
            record("d1", "render", 2, 300),
        ],
        finished_s=3,
    )
    doc["records"][0]["result_status"] = "ERROR"
    doc["records"][1]["result_status"] = "Warn"
    doc["records"][2]["result_status"] = "Error"
    doc["records"][2].update(provider="ffmpeg", error_code="GENERATION_ERROR", message="boom")
    diag = legacy.diagnostics_summary(doc)
    assert diag["failedOperations"] == 2 and diag["warningCount"] == 1
    assert diag["successfulOperations"] == 0
    assert diag["averageLatency"] == 200
    assert diag["failureDetails"][0] == {
        "stage": "script",
        "provider": "Unknown",
        "errorCode": "UNKNOWN",
        "message": "No error message",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    assert diag["failureDetails"][1]["errorCode"] == "GENERATION_ERROR"
    assert diag["warningDetails"] == [
        {
            "stage": "tts",
            "provider": "Unknown",
            "message": "No warning message",
            "timestamp": "2026-11-20T10:00:01Z",
        }
    ]
    assert legacy.job_status(doc) == "failed"


# -- job status and timestamps -------------------------------------------------------------------
def test_job_status() -> None:
    assert legacy.job_status(running_job("j1")) == "running"
    assert legacy.job_status(load(REFERENCE)) == "failed"
    assert legacy.job_status(load(REFERENCE_PASCAL)) == "failed"
    assert legacy.job_status(unpriced_job("j2")) == "warn"
    assert legacy.job_status(load(ADAPTER_CASE)) == "ok"
    doc = to_dict(load(ADAPTER_CASE))
    doc["summary"]["failed_operations"] = 1  # the summary alone is enough
    assert legacy.job_status(doc) == "failed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
        ("2026-11-20T10:00:00.000000Z", "2026-11-20T10:00:00Z"),
        ("2026-11-20T10:00:00.100000Z", "2026-11-20T10:00:00.1Z"),
        ("2026-11-20T10:00:00.123456Z", "2026-11-20T10:00:00.123456Z"),
        ("2026-11-20T12:00:00+02:00", "2026-11-20T10:00:00Z"),
        ("not a time", None),
        (None, None),
    ],
)
def test_legacy_timestamp_spelling(value: str | None, expected: str | None) -> None:
    assert legacy.legacy_timestamp(value) == expected


def test_effective_summary_of_a_running_job_counts_records_so_far() -> None:
    summary = legacy.effective_summary(running_job("r2"))
    assert summary["total_operations"] == 2
    assert summary["total_cost"] == 0.02


def test_cost_by_provider_adds_dollars_only() -> None:
    doc = collection(
        "p4",
        [
            record("p4", "script", 0, 1, provider="X", cost_estimate=0.1, currency="EUR"),
            record("p4", "tts", 1, 1, provider="X", cost_estimate=0.2),
        ],
        finished_s=2,
    )
    report = legacy.run_cost_report(doc)
    assert report["costByProvider"] == {"X": 0.2}
    assert report["totalCost"] == 0.2
    assert legacy.cost_report(doc, budget=0.25).withinBudget is True
