"""``Telemetry.force_flush``/``shutdown`` wait for a dead OTLP backend at most once the budget.

Traces and metrics each bound their own wait; the handle must make them share one deadline,
so a black-holed endpoint costs ``otlp_shutdown_timeout`` in all, not once per signal.

No assertion here reads the wall clock's total: the budgets each component is *given* are
recorded, and their sum must fit the one budget. That holds whatever the machine's load: a
component blocked on the black hole waits at least what it was given, so whatever it leaves
is all the next one may get.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import aura_otel.forwarding
import aura_otel.metrics
from aura_otel import Stage, configure, job, stage
from aura_otel.pipeline import Telemetry

from .otlp_receivers import black_hole

pytestmark = pytest.mark.usefixtures("no_otel_env")

BUDGET_S = 0.4


def _owner(target: Any) -> Any:
    """The component a bounded wait belongs to (its target closes over it)."""
    for cell in getattr(target, "__closure__", None) or ():
        if isinstance(
            cell.cell_contents,
            aura_otel.forwarding.ForwardingSpanProcessor | aura_otel.metrics.MetricsPipeline,
        ):
            return cell.cell_contents
    return None


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, float]]:
    """Every bounded wait started, as (component, budget in ms), in order; the waits run."""
    calls: list[tuple[Any, float]] = []
    real = aura_otel.forwarding.run_bounded

    def recording(target: Any, timeout_millis: float, name: str) -> bool:
        calls.append((_owner(target), float(timeout_millis)))
        return real(target, timeout_millis, name)

    monkeypatch.setattr(aura_otel.forwarding, "run_bounded", recording)
    monkeypatch.setattr(aura_otel.metrics, "run_bounded", recording)
    return calls


@pytest.fixture
def dead_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    with black_hole() as hole:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hole.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "600")  # the exporter alone would hang
        telemetry = configure(
            tmp_path / "jobs",
            tracer_provider=TracerProvider(resource=Resource.create({"service.name": "t"})),
            set_global=False,
            propagate_threads=False,
            write_interval=0,
            pricing=False,
            otlp_shutdown_timeout=BUDGET_S,
        )
        try:
            with job("job-deadline", tracer_provider=telemetry.tracer_provider):
                with stage(Stage.SCRIPT, provider="openai", model="gpt-4o") as s:
                    s.record_usage(tokens_in=10, tokens_out=5)
            yield telemetry
        finally:
            telemetry.shutdown()


def _backend(telemetry: Telemetry, calls: list[tuple[Any, float]]) -> list[tuple[str, float]]:
    """The waits for the OTLP backend: traces forwarding and metrics (the v1 queue writes local
    files and keeps its own bound)."""
    names = {id(telemetry.forwarding): "traces", id(telemetry.metrics): "metrics"}
    return [(names[id(owner)], ms) for owner, ms in calls if id(owner) in names]


def test_force_flush_shares_one_budget_across_traces_and_metrics(
    dead_backend: Telemetry, given: list[tuple[Any, float]]
) -> None:
    dead_backend.force_flush(timeout_millis=30_000)
    waits = _backend(dead_backend, given)
    assert [name for name, _ in waits] == ["traces", "metrics"]
    # The traces flush is blocked on the black hole for all it was given; metrics get the rest.
    assert sum(ms for _, ms in waits) <= BUDGET_S * 1000 + 5, waits
    assert (
        dead_backend.tracer_provider is not None
        and (Path(dead_backend.jobs_dir or "") / "job-deadline" / "telemetry.json").is_file()
    )


def test_a_smaller_flush_timeout_is_the_shared_budget(
    dead_backend: Telemetry, given: list[tuple[Any, float]]
) -> None:
    dead_backend.force_flush(timeout_millis=200)
    waits = _backend(dead_backend, given)
    assert waits and sum(ms for _, ms in waits) <= 200 + 5, waits


def test_shutdown_shares_one_budget_across_traces_and_metrics(
    dead_backend: Telemetry, given: list[tuple[Any, float]]
) -> None:
    dead_backend.shutdown()
    waits = _backend(dead_backend, given)
    # Metrics get what the traces left, or start no wait at all when nothing is left (a
    # shutdown still talking to the backend as the interpreter exits aborts it with gRPC).
    assert [name for name, _ in waits] in (["traces"], ["traces", "metrics"]), waits
    assert all(ms > 0 for name, ms in waits if name == "metrics"), waits
    assert sum(ms for _, ms in waits) <= BUDGET_S * 1000 + 5, waits
    # The v1 files are not the backend: they are written whatever the budget.
    assert (Path(dead_backend.jobs_dir or "") / "job-deadline" / "telemetry.json").is_file()
