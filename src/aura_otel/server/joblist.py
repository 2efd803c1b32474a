"""The job list: newest first, paginated, fast with thousands of job folders.

A request costs one scandir plus one ``stat`` per job (to sort by file time); only the rows of
the requested page are built, and a row is rebuilt only when its ``telemetry.json`` changed,
judged by (mtime_ns, size). Ten thousand finished jobs therefore cost ten thousand stats and
at most one page of parses per request, never ten thousand parses.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import figures, shapes
from ..errors import (
    AuraOtelError,
    CorruptTelemetryError,
    InvalidJobIdError,
    TelemetryNotFoundError,
)
from ..schema import load_collection, to_dict
from ..store import JobStore
from ..stores.base import JobFilter, JobLister

logger = logging.getLogger("aura_otel.server")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATUS_UNREADABLE = figures.JobStatus.UNREADABLE


@dataclass(frozen=True)
class JobPage:
    items: list[dict[str, Any]]
    page: int
    page_size: int
    total: int

    @property
    def total_pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def to_json(self) -> dict[str, Any]:
        return shapes.JobPage(
            items=[shapes.JobRow.model_validate(item) for item in self.items],
            page=self.page,
            pageSize=self.page_size,
            totalItems=self.total,
            totalPages=self.total_pages,
        ).model_dump(mode="json")


def _iso_from_ns(epoch_ns: int) -> str:
    return figures.timestamp(datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC)) or ""


def job_row(
    job_id: str,
    data: bytes,
    mtime_ns: int,
    *,
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> dict[str, Any]:
    """One job's line in the list, from its file's bytes; a damaged file gives an
    ``unreadable`` row instead of an error, so one bad folder never breaks the list."""
    row, last = _row(job_id, data, mtime_ns)
    return _aged(row, last, now, abandoned_after)


def _aged(
    row: dict[str, Any], last: datetime | None, now: datetime | None, abandoned_after: float | None
) -> dict[str, Any]:
    """``row`` as of ``now``: a running job quiet for longer than allowed is abandoned (the
    rule of :func:`figures.job_status`, applied to a cached row without parsing it again)."""
    if figures.is_abandoned(last, now=now, abandoned_after=abandoned_after):
        return {**row, "status": figures.JobStatus.ABANDONED}
    return row


def _row(job_id: str, data: bytes, mtime_ns: int) -> tuple[dict[str, Any], datetime | None]:
    """The row with the file's own status, and the last activity of a running job."""
    row: dict[str, Any] = {"jobId": job_id, "updatedAt": _iso_from_ns(mtime_ns)}
    try:
        doc = to_dict(load_collection(data, job_id))
    except AuraOtelError as exc:
        logger.warning("job %s: unreadable telemetry.json: %s", job_id, exc)
        return shapes.JobRow(
            **row,
            status=STATUS_UNREADABLE,
            startedAt=None,
            completedAt=None,
            durationSeconds=None,
            totalCost=None,
            currency=None,
            operationCount=None,
            stageCount=None,
            failedOperations=None,
            unpricedOperations=None,
        ).model_dump(mode="json"), None
    records = doc["records"]
    summary = figures.effective_summary(doc)
    ended = doc.get("collection_ended_at")
    status = figures.job_status(doc)
    last = figures.last_activity(doc) if status == figures.JobStatus.RUNNING else None
    return shapes.JobRow(
        **row,
        status=status,
        startedAt=figures.timestamp(doc["collection_started_at"]),
        completedAt=figures.timestamp(ended) if ended else None,
        durationSeconds=(
            figures.duration_seconds(doc["collection_started_at"], ended) if ended else None
        ),
        totalCost=summary["total_cost"],
        currency=summary.get("currency") or "USD",
        operationCount=len(records),
        stageCount=len({figures.lower(r["stage"]) for r in records}),
        failedOperations=summary["failed_operations"],
        unpricedOperations=figures.count_unpriced(records),
    ).model_dump(mode="json"), last


