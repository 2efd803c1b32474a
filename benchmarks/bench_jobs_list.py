"""How fast is the job list with 10,000 job folders?

Run: ``python benchmarks/bench_jobs_list.py [--jobs N]``.

Compares, in the same run and on the same folders, aura-otel's job list (one stat per job,
rows cached by (mtime_ns, size), only the requested page parsed) with the naive approach the
old backend took (read and parse every telemetry.json on every request). Prints times and the
naive/aura-otel ratio; it asserts nothing about time (machines differ), only that both agree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import uvicorn

from aura_otel.schema import (
    collection_dict,
    dumps,
    load_collection,
    record_dict,
    summarize,
)
from aura_otel.server import create_app
from aura_otel.server.joblist import JobIndex
from aura_otel.store import JobStore

PAGE_SIZE = 50


def make_jobs(root: Path, count: int) -> None:
    """``count`` finished jobs of eight records each, file times one second apart."""
    base = time.time() - count
    for n in range(count):
        job_id = f"job-{n:06d}"
        records = [
            record_dict(
                job_id=job_id,
                correlation_id="c",
                stage=stage,
                latency_ms=1000 + i,
                provider="OpenAI",
                tokens_in=100,
                tokens_out=50,
                cost_estimate=0.01 * (i + 1),
                result_status="ok",
                started_at=f"2026-11-20T10:00:0{i}.000000Z",
                ended_at=f"2026-11-20T10:00:0{i + 1}.000000Z",
            )
            for i, stage in enumerate(
                ("brief", "plan", "script", "ssml", "tts", "visuals", "render", "post")
            )
        ]
        doc = collection_dict(
            job_id=job_id,
            correlation_id="c",
            collection_started_at="2026-11-20T10:00:00.000000Z",
            collection_ended_at="2026-11-20T10:00:09.000000Z",
            records=records,
            summary=summarize(records),
        )
        folder = root / job_id
        folder.mkdir()
        path = folder / "telemetry.json"
        path.write_bytes(dumps(doc))
        os.utime(path, (base + n, base + n))


def naive_page(root: Path) -> list[str]:
    """The old way: parse every file, sort, slice."""
    rows = []
    for folder in os.scandir(root):
        path = Path(folder.path) / "telemetry.json"
        collection = load_collection(path.read_bytes())
        rows.append((path.stat().st_mtime_ns, collection.job_id, collection.summary))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [job_id for _, job_id, _ in rows[:PAGE_SIZE]]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def serve(root: Path) -> tuple[str, Callable[[], None]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(root), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join()
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aura-bench-jobs-"))
    try:
        start = time.perf_counter()
        make_jobs(root, args.jobs)
        print(f"{args.jobs} job folders written in {time.perf_counter() - start:.1f} s ({root})")

        naive_s, naive_ids = timed(lambda: naive_page(root), 3)
        index = JobIndex(JobStore(root))
        cold_s, cold = timed(lambda: index.page(1, PAGE_SIZE), 1)
        warm_s, warm = timed(lambda: index.page(1, PAGE_SIZE), 20)
        assert [r["jobId"] for r in warm.items] == naive_ids == [r["jobId"] for r in cold.items]

        for path in sorted(root.iterdir())[-10:]:  # ten jobs rewrite their files
            target = path / "telemetry.json"
            target.write_bytes(target.read_bytes())
        changed_s, _ = timed(lambda: index.page(1, PAGE_SIZE), 1)

        base, stop = serve(root)
        try:
            with httpx.Client(base_url=base, timeout=60) as http:
                http.get("/api/jobs")  # warm the cache
                http_s, response = timed(
                    lambda: http.get("/api/jobs", params={"pageSize": PAGE_SIZE}), 20
                )
                body = orjson.loads(response.content)  # type: ignore[union-attr]
                assert body["totalItems"] == args.jobs
        finally:
            stop()

        print(f"naive (parse every file) per request : {naive_s * 1000:9.1f} ms")
        print(
            f"aura-otel first request (cold cache) : {cold_s * 1000:9.1f} ms   ratio naive/this {naive_s / cold_s:7.1f}x"
        )
        print(
            f"aura-otel next requests (warm cache) : {warm_s * 1000:9.1f} ms   ratio naive/this {naive_s / warm_s:7.1f}x"
        )
        print(
            f"aura-otel after 10 files changed     : {changed_s * 1000:9.1f} ms   ratio naive/this {naive_s / changed_s:7.1f}x"
        )
        print(
            f"GET /api/jobs over HTTP (warm)       : {http_s * 1000:9.1f} ms   ratio naive/this {naive_s / http_s:7.1f}x"
        )
        print(
            f"files parsed by aura-otel in total   : {index.parses} (naive: {args.jobs} per request)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
