"""RunTelemetryExporter: per-job files, atomic writes, crash safety, bad input, memory."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from aura_otel import job, stage
from aura_otel.schema import validation_errors

from .conftest import Pipeline, make_pipeline

STAGES = ["brief", "plan", "script", "ssml", "tts", "visuals", "render", "post"]


def run_job(pipeline: Pipeline, job_id: str, n_stages: int = 8) -> None:
    with job(job_id, tracer_provider=pipeline.provider):
        for name in STAGES[:n_stages]:
            with stage(name, provider=f"prov-{job_id}") as s:
                s.record_usage(tokens_in=len(job_id), tokens_out=1)


def assert_only_own_records(pipeline: Pipeline, job_id: str, n_stages: int = 8) -> None:
    doc = pipeline.read(job_id)
    assert doc["job_id"] == job_id
    assert [r["stage"] for r in doc["records"]] == STAGES[:n_stages]
    assert {r["job_id"] for r in doc["records"]} == {job_id}
    assert {r["provider"] for r in doc["records"]} == {f"prov-{job_id}"}
    assert doc["summary"]["total_operations"] == n_stages
    assert "collection_ended_at" in doc


def test_many_concurrent_jobs_in_threads_have_no_cross_talk(pipeline: Pipeline) -> None:
    ids = [f"thread-job-{i}" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda j: run_job(pipeline, j), ids))
    pipeline.flush()
    for job_id in ids:
        assert_only_own_records(pipeline, job_id)


def test_many_concurrent_jobs_in_asyncio_have_no_cross_talk(pipeline: Pipeline) -> None:
    async def one(job_id: str) -> None:
        async with job(job_id, tracer_provider=pipeline.provider):
            for name in STAGES:
                async with stage(name, provider=f"prov-{job_id}") as s:
                    await asyncio.sleep(0)
                    s.record_usage(tokens_in=len(job_id), tokens_out=1)

    ids = [f"async-job-{i}" for i in range(40)]

    async def main() -> None:
        await asyncio.gather(*(one(j) for j in ids))

    asyncio.run(main())
    pipeline.flush()
    for job_id in ids:
        assert_only_own_records(pipeline, job_id)


def test_reader_polling_during_writes_never_sees_invalid_json(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "jobs", write_interval=0.0)
    path = tmp_path / "jobs" / "busy" / "telemetry.json"
    stop = threading.Event()
    reads, bad = [0], []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            reads[0] += 1
            if validation_errors(data):
                bad.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with job("busy", tracer_provider=pipeline.provider):
            for i in range(300):
                with stage(STAGES[i % 8], metadata={"payload": "x" * 2000, "i": i}):
                    pass
                if i % 10 == 0:
                    pipeline.flush()
        pipeline.flush()
        deadline = time.monotonic() + 60  # readiness only: the reader has read at least once
        while reads[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
        pipeline.provider.shutdown()
    assert reads[0] > 0 and bad == []
    assert len(pipeline.read("busy")["records"]) == 300
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import aura_otel
    from aura_otel import job, stage
    aura_otel.configure(sys.argv[1], service_name="kill-test")
    with job("killed-job"):
        for name in ["brief", "plan", "script"]:
            with stage(name):
                time.sleep(0.05)
            print("ended", name, flush=True)
        sys.stdin.readline()  # the test says when: after it has seen the three stages on disk
        with stage("tts"):
            time.sleep(0.01)
        print("ended tts", flush=True)
        time.sleep(600)
    """
)


def _wait_for_records(
    path: Path, count: int, proc: subprocess.Popen, budget: float = 120.0
) -> None:
    """Readiness only: wait (bounded, generously) until the writer has put ``count`` records out."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(orjson.loads(path.read_bytes())["records"]) >= count:
                return
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail(f"{path} never held {count} records")


def test_kill_minus_9_leaves_a_valid_file_with_every_stage_already_written(tmp_path: Path) -> None:
    """The file on disk is always whole: ``kill -9`` right after a stage ends leaves it valid.

    The test waits until the background writer has written the first three stages (however
    long a busy machine takes), then lets the job run one more stage and kills the process the
    moment that stage has ended, in the middle of whatever the writer is doing.
    """
    script = tmp_path / "app.py"
    script.write_text(KILL_SCRIPT)
    jobs = tmp_path / "jobs"
    path = jobs / "killed-job" / "telemetry.json"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(jobs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        seen = [proc.stdout.readline().split()[1] for _ in range(3)]
        assert seen == ["brief", "plan", "script"]
        _wait_for_records(path, 3, proc)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split()[1] == "tts"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    data = path.read_bytes()
    assert validation_errors(data) == []
    doc = orjson.loads(data)
    assert [r["stage"] for r in doc["records"]][:3] == ["brief", "plan", "script"]
    assert "collection_ended_at" not in doc and "summary" not in doc


def test_unsafe_job_id_is_rejected_logged_and_nothing_written(
    pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aura_otel")
    for bad in ["../escape", "a/b", "..", "x" * 200, "ctl\x07"]:
        run_job(pipeline, bad, n_stages=2)
    run_job(pipeline, "fine", n_stages=1)
    pipeline.flush()
    assert sorted(p.name for p in pipeline.jobs_dir.iterdir()) == ["fine"]
    assert not (tmp_path / "escape").exists()
    assert pipeline.exporter.stats.snapshot()["spans_rejected_job_id"] == 15
    assert "not a safe single path segment" in caplog.text


def test_job_ids_shaped_like_pii_stay_apart_and_a_token_id_is_left_out(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """Ids are names, not phone numbers: each keeps its own file. An id holding a token is
    left out of the masked span: its spans belong to no job (counted, in no file), never
    merged into another job's file."""
    caplog.set_level(logging.WARNING, logger="aura_otel")
    ids = [
        "job-415-215-0283",
        "job-415-215-0284",
        "order-123-45-6789",
        "run-4242-4242-4242-4242",
        "ジョブ-7",
        "работа-1",
        "promo off",  # the v1 contract allows spaces inside an id
        "Promo video 12",
    ]
    for job_id in ids:
        run_job(pipeline, job_id, n_stages=1)
    run_job(pipeline, "job-ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", n_stages=2)
    pipeline.flush()
    assert sorted(p.name for p in pipeline.jobs_dir.iterdir()) == sorted(ids)
    assert pipeline.exporter.stats.snapshot()["spans_without_job"] == 3
    assert "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5" not in caplog.text
    assert "aura.job.id held a secret or is no identifier" in caplog.text  # said, not silent


