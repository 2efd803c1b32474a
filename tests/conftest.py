"""Shared fixtures: a real TracerProvider wired as configure() wires it, per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from aura_otel import JobContextProcessor, RunTelemetryExporter
from aura_otel.masking import MaskingSpanProcessor

#: The golden files of the v1 contract (docs/run-telemetry-v1.md says which copy is authoritative).
EXAMPLES = Path(__file__).resolve().parent / "data" / "examples"


@dataclass
class Pipeline:
    provider: TracerProvider
    exporter: RunTelemetryExporter
    jobs_dir: Path

    def flush(self) -> None:
        self.provider.force_flush()
        self.exporter.force_flush()

    def read(self, job_id: str) -> dict:
        return orjson.loads((self.jobs_dir / job_id / "telemetry.json").read_bytes())


def make_pipeline(jobs_dir: Path, **exporter_kwargs) -> Pipeline:
    exporter = RunTelemetryExporter(jobs_dir, **exporter_kwargs)
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(
        MaskingSpanProcessor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    )
    return Pipeline(provider, exporter, jobs_dir)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    p = make_pipeline(tmp_path / "jobs")
    yield p
    p.provider.shutdown()


#: Variables that change what configure() builds; a developer's shell must not leak them in.
_OTEL_PREFIXES = ("OTEL_EXPORTER_OTLP_", "OTEL_BSP_", "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED")


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the OTLP, batch and SDK switches for one test."""
    for name in list(os.environ):
        if name.startswith(_OTEL_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def examples() -> Path:
    if not EXAMPLES.is_dir():
        pytest.fail(f"the golden examples are missing at {EXAMPLES}")
    return EXAMPLES


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL cluster for the whole session (tests/pg_support.py)."""
    from .pg_support import Cluster, need_postgres

    cluster = Cluster(need_postgres())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL of a fresh database in the session's cluster (restarted if a test stopped it)."""
    if not pg_cluster.running:
        pg_cluster.start()
    return pg_cluster.create_database()
