"""The fleet view at scale: /api/insights over N job folders (default 100,000).

Writes N realistic four-stage jobs spread over a year into a temporary folder (or reuses
``--jobs-dir``), then measures through the real app (Starlette's test client, no network):

- the folder without a summary cache file: the first request reads and summarises every
  telemetry.json once (and saves the cache file);
- the folder after a restart: the first request loads the cache file and stats every job;
- later requests: one stat per job plus the aggregation; the 30-day default period and a year;
- with --postgres: the same jobs imported into a throw-away PostgreSQL cluster, where a
  request reads the period's summaries and the anomaly baselines from indexed tables.

Run: python benchmarks/bench_insights.py [--jobs N] [--jobs-dir DIR] [--postgres]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402
from tests.fleet_support import write_many  # noqa: E402

from aura_otel.insights.source import CACHE_FILE  # noqa: E402
from aura_otel.server import create_app  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(label: str, make_app: Callable[[], Any]) -> None:
    """A fresh app (a restarted server): its first request, later ones, a year, the page."""
    app = make_app()
    client = TestClient(app, base_url="http://127.0.0.1")
    before = rss_mb()
    started = time.perf_counter()
    response = client.get("/api/insights")
    cold = time.perf_counter() - started
    assert response.status_code == 200, response.text
    print(
        f"[{label}] first /api/insights (30 days): {cold:.2f} s, +{rss_mb() - before:.0f} MB peak RSS"
    )
    for period, params in (
        ("30 days", {}),
        ("365 days", {"since": "2025-11-02", "until": "2026-11-01"}),
    ):
        times = []
        for _ in range(4):
            started = time.perf_counter()
            body = client.get("/api/insights", params=params).json()
            times.append(time.perf_counter() - started)
        # The first request of a period also judges its jobs' anomalies (memoised).
        print(
            f"[{label}] /api/insights ({period}, {body['totals']['jobs']:,} jobs in period): "
            f"first {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s"
        )
    started = time.perf_counter()
    assert client.get("/insights").status_code == 200
    print(f"[{label}] /insights page (30 days): {time.perf_counter() - started:.2f} s")
    times = []
    for _ in range(4):  # the job list with its anomaly flags (judged once, then memoised)
        started = time.perf_counter()
        assert client.get("/api/jobs").status_code == 200
        times.append(time.perf_counter() - started)
    print(
        f"[{label}] /api/jobs first page with anomaly flags: first {times[0]:.2f} s, "
        f"then median {statistics.median(times[1:]):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--jobs-dir", type=Path)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also import the jobs into a throw-away PostgreSQL cluster and measure there",
    )
    parser.add_argument("--postgres-only", action="store_true", help="measure PostgreSQL only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs_dir = args.jobs_dir or Path(tmp) / "jobs"
        if not (jobs_dir.exists() and any(jobs_dir.iterdir())):
            started = time.perf_counter()
            write_many(jobs_dir, args.jobs)
            print(f"wrote {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        if not args.postgres_only:
            cache = jobs_dir / CACHE_FILE
            cache.unlink(missing_ok=True)
            measure("folder, no summary cache yet", lambda: create_app(jobs_dir))
            print(f"summary cache file: {cache.stat().st_size / 1e6:.0f} MB")
            measure("folder, restarted with the cache file", lambda: create_app(jobs_dir))
        if args.postgres or args.postgres_only:
            bench_postgres(jobs_dir)


def copy_documents(folder: Any, store: Any) -> None:
    """The folder's documents into ``jobs`` with COPY (``db import`` merges job by job, which
    at 100k jobs takes longer than the benchmark itself); no summaries yet."""
    from datetime import UTC, datetime

    with (
        store.connection() as conn,
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(
            "COPY aura_otel.jobs (job_id, document, status, updated_at, span_count) FROM STDIN"
        ) as copy,
    ):
        for job_id, mtime_ns, _ in folder.job_entries():
            moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
            copy.write_row((job_id, folder.read_bytes(job_id), "ok", moment, 0))


def bench_postgres(jobs_dir: Path) -> None:
    from tests.pg_support import Cluster, find_bindir

    from aura_otel.store import JobStore
    from aura_otel.stores.pg_summaries import summarize_stale
    from aura_otel.stores.postgres import PostgresStore

    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL is not installed: skipped")
        return
    cluster = Cluster(bindir)
    cluster.start()
    try:
        url = cluster.create_database()
        with PostgresStore(url, statement_timeout=3600) as store:
            started = time.perf_counter()
            copy_documents(JobStore(jobs_dir), store)
            print(f"copied the documents into PostgreSQL in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            with store.connection() as conn:
                count = summarize_stale(conn)
            print(
                f"back-filled {count:,} summaries (what `db upgrade` does for an existing "
                f"database) in {time.perf_counter() - started:.1f} s"
            )
        stores = []

        def make() -> Any:
            store = PostgresStore(url)
            stores.append(store)
            return create_app(store)

        measure("PostgreSQL", make)
        for store in stores:
            store.close()
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
