"""Memory over many finished jobs: the exporter must release a job's state once it is written.

Runs N short jobs (root + 2 stages) through the real pipeline into a temporary jobs folder and
prints the process's resident memory every N/10 jobs. Flat is the goal: the last reading
should be within a few MB of the one after warm-up.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import TracerProvider

import aura_otel
from _common import run_jobs
from aura_otel._memory import MemoryTrimmer


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument(
        "--trim",
        action="store_true",
        help="return freed memory to the OS before each reading (glibc)",
    )
    args = parser.parse_args()
    step = max(1, args.jobs // 10)
    with tempfile.TemporaryDirectory() as tmp:
        provider = TracerProvider()
        telemetry = aura_otel.configure(
            Path(tmp) / "jobs",
            tracer_provider=provider,
            set_global=False,
            propagate_threads=False,
            metrics=False,
        )  # the real wiring
        exporter = telemetry.exporter
        assert exporter is not None
        readings = []
        for done in range(0, args.jobs, step):
            # Steady state: jobs keep coming while the queues drain (a flush every 100 jobs),
            # rather than one burst of a tenth of the run waiting in memory at once.
            for batch in range(0, step, 100):
                run_jobs(provider, 100, stages_per_job=2, prefix=f"mem-{done + batch}")
                provider.force_flush()
            telemetry.force_flush()
            if args.trim:
                MemoryTrimmer().maybe_trim(force=True)
            readings.append(rss_mb())
            print(
                f"{done + step:>8} jobs  rss {readings[-1]:7.1f} MB  held in memory: {exporter.pending_jobs()}",
                flush=True,
            )
        provider.shutdown()
    growth = readings[-1] - readings[1] if len(readings) > 1 else 0.0
    print(f"growth after warm-up     {growth:+.1f} MB over {args.jobs - step:,} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
