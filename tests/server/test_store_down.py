"""The web server over PostgreSQL when the database goes away: 503 problems, then by itself
back to normal once the database returns (no restart)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from aura_otel.stores.postgres import PostgresStore

from ..receiver.support import wait_for
from ..server_support import ADAPTER_CASE, live_server


def test_database_down_is_503_and_recovers(pg_cluster, pg_url) -> None:
    with PostgresStore(pg_url) as store:
        store.import_document("job-cost1", ADAPTER_CASE.read_bytes(), datetime.now(UTC))
    # A short wait for a connection: each refused request costs at most that long.
    store = PostgresStore(pg_url, timeout=1.0, statement_timeout=2.0)
    with store, live_server(store) as base, httpx.Client(base_url=base, timeout=60) as http:
        # Readiness, not timing: a busy machine may take longer than the short wait to connect.
        wait_for(lambda: http.get("/api/jobs").status_code == 200, "the server to read PostgreSQL")
        pg_cluster.stop()
        try:
            for path in (
                "/api/jobs",
                "/api/telemetry/job-cost1",
                "/api/telemetry/job-cost1/diagnostics",
            ):
                answer = http.get(path)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.headers["retry-after"]
                body = answer.json()
                assert body["status"] == 503 and body["title"] == "Service Unavailable"
                assert "postgres" not in body["detail"].lower()  # no internals disclosed
            for path in ("/jobs", "/jobs/job-cost1/telemetry"):
                page = http.get(path)
                assert page.status_code == 503 and "unavailable right now" in page.text
        finally:
            pg_cluster.start()
        wait_for(
            lambda: http.get("/api/jobs").status_code == 200, "the server to read PostgreSQL again"
        )
        assert http.get("/api/telemetry/job-cost1").json()["job_id"] == "job-cost1"
        assert http.get("/jobs").status_code == 200
