"""JobIndex: a page parses only its own rows, and only rows whose file changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aura_otel.server.joblist import MAX_PAGE_SIZE, JobIndex, job_row
from aura_otel.store import JobStore

from ..server_support import ADAPTER_CASE, REFERENCE, put_example, put_file

BASE = 1_790_000_000


@pytest.fixture
def index(tmp_path: Path) -> JobIndex:
    for n in range(120):
        put_example(tmp_path, ADAPTER_CASE, f"job-{n:03d}", mtime=BASE + n)
    return JobIndex(JobStore(tmp_path))


def test_a_page_parses_only_its_rows_once(index: JobIndex) -> None:
    page = index.page(1, 50)
    assert index.parses == 50
    assert page.total == 120 and page.total_pages == 3
    assert [r["jobId"] for r in page.items][:2] == ["job-119", "job-118"]
    again = index.page(1, 50)
    assert index.parses == 50  # nothing changed: nothing re-read
    assert again.items == page.items
    index.page(3, 50)
    assert index.parses == 70


def test_a_changed_file_is_re_read(index: JobIndex, tmp_path: Path) -> None:
    index.page(1, 10)
    put_example(tmp_path, REFERENCE, "job-115", mtime=BASE + 115)  # same mtime, other size
    page = index.page(1, 10)
    assert index.parses == 11
    row = next(r for r in page.items if r["jobId"] == "job-115")
    assert row["status"] == "failed" and row["totalCost"] == 0.09


def test_deleted_jobs_leave_the_list(index: JobIndex, tmp_path: Path) -> None:
    index.page(1, 50)
    os.unlink(tmp_path / "job-119" / "telemetry.json")
    page = index.page(1, 50)
    assert page.total == 119 and page.items[0]["jobId"] == "job-118"


@pytest.mark.parametrize(("page", "size"), [(0, 10), (1, 0), (1, MAX_PAGE_SIZE + 1)])
def test_bad_page_arguments(index: JobIndex, page: int, size: int) -> None:
    with pytest.raises(ValueError):
        index.page(page, size)


def test_unreadable_row_and_unsafe_folder_names(tmp_path: Path) -> None:
    row = job_row("x", b"{not json", 0)
    assert row["status"] == "unreadable" and row["totalCost"] is None
    put_file(tmp_path, " padded", ADAPTER_CASE.read_bytes())  # not a valid job id: not a job
    put_example(tmp_path, ADAPTER_CASE, "fine")
    page = JobIndex(JobStore(tmp_path)).page()
    assert [r["jobId"] for r in page.items] == ["fine"] and page.total == 1