def check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise ValueError("page must be 1 or more")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")


class JobIndex(JobLister):
    """Rows of the jobs folder's jobs, cached by their file's (mtime_ns, size).

    Filters on time and id cost nothing beyond the listing (they use the file time and the
    folder name); a status filter needs every remaining job's row, each parsed once and then
    served from the cache until its file changes.
    """

    def __init__(self, store: JobStore, *, abandoned_after: float | None = None) -> None:
        self.store = store
        self.abandoned_after = abandoned_after
        # (signature, row, last activity of a running job): a cached running row turns
        # abandoned by the clock alone, without its file changing.
        self._rows: dict[str, tuple[tuple[int, int], dict[str, Any], datetime | None]] = {}
        self._lock = threading.Lock()
        self.parses = 0  # how many files were read and parsed (the benchmark reports it)

    def page(
        self, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE, filters: JobFilter | None = None
    ) -> JobPage:
        check_page(page, page_size)
        all_entries = self.store.job_entries()
        entries = all_entries
        start = (page - 1) * page_size
        if filters is not None and not filters.empty:
            entries = _narrow(entries, filters)
            if filters.status is not None:
                rows = [
                    row
                    for job_id, mtime_ns, size in entries
                    if (row := self._row(job_id, mtime_ns, size)) is not None
                    and row["status"] == filters.status
                ]
                self._prune(len(all_entries), all_entries)
                return JobPage(
                    items=rows[start : start + page_size],
                    page=page,
                    page_size=page_size,
                    total=len(rows),
                )
        items = [
            self._row(job_id, mtime_ns, size)
            for job_id, mtime_ns, size in entries[start : start + page_size]
        ]
        self._prune(len(all_entries), all_entries)
        return JobPage(
            items=[row for row in items if row is not None],
            page=page,
            page_size=page_size,
            total=len(entries),
        )

    def _row(self, job_id: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
        signature = (mtime_ns, size)
        cached = self._rows.get(job_id)
        if cached is not None and cached[0] == signature:
            return _aged(cached[1], cached[2], None, self.abandoned_after)
        try:
            # Without following links or blocking, and refused above the size cap: a file
            # swapped for a FIFO or a huge file after the listing is flagged, never waited on.
            data = self.store.read_bytes(job_id)
        except (InvalidJobIdError, TelemetryNotFoundError):  # not a job, or vanished
            return None
        except (CorruptTelemetryError, OSError) as exc:  # listed, but as unreadable
            logger.warning("job %s: cannot read telemetry.json: %s", job_id, exc)
            data = b""
        self.parses += 1
        row, last = _row(job_id, data, mtime_ns)
        with self._lock:
            self._rows[job_id] = (signature, row, last)
        return _aged(row, last, None, self.abandoned_after)

    def _prune(self, live: int, entries: list[tuple[str, int, int]]) -> None:
        # Forget rows of deleted jobs, but only when the cache has clearly outgrown the folder.
        if len(self._rows) <= 2 * live + 1000:
            return
        present = {job_id for job_id, _, _ in entries}
        with self._lock:
            for job_id in [j for j in self._rows if j not in present]:
                del self._rows[job_id]


def _narrow(entries: list[tuple[str, int, int]], filters: JobFilter) -> list[tuple[str, int, int]]:
    """Entries within the time range whose id contains the search text (case-insensitive)."""
    since = _epoch_ns(filters.since) if filters.since is not None else None
    until = _epoch_ns(filters.until) if filters.until is not None else None
    needle = filters.search.casefold() if filters.search else None
    return [
        (job_id, mtime_ns, size)
        for job_id, mtime_ns, size in entries
        if (since is None or mtime_ns >= since)
        and (until is None or mtime_ns < until)
        and (needle is None or needle in job_id.casefold())
    ]


def _epoch_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


#: The row builders, for other stores' listers (they cache rows the same way).
parse_row = _row
aged_row = _aged
