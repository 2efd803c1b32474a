"""The server tests' jobs, copied into PostgreSQL, so one test runs against both stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from aura_otel.errors import AuraOtelError
from aura_otel.store import JobStore


def postgres_copy(request: pytest.FixtureRequest, jobs_dir: Path) -> str:
    """A fresh database holding exactly what ``jobs_dir`` holds; its URL.

    Each file is copied as it is (even a broken one) with its time as the job's update time,
    so the list keeps its order, and each journal's units are copied as rows beside it without
    rebuilding the document (the test folders hand-craft files and journals separately). A
    folder in place of a file has no counterpart in a database and is left out.
    """
    from aura_otel.stores.postgres import SCHEMA, PostgresStore

    url = str(request.getfixturevalue("pg_cluster").create_database())
    folder = JobStore(jobs_dir)
    with PostgresStore(url) as store:
        for job_id, mtime_ns, _ in folder.job_entries():
            try:
                data = folder.read_bytes(job_id)
            except (AuraOtelError, OSError):
                continue
            store.import_document(job_id, data, datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC))
            units = folder.read_journal(job_id)
            with store.connection() as conn, conn.transaction():
                for span_id, unit in units.items():
                    conn.execute(
                        f"INSERT INTO {SCHEMA}.units (job_id, span_id, unit) VALUES (%s, %s, %s)",
                        (job_id, span_id, orjson.dumps(unit)),
                    )
    return url