def test_spans_without_a_job_are_counted_not_written(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("t")
    for _ in range(5):
        with tracer.start_as_current_span("GET /health"):
            pass
    pipeline.flush()
    assert pipeline.exporter.stats.snapshot()["spans_without_job"] == 5
    assert not pipeline.jobs_dir.exists()


def test_late_spans_update_a_finalised_file(pipeline: Pipeline) -> None:
    from opentelemetry import trace

    tracer = pipeline.provider.get_tracer("t")
    root = tracer.start_span(
        "aura.job", attributes={"aura.job.id": "late", "aura.correlation.id": "c"}
    )
    ctx = trace.set_span_in_context(root)
    straggler = tracer.start_span("aura.stage.post", context=ctx, attributes={"aura.stage": "post"})
    with tracer.start_as_current_span(
        "aura.stage.brief", context=ctx, attributes={"aura.stage": "brief"}
    ):
        pass
    root.end()
    pipeline.flush()
    assert pipeline.exporter.pending_jobs() == 0  # finalised and released
    assert [r["stage"] for r in pipeline.read("late")["records"]] == ["brief"]
    straggler.end()
    pipeline.flush()
    doc = pipeline.read("late")
    assert [r["stage"] for r in doc["records"]] == ["post", "brief"]  # start-time order
    assert doc["summary"]["total_operations"] == 2 and "collection_ended_at" in doc


def test_finished_jobs_release_their_memory(pipeline: Pipeline) -> None:
    for i in range(500):
        run_job(pipeline, f"mem-{i}", n_stages=2)
    pipeline.flush()
    assert pipeline.exporter.pending_jobs() == 0
    assert pipeline.exporter.stats.snapshot()["jobs_finalized"] == 500


def test_write_failures_are_counted_never_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the jobs folder should be")
    pipeline = make_pipeline(blocker)
    run_job(pipeline, "doomed", n_stages=2)  # must not raise
    pipeline.flush()
    assert pipeline.exporter.stats.snapshot()["write_errors"] >= 1
    pipeline.provider.shutdown()


def test_shared_folder_two_exporters_merge_records_by_span_id(tmp_path: Path) -> None:
    """Two exporters (as two processes would) write one job: the file holds both, once each."""
    from aura_otel import continue_job, inject_context

    a = make_pipeline(tmp_path / "jobs")
    b = make_pipeline(tmp_path / "jobs")
    with job("shared", tracer_provider=a.provider):
        with stage("script"):
            pass
        headers = inject_context()
        with continue_job(headers):
            with b.provider.get_tracer("worker").start_as_current_span(
                "aura.stage.tts", attributes={"aura.stage": "tts"}
            ):
                pass
        b.flush()
        a.flush()
    a.flush()
    b.flush()  # b writes again after a finalised: must keep a's records and the end
    doc = a.read("shared")
    assert sorted(r["stage"] for r in doc["records"]) == ["script", "tts"]
    assert "collection_ended_at" in doc
    assert len({r["stage"] for r in doc["records"]}) == len(doc["records"])


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import aura_otel
    from aura_otel import job, stage

    jobs = sys.argv[1]
    telemetry = aura_otel.configure(jobs)
    with job("before-fork"):
        with stage("brief"):
            pass
    pid = os.fork()
    if pid == 0:  # a worker of a prefork server: runs jobs, never exits through atexit
        with job("in-child"):
            with stage("script"):
                pass
        path = os.path.join(jobs, "in-child", "telemetry.json")
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(0 if os.path.exists(path) else 3)
    with job("in-parent"):
        with stage("tts"):
            pass
    _, status = os.waitpid(pid, 0)
    telemetry.shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_jobs_without_waiting_for_exit(tmp_path: Path) -> None:
    """A prefork worker (gunicorn, celery, multiprocessing) runs for long and leaves through
    ``os._exit``: its jobs must be written by its own writer, as in the parent."""
    script = tmp_path / "app.py"
    script.write_text(FORK_SCRIPT)
    jobs = tmp_path / "jobs"
    result = subprocess.run(
        [sys.executable, str(script), str(jobs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for job_id, stage_name in [
        ("before-fork", "brief"),
        ("in-child", "script"),
        ("in-parent", "tts"),
    ]:
        data = (jobs / job_id / "telemetry.json").read_bytes()
        assert validation_errors(data) == []
        assert [r["stage"] for r in orjson.loads(data)["records"]] == [stage_name]
