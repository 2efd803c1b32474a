"""The SpanExporter that folds spans into one v1 file per job.

``export`` only folds (microseconds per span) and files the units under their job; a writer
thread turns dirty jobs into files, at most every ``write_interval`` seconds, so the
application never waits on the disk and a burst of stages costs one atomic replace per job.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._memory import MemoryTrimmer
from ._util import Counters, throttled
from .errors import ConfigurationError, InvalidJobIdError
from .fold import (
    ROOT,
    Pricer,
    Unit,
    assemble,
    fold_span,
    keep_previous_records,
    trace_ids,
    usable_units,
)
from .forwarding import ForwardingSpanProcessor
from .schema import EnumCase, dumps, validate_job_id
from .settings import ENUM_CASE_RULE, ENUM_CASES, Settings
from .store import JobStore, Journal
from .stores import Store, open_store
from .values import representable, shorten

logger = logging.getLogger("aura_otel")

DEFAULT_WRITE_INTERVAL = 0.25
#: A job whose file cannot be written is retried on later rounds, and given up on (its state
#: released, reported once) after this many failed rounds spanning at least
#: ``give_up_after`` seconds: long enough to ride out a full disk being cleaned up, short
#: enough that a job that can never be written (a planted link) does not live forever.
MIN_WRITE_ATTEMPTS = 3
DEFAULT_GIVE_UP_AFTER = 60.0
#: How much of a damaged job's current file is read back to keep its records (bigger files
#: are rewritten from the journal alone).
MAX_MERGE_BYTES = 64 << 20
#: A file larger than this (half what the server parses by default) has its long strings cut
#: to ``MAX_STRING_CHARS``: one huge attribute must not make its job's file unreadable.
LARGE_FILE_BYTES = 16 << 20
MAX_STRING_CHARS = 64 << 10


def default_jobs_dir() -> str:
    """``$AURA_OTEL_JOBS_DIR``, else ``./jobs`` (read through the one settings object)."""
    return Settings.from_env(masking=False).jobs_dir


def resolve_enum_case(enum_case: str | None) -> EnumCase:
    """``enum_case`` when given (checked), else the environment's (checked with the rest)."""
    if enum_case is None:
        return Settings.from_env(masking=False).enum_case
    value = enum_case.strip().lower()
    if value not in ENUM_CASES:
        raise ConfigurationError(f"{ENUM_CASE_RULE} (enum_case=), not {value!r}")
    return value  # type: ignore[return-value]


def render_file(
    job_id: str,
    units: Mapping[str, Unit],
    journal: Journal,
    *,
    damaged: bool,
    pricer: Pricer | None,
    enum_case: EnumCase,
    count: Callable[[str], Any],
) -> tuple[dict[str, Any], bytes]:
    """A job's v1 document and file bytes from its units, as every writer of a jobs folder
    makes them (this exporter and the fold receiver): a file whose journal lost units keeps
    the records its previous version showed (it never shrinks), a value JSON cannot hold is
    replaced, and a file past ``LARGE_FILE_BYTES`` has its long strings shortened. ``count``
    is told of each replacement (``values_replaced``)."""
    try:
        doc = assemble(job_id, units, pricer=pricer)
    except Exception:
        usable = usable_units(units)
        if len(usable) == len(units):
            raise  # not the journal's doing: counted and retried by the caller
        count("units_unusable")
        damaged = True  # what those units showed stays in the file
        doc = assemble(job_id, usable, pricer=pricer)
    if damaged:
        doc = keep_previous_records(doc, journal.read_telemetry(MAX_MERGE_BYTES))
    try:
        data = dumps(doc, enum_case=enum_case)
    except orjson.JSONEncodeError:  # a last guard: the units were made writable when folded
        count("values_replaced")
        doc = representable(doc)
        data = dumps(doc, enum_case=enum_case)
    if len(data) > LARGE_FILE_BYTES:
        shortened = shorten(doc, MAX_STRING_CHARS)
        if shortened is not doc:
            count("values_replaced")
            doc = shortened
            data = dumps(doc, enum_case=enum_case)
    return doc, data


