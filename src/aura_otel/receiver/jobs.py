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

import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..fold import ROOT, Pricer, Unit, assemble
from ..schema import EnumCase, dumps, is_safe_job_id
from ..store import JOURNAL_FILE, TELEMETRY_FILE, JobStore
from .stats import ReceiverStats

logger = logging.getLogger("aura_otel.receiver")

#: Present while the receiver is stopped cleanly: every open job's file was written. Missing
#: at start-up (a crash, ``kill -9``) means journals may hold spans their files do not show.
CLEAN_MARKER = ".aura-receiver-clean"
_LOG_FIRST = 20


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

    # -- the request path ----------------------------------------------------------------------
    def append(self, job_id: str, units: dict[str, Unit]) -> bool:
        """Make ``units`` durable in the job's journal; raises OSError when that fails.

        Returns True for a new journal, whose folder's entry in the jobs folder is durable only
        after :meth:`sync_root` (called once per request, not once per job). Only then may the
        spans be acknowledged. Units are keyed by span id, so a sender's retry of the same
        batch appends duplicates that the union ignores.
        """
        with self.store.journal(job_id) as journal:
            _, before = journal.read_from(1 << 62)  # the size only: nothing is read
            journal.append(units)
            if self.sync:
                journal.sync()
                if before == 0:  # a new journal: its entry in the job's folder must be durable
                    _sync_dir(journal.folder)
        now = self.clock()
        with self._lock:
            job = self._open.get(job_id)
            if job is None:
                self._open[job_id] = _Open(now)
                self.stats.add("jobs_reopened" if before else "jobs_opened")
                self._evict_locked()
            else:
                job.last_seen = now
                job.dirty = True
                self._open.move_to_end(job_id)
        self._wake.set()
        return before == 0

    def sync_root(self) -> None:
        """Make new job folders' entries durable (after :meth:`append` returned True)."""
        if self.sync:
            _sync_dir(str(self.store.root))

    def dirty_jobs(self) -> int:
        with self._lock:
            return sum(1 for job in self._open.values() if job.dirty)

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
            with self._lock:
                dirty = [(job_id, job) for job_id, job in self._open.items() if job.dirty]
                for _, job in dirty:
                    job.dirty = False
            for job_id, job in dirty:
                try:
                    has_root, missing = self._write(job_id)
                except Exception:
                    with self._lock:
                        job.dirty = True
                    self._count_error("write_errors", f"writing telemetry for job {job_id!r} failed")
                    continue
                written += 1
                with self._lock:
                    job.has_root, job.missing = has_root, missing
                    if (not job.dirty and has_root and not missing
                            and self._open.get(job_id) is job):
                        del self._open[job_id]
                        self.stats.add("jobs_finalized")
        return written

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
                    logger.info("aura-otel: job %r had no root span for %gs; its file stays "
                                "unfinished until more spans arrive", job_id, self.idle_timeout)

    # -- start-up and the writer thread --------------------------------------------------------
    def recover(self) -> int:
        """Open again the jobs a crash may have left with a stale file; returns how many.

        After a clean stop (marker present) every file is current and nothing is scanned.
        Otherwise a job whose journal is not older than its file (or that has no file) is
        rewritten: file timestamps are coarse, so "not older" errs on the side of rewriting,
        which is always safe.
        """
        marker = self.store.root / CLEAN_MARKER
        try:
            marker.unlink()
            return 0
        except FileNotFoundError:
            pass
        recovered = 0
        try:
            entries = os.scandir(self.store.root)
        except FileNotFoundError:
            return 0
        now = self.clock()
        with entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False) or not is_safe_job_id(entry.name):
                    continue
                try:
                    journal = os.lstat(f"{entry.path}/{JOURNAL_FILE}")
                except OSError:
                    continue
                try:
                    telemetry = os.lstat(f"{entry.path}/{TELEMETRY_FILE}")
                    stale = journal.st_mtime_ns >= telemetry.st_mtime_ns
                except FileNotFoundError:
                    stale = True
                if stale and stat.S_ISREG(journal.st_mode):
                    with self._lock:
                        self._open[entry.name] = _Open(now)
                    recovered += 1
        self.stats.add("jobs_recovered", recovered)
        return recovered

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aura-otel-receiver-writer",
                                        daemon=True)
        self._thread.start()

    def stop(self, *, clean_marker: bool = True) -> None:
        """Write every pending file, then leave the clean marker (the next start skips recovery)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.write_dirty()
        if clean_marker and self.dirty_jobs() == 0:
            self.mark_clean()

    def mark_clean(self) -> None:
        try:
            self.store.root.mkdir(parents=True, exist_ok=True)
            (self.store.root / CLEAN_MARKER).write_bytes(b"")
        except OSError:
            logger.warning("aura-otel: could not leave the clean-stop marker; the next "
                           "start will rewrite recently changed jobs", exc_info=True)

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
