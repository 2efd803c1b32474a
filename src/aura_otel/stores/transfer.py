"""``aura-otel db import``: move a jobs folder into the PostgreSQL store.

A job with a journal is imported as its spans (merged like any receiver's, so later spans of
the job merge with them); a ``telemetry.json`` without a journal (written by an old tool, or
whose journal was removed) is imported as a document, and so is a job whose journal no longer
holds everything its file shows (a damaged line, a unit the fold cannot take: the folder's
writers keep such a file's records, a rebuild from the journal alone would drop them). Safe to
run again: spans already stored are one row, documents of jobs already stored are left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import AuraOtelError
from ..fold import Unit, assemble, keep_previous_records
from ..store import JobStore
from .postgres import PostgresStore


@dataclass
class ImportCounts:
    merged: int = 0  # jobs imported from their spans
    documents: int = 0  # jobs imported as a document only
    skipped: int = 0  # unreadable folders, or documents of jobs already stored


def import_folder(folder: JobStore, store: PostgresStore) -> ImportCounts:
    counts = ImportCounts()
    for job_id, mtime_ns, _size in folder.job_entries():
        units = folder.read_journal(job_id)
        try:
            data = folder.read_bytes(job_id)
        except (AuraOtelError, OSError):
            data = None
        if units and _journal_holds_all(job_id, units, data):
            store.merge(job_id, units)
            counts.merged += 1
            continue
        if data is None:
            counts.skipped += 1
            continue
        moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
        if store.import_document(job_id, data, moment):
            counts.documents += 1
        else:
            counts.skipped += 1
    return counts


def _journal_holds_all(job_id: str, units: dict[str, Unit], file: bytes | None) -> bool:
    """Whether the document rebuilt from ``units`` shows everything the job's file shows."""
    try:
        doc = assemble(job_id, units)
    except Exception:
        return False  # a unit the fold cannot take: the file is what the folder shows
    return keep_previous_records(doc, file) is doc


def describe(counts: ImportCounts, folder: str | os.PathLike[str]) -> str:
    return (
        f"imported {os.fspath(folder)}: {counts.merged} job(s) from their spans, "
        f"{counts.documents} as documents only, {counts.skipped} skipped"
    )
