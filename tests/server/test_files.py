"""The server against files that are not what they claim: FIFOs, huge files, links.

A real uvicorn server on 127.0.0.1 (``tests.server_support.live_server``) over a real jobs
folder; the FIFO is a real named pipe that nobody ever writes to.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from aura_otel import cli
from aura_otel.errors import ConfigurationError
from aura_otel.server import create_app

from ..server_support import ADAPTER_CASE, REFERENCE, live_server, put_example

#: Generous: with the fix every answer is immediate; without it a FIFO never answers at all.
CLIENT_TIMEOUT = 30.0


@contextmanager
def released(fifo: Path) -> Iterator[None]:
    """Whatever happens, let go of any reader blocked on ``fifo`` (by opening its write end)."""
    try:
        yield
    finally:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader waiting: nothing to release
            pass
        else:
            os.close(fd)


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    put_example(folder, REFERENCE, "job-ok")
    put_example(folder, ADAPTER_CASE, "job-cost1")
    return folder


def test_a_fifo_named_telemetry_json_never_hangs_the_server(jobs: Path) -> None:
    (jobs / "job-fifo").mkdir()
    fifo = jobs / "job-fifo" / "telemetry.json"
    os.mkfifo(fifo)
    with (
        released(fifo),
        live_server(jobs) as base,
        httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http,
    ):
        paths = [
            "/api/telemetry/job-fifo",
            "/api/telemetry/job-fifo/diagnostics",
            "/api/cost-tracking/run-summary/job-fifo",
            "/jobs/job-fifo/telemetry",
        ]
        # More requests at once than the server has worker threads (40).
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(http.get, paths * 15))
        assert [r.status_code for r in answers] == [500] * len(answers)
        problem = answers[0].json()
        assert problem["title"] == "Internal Server Error"
        assert str(jobs) not in answers[0].text
        # Everything else still answers: another job, the list, the pages, static files.
        assert http.get("/api/telemetry/job-ok").status_code == 200
        listed = http.get("/api/jobs").json()["items"]
        assert sorted(item["jobId"] for item in listed) == ["job-cost1", "job-ok"]
        assert http.get("/jobs").status_code == 200
        assert http.get("/static/app.css").status_code == 200


def test_files_over_the_size_cap_get_a_clear_problem_not_a_parse(jobs: Path) -> None:
    size = (jobs / "job-ok" / "telemetry.json").stat().st_size
    small = (jobs / "job-cost1" / "telemetry.json").stat().st_size
    assert small < size
    with (
        live_server(jobs, max_file_bytes=size - 1) as base,
        httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http,
    ):
        response = http.get("/api/telemetry/job-ok")
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["title"] == "Telemetry Too Large"
        assert f"{size} bytes" in body["detail"] and str(size - 1) in body["detail"]
        assert "--max-file-bytes" in body["detail"]
        assert http.get("/jobs/job-ok/telemetry").status_code == 422
        assert http.get("/api/telemetry/job-cost1").status_code == 200  # under the cap
        rows = {item["jobId"]: item for item in http.get("/api/jobs").json()["items"]}
        assert rows["job-ok"]["status"] == "unreadable"  # flagged, not parsed
        assert rows["job-cost1"]["status"] != "unreadable"


def test_the_size_cap_comes_from_the_environment(
    jobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AURA_OTEL_MAX_FILE_BYTES", "100")
    with live_server(jobs) as base, httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http:
        assert http.get("/api/telemetry/job-cost1").status_code == 422


@pytest.mark.parametrize("bad", ["0", "-5", "lots", "1.5"])
def test_a_bad_size_cap_is_a_configuration_error(
    jobs: Path, monkeypatch: pytest.MonkeyPatch, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AURA_OTEL_MAX_FILE_BYTES", bad)
    with pytest.raises(ConfigurationError, match="AURA_OTEL_MAX_FILE_BYTES"):
        create_app(jobs)
    monkeypatch.delenv("AURA_OTEL_MAX_FILE_BYTES")
    # The command refuses before binding anything.
    assert cli.main(["serve", "--jobs-dir", str(jobs), "--port", "1", "--max-file-bytes", "0"]) == 2
    assert "max_file_bytes" in capsys.readouterr().err


def test_file_reading_routes_run_off_the_event_loop(jobs: Path) -> None:
    """Starlette runs plain (non-async) endpoints in its thread pool: a slow disk or a big
    parse holds up one worker thread, never the loop that serves every other request."""
    app = create_app(jobs)
    reading = [
        r
        for r in app.routes
        if isinstance(r, Route) and ("{job_id" in r.path or r.path in ("/api/jobs", "/jobs"))
    ]
    assert len(reading) >= 6
    for route in reading:
        assert not inspect.iscoroutinefunction(route.endpoint), route.path


def test_a_file_swapped_for_a_fifo_after_the_listing_is_flagged_not_waited_on(jobs: Path) -> None:
    """The list stats files first and reads a page's files after: a FIFO that replaces a file
    in between is read without blocking and shown as unreadable."""
    from aura_otel.server.joblist import STATUS_UNREADABLE, JobIndex
    from aura_otel.store import JobStore

    index = JobIndex(JobStore(jobs))
    target = jobs / "job-ok" / "telemetry.json"
    target.unlink()
    os.mkfifo(target)
    rows: list[dict | None] = []
    with released(target):  # a blocked read (the old behaviour) is let go, and fails below
        reader = threading.Thread(
            target=lambda: rows.append(index._row("job-ok", 1, 1)), daemon=True
        )  # what page() does for a listed entry
        reader.start()
        reader.join(CLIENT_TIMEOUT)
        blocked = reader.is_alive()
    assert not blocked, "reading the job list blocked on a FIFO"
    assert rows and rows[0] is not None and rows[0]["status"] == STATUS_UNREADABLE
