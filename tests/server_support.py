"""Helpers for the server tests: job folders built from real files, and a real uvicorn server.

The server runs on 127.0.0.1, on a port the kernel picks, in a thread that the context
manager stops; nothing is mocked between the HTTP client and the files.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from aura_otel.fold import ROOT
from aura_otel.schema import collection_dict, dumps, record_dict, summarize
from aura_otel.server import create_app
from aura_otel.store import JobStore

from .conftest import EXAMPLES

DATA = EXAMPLES
TEN_YEARS = 10 * 365 * 86400.0
REFERENCE = DATA / "reference-job.json"
REFERENCE_PASCAL = DATA / "reference-job.pascal.json"
ADAPTER_CASE = DATA / "adapter-case.telemetry.json"
ADAPTER_REPORT = DATA / "adapter-case.run-cost-report.json"


def put_file(jobs_dir: Path, job_id: str, data: bytes, *, mtime: float | None = None) -> Path:
    """Place ``data`` as a job's telemetry.json (bytes as given: no validation on the way)."""
    folder = jobs_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "telemetry.json"
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def put_example(jobs_dir: Path, example: Path, job_id: str, *, mtime: float | None = None) -> Path:
    """Copy a spec example in as ``job_id`` (its own job id rewritten everywhere)."""
    doc = orjson.loads(example.read_bytes())
    original = doc["job_id"]
    text = example.read_text(encoding="utf-8").replace(f'"{original}"', f'"{job_id}"')
    return put_file(jobs_dir, job_id, text.encode(), mtime=mtime)


def write_doc(jobs_dir: Path, doc: dict[str, Any], *, mtime: float | None = None) -> Path:
    path = put_file(jobs_dir, doc["job_id"], dumps(doc), mtime=mtime)
    return path


def write_trace_ids(
    jobs_dir: Path, job_id: str, trace_ids: list[str], *, forwarded: bool = True
) -> None:
    """Root-span units in the job's journal, as the exporter leaves them: what the trace link
    reads (``fw`` is the exporter's mark that the spans also went to a trace backend)."""
    units = {
        f"root{n}": {"k": ROOT, "t": trace_id, "s": 0, "e": 1, **({"fw": 1} if forwarded else {})}
        for n, trace_id in enumerate(trace_ids)
    }
    with JobStore(jobs_dir).journal(job_id) as journal:
        journal.append(units)


def record(
    job_id: str, stage: str, start_s: float, latency_ms: int, **fields: Any
) -> dict[str, Any]:
    """A v1 record starting ``start_s`` seconds after 2026-11-20T10:00:00Z."""
    start_us = round(start_s * 1_000_000)
    end_us = start_us + latency_ms * 1000
    return record_dict(
        job_id=job_id,
        correlation_id=f"corr-{job_id}",
        stage=stage,
        latency_ms=latency_ms,
        started_at=_at(start_us),
        ended_at=_at(end_us),
        result_status=fields.pop("result_status", "ok"),
        **fields,
    )


def _at(micros: int) -> str:
    seconds, rest = divmod(micros, 1_000_000)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-11-20T{10 + hours:02d}:{minutes:02d}:{secs:02d}.{rest:06d}Z"


def collection(
    job_id: str, records: list[dict[str, Any]], *, finished_s: float | None
) -> dict[str, Any]:
    """A collection whose summary is computed by the schema's own summarize (None = running)."""
    return collection_dict(
        job_id=job_id,
        correlation_id=f"corr-{job_id}",
        collection_started_at=_at(0),
        collection_ended_at=_at(int(finished_s * 1_000_000)) if finished_s is not None else None,
        records=records,
        summary=summarize(records) if finished_s is not None else None,
    )


def running_job(job_id: str) -> dict[str, Any]:
    return collection(
        job_id,
        [
            record(job_id, "brief", 0.0, 20),
            record(
                job_id,
                "script",
                0.1,
                1500,
                provider="OpenAI",
                model_id="gpt-4o",
                tokens_in=900,
                tokens_out=300,
                cost_estimate=0.02,
            ),
        ],
        finished_s=None,
    )


def unpriced_job(job_id: str) -> dict[str, Any]:
    """A finished job where two operations have no price (pricing marks them unpriced)."""
    return collection(
        job_id,
        [
            record(
                job_id,
                "script",
                0.0,
                2000,
                provider="OpenAI",
                tokens_in=100,
                tokens_out=50,
                cost_estimate=0.25,
            ),
            record(job_id, "tts", 2.0, 3000, provider="NewVoice", metadata={"pricing": "unpriced"}),
            record(
                job_id,
                "visuals",
                5.0,
                1000,
                provider="NewImages",
                scene_index=1,
                metadata={"pricing": "unpriced"},
                result_status="warn",
                message="fallback model",
            ),
            record(job_id, "render", 6.0, 4000, provider="ffmpeg", cost_estimate=0.0),
        ],
        finished_s=10.0,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(jobs_dir: Path, **app_kwargs: Any) -> Iterator[str]:
    """Serve ``create_app(jobs_dir, **app_kwargs)`` on 127.0.0.1; yields the base URL.

    The example files are dated November 2026: unless a test asks otherwise, a running job
    among them stays running (it is abandoned only after ten years of quiet).
    """
    app_kwargs.setdefault("abandoned_after", TEN_YEARS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(jobs_dir, **app_kwargs), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
