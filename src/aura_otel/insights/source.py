"""Where the fleet view reads jobs from, and the compact per-job summary it aggregates.

The fleet view must not care where jobs live (the jobs folder or PostgreSQL), so it reads
through :class:`JobSource`: anything that can list the collections of a period. Reading every
file on every request would not scale to 100k jobs, so a source may also offer
``iter_summaries``: compact per-job facts it can keep between requests, and, with an index,
``latest_start``/``history`` (the period plus only the baselines it needs). The folder source
keeps them keyed by (file mtime, size), the same change test as the job list, in memory and
in a cache file in the jobs folder, so neither a later request nor a restart parses a file
that did not change. PostgreSQL's source is in :mod:`aura_otel.stores.pg_summaries`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import orjson

from .. import figures
from ..errors import AuraOtelError
from ..schema import Collection, in_summary_currency, is_safe_job_id, load_collection, to_dict
from ..store import _READ_FLAGS, JobStore, _open_regular, atomic_write_at
from ..stores.base import Store

logger = logging.getLogger("aura_otel.insights")

P = TypeVar("P")


class Op(NamedTuple):
    """One operation, reduced to what the charts and the anomaly detector read."""

    stage: str
    provider: str  # "" when unknown
    model: str  # "" when unknown
    status: str  # ok | warn | error
    latency_ms: int
    cost: float | None  # None: unpriced, no cost, or a cost in another currency than USD
    retries: int
    cache_hit: bool
    saved: float
    error_code: str
    started_ns: int
    unpriced: bool = False


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    project: str  # "" when the job named none
    started: float  # epoch seconds of collection_started_at
    elapsed_ms: int
    status: str  # figures.job_status of the file alone (running, ok, warn, failed)
    ops: tuple[Op, ...]
    budget: float | None = None

    @property
    def cost(self) -> float:
        return sum(op.cost for op in self.ops if op.cost is not None)

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d")

    def status_at(self, now: datetime | None, abandoned_after: float | None) -> str:
        """The status the job list gives the job at ``now``: a running job quiet for longer
        than ``abandoned_after`` is abandoned (:func:`figures.is_abandoned`; the file's latest
        moment is its start plus ``elapsed_ms``, to the millisecond)."""
        if self.status != figures.JobStatus.RUNNING or abandoned_after is None:
            return self.status
        last = self.last_active()
        if last is not None and figures.is_abandoned(
            last, now=now, abandoned_after=abandoned_after
        ):
            return str(figures.JobStatus.ABANDONED)
        return self.status

    def last_active(self) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.started + self.elapsed_ms / 1000, UTC)
        except (OverflowError, ValueError, OSError):  # past the calendar: never quiet
            return None


def _epoch_ns(value: Any) -> int:
    parsed = figures.parse_time(value)
    return int(parsed.timestamp() * 1e9) if parsed else 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def summarize_doc(doc: Mapping[str, Any]) -> JobSummary | None:
    """A job's summary from its v1 dict (either enum spelling); None when it is not a job."""
    job_id = doc.get("job_id")
    recs = doc.get("records")
    if not isinstance(job_id, str) or not isinstance(recs, list):
        return None
    started = figures.parse_time(doc.get("collection_started_at"))
    if started is None:
        return None
    ended = figures.parse_time(doc.get("collection_ended_at"))
    ops = []
    project = ""
    last_end = started
    for rec in recs:
        if not isinstance(rec, Mapping):
            continue
        project = project or (rec.get("project_id") or "")
        end = figures.parse_time(rec.get("ended_at"))
        if end is not None and end > last_end:
            last_end = end
        unpriced = figures.is_unpriced(rec)
        ops.append(
            Op(
                stage=figures.lower(rec.get("stage")),
                provider=str(rec.get("provider") or ""),
                model=str(rec.get("model_id") or ""),
                status=figures.record_status(rec),
                latency_ms=int(_number(rec.get("latency_ms")) or 0),
                # A cost in another currency is not added to dollars (as in the summary).
                cost=None
                if unpriced or not in_summary_currency(rec)
                else _number(rec.get("cost_estimate")),
                retries=int(_number(rec.get("retries")) or 0),
                cache_hit=rec.get("cache_hit") is True,
                saved=figures.cost_saved(rec),
                error_code=str(rec.get("error_code") or ""),
                started_ns=_epoch_ns(rec.get("started_at")),
                unpriced=unpriced,
            )
        )
    end = ended or last_end
    budget = None
    for rec in recs:
        meta = rec.get("metadata") if isinstance(rec, Mapping) else None
        if isinstance(meta, Mapping) and _number(meta.get("budget_amount")) is not None:
            budget = _number(meta.get("budget_amount"))
    return JobSummary(
        job_id=job_id,
        project=str(project),
        started=started.timestamp(),
        elapsed_ms=max(0, int((end - started).total_seconds() * 1000)),
        status=str(figures.job_status(doc)),
        ops=tuple(ops),
        budget=budget,
    )


