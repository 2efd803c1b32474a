"""Where the fleet view reads jobs from, and the compact per-job summary it aggregates.

The fleet view must not care where jobs live (a local folder today, PostgreSQL next), so it
reads through :class:`JobSource`: anything that can list the collections of a period. Reading
every file on every request would not scale to 100k jobs, so a source may also offer
``iter_summaries``: compact per-job facts it can keep between requests. The folder source
keeps them in memory keyed by (file mtime, size), the same change test as the job list: a
request costs one ``stat`` per job plus a parse of the files that changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from .. import figures
from ..errors import AuraOtelError
from ..schema import Collection
from ..stores.base import Store

logger = logging.getLogger("aura_otel.insights")


class Op(NamedTuple):
    """One operation, reduced to what the charts and the anomaly detector read."""

    stage: str
    provider: str  # "" when unknown
    model: str  # "" when unknown
    status: str  # ok | warn | error
    latency_ms: int
    cost: float | None  # None: unpriced or no cost
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
                cost=None if unpriced else _number(rec.get("cost_estimate")),
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


class FolderJobSource:
    """A store (the jobs folder or PostgreSQL) as a :class:`JobSource`, with a summary cache.

    Jobs are read through the store interface (ids validated; on the folder no links followed,
    size cap); a job that cannot be read or parsed is left out of the fleet figures and logged
    once per version of it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[int, int, JobSummary | None]] = {}
        self._lock = threading.Lock()
        #: Bumped whenever a refresh finds a job added, changed or gone: results derived from
        #: the whole history (anomaly verdicts) stay valid while it stays the same.
        self.generation = 0

    def refresh(self) -> list[JobSummary]:
        """Every job's summary, re-reading only the files that changed since the last call."""
        entries = self.store.job_entries()
        with self._lock:
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
            if changed:
                self.generation += 1
            return [s for _, _, s in fresh.values() if s is not None]

    def _load(self, job_id: str) -> JobSummary | None:
        try:
            doc = orjson.loads(self.store.read_bytes(job_id))
        except (AuraOtelError, OSError, orjson.JSONDecodeError) as exc:
            logger.warning("insights: job %r left out: %s", job_id, exc)
            return None
        return summarize_doc(doc) if isinstance(doc, dict) else None

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
        for summary in self.iter_summaries(since, until):
            try:
                yield self.store.read(summary.job_id)
            except AuraOtelError:
                continue
