"""Job files on disk: safe ids, atomic writes, cross-process merge, listing.

Layout, one folder per job::

    <jobs_dir>/<job_id>/telemetry.json       the v1 file legacy consumers read
    <jobs_dir>/<job_id>/.aura-units.jsonl    the job's fold units, append-only, keyed by span id

The journal is also the lock: every writer holds an ``flock`` on it while it reads what others
appended, appends its own new units and replaces ``telemetry.json``. Units never change once a
span has ended, so the journal only grows by the spans of the job, and merging is a union by
span id: processes sharing the folder neither duplicate nor lose records.

Every path is built by :meth:`JobStore.job_dir`, which validates the id first, so nothing can
ever be written outside the jobs folder.
"""

from __future__ import annotations

import fcntl
import functools
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .errors import CorruptTelemetryError, InvalidJobIdError, TelemetryNotFoundError
from .schema import Collection, is_safe_job_id, load_collection, validate_job_id

TELEMETRY_FILE = "telemetry.json"
JOURNAL_FILE = ".aura-units.jsonl"

Units = dict[str, dict[str, Any]]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half.

    The temporary file lives in the same folder so the final rename is atomic on one file
    system; its name is unique per process and thread, so concurrent writers never share one.
    No fsync: a killed process loses nothing the kernel already holds, and an fsync per write
    would cost more than the job's spans.
    """
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# Listing checks every folder name on every call; names rarely change, so remember verdicts.
_safe_folder_name = functools.lru_cache(maxsize=1 << 17)(is_safe_job_id)


def parse_units(data: bytes) -> Units:
    """Units from complete journal lines; a damaged line is skipped, not fatal.

    A line is a JSON array of ``[span_id, unit]`` pairs rather than an object keyed by span
    id: orjson caches the keys of the objects it parses, and a cache of ever-new span ids keeps
    memory scattered across the allocator in a long-running process.
    """
    units: Units = {}
    for line in data.splitlines():
        try:
            chunk = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(chunk, list):
            for pair in chunk:
                if (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                        and isinstance(pair[1], dict)):
                    units[pair[0]] = pair[1]
    return units


class Journal:
    """A job's unit journal, opened and exclusively locked (see the module docstring)."""

    def __init__(self, folder: str, fd: int) -> None:
        self.folder = folder
        self._fd = fd

    def read_from(self, offset: int) -> tuple[Units, int]:
        """Units appended after ``offset`` (by anyone), and the offset to read from next time.

        A torn last line (a writer killed mid-append) is cut off, so the next append starts on
        a line of its own; a damaged line is skipped rather than failing the whole job.
        """
        size = os.fstat(self._fd).st_size
        if size <= offset:
            return {}, size
        data = os.pread(self._fd, size - offset, offset)
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.ftruncate(self._fd, offset + end)
            size = offset + end
        return parse_units(data[:end]), size

    def append(self, units: Units) -> int:
        """Append ``units`` as one line; returns the journal's new size."""
        line = orjson.dumps(list(units.items())) + b"\n"
        os.write(self._fd, line)
        return os.fstat(self._fd).st_size

    def write_telemetry(self, data: bytes) -> None:
        atomic_write(os.path.join(self.folder, TELEMETRY_FILE), data)

    def sync(self) -> None:
        """Put what was appended on stable storage: a receiver acknowledges spans only after."""
        os.fdatasync(self._fd)


class JobStore:
    """The jobs folder. Cheap to construct; creates folders only when it writes."""

    def __init__(self, jobs_dir: str | os.PathLike[str]) -> None:
        self.root = Path(jobs_dir).expanduser().absolute()
        self._root = str(self.root)

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

    def read_journal(self, job_id: str) -> Units:
        """All units recorded for a job (empty when none), read under a shared lock."""
        path = self.job_dir(job_id) / JOURNAL_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            return parse_units(data[: data.rfind(b"\n") + 1])
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def journal(self, job_id: str) -> Iterator[Journal]:
        """The job's journal, exclusively locked (an flock: it excludes other processes too)."""
        # Plain strings, not Path objects: pathlib interns every part, and a long-running
        # exporter sees an unbounded number of job ids.
        validate_job_id(job_id)
        folder = os.path.join(self._root, job_id)
        path = os.path.join(folder, JOURNAL_FILE)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield Journal(folder, fd)
        finally:
            os.close(fd)  # closing releases the flock

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
                    st = os.lstat(f"{entry.path}/{TELEMETRY_FILE}")  # a link is not a job file
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((st.st_mtime_ns, entry.name, st.st_size))
        found.sort(key=lambda item: (-item[0], item[1]))
        return [(name, mtime_ns, size) for mtime_ns, name, size in found]

    def job_ids(self) -> list[str]:
        """Ids of the jobs that have a telemetry file, newest file first."""
        return [name for name, _, _ in self.job_entries()]
