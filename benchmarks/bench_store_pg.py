"""PostgreSQL store: spans/s ingested with one and two receivers, job-list latency at 100k jobs.

Ingest: real ``aura-otel collect --store postgresql://...`` processes (one, then two sharing
the database), fed pre-encoded OTLP/HTTP requests (jobs of a root and 8 stages, 56 jobs per
request, as bench_receiver.py sends) by a few concurrent clients; with two receivers each job
goes to one receiver by a hash of its request, as the Collector's load balancer does. The
clock runs from the first request to the last answer: an answer means the spans are committed
and the job's document rebuilt, so nothing is left to write afterwards.

Job list: 100k jobs in the ``jobs`` table, then the list queries the API runs (first page,
a deep page, by status, by id search, by date range), each timed over many calls through
:class:`aura_otel.stores.postgres.PostgresJobList` (count + one page, rows built).

Without ``--store`` a throw-away cluster is started (as the tests do; PostgreSQL binaries
under /usr/lib/postgresql/*/bin); without PostgreSQL or psycopg the benchmark says so and
exits 0.

    python benchmarks/bench_store_pg.py [--spans 20000] [--clients 4] [--jobs 100000]
        [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def _skip(reason: str) -> None:
    print(f"bench_store_pg: skipped: {reason}")
    raise SystemExit(0)


class Collect:
    """One ``aura-otel collect --store URL`` process on a free loopback port."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aura_otel.cli",
                "collect",
                "--store",
                url,
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "off",
                "--max-concurrent-requests",
                "16",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.http = ""
        while not self.http:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("the receiver did not start")
            if line.startswith("OTLP/HTTP listening on "):
                self.http = line.split(" on ", 1)[1].strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(120)


def ingest(
    url: str, receivers: int, bodies: list[bytes], clients: int
) -> tuple[float, list[float]]:
    import httpx

    procs = [Collect(url) for _ in range(receivers)]
    lanes: list[list[bytes]] = [[] for _ in range(receivers)]
    for body in bodies:
        lanes[zlib.crc32(body[:64]) % receivers].append(body)
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def client(lane: list[bytes], target: str) -> None:
        with httpx.Client(timeout=300) as http:
            while True:
                with lock:
                    if not lane:
                        return
                    body = lane.pop()
                t0 = time.perf_counter()
                answer = http.post(
                    target, content=body, headers={"Content-Type": "application/x-protobuf"}
                )
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if answer.status_code != 200:
                        failures.append(answer.status_code)

    threads = [
        threading.Thread(target=client, args=(lanes[n % receivers], procs[n % receivers].http))
        for n in range(clients * receivers)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.stop()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {failures[:5]}")
    return elapsed, latencies


def fill_jobs(url: str, n_jobs: int) -> None:
    """``n_jobs`` rows in ``jobs`` (one real document each), one a second, newest last."""
    import psycopg

    from aura_otel.stores.postgres import SCHEMA, PostgresStore

    doc = (ROOT / "tests" / "data" / "examples" / "adapter-case.telemetry.json").read_bytes()
    PostgresStore(url).close()  # migrated
    with psycopg.connect(url) as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.jobs (job_id, document, status, started_at, last_activity,"
            " updated_at, span_count)"
            " SELECT 'job-' || lpad(g::text, 6, '0'), %s,"
            " (ARRAY['ok','failed','warn','running'])[1 + g %% 4],"
            " now() - make_interval(secs => %s - g), now() - make_interval(secs => %s - g),"
            " now() - make_interval(secs => %s - g), 9"
            " FROM generate_series(1, %s) AS g ON CONFLICT DO NOTHING",
            (doc, n_jobs, n_jobs, n_jobs, n_jobs),
        )
        conn.execute(f"ANALYZE {SCHEMA}.jobs")


def list_latency(url: str, n_jobs: int, repeat: int) -> list[tuple[str, float, float, float, int]]:
    from datetime import UTC, datetime, timedelta

    from aura_otel.stores import JobFilter
    from aura_otel.stores.postgres import PostgresStore

    now = datetime.now(UTC)
    cases = [
        ("first page", 1, JobFilter()),
        (f"page {n_jobs // 100} (deep offset)", n_jobs // 100, JobFilter()),
        ("status=failed", 1, JobFilter(status="failed")),
        ("search q=12345", 1, JobFilter(search="12345")),
        ("last hour", 1, JobFilter(since=now - timedelta(hours=1))),
        (
            "an hour, a day ago",
            1,
            JobFilter(since=now - timedelta(hours=25), until=now - timedelta(hours=24)),
        ),
        (
            "search + status + range",
            1,
            JobFilter(search="99", status="ok", since=now - timedelta(hours=12)),
        ),
    ]
    results = []
    with PostgresStore(url, migrate=False) as store:
        lister = store.lister(abandoned_after=3600)
        for name, page, filters in cases:
            times = []
            total = 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = lister.page(page, 50, filters)
                times.append((time.perf_counter() - t0) * 1000)
                total = result.total
            cold = times[0]  # its rows parsed; later calls find them cached
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            results.append((name, cold, statistics.median(times), p95, total))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=20_160)
    parser.add_argument("--clients", type=int, default=4, help="clients per receiver")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--store", help="an existing database (it gets aura_otel tables)")
    args = parser.parse_args()
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _skip("psycopg 3 and psycopg-pool are not installed (pip install '.[postgres]')")
    cluster = None
    if args.store:
        make_db = lambda: args.store  # noqa: E731
    else:
        from tests.pg_support import Cluster, find_bindir

        bindir = find_bindir()
        if bindir is None:
            _skip("PostgreSQL is not installed (apt-get install postgresql)")
        cluster = Cluster(bindir)
        cluster.start()
        make_db = cluster.create_database
    try:
        from bench_receiver import make_requests

        print(f"PostgreSQL store, {os.cpu_count()} cores; receivers and database share them")
        for receivers in (1, 2):
            url = make_db()
            bodies = make_requests(args.spans, f"pg{receivers}")
            spans = args.spans // 9 * 9
            elapsed, latencies = ingest(url, receivers, bodies, args.clients)
            latencies.sort()
            print(
                f"  ingest, {receivers} receiver{'s' if receivers > 1 else ''}: "
                f"{spans / elapsed:,.0f} spans/s ({spans} spans in {elapsed:.2f}s; request "
                f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p95 {latencies[int(0.95 * (len(latencies) - 1))] * 1000:.0f} ms)"
            )
        url = make_db()
        t0 = time.perf_counter()
        fill_jobs(url, args.jobs)
        print(
            f"  job list at {args.jobs:,} jobs (filled in {time.perf_counter() - t0:.1f}s), "
            f"{args.repeat} calls each, page of 50:"
        )
        for name, cold, p50, p95, total in list_latency(url, args.jobs, args.repeat):
            print(
                f"    {name:<26} first {cold:6.1f} ms  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"
                f"  ({total:,} matching)"
            )
    finally:
        if cluster is not None:
            cluster.remove()


if __name__ == "__main__":
    main()
