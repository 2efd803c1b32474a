"""A job's spans through ``configure()`` (stamping, masking, fold, files) vs the bare SDK.

Both sides make the same spans: jobs of a root and 8 stage spans, 15 attributes and one event
each. The baseline is a ``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that
does nothing; aura-otel is ``configure()`` on its own provider, OTLP off (what a user gets).
Rounds alternate between the two, so both see the same machine; every figure is a ratio of
one aura-otel round to the bare round just before it, reported as the median and the spread
(min-max) over the rounds.

- application: wall time of the application's thread running the jobs, while masking, fold
  and files run in the background as in production (budget 1.2x);
- application CPU: that thread's own CPU time (what is left of the wall time is waiting,
  mostly for the GIL held by the background threads);
- total: the same plus draining every queue and writing every job's file (budget 1.5x);
- CPU, all threads: the process's CPU time over the round, all of the work wherever it ran.
  Wall-time ratios swing with the machine's load (on 2 shared cores, the background threads
  lose the CPU first); this one barely does, so it shows a change in the work itself.

Every round checks that nothing was dropped: one file per job, every span folded.
``--wiring old`` runs the previous wiring (masking -> ``BatchSpanProcessor`` -> exporter)
instead, for before/after comparisons in one session.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import aura_otel
from _common import SPANS_PER_JOB, NullExporter, fs_floor, run_jobs

APP_BUDGET = 1.2
TOTAL_BUDGET = 1.5


def _timed_round(
    provider: TracerProvider, n_jobs: int, prefix: str, drain: Callable[[], Any]
) -> tuple[float, float, float, float]:
    """(application wall, application CPU, total wall, process CPU) seconds for one round."""
    wall0, cpu0, all0 = time.perf_counter(), time.thread_time(), time.process_time()
    run_jobs(provider, n_jobs, prefix=prefix)
    app, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    drain()
    return app, cpu, time.perf_counter() - wall0, time.process_time() - all0


def bare(n_jobs: int, prefix: str) -> tuple[float, float, float, float]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    try:
        return _timed_round(provider, n_jobs, prefix, provider.force_flush)
    finally:
        provider.shutdown()


def aura(
    n_jobs: int, jobs_dir: Path, prefix: str, wiring: str
) -> tuple[float, float, float, float]:
    provider = TracerProvider()
    if wiring == "new":
        telemetry = aura_otel.configure(
            jobs_dir,
            tracer_provider=provider,
            set_global=False,
            propagate_threads=False,
            metrics=False,
        )
        drain: Callable[[], Any] = telemetry.force_flush
        exporter = telemetry.exporter
        assert exporter is not None
    else:  # the wiring configure() built before the v1 sink
        exporter = aura_otel.RunTelemetryExporter(jobs_dir)
        provider.add_span_processor(aura_otel.JobContextProcessor())
        provider.add_span_processor(
            aura_otel.MaskingSpanProcessor(
                BatchSpanProcessor(exporter, schedule_delay_millis=200, max_queue_size=16384),
                rules=aura_otel.MaskingRules(),
            )
        )

        def drain() -> None:
            provider.force_flush()
            exporter.force_flush()

    try:
        result = _timed_round(provider, n_jobs, prefix, drain)
    finally:
        provider.shutdown()
    written = sum(1 for _ in jobs_dir.glob("*/telemetry.json"))
    folded = exporter.stats.snapshot()["spans_folded"]
    assert written == n_jobs, f"expected {n_jobs} files, found {written}"
    assert folded == n_jobs * SPANS_PER_JOB, f"{n_jobs * SPANS_PER_JOB - folded} spans lost"
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f}x  ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=150, help="jobs per round (default 150)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--wiring", choices=("new", "old"), default="new")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the job folders go (default: the system's temporary folder); "
        "e.g. /dev/shm to leave the disk out",
    )
    args = parser.parse_args()
    for name in list(os.environ):  # OTLP off, whatever the shell says
        if name.startswith(
            ("OTEL_EXPORTER_OTLP_", "OTEL_BSP_", "OTEL_SDK_DISABLED", "OTEL_METRICS_EXPORTER")
        ):
            del os.environ[name]
    spans = args.jobs * SPANS_PER_JOB
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.dir))
    try:
        floor = fs_floor(tmp / "floor", args.jobs)
        bare(50, "warm")  # imports, allocators, compiled masking rules
        aura(50, tmp / "warm", "warm", args.wiring)
        rounds = []
        for i in range(
            args.repeat
        ):  # interleaved: each aura-otel round against the bare one before it
            rounds.append(
                (bare(args.jobs, f"b{i}"), aura(args.jobs, tmp / f"r{i}", f"a{i}", args.wiring))
            )
            shutil.rmtree(tmp / f"r{i}")  # outside the timed part
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def per_span(side: int, what: int) -> float:
        return statistics.median(r[side][what] for r in rounds) * 1e6 / spans

    def ratios(what: int) -> list[float]:
        return [ours[what] / base[what] for base, ours in rounds]

    app, total = ratios(0), ratios(2)
    print(
        f"rounds x jobs x spans   {args.repeat} x {args.jobs} x {SPANS_PER_JOB} ({spans} spans a round), "
        f"wiring {args.wiring}"
    )
    print(
        f"bare SDK + BSP          app {per_span(0, 0):6.1f} us/span   app CPU {per_span(0, 1):6.1f}   "
        f"total {per_span(0, 2):6.1f}   CPU, all threads {per_span(0, 3):6.1f}"
    )
    print(
        f"aura-otel configure()   app {per_span(1, 0):6.1f} us/span   app CPU {per_span(1, 1):6.1f}   "
        f"total {per_span(1, 2):6.1f}   CPU, all threads {per_span(1, 3):6.1f}"
    )
    print(
        f"application ratio       {spread(app)}   budget {APP_BUDGET}x "
        f"{'OK' if statistics.median(app) <= APP_BUDGET else 'OVER'}"
    )
    print(f"application CPU ratio   {spread(ratios(1))}")
    print(
        f"CPU ratio, all threads  {spread(ratios(3))}   (all the work: the least sensitive to load)"
    )
    print(
        f"total ratio             {spread(total)}   budget {TOTAL_BUDGET}x "
        f"{'OK' if statistics.median(total) <= TOTAL_BUDGET else 'OVER'}  (every file on disk)"
    )
    print(
        f"file system floor       {floor * 1e6 / spans:6.1f} us/span = {statistics.median(floor / r[0][2] for r in rounds):.2f}x "
        f"the bare total: a folder, a journal and a file created per job, no Python work ({tmp.parent})"
    )
    print("spans dropped           0 (checked every round: one file per job, every span folded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
