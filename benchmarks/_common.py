"""Shared bits of the benchmarks: the span every run makes, and timing helpers."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

STAGES = ["brief", "plan", "script", "ssml", "tts", "visuals", "render", "post"]
SPANS_PER_JOB = 9  # run_jobs: a root and 8 stages


class NullExporter(SpanExporter):
    """What the bare SDK baseline exports to: nothing, so only the SDK's own cost is measured."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def stage_attributes(job_id: str, i: int) -> dict:
    """15 attributes, as a typical stage span carries.

    Some values repeat across spans (stage, provider and model names) and some differ per job
    or per span (the message, the output path; the job's ids stamped on every span): masking
    remembers short strings it found clean, and spans of constant values only would flatter it.
    """
    return {
        "aura.stage": STAGES[i % 8],
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 1200 + i,
        "gen_ai.usage.output_tokens": 300,
        "aura.cost.amount": 0.0123,
        "aura.cache.hit": i % 3 == 0,
        "aura.retry.count": i % 2,
        "aura.result.message": f"Script generated for {job_id} scene {i}: {1200 + i} characters",
        "aura.meta.script_length": 1200,
        "aura.meta.voice_name": "Rachel",
        "aura.meta.output_path": f"renders/{job_id}/scene-{i}.mp4",
        "aura.meta.resolution": "1920x1080",
        "aura.scene.index": i,
    }


def run_jobs(
    provider: TracerProvider, n_jobs: int, stages_per_job: int = 8, prefix: str = "bench"
) -> None:
    """``n_jobs`` jobs named ``<prefix>-<n>``: give each call its own prefix when the same
    exporter sees several calls, or the jobs of one call would continue those of the last."""
    tracer = provider.get_tracer("bench")
    for j in range(n_jobs):
        job_id = f"{prefix}-{j}"
        with tracer.start_as_current_span(
            "aura.job", attributes={"aura.job.id": job_id, "aura.correlation.id": f"corr-{j}"}
        ):
            for i in range(stages_per_job):
                with tracer.start_as_current_span(
                    f"aura.stage.{STAGES[i % 8]}", attributes=stage_attributes(job_id, i)
                ) as span:
                    span.add_event("provider.response", {"http.status_code": 200, "bytes": 5120})


def bare_sdk(n_jobs: int) -> tuple[float, float]:
    """The baseline: (application, total) seconds for ``n_jobs`` jobs through a bare
    TracerProvider + BatchSpanProcessor exporting to nothing."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    app = timed(lambda: run_jobs(provider, n_jobs))
    total = app + timed(provider.force_flush)
    provider.shutdown()
    return app, total


def bare_span_seconds(n_jobs: int = 1000, repeat: int = 5) -> float:
    """What one bare SDK span (15 attributes, one event) costs the application thread: the
    yardstick every benchmark's ratio is taken against."""
    bare_sdk(50)  # warm up
    return statistics.median(bare_sdk(n_jobs)[0] for _ in range(repeat)) / (n_jobs * SPANS_PER_JOB)


def best_of(fn: Callable[[], float], repeat: int) -> float:
    """Median of ``repeat`` runs: robust to the other core being busy for a moment."""
    return statistics.median(fn() for _ in range(repeat))


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fs_floor(folder: Path, n_jobs: int, *, remove: bool = True) -> float:
    """Seconds the file system alone takes to create ``n_jobs`` job folders as the exporter
    and the receiver do (a folder, a journal line, a file written beside and renamed into
    place): on some disks creating an inode costs more than everything aura-otel does in
    Python. ``remove=False`` leaves the folders for the caller to delete later: on an ext4
    without a journal, inodes freed in the last minutes make new ones slow to create, so
    deleting them just before a measured run would slow that run down."""
    folder.mkdir()
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    start = time.perf_counter()
    try:
        for i in range(n_jobs):
            os.mkdir(f"j{i}", dir_fd=root)
            job = os.open(f"j{i}", os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
            journal = os.open("units", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644, dir_fd=job)
            os.write(journal, b"u" * 3000)
            tmp = os.open("tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=job)
            os.write(tmp, b"t" * 6000)
            os.close(tmp)
            os.rename("tmp", "telemetry.json", src_dir_fd=job, dst_dir_fd=job)
            os.close(journal)
            os.close(job)
        return time.perf_counter() - start
    finally:
        os.close(root)
        if remove:
            shutil.rmtree(folder)


__all__ = [
    "SPANS_PER_JOB",
    "STAGES",
    "NullExporter",
    "bare_sdk",
    "bare_span_seconds",
    "best_of",
    "fs_floor",
    "run_jobs",
    "stage_attributes",
    "timed",
    "trace",
]
