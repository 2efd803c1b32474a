"""Job files on disk: safe ids, atomic writes, cross-process merge, listing.

Layout, one folder per job::

    <jobs_dir>/<job_id>/telemetry.json     the v1 file legacy consumers read
    <jobs_dir>/<job_id>/.aura-state.json   the job's fold units keyed by span id (merge state)
    <jobs_dir>/<job_id>/.lock              flock target for read-merge-write

Every path is built by :meth:`JobStore.job_dir`, which validates the id first, so nothing can
ever be written outside the jobs folder.
"""

from __future__ import annotations

import fcntl
import functools
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .errors import CorruptTelemetryError, InvalidJobIdError, TelemetryNotFoundError
from .schema import Collection, is_safe_job_id, load_collection, validate_job_id

TELEMETRY_FILE = "telemetry.json"
STATE_FILE = ".aura-state.json"
LOCK_FILE = ".lock"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half.

    The temporary file lives in the same folder so the final ``os.replace`` is a rename on one
    file system. No fsync: a killed process loses nothing the kernel already holds, and an
    fsync per write would cost more than the job's spans.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# Listing checks every folder name on every call; names rarely change, so remember verdicts.
_safe_folder_name = functools.lru_cache(maxsize=1 << 17)(is_safe_job_id)


class JobStore:
    """The jobs folder. Cheap to construct; creates folders only when it writes."""

    def __init__(self, jobs_dir: str | os.PathLike[str]) -> None:
        self.root = Path(jobs_dir).expanduser().absolute()

    def __repr__(self) -> str:
        return f"JobStore({str(self.root)!r})"

    def job_dir(self, job_id: str) -> Path:
        """The job's folder; raises InvalidJobIdError before any path is touched."""
        validate_job_id(job_id)
        path = self.root / job_id
        if path.parent != self.root:  # defence in depth: the id validator already forbids this
            raise InvalidJobIdError(f"job id {job_id!r} escapes the jobs folder")
        return path

    def telemetry_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / TELEMETRY_FILE

    def exists(self, job_id: str) -> bool:
        return self.telemetry_path(job_id).is_file()

    # -- reading ---------------------------------------------------------------------------------
    def read_bytes(self, job_id: str) -> bytes:
        path = self.telemetry_path(job_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise TelemetryNotFoundError(f"no telemetry for job {job_id!r} in {self.root}") from None
        except IsADirectoryError:
            raise CorruptTelemetryError(f"{path} is a folder, not a file") from None

    def read(self, job_id: str) -> Collection:
        """The job's validated collection (either enum spelling)."""
        return load_collection(self.read_bytes(job_id))

    def read_state(self, job_id: str) -> dict[str, Any]:
        """The job's merge state (units by span id); empty when there is none or it is damaged."""
        try:
            state = orjson.loads((self.job_dir(job_id) / STATE_FILE).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        return state if isinstance(state, dict) else {}

    def state_signature(self, job_id: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of the merge state: tells a writer whether anyone else wrote since."""
        try:
            st = os.stat(self.job_dir(job_id) / STATE_FILE)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def locked(self, job_id: str) -> Iterator[Path]:
        """Hold the job's lock (an flock, so it also excludes other processes on this host)."""
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield folder
        finally:
            os.close(fd)  # closing releases the flock

    def write_job(self, job_id: str, telemetry: bytes, state: bytes | None = None) -> None:
        """Atomically replace the job's files. Call inside :meth:`locked` when merging."""
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        if state is not None:
            atomic_write(folder / STATE_FILE, state)
        atomic_write(folder / TELEMETRY_FILE, telemetry)

    # -- listing ---------------------------------------------------------------------------------
    def job_entries(self) -> list[tuple[str, int, int]]:
        """(job id, mtime_ns, size) of every job's telemetry file, newest file first.

        One scandir plus one stat per job: a listing can tell from (mtime_ns, size) which files
        changed since it last read them, without opening any.
        """
        found: list[tuple[int, str, int]] = []
        try:
            entries = os.scandir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False) or not _safe_folder_name(entry.name):
                    continue
                try:
                    st = os.stat(f"{entry.path}/{TELEMETRY_FILE}")
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((st.st_mtime_ns, entry.name, st.st_size))
        found.sort(key=lambda item: (-item[0], item[1]))
        return [(name, mtime_ns, size) for mtime_ns, name, size in found]

    def job_ids(self) -> list[str]:
        """Ids of the jobs that have a telemetry file, newest file first."""
        return [name for name, _, _ in self.job_entries()]
