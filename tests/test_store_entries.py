"""JobStore.job_entries: the listing the job list is built on."""

from __future__ import annotations

import os
from pathlib import Path

from aura_otel.store import JobStore
from tests.server_support import REFERENCE, put_example, put_file


def test_job_entries_newest_first_with_signatures(tmp_path: Path) -> None:
    put_example(tmp_path, REFERENCE, "old", mtime=1_000_000)
    put_example(tmp_path, REFERENCE, "new", mtime=3_000_000)
    put_file(tmp_path, "mid", b"{}", mtime=2_000_000)
    (tmp_path / "dir-not-file" / "telemetry.json").mkdir(parents=True)
    (tmp_path / "no-file").mkdir()
    (tmp_path / "stray.json").write_bytes(b"{}")
    entries = JobStore(tmp_path).job_entries()
    assert [e[0] for e in entries] == ["new", "mid", "old"]
    for job_id, mtime_ns, size in entries:
        st = os.stat(tmp_path / job_id / "telemetry.json")
        assert (mtime_ns, size) == (st.st_mtime_ns, st.st_size)
    assert JobStore(tmp_path).job_ids() == ["new", "mid", "old"]


def test_job_entries_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert JobStore(tmp_path / "missing").job_entries() == []
    (tmp_path / "file").write_bytes(b"")
    assert JobStore(tmp_path / "file").job_entries() == []