@runtime_checkable
class JobSource(Protocol):
    """The fleet view's only way to jobs. ``since``/``until`` bound the job's start time
    (inclusive, exclusive); None leaves that side open."""

    def iter_collections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterable[Collection]: ...


def iter_summaries(
    source: JobSource, since: datetime | None = None, until: datetime | None = None
) -> Iterator[JobSummary]:
    """Summaries through the source's own fast path when it has one, else from collections."""
    fast = getattr(source, "iter_summaries", None)
    if fast is not None:
        yield from fast(since, until)
        return
    for collection in source.iter_collections(since, until):
        summary = summarize_doc(figures.as_dict(collection))
        if summary is not None:
            yield summary


#: The types of an :class:`Op`'s fields, in order: a stored summary is checked against them.
_OP_TYPES: tuple[type | tuple[type, ...], ...] = (
    str,
    str,
    str,
    str,
    int,
    (float, type(None)),
    int,
    bool,
    float,
    str,
    int,
    bool,
)


def summary_row(summary: JobSummary) -> list[Any]:
    """A summary as plain JSON values: how both the folder's cache file and PostgreSQL's
    ``job_summaries`` table keep it (one encoding, so both stores hold the same facts)."""
    return [
        summary.job_id,
        summary.project,
        summary.started,
        summary.elapsed_ms,
        summary.status,
        [list(op) for op in summary.ops],
        summary.budget,
    ]


def summary_from_row(row: Any) -> JobSummary:
    """The summary :func:`summary_row` wrote; ValueError for anything else (a stored summary
    may be damaged or not ours, and must never crash or skew the figures)."""
    if not isinstance(row, list) or len(row) != 7:
        raise ValueError("not a job summary")
    job_id, project, started, elapsed_ms, status, ops, budget = row
    if not (
        isinstance(job_id, str)
        and isinstance(project, str)
        and isinstance(started, float)
        and isinstance(elapsed_ms, int)
        and isinstance(status, str)
        and isinstance(ops, list)
        and (budget is None or isinstance(budget, float))
    ):
        raise ValueError("not a job summary")
    parsed = []
    for op in ops:
        if (
            not isinstance(op, list)
            or len(op) != len(_OP_TYPES)
            or not all(map(isinstance, op, _OP_TYPES))
        ):
            raise ValueError("not an operation summary")
        parsed.append(Op(*op))
    return JobSummary(job_id, project, started, elapsed_ms, status, tuple(parsed), budget)


def summarize_bytes(data: bytes, job_id: str | None = None) -> JobSummary | None:
    """A job's summary from its document's bytes; None when they are not a valid v1 document
    (of job ``job_id``, when given: the job it is stored as), or hold a number no summary can
    keep (an integer beyond 64 bits in a hand-made file): such a job is left out of the fleet
    on both stores alike, as the job list shows it unreadable, and never breaks the write that
    stores it."""
    try:
        doc = to_dict(load_collection(data, job_id))
    except AuraOtelError:
        return None
    summary = summarize_doc(doc)
    if summary is None:
        return None
    try:
        orjson.dumps(summary_row(summary))
    except orjson.JSONEncodeError:
        return None
    return summary


def latest_start(source: JobSource) -> float | None:
    """When the newest job started (epoch seconds): the default period ends on its day."""
    fast = getattr(source, "latest_start", None)
    if fast is not None:
        result: float | None = fast()
        return result
    return max((j.started for j in iter_summaries(source)), default=None)


def history_for(
    source: JobSource,
    choose: Callable[[float | None], P],
    known: Callable[[P], bool] | None = None,
) -> tuple[P, list[JobSummary] | None]:
    """The period ``choose`` picks (given when the newest job started), and every job of it
    plus the earlier jobs the anomaly baselines need.

    A source with an index (PostgreSQL: ``latest_start`` and ``history``) answers only those;
    otherwise every job is history, read once for both questions. Either way the figures are
    the same: the baselines are the last ``HISTORY`` comparable jobs and operations before
    each judged job, and a source that trims must keep all of them.

    ``known(period)`` true means the caller already has that period's figures for the
    source's current ``generation``: an indexed source then reads nothing more (None).
    """
    fast = getattr(source, "history", None)
    if fast is None:
        everything = list(iter_summaries(source))
        chosen = choose(max((j.started for j in everything), default=None))
        return chosen, everything
    chosen = choose(latest_start(source))
    if known is not None and known(chosen):
        return chosen, None
    return chosen, fast(chosen.start, chosen.end)  # type: ignore[attr-defined]