@dataclass
class _Job:
    units: dict[str, Unit] = field(default_factory=dict)  # everything known: ours and others'
    unjournaled: list[str] = field(default_factory=list)  # our span ids not yet in the journal
    offset: int = 0  # how far into the journal this exporter has read
    dirty: bool = False
    finalized: bool = False
    damaged: bool = False  # the journal lost units the file shows: never let the file shrink
    failures: int = 0  # consecutive failed write rounds
    failing_since: float = 0.0


class ExporterStats(Counters):
    """Counters a host can read (and that shutdown logs): nothing is dropped silently."""

    _names: tuple[str, ...] = (
        "spans_received",
        "spans_folded",
        "spans_without_job",
        "spans_rejected_job_id",
        "fold_errors",
        "files_written",
        "write_errors",
        "jobs_abandoned",
        "values_replaced",
        "jobs_damaged",
        "units_unusable",
        "jobs_finalized",
        "downstream_errors",
        "listener_errors",
    )


class RunTelemetryExporter(SpanExporter):
    """Writes ``<jobs_dir>/<job_id>/telemetry.json`` for every job whose spans it receives.

    ``downstream`` is any other exporter (e.g. ``OTLPSpanExporter``): every span received is
    also forwarded to it through its own batch queue, so a slow or dead backend never delays
    the v1 files; :meth:`forwarding_stats` counts what it exported, failed and dropped.

    ``on_job_complete(job_id, collection)`` is called on the writer thread once a finished
    job's file is written (e.g. to record metrics from the very numbers in the file).

    A value JSON cannot hold (an integer beyond 64 bits, a lone surrogate) is written in a
    representable form (see :mod:`aura_otel.values`) and counted in ``values_replaced``; a
    job whose file still cannot be written is retried, then given up on after
    ``give_up_after`` seconds (and at least three rounds), logged once and counted in
    ``jobs_abandoned``.
    """

    def __init__(
        self,
        jobs_dir: str | os.PathLike[str] | None = None,
        *,
        downstream: SpanExporter | None = None,
        enum_case: str | None = None,
        pricer: Pricer | None = None,
        write_interval: float = DEFAULT_WRITE_INTERVAL,
        on_job_complete: Callable[[str, dict[str, Any]], None] | None = None,
        give_up_after: float = DEFAULT_GIVE_UP_AFTER,
        store: Store | str | None = None,
    ) -> None:
        self.store = JobStore(jobs_dir if jobs_dir is not None else default_jobs_dir())
        #: A shared store (PostgreSQL) merges and assembles; the folder keeps its own path below.
        self.shared: Store | None = None
        if store is not None and not isinstance(store, JobStore):
            opened = open_store(store)
            if isinstance(opened, JobStore):
                self.store = opened
            else:
                self.shared = opened
        self._owns_shared = self.shared is not None and not isinstance(store, Store)
        self.enum_case = resolve_enum_case(enum_case)
        self.pricer = pricer
        self.stats = ExporterStats()
        self._render = partial(
            render_file, pricer=self.pricer, enum_case=self.enum_case, count=self.stats.add
        )
        self._write_interval = max(0.0, float(write_interval))
        self._give_up_after = max(0.0, float(give_up_after))
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()  # guards _jobs
        self._write_lock = threading.Lock()  # one writer at a time (thread or force_flush)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._downstream = (
            ForwardingSpanProcessor(downstream, name="downstream")
            if downstream is not None
            else None
        )
        self._on_job_complete = on_job_complete
        self._trimmer = MemoryTrimmer()
        self._start_writer()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                exporter = ref()
                if exporter is not None and not exporter._stopped.is_set():
                    exporter._restart_in_child()

            os.register_at_fork(after_in_child=restart_in_child)

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._run, name="aura-otel-writer", daemon=True)
        self._writer.start()

    def _restart_in_child(self) -> None:
        """A forked child (a prefork server's worker) has the state but not the writer thread,
        and its locks may have been held by a parent thread: without a writer of its own its
        jobs would wait for an exit hook that ``os._exit`` never runs. The parent's jobs are
        the parent's to write."""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._jobs = {}
        self._start_writer()

    # -- SpanExporter ----------------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped.is_set():
            return SpanExportResult.FAILURE
        self.stats.add("spans_received", len(spans))
        if self._downstream is not None:
            for span in spans:
                try:
                    self._downstream.on_end(span)
                except Exception:  # a downstream bug must not cost us the v1 file
                    self._count_error("downstream_errors", "forwarding a span downstream failed")
        folded = []
        # Ids validated in this batch only: a long-lived cache of job ids would pin memory
        # (each id keeps the allocator arena it was born in) in a process that runs for days.
        valid: set[str] = set()
        for span in spans:
            try:
                item = fold_span(span)
            except Exception:
                self._count_error("fold_errors", "folding a span failed; it is left out of v1")
                continue
            if item is None:
                self.stats.add("spans_without_job")
                continue
            if item.job_id not in valid:
                try:
                    validate_job_id(item.job_id)
                except InvalidJobIdError as exc:
                    count = self.stats.add("spans_rejected_job_id")
                    if throttled(count):
                        logger.error("aura-otel: span rejected, nothing written: %s", exc)
                    continue
                valid.add(item.job_id)
            if self._downstream is not None and item.unit.get("k") == ROOT:
                item.unit["fw"] = 1  # trace links are offered only for forwarded jobs
            folded.append(item)
        if folded:
            with self._lock:
                for item in folded:
                    job = self._jobs.get(item.job_id)
                    if job is None:
                        job = self._jobs[item.job_id] = _Job()
                    job.units[item.span_id] = item.unit
                    job.unjournaled.append(item.span_id)
                    job.dirty = True
                    if item.unit.get("k") == ROOT:
                        job.finalized = True
            self.stats.add("spans_folded", len(folded))
            self._wake.set()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = True
        if self._downstream is not None:
            ok = self._downstream.force_flush(timeout_millis)
        self._write_dirty()
        return ok

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wake.set()
        self._writer.join(timeout=10)
        self._write_dirty()
        if self._downstream is not None:
            self._downstream.shutdown()
        if self.shared is not None and self._owns_shared:
            self.shared.close()
        stats = self.stats.snapshot()
        logger.info("aura-otel: v1 exporter stopped: %s", stats)

    # -- introspection ---------------------------------------------------------------------------
    def forwarding_stats(self) -> dict[str, int]:
        """What the downstream exporter got: exported, failed, dropped (empty without one)."""
        return self._downstream.stats() if self._downstream is not None else {}

    def pending_jobs(self) -> int:
        """Jobs held in memory (running, or finished but not yet written)."""
        with self._lock:
            return len(self._jobs)

    # -- writing ---------------------------------------------------------------------------------
    def _count_error(self, name: str, message: str) -> None:
        count = self.stats.add(name)
        if throttled(count):
            logger.exception("aura-otel: %s (%s #%d)", message, name, count)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            if self._stopped.is_set():
                return
            # Coalesce: let the burst that woke us finish, then write each dirty job once.
            self._stopped.wait(self._write_interval)
            self._wake.clear()
            self._write_dirty()
            self._trimmer.maybe_trim()

    def _write_dirty(self) -> None:
        with self._write_lock:
            with self._lock:
                dirty = [(job_id, job) for job_id, job in self._jobs.items() if job.dirty]
                for _, job in dirty:
                    job.dirty = False
            if not dirty:
                return
            # One descriptor of the jobs folder for the whole round; if even that fails, each
            # job tries on its own (and fails, is counted and retried, as a job).
            if self.shared is not None:  # a shared store: no jobs folder is touched
                self._write_round(dirty, None)
                return
            with ExitStack() as stack:
                root_fd: int | None
                try:
                    root_fd = stack.enter_context(self.store.root_fd())
                except Exception:
                    root_fd = None
                self._write_round(dirty, root_fd)

    def _write_round(self, dirty: list[tuple[str, _Job]], root_fd: int | None) -> None:
        for job_id, job in dirty:
            try:
                doc = self._write_job(job_id, job, root_fd)
            except Exception as exc:
                self._count_error("write_errors", f"writing telemetry for job {job_id!r} failed")
                self._failed(job_id, job, exc)
                continue
            with self._lock:
                job.failures = 0
                complete = job.finalized and not job.dirty
                if complete:
                    del self._jobs[job_id]  # a finished job's state is released
                    self.stats.add("jobs_finalized")
            if complete and self._on_job_complete is not None:
                try:
                    self._on_job_complete(job_id, doc)
                except Exception:
                    self._count_error("listener_errors", f"on_job_complete failed for {job_id!r}")

    def _failed(self, job_id: str, job: _Job, exc: Exception) -> None:
        """Retry on a later round, or give the job up once it has failed long enough."""
        now = time.monotonic()
        with self._lock:
            if job.failures == 0:
                job.failing_since = now
            job.failures += 1
            give_up = (
                job.failures >= MIN_WRITE_ATTEMPTS
                and now - job.failing_since >= self._give_up_after
            )
            if give_up:
                if self._jobs.get(job_id) is job:
                    del self._jobs[job_id]
            else:
                job.dirty = True  # try again on the next round
        if give_up:
            self.stats.add("jobs_abandoned")
            logger.error(
                "aura-otel: gave up writing telemetry for job %r after %d failed attempts over "
                "%.0fs (last error: %s: %s); its spans since the last successful write are lost",
                job_id,
                job.failures,
                now - job.failing_since,
                type(exc).__name__,
                exc,
            )

    def _write_job(self, job_id: str, job: _Job, root_fd: int | None = None) -> dict[str, Any]:
        if self.shared is not None:
            return self._write_shared(self.shared, job_id, job)
        with self.store.journal(job_id, root_fd=root_fd, fresh=job.offset == 0) as journal:
            theirs, offset = journal.read_from(job.offset)
            with self._lock:
                for span_id, unit in theirs.items():
                    job.units.setdefault(span_id, unit)
                ours = {sid: job.units[sid] for sid in job.unjournaled}
                job.unjournaled.clear()
            if journal.damaged and not job.damaged:
                job.damaged = True
                self.stats.add("jobs_damaged")
                logger.warning(
                    "aura-otel: the journal of job %r is damaged; its file keeps the "
                    "records the journal lost",
                    job_id,
                )
            try:
                job.offset = self._append(journal, job, ours) if ours else offset
            except BaseException:
                with self._lock:  # nothing of ours reached the journal: append it next time
                    job.unjournaled[:0] = list(ours)
                raise
            with self._lock:
                units = dict(job.units)
            doc, data = self._render(job_id, units, journal, damaged=job.damaged)
            journal.write_telemetry(data)
        self.stats.add("files_written")
        return doc

    def _write_shared(self, shared: Store, job_id: str, job: _Job) -> dict[str, Any]:
        """Hand our new units to the shared store, which merges them with every other
        writer's and rebuilds the document; on failure they are handed over next round."""
        with self._lock:
            ours = {sid: job.units[sid] for sid in job.unjournaled}
            job.unjournaled.clear()
        try:
            units = shared.merge(job_id, ours, pricer=self.pricer, enum_case=self.enum_case)
        except BaseException:
            with self._lock:
                job.unjournaled[:0] = list(ours)
            raise
        self.stats.add("files_written")
        return assemble(job_id, units, pricer=self.pricer)

    def _append(self, journal: Journal, job: _Job, ours: dict[str, Unit]) -> int:
        """Append our units; a unit JSON cannot hold is made representable, in memory too,
        so that the journal, the file and every later round agree on it."""
        try:
            return int(journal.append(ours))
        except orjson.JSONEncodeError:
            fixed = {sid: representable(unit) for sid, unit in ours.items()}
            with self._lock:
                job.units.update(fixed)
            self.stats.add("values_replaced", len(fixed))
            return int(journal.append(fixed))


def job_trace_ids(store: JobStore, job_id: str) -> list[str]:
    """Trace ids recorded for a job (empty when unknown): for links to a trace backend."""
    return trace_ids(store.read_journal(job_id))


def was_forwarded(units: Mapping[str, Unit]) -> bool:
    """Whether a job's root span went to a trace backend too: a link to a backend that never
    received the trace would open an empty page."""
    return any(u.get("k") == ROOT and u.get("fw") for u in units.values())
