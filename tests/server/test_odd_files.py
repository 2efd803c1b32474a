"""The server over files with values no writer of ours makes: each costs at most its own job.

Every case is a real file in a real jobs folder next to a good job, served by the real app:
dates that overflow once converted to UTC, integers beyond 64 bits, journal lines of the
wrong types. Each job's own routes answer with a page or a problem object (never a bare
"Internal Server Error"), and the list, the other job and the fleet view keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from aura_otel.server import create_app

from ..server_support import REFERENCE, put_file

HUGE = "1" + "0" * 400  # valid JSON, beyond any 64-bit integer and any float


def _doc(job_id: str) -> dict[str, Any]:
    doc = json.loads(REFERENCE.read_text())
    doc["job_id"] = job_id
    for rec in doc["records"]:
        rec["job_id"] = job_id
    return doc


def _with(job_id: str, change: Any) -> bytes:
    doc = _doc(job_id)
    change(doc)
    return json.dumps(doc).replace('"@HUGE@"', HUGE).encode()


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


FILES = {
    "year-one-east": _set("collection_started_at", "0001-01-01T00:00:00+01:00"),
    "year-9999-west": _set("records.0.ended_at", "9999-12-31T23:59:59-01:00"),
    "huge-metadata": _set("records.0.metadata.note", "@HUGE@"),
    "huge-saving": _set("records.0.metadata.cost_saved", "@HUGE@"),
}

_STAGE = {"stage": "script", "started_at": "2026-01-01T00:00:00Z"}
JOURNALS = {
    "trace-id-number": {"k": "root", "t": 123, "s": 1, "e": 2, "fw": 1},
    "trace-id-list": {"k": "root", "t": [1], "s": 1, "e": 2},
    "budget-text": {"k": "root", "t": "ab12", "b": "abc", "s": 1, "e": 2},
    "record-list": {"k": "stage", "r": [1], "s": 1, "e": 2},
    "start-text": {"k": "stage", "r": _STAGE, "s": "x", "e": 2},
    "failure-text": {"k": "stage", "r": _STAGE, "s": 1, "e": 2, "x": "boom"},
}


def _routes(job_id: str) -> list[str]:
    return [
        f"/api/telemetry/{job_id}",
        f"/api/telemetry/{job_id}/diagnostics",
        f"/api/telemetry/{job_id}/ops/0",
        f"/api/cost-tracking/run-summary/{job_id}",
        f"/jobs/{job_id}/telemetry",
        f"/jobs/{job_id}/telemetry/ops/0",
    ]


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    put_file(folder, "good", json.dumps(_doc("good")).encode())
    for job_id, change in FILES.items():
        put_file(folder, job_id, _with(job_id, change))
    for job_id, unit in JOURNALS.items():
        put_file(folder, job_id, json.dumps(_doc(job_id)).encode())
        line = {"v": 1, "units": [["00000000000000aa", unit]]}
        (folder / job_id / ".aura-units.jsonl").write_text(json.dumps(line) + "\n")
    return folder


def _answered(response: Any) -> None:
    """A page or a problem object: what every route promises, whatever the file holds."""
    kind = response.headers["content-type"]
    if response.status_code >= 500:
        assert kind.startswith(("application/problem+json", "text/html")), response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("job_id", [*FILES, *JOURNALS])
def test_an_odd_file_costs_only_its_own_job(jobs: Path, job_id: str) -> None:
    app = create_app(str(jobs), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        for path in _routes(job_id):
            _answered(http.get(path))
        listed = http.get("/api/jobs").json()["items"]
        assert {item["jobId"] for item in listed} >= {"good", job_id}
        for path in ["/jobs", "/insights", "/api/insights", *_routes("good")]:
            assert http.get(path).status_code == 200, path


def test_dates_out_of_range_in_utc_make_the_file_unreadable_not_the_list(jobs: Path) -> None:
    app = create_app(str(jobs), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        rows = {item["jobId"]: item for item in http.get("/api/jobs").json()["items"]}
        assert rows["year-one-east"]["status"] == "unreadable"
        assert rows["year-9999-west"]["status"] == "unreadable"
        problem = http.get("/api/telemetry/year-one-east").json()
        assert "corrupt" in problem["detail"]


def test_huge_values_are_shown_not_fatal(jobs: Path) -> None:
    app = create_app(str(jobs), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        page = http.get("/jobs/huge-metadata/telemetry/ops/0")
        assert page.status_code == 200
        assert HUGE in page.text
        assert http.get("/api/telemetry/huge-metadata/ops/0").status_code == 200
        summary = http.get("/api/cost-tracking/run-summary/huge-saving")
        assert summary.status_code == 200, summary.text


def test_journal_units_of_the_wrong_type_are_left_out_of_the_page(jobs: Path) -> None:
    app = create_app(str(jobs), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        for job_id in JOURNALS:
            assert http.get(f"/jobs/{job_id}/telemetry").status_code == 200, job_id
            assert http.get(f"/api/cost-tracking/run-summary/{job_id}").status_code == 200


def test_an_unexpected_error_on_a_page_is_an_error_page_with_a_reference(
    jobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aura_otel.server import views

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug no test foresaw")

    monkeypatch.setattr(views, "run_details", broken)
    app = create_app(str(jobs), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        page = http.get("/jobs/good/telemetry", headers={"X-Correlation-Id": "ref-42"})
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert "Something went wrong" in page.text
        assert "content-security-policy" in page.headers  # inside the middleware
        assert "ref-42" in page.text
        assert "a bug no test foresaw" not in page.text


def test_the_fleet_counts_only_what_the_list_can_read(tmp_path: Path) -> None:
    """A file whose job_id is another job's, or that is not valid v1 (a negative cost), is
    unreadable in the list and left out of the fleet's figures alike."""
    folder = tmp_path / "jobs"
    put_file(folder, "good", json.dumps(_doc("good")).encode())
    put_file(folder, "spoof", json.dumps(_doc("good")).encode())
    put_file(folder, "negative", _with("negative", _set("records.0.cost_estimate", -1000)))
    app = create_app(str(folder), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        rows = {item["jobId"]: item["status"] for item in http.get("/api/jobs").json()["items"]}
        assert rows["spoof"] == rows["negative"] == "unreadable"
        assert "corrupt" in http.get("/api/telemetry/spoof").json()["detail"]
        fleet = http.get("/api/insights").json()
        assert fleet["totals"]["jobs"] == 1
        assert fleet["totals"]["cost"] >= 0


def test_a_job_on_the_last_day_of_year_9999_breaks_no_view(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    put_file(folder, "good", json.dumps(_doc("good")).encode())
    for job_id, start in (
        ("last-day", "9999-12-31T00:00:00Z"),
        ("last-us", "9999-12-31T23:59:59.999999Z"),
    ):
        put_file(folder, job_id, _with(job_id, _set("collection_started_at", start)))
    app = create_app(str(folder), abandoned_after=3600)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as http:
        for path in ("/insights", "/api/insights", "/api/insights?until=9999-12-31", "/jobs"):
            assert http.get(path).status_code == 200, path
