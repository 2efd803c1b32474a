"""Open jobs: durable appends, file rewrites, and when a job counts as finished.

A job's spans live in its journal (``<jobs_dir>/<job_id>/.aura-units.jsonl``, the same journal
the in-process exporter writes), never only in memory: the receiver appends a request's units
there, syncs, and only then acknowledges. What this module keeps per open job is a handful of
fields (about 200 bytes, whatever the job's size), so memory is bounded by ``max_open_jobs``
and returns to nothing once jobs are finished.

Spans of one job come from many services, in any order, the root possibly first or last. After
every rewrite the job is looked at as a whole:

* root present and every span's parent present (nothing known to be missing below the root):
  finished now, its state released;
* root present, some parent still missing (a span that has not arrived, or that carries no job
  id): finished once the job has been quiet for ``quiet_period``;
* no root: left open; after ``idle_timeout`` without news it is released as an unfinished job
  (its file, already written, has no ``collection_ended_at``).

A span arriving later opens the job again: the file is rewritten from the whole journal and the
same rules apply. The file is a pure function of the journal, so rewriting is always safe.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fold import ROOT, Pricer, Unit, assemble
from ..schema import EnumCase, dumps, is_safe_job_id
from ..store import JOURNAL_FILE, JobStore
from .stats import ReceiverStats

logger = logging.getLogger("aura_otel.receiver")

#: Each running receiver keeps ``<jobs_dir>/.aura-receiver-touched.<pid>-<random>``: the ids of
#: the jobs it acknowledged spans for whose files it has not written since, synced before the
#: acknowledgement, emptied whenever every file is current, locked (``flock``) while it runs.
#: One that nobody holds was left by a crash: its jobs are the only ones a restart must rewrite.
TOUCHED_PREFIX = ".aura-receiver-touched."
_LOG_FIRST = 20


class TouchedLog:
    """This process's list of jobs whose files may lag behind their journals."""

    def __init__(self, root: str, sync: bool) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(root) / f"{TOUCHED_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._sync = sync
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held until exit: "a live receiver owns this"
        if sync:
            _sync_dir(root)
        self.lock = threading.Lock()

    def add(self, job_ids: list[str]) -> None:
        data = ("\n".join(job_ids) + "\n").encode()
        with self.lock:
            os.write(self._fd, data)
            if self._sync:
                os.fdatasync(self._fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def clear_if(self, size: int) -> None:
        """Empty the list, unless ids were added since it had ``size`` bytes."""
        with self.lock:
            if os.fstat(self._fd).st_size == size and size:
                os.ftruncate(self._fd, 0)

    def close(self, *, remove: bool) -> None:
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)


@dataclass(slots=True)
class _Open:
    last_seen: float
    dirty: bool = True
    has_root: bool = False
    missing: int = 0  # spans whose parent has not arrived (the root's own parent excluded)


def completeness(units: dict[str, Unit]) -> tuple[bool, int]:
    """(root present, number of spans whose parent is not among the job's spans)."""
    has_root = False
    missing = 0
    for unit in units.values():
        if unit.get("k") == ROOT:
            has_root = True
            continue
        parent = unit.get("p")
        if parent is not None and parent not in units:
            missing += 1
    return has_root, missing