def job_history(source: JobSource, job_id: str) -> list[JobSummary]:
    """The job and the earlier jobs its anomaly baselines need (every job without an index)."""
    fast = getattr(source, "job_history", None)
    if fast is not None:
        result: list[JobSummary] = fast(job_id)
        return result
    return list(iter_summaries(source))


def jobs_history(source: JobSource, job_ids: list[str]) -> list[JobSummary]:
    """The jobs (a page of the job list) and the earlier jobs their baselines need."""
    if not job_ids:
        return []
    fast = getattr(source, "jobs_history", None)
    if fast is not None:
        result: list[JobSummary] = fast(job_ids)
        return result
    return list(iter_summaries(source))


#: The folder's summary cache: a hidden file in the jobs folder (never a job: not a folder).
CACHE_FILE = ".aura-insights-cache.json"
_CACHE_FORMAT = "aura-otel insights summaries"
#: 2: summaries only of valid v1 documents of their own job (a cache of 1 may hold others).
_CACHE_VERSION = 3
#: Seconds between two saves of the cache file while jobs keep changing: a save writes every
#: summary (tens of MB at 100k jobs), so it must not follow each new job.
SAVE_INTERVAL = 60.0


class FolderJobSource:
    """A store (the jobs folder or PostgreSQL) as a :class:`JobSource`, with a summary cache.

    Jobs are read through the store interface (ids validated; on the folder no links followed,
    size cap); a job that cannot be read or parsed is left out of the fleet figures and logged
    once per version of it.

    On the jobs folder the cache is also kept in ``.aura-insights-cache.json`` inside it, so a
    restarted server trusts each summary whose file still has the same (mtime_ns, size) and
    re-reads only the others: a restart costs a ``stat`` per job, not a parse. The file is
    opened like the job files (no links, regular files only, size-capped) and used only when
    it is ours (same owner, not writable by others) and well-formed in every entry; anything
    else is ignored, logged, and replaced by the next save.
    """

    def __init__(
        self, store: Store, *, persist: bool = True, save_interval: float = SAVE_INTERVAL
    ) -> None:
        self.store = store
        self._cache: dict[str, tuple[int, int, JobSummary | None]] = {}
        self._lock = threading.Lock()
        #: Bumped whenever a refresh finds a job added, changed or gone: results derived from
        #: the whole history (anomaly verdicts) stay valid while it stays the same.
        self.generation = 0
        #: Whether the fleet was read at least once in this process.
        self.refreshed = False
        self._latest: float | None = None
        self._persist = persist and isinstance(store, JobStore)
        self._loaded = False
        self._dirty = False
        self._saved_at = float("-inf")
        self.save_interval = save_interval
        #: Files parsed since start (the tests and the benchmark read it).
        self.parsed = 0

    def refresh(self) -> list[JobSummary]:
        """Every job's summary, re-reading only the files that changed since the last call."""
        entries = self.store.job_entries()
        with self._lock:
            if self._persist and not self._loaded:
                self._loaded = True
                self._cache = self._load_cache(len(entries))
            fresh: dict[str, tuple[int, int, JobSummary | None]] = {}
            changed = len(entries) != len(self._cache)
            for job_id, mtime_ns, size in entries:
                cached = self._cache.get(job_id)
                if cached is not None and cached[0] == mtime_ns and cached[1] == size:
                    fresh[job_id] = cached
                    continue
                changed = True
                fresh[job_id] = (mtime_ns, size, self._load(job_id))
            self._cache = fresh
            summaries = [s for _, _, s in fresh.values() if s is not None]
            if changed:
                self.generation += 1
                self._dirty = True
            if changed or self._latest is None:
                self._latest = max((s.started for s in summaries), default=None)
            if self._dirty and time.monotonic() - self._saved_at >= self.save_interval:
                self._save_locked()
            self.refreshed = True
            return summaries

    def latest_start(self) -> float | None:
        self.refresh()
        return self._latest

    def jobs_history(self, job_ids: list[str]) -> list[JobSummary]:
        """Every job, for judging a page of the job list, once this source has read the fleet
        (a fleet view, a job's page, a budget); before that, nothing (the page is shown
        unflagged): a job list must not cost a parse of every file after a start."""
        if not self.refreshed:
            return []
        return self.refresh()

    def save(self) -> None:
        """Write the cache file now (a server saves by itself at most every ``save_interval``
        seconds while jobs change)."""
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        if not self._persist:
            return
        assert isinstance(self.store, JobStore)
        body = {
            "format": _CACHE_FORMAT,
            "version": _CACHE_VERSION,
            "jobs": [
                [job_id, mtime_ns, size, None if s is None else summary_row(s)]
                for job_id, (mtime_ns, size, s) in self._cache.items()
            ],
        }
        # A failed save (a read-only folder) is retried at the next interval, not per request.
        self._saved_at = time.monotonic()
        try:
            root = self.store._open_root(create=False)
        except OSError as exc:
            logger.warning("insights: summary cache not saved: %s", exc)
            return
        try:
            atomic_write_at(root, CACHE_FILE, orjson.dumps(body))
        except (OSError, orjson.JSONEncodeError) as exc:
            logger.warning("insights: summary cache not saved: %s", exc)
            return
        finally:
            os.close(root)
        self._dirty = False

    def _load_cache(self, jobs: int) -> dict[str, tuple[int, int, JobSummary | None]]:
        """The cache file's entries, or nothing when it is missing, not ours, or damaged."""
        assert isinstance(self.store, JobStore)
        try:
            data = _read_own_file(self.store, CACHE_FILE, _cache_limit(jobs))
        except FileNotFoundError:
            return {}
        except (OSError, AuraOtelError) as exc:
            logger.warning("insights: summary cache ignored: %s", exc)
            return {}
        try:
            return _parse_cache(data)
        except (ValueError, orjson.JSONDecodeError) as exc:
            logger.warning(
                "insights: summary cache %s ignored (%s): rebuilding it", CACHE_FILE, exc
            )
            return {}

    def _load(self, job_id: str) -> JobSummary | None:
        self.parsed += 1
        try:
            data = self.store.read_bytes(job_id)
        except (AuraOtelError, OSError) as exc:
            logger.warning("insights: job %r left out: %s", job_id, exc)
            return None
        summary = summarize_bytes(data, job_id)
        if summary is None:
            logger.warning("insights: job %r left out: not a v1 document of that job", job_id)
        return summary

    def iter_summaries(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[JobSummary]:
        low = since.timestamp() if since else float("-inf")
        high = until.timestamp() if until else float("inf")
        for summary in self.refresh():
            if low <= summary.started < high:
                yield summary

    def iter_collections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[Collection]:
        return read_collections(self.store, self.iter_summaries(since, until))


def read_collections(store: Store, summaries: Iterable[JobSummary]) -> Iterator[Collection]:
    """The documents of summarised jobs; one deleted or damaged since it was summarised is
    skipped (the summaries are a moment behind the store)."""
    for summary in summaries:
        try:
            yield store.read(summary.job_id)
        except AuraOtelError:
            continue


def _cache_limit(jobs: int) -> int:
    """The largest cache file worth reading for ``jobs`` jobs (a summary is well under 4 KiB
    unless a job has very many operations)."""
    return (1 << 20) + 16_384 * jobs


def _read_own_file(store: JobStore, name: str, limit: int) -> bytes:
    """``name`` in the jobs folder, only if it is a regular file of ours nobody else may write."""
    root = store._open_root(create=False)
    try:
        fd = _open_regular(name, _READ_FLAGS, root)
    finally:
        os.close(root)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError(f"{name} is not owned by this user or is writable by others")
        if st.st_size > limit:
            raise ValueError(f"{name} is {st.st_size} bytes, more than expected ({limit})")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1)
    except ValueError as exc:
        raise OSError(str(exc)) from None
    finally:
        os.close(fd)


def _parse_cache(data: bytes) -> dict[str, tuple[int, int, JobSummary | None]]:
    body = orjson.loads(data)
    if (
        not isinstance(body, dict)
        or body.get("format") != _CACHE_FORMAT
        or body.get("version") != _CACHE_VERSION
        or not isinstance(body.get("jobs"), list)
    ):
        raise ValueError("not an aura-otel summary cache of this version")
    cache: dict[str, tuple[int, int, JobSummary | None]] = {}
    for entry in body["jobs"]:
        if not isinstance(entry, list) or len(entry) != 4:
            raise ValueError("a damaged entry")
        job_id, mtime_ns, size, row = entry
        if not (
            isinstance(job_id, str)
            and is_safe_job_id(job_id)
            and isinstance(mtime_ns, int)
            and isinstance(size, int)
        ):
            raise ValueError("a damaged entry")
        summary = None if row is None else summary_from_row(row)
        if summary is not None and summary.job_id != job_id:
            raise ValueError(f"the entry of {job_id!r} holds another job")
        cache[job_id] = (mtime_ns, size, summary)
    return cache
