"""The jobs folder under faults: planted links, a full disk, a damaged or lost journal.

Everything is real: links and FIFOs on the file system, a tmpfs of a few hundred KiB in a
private mount namespace (``unshare -m``) that really runs out of space, separate exporters
standing in for separate processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import aura_otel
from aura_otel import JobContextProcessor, RunTelemetryExporter
from aura_otel.schema import validation_errors
from aura_otel.store import JOURNAL_FILE, TELEMETRY_FILE, JobStore

#: The aura_otel under test (the subprocess must run the same one).
SRC = Path(aura_otel.__file__).resolve().parents[1]


class Writer:
    """One exporter behind a real TracerProvider: what one process of a host has."""

    def __init__(self, jobs_dir: Path, *, write_interval: float = 0, **kwargs: Any) -> None:
        self.exporter = RunTelemetryExporter(
            jobs_dir, write_interval=write_interval, pricer=None, **kwargs
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(JobContextProcessor())
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("faults")

    def stages(
        self, job_id: str, count: int, *, first: int = 0, finish: bool = False, pad: int = 0
    ) -> None:
        """``count`` stage spans of ``job_id`` (and its root span when ``finish``)."""
        root = self.tracer.start_span(
            "aura.job", attributes={"aura.job.id": job_id, "aura.correlation.id": "corr-1"}
        )
        ctx = trace.set_span_in_context(root)
        for n in range(first, first + count):
            span = self.tracer.start_span(
                "aura.stage.visuals",
                context=ctx,
                attributes={
                    "aura.job.id": job_id,
                    "aura.stage": "visuals",
                    "aura.scene.index": n,
                    "aura.meta.pad": "x" * pad,
                },
            )
            span.end()
        if finish:
            root.end()

    def flush(self) -> None:
        self.exporter.force_flush()

    def close(self) -> None:
        self.provider.shutdown()


def read_doc(jobs: Path, job_id: str) -> dict[str, Any]:
    data = (jobs / job_id / TELEMETRY_FILE).read_bytes()
    assert validation_errors(data) == []
    return orjson.loads(data)


def scenes(doc: dict[str, Any]) -> list[int]:
    return sorted(r["scene_index"] for r in doc["records"] if "scene_index" in r)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# -- planted links -------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("do not touch\n")
    return folder


def test_a_linked_job_folder_receives_nothing(tmp_path: Path, outside: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "linked").symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    w = Writer(jobs)
    w.stages("linked", 2, finish=True)
    w.flush()
    w.stages("fine", 1, finish=True)
    w.flush()
    assert tree(outside) == before  # no journal, no file, no temporary file out there
    assert w.exporter.stats.snapshot()["write_errors"] >= 1
    assert scenes(read_doc(jobs, "fine")) == [0]
    assert JobStore(jobs).read_journal("linked") == {}  # the reader does not follow it either
    w.close()


@pytest.mark.parametrize("name", [JOURNAL_FILE, TELEMETRY_FILE])
def test_a_linked_journal_or_file_pointing_outside_is_not_written_through(
    tmp_path: Path, outside: Path, name: str
) -> None:
    jobs = tmp_path / "jobs"
    (jobs / "job-1").mkdir(parents=True)
    (jobs / "job-1" / name).symlink_to(outside / "precious.txt")
    before = tree(outside)
    w = Writer(jobs)
    w.stages("job-1", 2, finish=True)
    w.flush()
    assert tree(outside) == before
    if name == TELEMETRY_FILE:
        # The link itself is replaced by the job's real file; its target is untouched.
        assert not (jobs / "job-1" / name).is_symlink()
        assert scenes(read_doc(jobs, "job-1")) == [0, 1]
    else:  # a linked journal is refused: nothing is written for the job
        assert w.exporter.stats.snapshot()["write_errors"] >= 1
        assert not (jobs / "job-1" / TELEMETRY_FILE).exists()
    w.close()


def test_a_fifo_journal_is_refused_without_blocking(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    (jobs / "job-fifo").mkdir(parents=True)
    os.mkfifo(jobs / "job-fifo" / JOURNAL_FILE)
    w = Writer(jobs)
    w.stages("job-fifo", 1, finish=True)
    w.flush()  # returns: the FIFO is opened non-blocking and refused by its type
    assert w.exporter.stats.snapshot()["write_errors"] >= 1
    assert not (jobs / "job-fifo" / TELEMETRY_FILE).exists()
    w.close()


# -- a damaged or lost journal never shrinks a file ----------------------------------------------
def test_a_damaged_journal_never_shrinks_a_larger_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    a = Writer(jobs)
    a.stages("big", 150, finish=True)
    a.flush()
    a.close()
    assert len(scenes(read_doc(jobs, "big"))) == 150
    journal = jobs / "big" / JOURNAL_FILE
    lines = journal.read_bytes().splitlines(keepends=True)
    # Damage every line that holds stages: a line cut short and glued to garbage.
    journal.write_bytes(b"".join(line[: len(line) // 2] + b"#garbage\n" for line in lines))
    b = Writer(jobs)  # a new process adds a stage
    b.stages("big", 1, first=150)
    b.flush()
    doc = read_doc(jobs, "big")
    assert scenes(doc) == list(range(151))
    assert doc["summary"]["total_operations"] == 151 and "collection_ended_at" in doc
    assert b.exporter.stats.snapshot()["jobs_damaged"] == 1
    b.close()


def test_a_lost_journal_never_shrinks_a_larger_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    a = Writer(jobs)
    a.stages("big", 20, finish=True)
    a.flush()
    a.close()
    (jobs / "big" / JOURNAL_FILE).unlink()
    b = Writer(jobs)
    b.stages("big", 1, first=20)
    b.flush()
    assert scenes(read_doc(jobs, "big")) == list(range(21))
    b.close()


# -- a full disk ----------------------------------------------------------------------------------
_DISK_FULL_SCRIPT = textwrap.dedent("""
    import errno, json, os, sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from aura_otel.store import JOURNAL_FILE, TELEMETRY_FILE
    from aura_otel.schema import validation_errors
    from tests.test_store_faults import Writer

    mount = sys.argv[1]
    jobs = os.path.join(mount, "jobs")
    out = {}

    def journal_state():
        data = open(os.path.join(jobs, "job-full", JOURNAL_FILE), "rb").read()
        damaged = units = 0
        for line in data.splitlines():
            try:
                units += len(json.loads(line))
            except ValueError:
                damaged += 1
        return {"ends_with_newline": data.endswith(b"\\n"), "damaged_lines": damaged,
                "units": units}

    def file_state():
        data = open(os.path.join(jobs, "job-full", TELEMETRY_FILE), "rb").read()
        doc = json.loads(data)
        return {"valid": validation_errors(data) == [],
                "scenes": sorted(r["scene_index"] for r in doc["records"])}

    # Only flush() writes (the background writer waits an hour), so no append is in progress
    # while the journal is read below.
    QUIET = 3600
    w = Writer(jobs, write_interval=QUIET)
    w.stages("job-full", 10, pad=3000)
    w.flush()
    out["before"] = file_state()

    # Fill the file system, then keep working: appends hit ENOSPC or write short.
    filler = os.path.join(mount, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\\0" * 4096)
    except OSError as exc:
        out["filler_errno"] = exc.errno
    finally:
        os.close(fd)
    w.stages("job-full", 10, first=10, pad=3000)
    w.flush()
    w.flush()
    other = Writer(jobs, write_interval=QUIET)  # another process, also out of space
    other.stages("job-full", 1, first=100, pad=3000)
    other.flush()
    out["full"] = {"journal": journal_state(), "file": file_state(),
                   "write_errors": w.exporter.stats.snapshot()["write_errors"]}

    os.unlink(filler)  # space returns
    w.flush()
    other.flush()
    out["after"] = {"journal": journal_state(), "file": file_state(),
                    "abandoned": w.exporter.stats.snapshot().get("jobs_abandoned", 0)}
    third = Writer(jobs, write_interval=QUIET)  # a fresh process, reading only the journal
    third.stages("job-full", 1, first=200)
    third.flush()
    out["fresh"] = {"journal": journal_state(), "file": file_state()}
    for writer in (w, other, third):
        writer.close()
    print(json.dumps(out))
""")


def _unshare_available() -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and unshare(1)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def test_a_full_disk_leaves_whole_journal_lines_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    reason = _unshare_available()
    if reason is not None:
        pytest.skip(reason)
    mount = tmp_path / "small-fs"
    mount.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(_DISK_FULL_SCRIPT)
    root = str(Path(__file__).resolve().parents[1])
    # A private mount namespace: the tmpfs exists only for this shell and its children.
    command = (
        f"mount -t tmpfs -o size=384k aura-test {mount} && "
        f"exec {sys.executable} {script} {mount} {SRC} {root}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "mount" in done.stderr and "permi" in done.stderr.lower():
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["filler_errno"] == 28  # ENOSPC: the disk really was full
    assert out["before"] == {"valid": True, "scenes": list(range(10))}

    full = out["full"]
    assert full["write_errors"] >= 1
    # Appends were whole or absent: no torn or damaged line, and the file never shrank.
    assert full["journal"]["ends_with_newline"] and full["journal"]["damaged_lines"] == 0
    assert full["file"]["valid"] and set(range(10)) <= set(full["file"]["scenes"])

    after = out["after"]
    assert after["journal"]["damaged_lines"] == 0 and after["abandoned"] == 0
    assert after["file"] == {"valid": True, "scenes": [*range(20), 100]}
    fresh = out["fresh"]
    assert fresh["journal"]["damaged_lines"] == 0
    assert fresh["file"] == {"valid": True, "scenes": [*range(20), 100, 200]}
    assert not any(mount.iterdir())  # the tmpfs was private: nothing left on the real disk
