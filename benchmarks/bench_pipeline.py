"""A job's spans through aura-otel (stamping, masking, fold, file) vs the bare SDK.

Both sides make the same spans (a root + 8 stage spans with 15 attributes and one event); the
baseline is a TracerProvider with a BatchSpanProcessor and an exporter that does nothing.

Two figures, both as ratios to the baseline measured in the same run:
- application: the time the application's own thread spends running the jobs, while the
  export, fold and file writes run in the background as they do in production. This is the
  budget (at most 1.5x): what telemetry costs the pipeline.
- total: the same plus draining every queue and writing every file before stopping; a
  burst of very short jobs is the worst case, since each job's file costs an atomic replace
  (~0.3 ms on these machines) whatever the number of its spans.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import NullExporter, run_jobs, timed  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from aura_otel import (  # noqa: E402
    JobContextProcessor,
    MaskingRules,
    MaskingSpanProcessor,
    RunTelemetryExporter,
)
from aura_otel.pipeline import V1_SCHEDULE_DELAY_MS  # noqa: E402

BUDGET = 1.5


def bare(n_jobs: int) -> tuple[float, float]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    app = timed(lambda: run_jobs(provider, n_jobs))
    total = app + timed(lambda: provider.force_flush())
    provider.shutdown()
    return app, total


def aura(n_jobs: int, jobs_dir: Path) -> tuple[float, float]:
    provider = TracerProvider()
    exporter = RunTelemetryExporter(jobs_dir)
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(MaskingSpanProcessor(
        BatchSpanProcessor(exporter, schedule_delay_millis=V1_SCHEDULE_DELAY_MS), rules=MaskingRules()))

    def drain() -> None:
        provider.force_flush()
        exporter.force_flush()

    app = timed(lambda: run_jobs(provider, n_jobs))
    total = app + timed(drain)
    provider.shutdown()
    written = sum(1 for _ in jobs_dir.glob("*/telemetry.json"))
    assert written == n_jobs, f"expected {n_jobs} files, found {written}"
    return app, total


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    spans = args.jobs * 9
    bare(50)  # warm up imports and allocators
    base_runs, our_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):  # interleaved, so both sides see the same machine
            base_runs.append(bare(args.jobs))
            our_runs.append(aura(args.jobs, Path(tmp) / f"run-{i}"))
    (base_app, base_total), (our_app, our_total) = median_pair(base_runs), median_pair(our_runs)
    ratio = our_app / base_app
    print(f"jobs x spans per run    {args.jobs} x 9 = {spans}")
    print(f"bare SDK + BSP          {base_app * 1e6 / spans:8.1f} us/span app   {base_total * 1e6 / spans:8.1f} us/span total")
    print(f"aura-otel (all stages)  {our_app * 1e6 / spans:8.1f} us/span app   {our_total * 1e6 / spans:8.1f} us/span total")
    print(f"application ratio       {ratio:8.2f}x   (budget {BUDGET}x) {'OK' if ratio <= BUDGET else 'OVER BUDGET'}")
    print(f"total ratio             {our_total / base_total:8.2f}x   (incl. draining every file at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
