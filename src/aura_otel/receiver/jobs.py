"""Open jobs: durable appends, file rewrites, and when a job counts as finished.

A request's units are made durable in the receiver's write-ahead log (:mod:`.wal`: one append
and one sync per request) and handed to the writer, which appends them to each job's journal
(``<jobs_dir>/<job_id>/.aura-units.jsonl``, the same journal the in-process exporter writes)
and rewrites the job's file, once per job and wake-up whatever number of requests brought it
spans. What this module keeps per open job is a handful of fields (about 200 bytes, whatever
the job's size) plus, until the writer's next wake-up, the units it has not journaled yet
(bounded by the admission's backlog limits); memory returns to nothing once jobs are finished.

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

import errno
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InvalidJobIdError
from ..exporter import render_file
from ..fold import ROOT, Pricer, Unit
from ..schema import EnumCase, is_safe_job_id
from ..store import JOURNAL_FILE, JobStore, journal_line
from . import wal
from .stats import ReceiverStats

logger = logging.getLogger("aura_otel.receiver")

#: Lists of job ids a receiver of an earlier version kept (``.aura-receiver-touched.<pid>-…``):
#: a start after such a receiver crashed still rewrites the jobs one names.
TOUCHED_PREFIX = ".aura-receiver-touched."
#: Errors a retry cannot cure: the job's path is taken by a file, a link, or is not ours.
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.EEXIST,
    }
)
_LOG_FIRST = 20
#: Dead receivers' log segments a start replays at a time (one descriptor each meanwhile).
RECOVERY_BATCH = 256
#: Bytes of journal lines acknowledged but not yet in their journals, at most (held with the
#: units they encode, about 4-5x that in memory): past it requests are answered "retry later"
#: until the writer catches up.
MAX_PENDING_BYTES = 16 << 20
#: Past half of that a request waits (at most ``ROOM_WAIT_SECONDS``) for the writer's next round
#: before it is decoded: a wait of milliseconds in the receiver instead of a refusal the sender
#: answers by sleeping a whole ``Retry-After`` second, and the waiting threads leave the writer
#: the CPU it needs to catch up.
SOFT_PENDING_BYTES = MAX_PENDING_BYTES // 2
ROOM_WAIT_SECONDS = 1.0


#: A log line's entry for a job whose journal holds its units but whose file failed: a start
#: that replays it rewrites the file.
_REWRITE = journal_line({})

#: A request's journal line for one job, and the units it encodes.
_Held = tuple[bytes, dict[str, Unit]]


@dataclass(slots=True)
class _Open:
    last_seen: float
    dirty: bool = True
    has_root: bool = False
    missing: int = 0  # spans whose parent has not arrived (the root's own parent excluded)
    written: bool = False  # this receiver has written the job since it opened it
    damaged: bool = False  # its journal lost units its file shows: the file must not shrink


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
        self._render = partial(render_file, pricer=pricer, enum_case=enum_case, count=stats.add)
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
        self._room = threading.Condition(self._lock)  # the writer took the pending units
        self._hurry = threading.Event()  # the next round now: requests wait for it, or a stop
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._wal: wal.WriteAheadLog | None = None
        #: Segments whose units were taken by a write round that has not finished cleanly.
        self._retiring: list[wal.Segment] = []
        #: Journals written in this round, not yet synced.
        self._unsynced = False
        #: A sync failed: what was journaled before it needs a replay (see write_dirty).
        self._sync_failed = False
        #: Set by :meth:`stop`: a request still arriving is refused (retry later), not held.
        self._closing = False
        # Units not yet in their journals: each request's journal line (what the journal gets)
        # with the units it encodes (what the file is assembled from: no parse back).
        self._pending: dict[str, list[_Held]] = {}
        self._pending_bytes = 0
        self._dirty = 0  # jobs with dirty=True, kept in step: asked on every request

    # -- the request path ----------------------------------------------------------------------
    def append_request(self, jobs: dict[str, dict[str, Unit]]) -> dict[str, int]:
        """Make a request's units durable; raises OSError when that fails (nothing is
        acknowledged then). Returns the jobs refused for good (their folder's place is taken
        by a file or a link: a retry would fail the same way), with their span counts.

        One line in the write-ahead log, one sync shared with concurrent requests; the writer
        puts the units in their journals and files afterwards. Units are keyed by span id, so
        a sender's retry of the same batch changes nothing.
        """
        refused: dict[str, int] = {}
        with self._lock:
            new = [job_id for job_id in jobs if job_id not in self._open]
        for job_id in new:
            if self._unusable(job_id):
                refused[job_id] = len(jobs.pop(job_id))
        if not jobs:
            return refused
        lines = {job_id: journal_line(units) for job_id, units in jobs.items()}
        data = wal.encode(lines)
        now = self.clock()
        log = self._wal
        with self._lock:  # one order for the log and the writer's snapshot (see write_dirty)
            if self._closing:  # after the last round: nothing would write these units
                raise OSError(errno.ESHUTDOWN, "the receiver is stopping")
            where = log.append(data) if log is not None else None
            for job_id, line in lines.items():
                self._hold_locked(job_id, line, jobs[job_id])
            for job_id in jobs:
                job = self._open.get(job_id)
                if job is None:
                    self._open[job_id] = _Open(now)
                    self._dirty += 1
                    self._evict_locked()
                else:
                    job.last_seen = now
                    if not job.dirty:
                        job.dirty = True
                        self._dirty += 1
                    self._open.move_to_end(job_id)
        if log is not None and where is not None:
            log.sync(*where)
        self._wake.set()
        return refused

    def _unusable(self, job_id: str) -> bool:
        """The job's folder is something else (a file, a link) or not ours to write, or its
        journal is (a link, a FIFO, another user's file): the writer would drop spans already
        acknowledged. Checked without creating anything, so the request path stays free of
        file system metadata work."""
        folder = f"{self.store.root}/{job_id}"
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        if not stat.S_ISDIR(st.st_mode):
            return True
        # Made by another user (an in-process exporter running as someone else): the writer
        # could create no journal in it.
        if not os.access(folder, os.W_OK | os.X_OK):
            return True
        journal = f"{folder}/{JOURNAL_FILE}"
        try:
            st = os.lstat(journal)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return not stat.S_ISREG(st.st_mode) or not os.access(journal, os.R_OK | os.W_OK)

    def dirty_jobs(self) -> int:
        with self._lock:
            return self._dirty

    def _hold_locked(self, job_id: str, line: bytes, units: dict[str, Unit]) -> None:
        self._pending.setdefault(job_id, []).append((line, units))
        self._pending_bytes += len(line)

    def pending_bytes(self) -> int:
        with self._lock:
            return self._pending_bytes

    def wait_for_room(self, timeout: float = ROOM_WAIT_SECONDS) -> bool:
        """Hold a request while the writer is more than half its backlog behind, until its
        next round takes the pending units; False when ``timeout`` passed first (the request
        then goes ahead: the backlog's hard limit still refuses the ones after it)."""
        with self._room:
            if self._pending_bytes <= SOFT_PENDING_BYTES:
                return True
            self.write_soon()
            return self._room.wait_for(lambda: self._pending_bytes <= SOFT_PENDING_BYTES, timeout)

    def write_soon(self) -> None:
        """Start the writer's next round now, not after its idle tick nor after the pause it
        leaves a burst: requests wait for that round, or the receiver stops (its files are
        written meanwhile its servers wind down)."""
        self._wake.set()
        self._hurry.set()

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
        """Journal and rewrite every job with new spans, make the journals durable, then let
        go of the log segments they came from. Returns files written.

        Nothing acknowledged may leave the log before it is in a synced journal, whatever
        fails: the log's rotation comes first (when it fails, nothing else has happened); a
        job that cannot be written now keeps its units and has its lines copied into the
        current segment, so one failing job does not pin every older segment; a round that
        fails as a whole puts back what it took; and segments go only after the round's sync
        succeeded (after a failed one they stay until a start replays them)."""
        written = 0
        with self._write_lock:
            with self._lock:
                if self._wal is not None:
                    # Taken together with the snapshot below: every unit in the segments
                    # retired later is in this snapshot, and nothing in it is only in a later
                    # segment.
                    old = self._wal.rotate()
                    if old is not None:
                        self._retiring.append(old)
                dirty = [(job_id, job) for job_id, job in self._open.items() if job.dirty]
                for _, job in dirty:
                    job.dirty = False
                self._dirty -= len(dirty)
                pending, self._pending = self._pending, {}
                self._pending_bytes = 0
                self._room.notify_all()
            failed = False  # units only the retiring segments hold: keep them
            carried: list[tuple[str, bytes]] = []  # lines of jobs left for the next round
            done = 0  # jobs handled (written, or put back): a failed round puts back the rest
            try:
                with self.store.root_fd() as root_fd:
                    for job_id, job in dirty:
                        lines = pending.get(job_id)
                        try:
                            has_root, missing, before = self._write(job_id, lines, root_fd, job)
                        except Exception as exc:
                            journaled = isinstance(exc, _Journaled)
                            if _permanent(exc.__cause__ if journaled else exc):
                                # Its folder's place (or its file's) is taken by something
                                # else: no retry can write this job.
                                self._count_error(
                                    "journal_errors",
                                    f"job {job_id!r}: its folder is unusable; "
                                    + (
                                        "acknowledged spans could not be journaled"
                                        if lines and not journaled
                                        else "its file could not be rewritten"
                                    ),
                                )
                                done += 1
                                continue
                            if journaled:
                                # Its lines reached the journal (the sync below covers them):
                                # only its file is retried, nothing appended twice. The log
                                # keeps a line without units for it, so that a start after a
                                # crash still rewrites the file (its segments go meanwhile).
                                self._requeue(job_id, job, None)
                                carried.append((job_id, _REWRITE))
                            else:
                                self._requeue(job_id, job, lines)
                                carried.extend((job_id, line) for line, _ in lines or ())
                            done += 1
                            self._count_error(
                                "write_errors", f"writing telemetry for job {job_id!r} failed"
                            )
                            continue
                        done += 1
                        written += 1
                        if not job.written:
                            job.written = True
                            self.stats.add("jobs_reopened" if before else "jobs_opened")
                        with self._lock:
                            job.has_root, job.missing = has_root, missing
                            if (
                                not job.dirty
                                and has_root
                                and not missing
                                and self._open.get(job_id) is job
                            ):
                                del self._open[job_id]
                                self.stats.add("jobs_finalized")
                    if self._unsynced and self.sync:
                        try:
                            wal.sync_file_system(root_fd)
                        except OSError:
                            # Pages whose write-back failed may be dropped by the kernel, and a
                            # later sync would not say so: the journals written since the last
                            # good sync cannot be trusted, so the segments behind them stay
                            # until a start replays them (a union: harmless twice).
                            # Let go of (closed, not deleted): a disk failing for long must
                            # not cost this process a descriptor per round.
                            if self._wal is not None:
                                self._wal.release(self._retiring)
                            self._retiring = []
                            self._sync_failed = True
                            self._count_error("journal_errors", "syncing the journals failed")
                    self._unsynced = False
            except Exception:
                # The round failed as a whole (the jobs folder could not be opened, ...): every
                # job it had not finished goes back, units included, for the next round.
                failed = True
                for job_id, job in dirty[done:]:
                    self._requeue(job_id, job, pending.get(job_id))
                self._count_error("write_errors", "a write round failed; its jobs are kept")
            if carried:
                failed = self._carry(carried) or failed
            if not failed and self._retiring and self._wal is not None:
                self._wal.retire(self._retiring)
                self._retiring = []
        return written

    def _carry(self, carried: list[tuple[str, bytes]]) -> bool:
        """Copy the lines of jobs left for the next round into the current segment (synced),
        so the older segments can go; True when that failed (they must stay)."""
        log = self._wal
        if log is None:
            return True
        try:
            segment, end = log.append(
                b"".join(wal.encode({job_id: line}) for job_id, line in carried)
            )
            log.sync(segment, end)
        except OSError:
            self._count_error("journal_errors", "keeping unwritten spans in the log failed")
            return True
        return False

    def _requeue(self, job_id: str, job: _Open, lines: list[_Held] | None) -> None:
        """A job the writer could not write stays dirty, its units held for the next round."""
        with self._lock:
            for line, units in lines or ():
                self._hold_locked(job_id, line, units)
            current = self._open.get(job_id)
            if current is None:  # swept while being written: it must stay open
                current = self._open[job_id] = job
            if not current.dirty:
                current.dirty = True
                self._dirty += 1

    def _write(
        self, job_id: str, lines: list[_Held] | None, root_fd: int, job: _Open
    ) -> tuple[bool, int, int]:
        """(root present, spans missing a parent, journal size before) after journaling
        ``lines`` and rewriting the file from the whole journal.

        The lines go in as encoded for the log; a span already in the journal (a sender's
        retry) is appended again and ignored by the union, as every journal reader does."""
        with self.store.journal(job_id, root_fd=root_fd, fresh=not job.written) as journal:
            stored, before = journal.read_from(0)
            if lines:
                journal.append_lines(b"".join(line for line, _ in lines))
                self._unsynced = True  # in the journal now: the log waits for its sync
                # The units these lines encode, as folded: what the in-process exporter
                # assembles from too (the journal's copy wins, as a reader of it would see).
                for _, units in lines:
                    for span_id, unit in units.items():
                        stored.setdefault(span_id, unit)
            if journal.damaged and not job.damaged:
                job.damaged = True  # for as long as the job is open, as the exporter does
                self.stats.add("jobs_damaged")
                logger.warning(
                    "aura-otel: the journal of job %r is damaged; its file keeps the records "
                    "the journal lost",
                    job_id,
                )
            try:
                _, data = self._render(job_id, stored, journal, damaged=job.damaged)
                journal.write_telemetry(data)
            except Exception as exc:
                raise _Journaled() from exc  # the file failed, the lines are in
        self.stats.add("files_written")
        has_root, missing = completeness(stored)
        return has_root, missing, before

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
        """Replay what a receiver that died acknowledged but had not journaled; returns the
        number of jobs rewritten.

        Reads the log segments nobody holds (their receiver is gone; a live worker's are
        locked and left alone), puts their units in the journals, rewrites those jobs' files,
        syncs, and only then deletes the segments. Nothing else is scanned: a clean stop
        leaves no segment, so a restart after one costs nothing. Segments are taken
        ``RECOVERY_BATCH`` at a time, each batch deleted before the next: a folder holding
        thousands (a disk that failed for long) needs no descriptor for each at once.
        """
        root = str(self.store.root)
        for path, fd in wal.orphans(root, wal.STAGING_PREFIX):  # empty: never written to
            Path(path).unlink(missing_ok=True)
            os.close(fd)
        recovered = 0
        while True:
            found = wal.orphans(root, wal.WAL_PREFIX, RECOVERY_BATCH)
            found += wal.orphans(root, TOUCHED_PREFIX, RECOVERY_BATCH - len(found))
            if not found:
                return recovered
            count, deleted = self._replay(found)
            recovered += count
            if not deleted or len(found) < RECOVERY_BATCH:
                return recovered  # what is kept waits for the next start

    def _replay(self, found: list[tuple[str, int]]) -> tuple[int, bool]:
        """(jobs rewritten, segments deleted) for one batch of :meth:`recover`."""
        try:
            replay: dict[str, dict[str, Unit]] = {}
            rewrite: set[str] = set()
            for path, fd in found:
                data = wal.read_all(fd)
                if Path(path).name.startswith(wal.WAL_PREFIX):
                    for job_id, units in wal.decode(data):
                        replay.setdefault(job_id, {}).update(units)
                else:
                    rewrite.update(
                        line
                        for line in data.decode("utf-8", "replace").splitlines()
                        if is_safe_job_id(line)
                    )
            rewrite = {j for j in rewrite if (self.store.root / j / JOURNAL_FILE).is_file()}
            now = self.clock()
            with self._lock:
                for job_id in sorted(rewrite | set(replay)):
                    if replay.get(job_id):  # not a line without units: its file only is behind
                        self._hold_locked(job_id, journal_line(replay[job_id]), replay[job_id])
                    job = self._open.get(job_id)
                    if job is None:
                        self._open[job_id] = _Open(now)
                        self._dirty += 1
                    elif not job.dirty:  # left open by an earlier replay (the supervisor's book)
                        job.dirty = True
                        self._dirty += 1
            recovered = len(rewrite | set(replay))
            self.stats.add("jobs_recovered", recovered)
            if recovered:
                logger.info(
                    "aura-otel: replaying %d job(s) a stopped receiver had not written", recovered
                )
                self.write_dirty()
            if self.dirty_jobs() == 0 and not self._sync_failed and not self._unsynced:
                for path, _ in found:
                    Path(path).unlink(missing_ok=True)
                return recovered, True
            return recovered, False
        finally:
            for _, fd in found:
                os.close(fd)

    def start(self) -> None:
        Path(self.store.root).mkdir(parents=True, exist_ok=True)
        self._wal = wal.WriteAheadLog(str(self.store.root), self.sync)
        self._thread = threading.Thread(
            target=self._run, name="aura-otel-receiver-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> bool:
        """Write every pending file; then this receiver's log goes (nothing lags). True when
        every acknowledged unit is in its journal and file; False when some stay in the log
        for the next start to replay (a failing disk), or the writer did not finish."""
        self._stopped.set()
        self.write_soon()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                return False  # still writing: the log must stay as it is
        with self._lock:
            self._closing = True
        try:
            self.write_dirty()
            finished = True
        except Exception:  # the log could not rotate (no descriptors, a full disk)
            self._count_error("write_errors", "the last write round failed")
            finished = False
        clean = (
            finished
            and self.dirty_jobs() == 0
            and not self._retiring
            and not self._sync_failed
            and not self._unsynced
        )
        if self._wal is not None:
            # With units still unjournaled (a failing disk) the log stays for the next start.
            self._wal.close(remove=clean, keep=self._retiring)
            self._retiring = []
            self._wal = None
        return clean

    def _tick(self) -> float:
        return max(0.05, min(1.0, self.quiet_period / 2, self.idle_timeout / 2))

    def _run(self) -> None:
        while not self._stopped.is_set():
            woke = self._wake.wait(self._tick())
            if self._stopped.is_set():
                return
            if woke:  # let the burst that woke us finish, then write each job once
                # (unless requests are waiting for this round, or the receiver stops)
                self._hurry.wait(self.write_interval)
                self._hurry.clear()
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


class _Journaled(Exception):
    """A job's lines are in its journal, but its file could not be made."""


def _permanent(exc: BaseException | None) -> bool:
    return isinstance(exc, InvalidJobIdError) or (
        isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS
    )


def describe(units: dict[str, Any]) -> dict[str, Any]:
    """A job's completeness as the diagnostics show it."""
    has_root, missing = completeness(units)
    return {"root": has_root, "spans_missing_parent": missing, "spans": len(units)}
