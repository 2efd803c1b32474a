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
from datetime import datetime, timezone
from typing import Any

from .. import legacy
from ..errors import (
    AuraOtelError,
    CorruptTelemetryError,
    InvalidJobIdError,
    TelemetryNotFoundError,
)
from ..schema import load_collection, to_dict
from ..store import JobStore

logger = logging.getLogger("aura_otel.server")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATUS_UNREADABLE = "unreadable"


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
        return {
            "items": self.items,
            "page": self.page,
            "pageSize": self.page_size,
            "totalItems": self.total,
            "totalPages": self.total_pages,
        }


def _iso_from_ns(epoch_ns: int) -> str:
    return legacy.legacy_timestamp(datetime.fromtimestamp(epoch_ns / 1e9, tz=timezone.utc)) or ""


def job_row(job_id: str, data: bytes, mtime_ns: int) -> dict[str, Any]:
    """One job's line in the list, from its file's bytes; a damaged file gives an
    ``unreadable`` row instead of an error, so one bad folder never breaks the list."""
    row: dict[str, Any] = {"jobId": job_id, "updatedAt": _iso_from_ns(mtime_ns)}
    try:
        doc = to_dict(load_collection(data))
    except AuraOtelError as exc:
        logger.warning("job %s: unreadable telemetry.json: %s", job_id, exc)
        return {**row, "status": STATUS_UNREADABLE, "startedAt": None, "completedAt": None,
                "durationSeconds": None, "totalCost": None, "currency": None,
                "operationCount": None, "stageCount": None, "failedOperations": None,
                "unpricedOperations": None}
    records = doc["records"]
    summary = legacy.effective_summary(doc)
    ended = doc.get("collection_ended_at")
    return {
        **row,
        "status": legacy.job_status(doc),
        "startedAt": legacy.legacy_timestamp(doc["collection_started_at"]),
        "completedAt": legacy.legacy_timestamp(ended) if ended else None,
        "durationSeconds": (
            legacy.duration_seconds(doc["collection_started_at"], ended) if ended else None
        ),
        "totalCost": summary["total_cost"],
        "currency": summary.get("currency") or "USD",
        "operationCount": len(records),
        "stageCount": len({r["stage"] for r in records}),
        "failedOperations": summary["failed_operations"],
        "unpricedOperations": sum(1 for r in records if r.get("cost_estimate") is None),
    }


class JobIndex:
    """Rows of the jobs folder's jobs, cached by their file's (mtime_ns, size)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._rows: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.parses = 0  # how many files were read and parsed (the benchmark reports it)

    def page(self, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> JobPage:
        if page < 1:
            raise ValueError("page must be 1 or more")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        entries = self.store.job_entries()
        start = (page - 1) * page_size
        items = [self._row(job_id, mtime_ns, size)
                 for job_id, mtime_ns, size in entries[start:start + page_size]]
        self._prune(len(entries), entries)
        return JobPage(items=[row for row in items if row is not None], page=page,
                       page_size=page_size, total=len(entries))

    def _row(self, job_id: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
        signature = (mtime_ns, size)
        cached = self._rows.get(job_id)
        if cached is not None and cached[0] == signature:
            return cached[1]
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
        row = job_row(job_id, data, mtime_ns)
        with self._lock:
            self._rows[job_id] = (signature, row)
        return row

    def _prune(self, live: int, entries: list[tuple[str, int, int]]) -> None:
        # Forget rows of deleted jobs, but only when the cache has clearly outgrown the folder.
        if len(self._rows) <= 2 * live + 1000:
            return
        present = {job_id for job_id, _, _ in entries}
        with self._lock:
            for job_id in [j for j in self._rows if j not in present]:
                del self._rows[job_id]
