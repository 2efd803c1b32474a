"""``aura-otel db import``: move a jobs folder into the PostgreSQL store.

A job with a journal is imported as its spans (merged like any receiver's, so later spans of
the job merge with them); a ``telemetry.json`` without a journal (written by an old tool, or
whose journal was removed) is imported as a document. Safe to run again: spans already stored
are one row, documents of jobs already stored are left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import AuraOtelError
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
        if units:
            store.merge(job_id, units)
            counts.merged += 1
            continue
        try:
            data = folder.read_bytes(job_id)
        except (AuraOtelError, OSError):
            counts.skipped += 1
            continue
        moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
        if store.import_document(job_id, data, moment):
            counts.documents += 1
        else:
            counts.skipped += 1
    return counts


def describe(counts: ImportCounts, folder: str | os.PathLike[str]) -> str:
    return (
        f"imported {os.fspath(folder)}: {counts.merged} job(s) from their spans, "
        f"{counts.documents} as documents only, {counts.skipped} skipped"
    )
