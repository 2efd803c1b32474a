"""The folder's persisted summary cache: a restart re-reads only what changed, and a cache
file that is damaged, foreign or planted is ignored and rebuilt, never trusted or followed."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import orjson
import pytest

from aura_otel.insights import Filters, FolderJobSource, compute
from aura_otel.insights.source import CACHE_FILE
from aura_otel.store import JobStore

from ..fleet_support import EPOCH_NS, Spec, steady_fleet, write

ALL = Filters(since=date(2026, 11, 1), until=date(2026, 11, 30))


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    steady_fleet(tmp_path, days=4)
    return tmp_path


def _warm(root: Path) -> dict:
    """Figures from a first server (which saves the cache file), then the file's bytes."""
    first = FolderJobSource(JobStore(root))
    figures = compute(first, ALL).to_json()
    assert first.parsed == 20 and (root / CACHE_FILE).is_file()
    return figures


def test_a_restart_reads_no_file_that_did_not_change(fleet: Path) -> None:
    figures = _warm(fleet)
    restarted = FolderJobSource(JobStore(fleet))
    assert compute(restarted, ALL).to_json() == figures
    assert restarted.parsed == 0
    assert JobStore(fleet).job_ids() and CACHE_FILE not in JobStore(fleet).job_ids()
    write(fleet, Spec("job-d00-00", "alpha", EPOCH_NS + 3600 * 10**9, scale=3.0))
    again = FolderJobSource(JobStore(fleet))
    changed = compute(again, ALL)
    assert again.parsed == 1 and changed.total_cost > figures["totals"]["cost"]


def _rebuilt(root: Path, figures: dict) -> None:
    source = FolderJobSource(JobStore(root))
    assert compute(source, ALL).to_json() == figures
    assert source.parsed == 20  # nothing trusted: every file read again


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage{",
        b"[]",
        b'{"format": "something else", "version": 1, "jobs": []}',
        b'{"format": "aura-otel insights summaries", "version": 99, "jobs": []}',
    ],
)
def test_a_damaged_or_foreign_cache_file_is_ignored_and_rebuilt(
    fleet: Path, content: bytes
) -> None:
    figures = _warm(fleet)
    (fleet / CACHE_FILE).write_bytes(content)
    _rebuilt(fleet, figures)
    body = orjson.loads((fleet / CACHE_FILE).read_bytes())  # replaced by a good one
    assert body["format"] == "aura-otel insights summaries" and len(body["jobs"]) == 20


def _doctor(root: Path, change) -> None:
    body = orjson.loads((root / CACHE_FILE).read_bytes())
    change(body["jobs"])
    (root / CACHE_FILE).write_bytes(orjson.dumps(body))


@pytest.mark.parametrize(
    "change",
    [
        # an entry claiming another job's figures for this file
        lambda jobs: jobs[0][3].__setitem__(0, jobs[1][0]),
        # an odd job id (a path out of the folder)
        lambda jobs: jobs[0].__setitem__(0, "../../etc"),
        # a cost that is text
        lambda jobs: jobs[0][3][5][0].__setitem__(5, "1e9"),
        # a truncated operation
        lambda jobs: jobs[0][3][5].__setitem__(0, ["script"]),
    ],
)
def test_an_entry_that_is_not_a_summary_discards_the_cache(fleet: Path, change) -> None:
    figures = _warm(fleet)
    _doctor(fleet, change)
    _rebuilt(fleet, figures)


def test_a_cache_file_others_may_write_is_not_trusted(fleet: Path) -> None:
    figures = _warm(fleet)
    _doctor(fleet, lambda jobs: jobs[0][3][5][0].__setitem__(5, 99.0))  # a forged cost
    os.chmod(fleet / CACHE_FILE, 0o666)
    _rebuilt(fleet, figures)


def test_a_planted_link_or_fifo_is_neither_followed_nor_blocking(
    fleet: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    figures = _warm(fleet)
    outside = tmp_path_factory.mktemp("outside") / "target.json"
    outside.write_bytes((fleet / CACHE_FILE).read_bytes())
    (fleet / CACHE_FILE).unlink()
    (fleet / CACHE_FILE).symlink_to(outside)
    before = outside.read_bytes()
    _rebuilt(fleet, figures)
    assert outside.read_bytes() == before  # never written through the link
    assert not (fleet / CACHE_FILE).is_symlink()  # the save replaced the link itself
    (fleet / CACHE_FILE).unlink()
    os.mkfifo(fleet / CACHE_FILE)
    _rebuilt(fleet, figures)


def test_a_number_no_summary_can_keep_leaves_the_job_out_not_the_fleet(fleet: Path) -> None:
    """A hand-made file with a 100-digit latency is left out; the rest is summarised, the
    cache file still saved."""
    doc = orjson.loads((fleet / "job-d00-00" / "telemetry.json").read_bytes())
    text = orjson.dumps(doc).replace(b'"latency_ms":', b'"latency_ms":' + b"9" * 100 + b',"x":', 1)
    (fleet / "job-d00-00" / "telemetry.json").write_bytes(text)
    source = FolderJobSource(JobStore(fleet))
    assert compute(source, ALL).jobs == 19
    assert len(orjson.loads((fleet / CACHE_FILE).read_bytes())["jobs"]) == 20
