"""The journal line format: versioned, and the lines written before the version still read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.store import JOURNAL_FILE, JOURNAL_VERSION, JobStore, journal_line, parse_units

from .conftest import make_pipeline

ROOT_UNIT = {"k": "root", "t": "ab" * 16, "s": 1, "e": 2}
STAGE_UNIT = {"k": "stage", "s": 1, "e": 2, "p": "r1"}


def test_a_line_names_its_version() -> None:
    line = journal_line({"r1": ROOT_UNIT})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"v": JOURNAL_VERSION, "units": [["r1", ROOT_UNIT]]}


def test_unversioned_lines_and_versioned_lines_read_alike() -> None:
    old = orjson.dumps([["r1", ROOT_UNIT]]) + b"\n"  # the format before the version marker
    new = journal_line({"s1": STAGE_UNIT})
    assert parse_units(old + new) == {"r1": ROOT_UNIT, "s1": STAGE_UNIT}
    assert parse_units(old) == parse_units(journal_line({"r1": ROOT_UNIT}))


def test_a_line_of_an_unknown_version_is_skipped_as_damaged() -> None:
    future = orjson.dumps({"v": JOURNAL_VERSION + 1, "units": [["x", STAGE_UNIT]]}) + b"\n"
    assert parse_units(future + journal_line({"r1": ROOT_UNIT})) == {"r1": ROOT_UNIT}


def test_a_job_journalled_in_the_old_format_is_finished_by_this_version(tmp_path: Path) -> None:
    """A process upgraded mid-job: its journal starts with unversioned lines written by the old
    version, this version appends versioned ones, and the file holds every stage."""
    pipeline = make_pipeline(tmp_path / "jobs")
    tracer = pipeline.provider.get_tracer("t")
    from opentelemetry import trace

    root = tracer.start_span("aura.job", attributes={c.JOB_ID: "upgraded"})
    ctx = trace.set_span_in_context(root)
    first = tracer.start_span("aura.stage.script", context=ctx, attributes={c.STAGE: "script"})
    first.end()
    pipeline.flush()
    journal = tmp_path / "jobs" / "upgraded" / JOURNAL_FILE
    # Rewrite what this version wrote as the old version wrote it.
    units = parse_units(journal.read_bytes())
    journal.write_bytes(orjson.dumps(list(units.items())) + b"\n")
    second = tracer.start_span("aura.stage.tts", context=ctx, attributes={c.STAGE: "tts"})
    second.set_status(Status(StatusCode.ERROR, "voice failed"))
    second.end()
    root.end()
    pipeline.flush()
    pipeline.provider.shutdown()
    lines = journal.read_bytes().splitlines()
    assert not lines[0].startswith(b"{") and lines[-1].startswith(b'{"v":1')
    doc = pipeline.read("upgraded")
    assert [r["stage"] for r in doc["records"]] == ["script", "tts"]
    assert doc["summary"]["failed_operations"] == 1
    assert (
        JobStore(tmp_path / "jobs").read_journal("upgraded").keys()
        == parse_units(journal.read_bytes()).keys()
    )


def test_lines_encoded_once_append_as_units_do(tmp_path: Path) -> None:
    """The receiver appends the journal lines it already wrote to its log: the journal reads
    the same as if the units had been appended, a repeated span included."""
    store = JobStore(tmp_path / "jobs")
    with store.journal("lines-1") as journal:
        size = journal.append_lines(
            journal_line({"r1": ROOT_UNIT}) + journal_line({"s1": STAGE_UNIT, "r1": ROOT_UNIT})
        )
        units, end = journal.read_from(0)
    assert units == {"r1": ROOT_UNIT, "s1": STAGE_UNIT}
    assert end == size == (tmp_path / "jobs" / "lines-1" / JOURNAL_FILE).stat().st_size
    assert store.read_journal("lines-1") == units


def test_a_journal_larger_than_one_read_is_read_whole_and_never_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux returns at most ~2 GiB from one read: a journal is read in as many reads as it
    takes (here chunks of 7 bytes), and the torn-tail repair cuts only a line that really is
    torn at the end of the file, never where one read happened to stop."""
    from aura_otel import store as store_module
    from aura_otel.receiver import wal

    monkeypatch.setattr(store_module, "READ_CHUNK", 7)
    store = JobStore(tmp_path / "jobs")
    units = {f"s{i}": {**STAGE_UNIT, "s": 100 + i} for i in range(40)}
    with store.journal("big-1") as journal:
        size = journal.append_lines(b"".join(journal_line({k: v}) for k, v in units.items()))
        got, end = journal.read_from(0)
    path = tmp_path / "jobs" / "big-1" / JOURNAL_FILE
    assert got == units and end == size == path.stat().st_size
    assert store.read_journal("big-1") == units
    with path.open("rb") as handle:
        assert wal.read_all(handle.fileno()) == path.read_bytes()
    with path.open("ab") as handle:  # a writer killed mid-line: that line, and only it, goes
        handle.write(b'{"v":1,"units":[["torn"')
    with store.journal("big-1") as journal:
        got, end = journal.read_from(0)
    assert got == units and end == size == path.stat().st_size
