"""The fleet view at scale: /api/insights over N job folders (default 100,000).

Writes N realistic four-stage jobs spread over a year into a temporary folder (or reuses
``--jobs-dir``), then measures through the real app (Starlette's test client, no network):

- cold: the first request, which reads and summarises every telemetry.json once;
- warm: later requests, which cost one stat per job (to notice changed files) plus the
  aggregation over the cached summaries; the 30-day default period and a whole year;
- memory: the resident size the summary cache adds.

Run: python benchmarks/bench_insights.py [--jobs N] [--jobs-dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402
from tests.fleet_support import write_many  # noqa: E402

from aura_otel.server import create_app  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--jobs-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs_dir = args.jobs_dir or Path(tmp) / "jobs"
        if not (jobs_dir.exists() and any(jobs_dir.iterdir())):
            started = time.perf_counter()
            write_many(jobs_dir, args.jobs)
            print(f"wrote {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        client = TestClient(create_app(jobs_dir), base_url="http://127.0.0.1")
        before = rss_mb()
        started = time.perf_counter()
        response = client.get("/api/insights")
        cold = time.perf_counter() - started
        assert response.status_code == 200, response.text
        print(
            f"cold /api/insights (30 days): {cold:.2f} s, summary cache +{rss_mb() - before:.0f} MB peak RSS"
        )
        for label, params in (
            ("30 days", {}),
            ("365 days", {"since": "2025-11-02", "until": "2026-11-01"}),
        ):
            times = []
            for _ in range(4):
                started = time.perf_counter()
                body = client.get("/api/insights", params=params).json()
                times.append(time.perf_counter() - started)
            # The first warm request of a period also judges its jobs' anomalies (memoised).
            print(
                f"warm /api/insights ({label}, {body['totals']['jobs']:,} jobs in period): "
                f"first {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s"
            )
        started = time.perf_counter()
        assert client.get("/insights").status_code == 200
        print(f"warm /insights page: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