class JobBook:
    """The receiver's open jobs, their durable journals and their files."""

    def __init__(
        self,
        store: JobStore,
        stats: ReceiverStats,
        *,
        enum_case: EnumCase = "lower",
        pricer: Pricer | None = None,
        quiet_period: float = 5.0,
        idle_timeout: float = 300.0,
        write_interval: float = 0.25,
        max_open_jobs: int = 100_000,
        sync: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.stats = stats
        self.enum_case = enum_case
        self.pricer = pricer
        self.quiet_period = quiet_period
        self.idle_timeout = idle_timeout
        self.write_interval = write_interval
        self.max_open_jobs = max_open_jobs
        self.sync = sync
        self.clock = clock
        self._open: OrderedDict[str, _Open] = OrderedDict()  # least recently active first
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._touched: TouchedLog | None = None
        self._dirty = 0  # jobs with dirty=True, kept in step: asked on every request

    # -- the request path ----------------------------------------------------------------------
    def append(self, job_id: str, units: dict[str, Unit]) -> bool:
        """Make ``units`` durable in the job's journal; raises OSError when that fails.

        Returns True for a new journal, whose folder's entry in the jobs folder is durable only
        after :meth:`commit` (called once per request, not once per job). Only then may the
        spans be acknowledged. Units are keyed by span id, so a sender's retry of the same
        batch appends duplicates that the union ignores.
        """
        whole = False
        with self.store.journal(job_id) as journal:
            _, before = journal.read_from(1 << 62)  # the size only: nothing is read
            journal.append(units)
            if self.sync:
                journal.sync()
                if before == 0:  # a new journal: its entry in the job's folder must be durable
                    os.fsync(journal.dir_fd)
            if before == 0 and completeness(units) == (True, 0):
                # The whole job in one request (the usual case for a batching exporter): its
                # file is written now, from exactly what the journal holds, saving the writer
                # a second open, lock and read of the journal later.
                whole = self._write_whole(job_id, units, journal)
        if whole:
            self.stats.add("jobs_opened")
            self.stats.add("jobs_finalized")
            return True
        now = self.clock()
        with self._lock:
            job = self._open.get(job_id)
            if job is None:
                self._open[job_id] = _Open(now)
                self._dirty += 1
                self.stats.add("jobs_reopened" if before else "jobs_opened")
                self._evict_locked()
            else:
                job.last_seen = now
                if not job.dirty:
                    job.dirty = True
                    self._dirty += 1
                self._open.move_to_end(job_id)
        self._wake.set()
        return before == 0

    def commit(self, job_ids: list[str], new_folders: bool) -> None:
        """The last step before acknowledging: the jobs go on this receiver's touched list (so
        a crash before their files are written is repaired at the next start), and new job
        folders' entries are made durable (after :meth:`append` returned True for them)."""
        if self._touched is not None and job_ids:
            self._touched.add(job_ids)
        if new_folders and self.sync:
            _sync_dir(str(self.store.root))

    def dirty_jobs(self) -> int:
        with self._lock:
            return self._dirty

    def open_jobs(self) -> int:
        with self._lock:
            return len(self._open)

    def is_open(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._open

    def _evict_locked(self) -> None:
        while len(self._open) > self.max_open_jobs:
            job_id, job = next(iter(self._open.items()))
            if job.dirty:
                return  # its file comes first; the backlog limit refuses new work meanwhile
            del self._open[job_id]
            self.stats.add("jobs_evicted")

    # -- files ---------------------------------------------------------------------------------
    def write_dirty(self) -> int:
        """Rewrite every job with new spans, then finish those now complete. Returns files written."""
        written = 0
        with self._write_lock:
            touched = self._touched
            with self._lock:
                # Taken together with the dirty list: every id on the touched list by now is
                # dirty now, or its file was written after its spans were appended.
                listed = touched.size() if touched is not None else 0
                dirty = [(job_id, job) for job_id, job in self._open.items() if job.dirty]
                for _, job in dirty:
                    job.dirty = False
                self._dirty -= len(dirty)
            for job_id, job in dirty:
                try:
                    has_root, missing = self._write(job_id)
                except Exception:
                    with self._lock:
                        current = self._open.get(job_id)
                        if current is None:  # swept while being written: it must stay open
                            current = self._open[job_id] = job
                        if not current.dirty:
                            current.dirty = True
                            self._dirty += 1
                    self._count_error(
                        "write_errors", f"writing telemetry for job {job_id!r} failed"
                    )
                    continue
                written += 1
                with self._lock:
                    job.has_root, job.missing = has_root, missing
                    if not job.dirty and has_root and not missing and self._open.get(job_id) is job:
                        del self._open[job_id]
                        self.stats.add("jobs_finalized")
            if touched is not None and self.dirty_jobs() == 0:
                touched.clear_if(listed)  # every file is current: nothing left to repair
        return written

    def _write_whole(self, job_id: str, units: dict[str, Unit], journal: Any) -> bool:
        """Write a job that arrived whole; False (the writer will do it) if that fails."""
        try:
            doc = assemble(job_id, units, pricer=self.pricer)
            journal.write_telemetry(dumps(doc, enum_case=self.enum_case))
        except Exception:
            self._count_error(
                "write_errors", f"writing telemetry for job {job_id!r} failed; the writer retries"
            )
            return False
        self.stats.add("files_written")
        return True

    def _write(self, job_id: str) -> tuple[bool, int]:
        with self.store.journal(job_id) as journal:
            units, _ = journal.read_from(0)
            doc = assemble(job_id, units, pricer=self.pricer)
            journal.write_telemetry(dumps(doc, enum_case=self.enum_case))
        self.stats.add("files_written")
        return completeness(units)

    def sweep(self, now: float | None = None) -> None:
        """Finish jobs whose waiting is over (see the module docstring). ``now`` on ``clock``."""
        now = self.clock() if now is None else now
        with self._lock:
            for job_id, job in list(self._open.items()):
                idle = now - job.last_seen
                if idle < min(self.quiet_period, self.idle_timeout):
                    break  # ordered by activity: every job after this one is younger
                if job.dirty:
                    continue
                if job.has_root and idle >= self.quiet_period:
                    del self._open[job_id]
                    self.stats.add("jobs_finalized_quiet")
                elif not job.has_root and idle >= self.idle_timeout:
                    del self._open[job_id]
                    self.stats.add("jobs_unfinished")
                    logger.info(
                        "aura-otel: job %r had no root span for %gs; its file stays "
                        "unfinished until more spans arrive",
                        job_id,
                        self.idle_timeout,
                    )

    # -- start-up and the writer thread --------------------------------------------------------
    def recover(self) -> int:
        """Rewrite the jobs a crashed receiver acknowledged spans for; returns how many.

        Reads the touched lists nobody holds (their receiver is gone), rewrites those jobs'
        files from their journals, and removes the lists once every file is written. A list a
        live receiver holds (another worker) is left alone. Nothing else is scanned: a clean
        stop leaves no list, so a restart after one costs nothing.
        """
        root = str(self.store.root)
        try:
            entries = [
                e
                for e in os.scandir(root)
                if e.name.startswith(TOUCHED_PREFIX) and e.is_file(follow_symlinks=False)
            ]
        except FileNotFoundError:
            return 0
        orphans: list[tuple[str, int]] = []
        job_ids: set[str] = set()
        for entry in entries:
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live receiver's list
                continue
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            job_ids.update(
                line
                for line in data.decode("utf-8", "replace").splitlines()
                if is_safe_job_id(line)
            )
            orphans.append((entry.path, fd))
        now = self.clock()
        recovered = 0
        for job_id in sorted(job_ids):
            if (self.store.root / job_id / JOURNAL_FILE).is_file():
                with self._lock:
                    if job_id not in self._open:
                        self._open[job_id] = _Open(now)
                        self._dirty += 1
                recovered += 1
        self.stats.add("jobs_recovered", recovered)
        try:
            if recovered:
                logger.info(
                    "aura-otel: rewriting %d job(s) a stopped receiver had not written", recovered
                )
                self.write_dirty()
            if self.dirty_jobs() == 0:
                for path, _ in orphans:
                    Path(path).unlink(missing_ok=True)
        finally:
            for _, fd in orphans:
                os.close(fd)
        return recovered

    def start(self) -> None:
        self._touched = TouchedLog(str(self.store.root), self.sync)
        self._thread = threading.Thread(
            target=self._run, name="aura-otel-receiver-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Write every pending file; then this receiver's touched list goes (nothing lags)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.write_dirty()
        if self._touched is not None:
            # With files still unwritten (a failing disk) the list stays for the next start.
            self._touched.close(remove=self.dirty_jobs() == 0)
            self._touched = None

    def _tick(self) -> float:
        return max(0.05, min(1.0, self.quiet_period / 2, self.idle_timeout / 2))

    def _run(self) -> None:
        while not self._stopped.is_set():
            woke = self._wake.wait(self._tick())
            if self._stopped.is_set():
                return
            if woke:  # let the burst that woke us finish, then write each job once
                self._stopped.wait(self.write_interval)
                self._wake.clear()
            try:
                self.write_dirty()
                self.sweep()
            except Exception:  # the last guard of the thread: it must keep writing
                self._count_error("write_errors", "the receiver's writer failed; it keeps running")

    def _count_error(self, name: str, message: str) -> None:
        count = self.stats.add(name)
        if count <= _LOG_FIRST or count % 1000 == 0:
            logger.exception("aura-otel: %s (%s #%d)", message, name, count)


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(units: dict[str, Any]) -> dict[str, Any]:
    """A job's completeness as the diagnostics show it."""
    has_root, missing = completeness(units)
    return {"root": has_root, "spans_missing_parent": missing, "spans": len(units)}
