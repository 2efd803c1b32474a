"""The receiver's write-ahead log: one append and one sync per request, then the answer.

Syncing each job's journal before answering cost two disk syncs per new job (its journal and
its folder), about half of the receiver's time on a 504-span request of 56 jobs. Instead the
request's folded, masked units are appended to this log as one line and the log is synced
once (``fdatasync``; concurrent requests share a sync: whoever syncs covers everything written
before it). Journals and files are written behind it by the writer, in batches, without a sync
per job; once a batch's journals are on stable storage (one ``syncfs`` of the jobs folder's
file system), the log's segments that batch came from are deleted.

Each receiver process owns its segments (``<jobs_dir>/.aura-receiver-wal.<pid>-<random>.<n>``)
and holds an ``flock`` on each while it runs. A segment nobody holds was left by a receiver
that died: the next start (or the supervisor, for a dead worker) replays it into the journals,
syncs them, rewrites those jobs' files and only then deletes it. Replaying twice is harmless:
journals are unions by span id.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..fold import Unit
from ..schema import is_safe_job_id
from ..store import parse_units, pread_all

logger = logging.getLogger("aura_otel.receiver")

WAL_PREFIX = ".aura-receiver-wal."
#: A segment being created, before it is locked and renamed to its ``WAL_PREFIX`` name (always
#: empty: one left behind by a receiver that died in between is deleted at the next start).
STAGING_PREFIX = ".aura-receiver-new."
#: The log line format this version writes: ``{"v": 1, "jobs": {job_id: <journal line>}}``.
WAL_VERSION = 1


@dataclass(eq=False)
class Segment:
    """One file of the log. ``written`` and ``synced`` are byte offsets into it."""

    path: str
    fd: int
    written: int = 0
    synced: int = 0
    closed: bool = False  # its descriptor is closed
    retired: bool = False  # deleted: every unit in it was in a synced journal first
    lock: threading.Lock = field(default_factory=threading.Lock)


def encode(lines: dict[str, bytes]) -> bytes:
    """One log line from each job's journal line (:func:`aura_otel.store.journal_line`), which
    goes in as is: the units are serialised once, for the log and the journal alike."""
    jobs = {job_id: orjson.Fragment(line.rstrip(b"\n")) for job_id, line in lines.items()}
    return orjson.dumps({"v": WAL_VERSION, "jobs": jobs}) + b"\n"


def decode(data: bytes) -> Iterator[tuple[str, dict[str, Unit]]]:
    """(job id, units) of every whole line; a torn last line (a receiver killed mid-append,
    so never acknowledged) or a line of another version is skipped."""
    for line in data.splitlines():
        try:
            chunk = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict) or chunk.get("v") != WAL_VERSION:
            continue
        jobs = chunk.get("jobs")
        if not isinstance(jobs, dict):
            continue
        for job_id, journal in jobs.items():
            if is_safe_job_id(job_id) and isinstance(journal, dict):
                yield job_id, parse_units(orjson.dumps(journal))


def sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # Linux: one file system, not all
    except (AttributeError, OSError):
        return None


_syncfs = _load_syncfs()


def sync_file_system(fd: int) -> None:
    """Everything written to ``fd``'s file system on stable storage: one call for a whole batch
    of journals instead of one ``fdatasync`` each (ctypes releases the GIL meanwhile)."""
    if _syncfs is None:
        os.sync()
        return
    if _syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class WriteAheadLog:
    """This process's log segments (see the module docstring)."""

    def __init__(self, root: str, sync: bool) -> None:
        self.root = root
        self._sync = sync
        self._base = f"{WAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}."
        self._seq = 0
        self._lock = threading.Lock()
        self._current = self._open_segment()

    def _open_segment(self) -> Segment:
        """A new segment, locked before it has its name: a recovery (the supervisor's, after
        another worker died) takes every segment it can lock for a dead receiver's, so a
        moment under the name without the lock could hand it a live segment to delete."""
        path = f"{self.root}/{self._base}{self._seq}"
        staging = f"{self.root}/{STAGING_PREFIX}{self._base[len(WAL_PREFIX) :]}{self._seq}"
        self._seq += 1
        fd = os.open(
            staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until deleted: "a live receiver owns this"
            Path(staging).rename(path)
            if self._sync:  # the segment's name must survive a power cut before anything in it
                sync_dir(self.root)
        except BaseException:
            os.close(fd)
            for name in (staging, path):
                Path(name).unlink(missing_ok=True)
            raise
        return Segment(path, fd)

    def append(self, data: bytes) -> tuple[Segment, int]:
        """Write one line, whole or not at all; returns where it ends, for :meth:`sync`."""
        with self._lock:
            segment = self._current
            view = memoryview(data)
            try:
                while view:
                    n = os.write(segment.fd, view)
                    if n <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[n:]
            except BaseException:
                try:  # a torn line would make the next one unreadable too
                    os.ftruncate(segment.fd, segment.written)
                except OSError:
                    pass
                raise
            segment.written += len(data)
            return segment, segment.written

    def sync(self, segment: Segment, end: int) -> None:
        """Make the log durable up to ``end``; one ``fdatasync`` serves every request waiting."""
        if not self._sync:
            return
        with segment.lock:
            # Retired: its units are already in journals that were synced before deletion.
            if segment.retired or segment.synced >= end:
                return
            if segment.closed:
                raise OSError(errno.EIO, "the log segment was closed before this line was synced")
            target = segment.written  # everything written by now is covered by this sync
            os.fdatasync(segment.fd)
            segment.synced = target

    def rotate(self) -> Segment | None:
        """Start a new segment; the old one (None if empty) is the caller's to retire once
        every unit in it is durable elsewhere. The caller holds the lock that orders appends
        with its snapshot of the units, so the old segment holds nothing it did not take."""
        with self._lock:
            if self._current.written == 0:
                return None
            old, self._current = self._current, self._open_segment()
            return old

    def retire(self, segments: list[Segment]) -> None:
        for segment in segments:
            with segment.lock:
                if segment.retired:  # an earlier call stopped part-way
                    continue
                segment.closed = segment.retired = True
                Path(segment.path).unlink(missing_ok=True)
                os.close(segment.fd)

    def release(self, segments: list[Segment]) -> None:
        """Close segments that must stay for a replay (their journals' sync failed): a
        request still waiting to sync a line in one answers "retry later", and the next start
        (or the supervisor's next replay) can lock them."""
        for segment in segments:
            with segment.lock:
                if not segment.closed:
                    segment.closed = True
                    os.close(segment.fd)

    def close(self, *, remove: bool, keep: Sequence[Segment] = ()) -> None:
        """Remove the current segment when it is empty of anything unwritten (a clean stop);
        otherwise sync it and let go of it and of ``keep`` (segments not retired), so that the
        next start, in this process or another, can lock and replay them."""
        with self._lock:
            if remove:
                self.retire([self._current])
                return
            for segment in (self._current, *keep):
                try:  # a request may still be waiting for this sync before answering
                    self.sync(segment, segment.written)
                except OSError:
                    pass  # its waiters' own sync then fails: they answer "retry later"
                with segment.lock:
                    if not segment.closed:
                        segment.closed = True
                        os.close(segment.fd)


def orphans(root: str, prefix: str, limit: int | None = None) -> list[tuple[str, int]]:
    """Files named ``prefix…`` nobody holds (their receiver died), opened and locked; at
    most ``limit`` of them."""
    found: list[tuple[str, int]] = []
    if limit is not None and limit <= 0:
        return found
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live receiver's segment
            continue
        found.append((entry.path, fd))
        if limit is not None and len(found) >= limit:
            break
    return found


def read_all(fd: int) -> bytes:
    return pread_all(fd, os.fstat(fd).st_size)
