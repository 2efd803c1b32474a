"""The server tests' jobs, copied into PostgreSQL, so one test runs against both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura_otel.store import JobStore


def postgres_copy(request: pytest.FixtureRequest, jobs_dir: Path) -> str:
    """A fresh database holding ``jobs_dir``'s jobs (``aura-otel db import``); its URL.

    The files' times become the jobs' update times, so the list keeps its order; a folder in
    place of a file has no counterpart in a database and is left out.
    """
    from aura_otel.stores.postgres import PostgresStore
    from aura_otel.stores.transfer import import_folder

    url = str(request.getfixturevalue("pg_cluster").create_database())
    with PostgresStore(url) as store:
        import_folder(JobStore(jobs_dir), store)
    return url
