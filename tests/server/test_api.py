"""The HTTP API over a real uvicorn server on 127.0.0.1, reading real job folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from aura_otel import legacy
from aura_otel.schema import (
    RESULT_STATUSES,
    SELECTION_SOURCES,
    STAGES,
    json_schema,
    load_collection,
    to_http,
)

from ..server_support import (
    ADAPTER_CASE,
    ADAPTER_REPORT,
    REFERENCE,
    REFERENCE_PASCAL,
    live_server,
    put_example,
    put_file,
    running_job,
    unpriced_job,
    write_doc,
)
from ..test_legacy import assert_same
from .store_support import postgres_copy

BASE_TIME = 1_790_000_000.0
PROBLEM_KEYS = {"type", "title", "status", "detail", "correlationId"}


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    put_example(root, REFERENCE, "job-abc123", mtime=BASE_TIME + 5)
    put_example(root, REFERENCE_PASCAL, "job-pascal", mtime=BASE_TIME + 4)
    put_example(root, ADAPTER_CASE, "job-cost1", mtime=BASE_TIME + 3)
    write_doc(root, running_job("job-running"), mtime=BASE_TIME + 2)
    write_doc(root, unpriced_job("job-unpriced"), mtime=BASE_TIME + 1)
    put_file(root, "job-truncated", REFERENCE.read_bytes()[:300], mtime=BASE_TIME)
    put_file(
        root,
        "job-wrongtypes",
        b'{"version": "1.0", "job_id": "job-wrongtypes", '
        b'"correlation_id": 7, "collection_started_at": "x", "records": "no"}',
        mtime=BASE_TIME - 1,
    )
    put_file(root, "job-empty", b"", mtime=BASE_TIME - 2)
    (root / "job-folder" / "telemetry.json").mkdir(parents=True)
    (root / "not-a-job").mkdir()  # a folder without telemetry.json is not listed
    return root


@pytest.fixture(scope="module")
def client(
    jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[httpx.Client]:
    target: Any = jobs_dir
    if store_kind == "postgres":
        target = postgres_copy(request, jobs_dir)
    with live_server(target) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield http


def file_doc(jobs_dir: Path, job_id: str):
    return load_collection((jobs_dir / job_id / "telemetry.json").read_bytes())


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert PROBLEM_KEYS <= set(body)
    assert body["status"] == status and body["title"] == title
    assert body["correlationId"] == response.headers["x-correlation-id"]
    return body


# -- v1 collection -------------------------------------------------------------------------------
def test_telemetry_is_the_collection_with_explicit_nulls(
    client: httpx.Client, jobs_dir: Path
) -> None:
    response = client.get("/api/telemetry/job-abc123")
    assert response.status_code == 200
    body = response.json()
    assert body == to_http(file_doc(jobs_dir, "job-abc123"))
    script = body["records"][0]
    assert "project_id" in script and script["project_id"] is None  # absent -> explicit null
    assert script["selection_source"] is None and script["scene_index"] is None
    assert body["summary"]["total_cost"] == 0.09
    assert list(body)[:4] == ["version", "job_id", "correlation_id", "collection_started_at"]


def test_pascal_file_is_served_in_lowercase(client: httpx.Client) -> None:
    body = client.get("/api/telemetry/job-pascal").json()
    assert [r["stage"] for r in body["records"]] == ["script", "tts", "visuals"]
    assert [r["result_status"] for r in body["records"]] == ["ok", "ok", "error"]


def test_running_job_has_null_end_and_summary(client: httpx.Client) -> None:
    body = client.get("/api/telemetry/job-running").json()
    assert body["collection_ended_at"] is None and body["summary"] is None
    assert len(body["records"]) == 2


def test_schema_endpoint(client: httpx.Client) -> None:
    body = client.get("/api/telemetry/schema").json()
    assert body["version"] == "1.0"
    assert body["stages"] == list(STAGES)
    assert body["resultStatuses"] == list(RESULT_STATUSES)
    assert body["selectionSources"] == list(SELECTION_SOURCES)
    assert all(
        v == v.lower() for v in body["stages"] + body["resultStatuses"] + body["selectionSources"]
    )
    assert body["jsonSchema"] == json_schema()


# -- legacy views --------------------------------------------------------------------------------
def test_run_summary_is_the_golden_report(client: httpx.Client) -> None:
    response = client.get("/api/cost-tracking/run-summary/job-cost1")
    assert response.status_code == 200
    assert_same(response.json(), orjson.loads(ADAPTER_REPORT.read_bytes()))


@pytest.mark.parametrize("job_id", ["job-abc123", "job-pascal", "job-running", "job-unpriced"])
def test_run_summary_and_diagnostics_match_the_adapter(
    client: httpx.Client, jobs_dir: Path, job_id: str
) -> None:
    doc = file_doc(jobs_dir, job_id)
    assert client.get(f"/api/cost-tracking/run-summary/{job_id}").json() == legacy.run_cost_report(
        doc
    )
    assert client.get(f"/api/telemetry/{job_id}/diagnostics").json() == legacy.diagnostics_summary(
        doc
    )


def test_diagnostics_of_pascal_file_finds_the_failure(client: httpx.Client) -> None:
    body = client.get("/api/telemetry/job-pascal/diagnostics").json()
    assert body["failedOperations"] == 1
    assert body["failureDetails"][0]["errorCode"] == "TIMEOUT"


# -- errors --------------------------------------------------------------------------------------
UNSAFE_IDS = [
    "..%2Fetc",
    "%2E%2E",
    "a%5Cb",
    "a%00b",
    "%20job",
    "job%20",
    "x" * 129,
    "a%0Ab",
    "..%2F..%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("prefix", ["/api/telemetry/", "/api/cost-tracking/run-summary/"])
@pytest.mark.parametrize("job_id", [*UNSAFE_IDS, ""])
def test_unsafe_or_missing_id_is_400(client: httpx.Client, prefix: str, job_id: str) -> None:
    body = assert_problem(client.get(prefix + job_id), 400, "Invalid Request")
    assert "job id" in body["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/telemetry/..%2Fx/diagnostics",
        "/api/telemetry//diagnostics",
        "/api/telemetry/a%2Fb/diagnostics",
    ],
)
def test_unsafe_id_on_diagnostics_is_400(client: httpx.Client, path: str) -> None:
    assert_problem(client.get(path), 400, "Invalid Request")


@pytest.mark.parametrize(
    "path",
    [
        "/api/telemetry/nope",
        "/api/telemetry/nope/diagnostics",
        "/api/cost-tracking/run-summary/nope",
        "/api/telemetry/not-a-job",
    ],
)
def test_unknown_job_is_404_with_guidance(client: httpx.Client, path: str) -> None:
    body = assert_problem(client.get(path), 404, "Telemetry Not Found")
    assert body["guidance"]
    assert "/api/jobs" in body["guidance"]


@pytest.mark.parametrize("job_id", ["job-truncated", "job-wrongtypes", "job-empty", "job-folder"])
@pytest.mark.parametrize("prefix", ["/api/telemetry/", "/api/cost-tracking/run-summary/"])
def test_corrupt_file_is_a_clear_500_without_internals(
    client: httpx.Client, jobs_dir: Path, prefix: str, job_id: str, store_kind: str
) -> None:
    if store_kind == "postgres" and job_id == "job-folder":
        pytest.skip("a folder in place of telemetry.json exists only in the jobs folder")
    body = assert_problem(client.get(prefix + job_id), 500, "Internal Server Error")
    assert job_id in body["detail"] and "corrupt" in body["detail"]
    text = orjson.dumps(body).decode()
    for leak in (str(jobs_dir), "Traceback", "pydantic", 'File "', ".py"):
        assert leak not in text
    # the server is still fine afterwards
    assert client.get("/api/telemetry/job-abc123").status_code == 200


def test_caller_correlation_id_is_echoed(client: httpx.Client) -> None:
    response = client.get("/api/telemetry/nope", headers={"X-Correlation-Id": "req-42"})
    assert response.json()["correlationId"] == "req-42"
    odd = client.get("/api/telemetry/nope", headers={"X-Correlation-Id": "a b<script>"})
    assert odd.json()["correlationId"] != "a b<script>"


def test_unknown_endpoint_is_a_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/api/nothing"), 404, "Not Found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/api/telemetry/job-abc123", "/api/jobs", "/jobs/job-abc123/telemetry"]
)
def test_server_is_read_only(client: httpx.Client, jobs_dir: Path, method: str, path: str) -> None:
    before = sorted((p.relative_to(jobs_dir), p.stat().st_mtime_ns) for p in jobs_dir.rglob("*"))
    response = client.request(method, path, content=b"{}")
    assert response.status_code == 405
    after = sorted((p.relative_to(jobs_dir), p.stat().st_mtime_ns) for p in jobs_dir.rglob("*"))
    assert before == after


def test_security_headers(client: httpx.Client) -> None:
    headers = client.get("/api/jobs").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


# -- job list ------------------------------------------------------------------------------------
def test_job_list_newest_first_with_figures(client: httpx.Client, jobs_dir: Path) -> None:
    body = client.get("/api/jobs").json()
    ids = [item["jobId"] for item in body["items"]]
    assert ids == [
        "job-abc123",
        "job-pascal",
        "job-cost1",
        "job-running",
        "job-unpriced",
        "job-truncated",
        "job-wrongtypes",
        "job-empty",
    ]
    assert body["totalItems"] == 8 and body["page"] == 1 and body["totalPages"] == 1
    rows = {item["jobId"]: item for item in body["items"]}
    ref = file_doc(jobs_dir, "job-abc123")
    assert rows["job-abc123"]["status"] == "failed"
    assert rows["job-abc123"]["totalCost"] == ref.summary.total_cost
    assert rows["job-abc123"]["durationSeconds"] == 12.0
    assert rows["job-abc123"]["stageCount"] == 3
    assert rows["job-abc123"]["operationCount"] == 3
    assert rows["job-cost1"]["status"] == "ok"
    assert rows["job-cost1"]["durationSeconds"] == 300
    assert rows["job-running"]["status"] == "running"
    assert rows["job-running"]["durationSeconds"] is None
    assert rows["job-running"]["totalCost"] == 0.02  # figures so far
    assert rows["job-unpriced"]["status"] == "warn"
    assert rows["job-unpriced"]["unpricedOperations"] == 2
    for broken in ("job-truncated", "job-wrongtypes", "job-empty"):
        assert rows[broken]["status"] == "unreadable" and rows[broken]["totalCost"] is None


def test_job_list_pagination(client: httpx.Client) -> None:
    all_ids = [i["jobId"] for i in client.get("/api/jobs").json()["items"]]
    pages = [
        client.get("/api/jobs", params={"page": n, "pageSize": 3}).json() for n in (1, 2, 3, 4)
    ]
    assert [p["totalPages"] for p in pages] == [3, 3, 3, 3]
    assert [i["jobId"] for p in pages for i in p["items"]] == all_ids
    assert pages[3]["items"] == []


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"page": "x"}, {"pageSize": "0"}, {"pageSize": "100000"}, {"page": "-1"}],
)
def test_job_list_bad_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    assert_problem(client.get("/api/jobs", params=params), 400, "Invalid Request")


def test_job_list_sees_changed_and_new_files(tmp_path: Path) -> None:
    write_doc(tmp_path, running_job("live"), mtime=BASE_TIME)
    with live_server(tmp_path) as base, httpx.Client(base_url=base) as http:
        first = http.get("/api/jobs").json()["items"]
        assert [(r["jobId"], r["status"]) for r in first] == [("live", "running")]
        put_example(tmp_path, ADAPTER_CASE, "live", mtime=BASE_TIME + 1)  # the job finished
        put_example(tmp_path, REFERENCE, "newer", mtime=BASE_TIME + 2)
        second = http.get("/api/jobs").json()["items"]
        assert [(r["jobId"], r["status"]) for r in second] == [("newer", "failed"), ("live", "ok")]
        assert second[1]["totalCost"] == 0.08


def test_job_list_of_ten_thousand_folders(tmp_path: Path) -> None:
    """Correctness at scale (the timing lives in benchmarks/bench_jobs_list.py)."""
    data = ADAPTER_CASE.read_bytes()
    count = 10_000
    for n in range(count):
        job_id = f"job-{n:05d}"
        put_file(
            tmp_path,
            job_id,
            data.replace(b'"job-cost1"', f'"{job_id}"'.encode()),
            mtime=BASE_TIME + n,
        )
    with live_server(tmp_path) as base, httpx.Client(base_url=base, timeout=30) as http:
        body = http.get("/api/jobs", params={"pageSize": 50}).json()
        assert body["totalItems"] == count and body["totalPages"] == 200
        assert [i["jobId"] for i in body["items"]] == [
            f"job-{n:05d}" for n in range(9999, 9949, -1)
        ]
        last = http.get("/api/jobs", params={"pageSize": 50, "page": 200}).json()
        assert [i["jobId"] for i in last["items"]][-1] == "job-00000"
        assert all(i["status"] == "ok" and i["totalCost"] == 0.08 for i in last["items"])


# -- OpenAPI -------------------------------------------------------------------------------------
def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document(client: httpx.Client) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/telemetry/schema",
        "/api/telemetry/{jobId}",
        "/api/telemetry/{jobId}/diagnostics",
        "/api/cost-tracking/run-summary/{jobId}",
        "/api/jobs",
        "/api/telemetry/{jobId}/ops/{n}",
        "/api/insights",
    }
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert set(schemas["Collection"]["properties"]) == set(
        to_http(load_collection(REFERENCE.read_bytes()))
    )
    assert client.get("/openapi.json").json() == doc


#: Job ids that reach every answer of a job endpoint: finished, PascalCase, running, unpriced,
#: unreadable in two ways, unsafe, absent.
_VALIDATED_IDS = (
    "job-abc123",
    "job-pascal",
    "job-cost1",
    "job-running",
    "job-unpriced",
    "job-truncated",
    "job-wrongtypes",
    "bad%5Cid",
    "ghost",
)


def test_every_answer_matches_the_openapi_document(client: httpx.Client) -> None:
    """Each path of the served document, called for real, answers what the document says
    (checked against the document's own schemas, not against the models it came from)."""
    from .openapi_check import errors

    doc = client.get("/api/openapi.json").json()
    seen: set[tuple[str, int]] = set()
    for template, operations in doc["paths"].items():
        responses = operations["get"]["responses"]
        urls = (
            [template.replace("{jobId}", job_id).replace("{n}", "0") for job_id in _VALIDATED_IDS]
            if "{jobId}" in template
            else [template, template + "?page=0"]
        )
        for url in urls:
            response = client.get(url)
            declared = responses.get(str(response.status_code))
            assert declared is not None, f"{url}: {response.status_code} is not documented"
            media = response.headers["content-type"].split(";")[0]
            schema = declared["content"][media]["schema"]
            assert errors(response.json(), schema, doc) == [], url
            seen.add((template, response.status_code))
    # The calls above reached the success and the failure answers of every kind of path.
    assert {status for _, status in seen} >= {200, 400, 404, 500}
    assert ("/api/cost-tracking/run-summary/{jobId}", 200) in seen
    assert ("/api/jobs", 200) in seen and ("/api/telemetry/schema", 200) in seen


def test_the_checker_refuses_what_the_document_forbids(client: httpx.Client) -> None:
    from .openapi_check import errors

    doc = client.get("/api/openapi.json").json()
    report = client.get("/api/cost-tracking/run-summary/job-cost1").json()
    schema = {"$ref": "#/components/schemas/RunCostReport"}
    assert errors(report, schema, doc) == []
    assert errors({**report, "surprise": 1}, schema, doc)
    assert errors({**report, "totalCost": "free"}, schema, doc)
    assert errors({k: v for k, v in report.items() if k != "jobId"}, schema, doc)


def test_links_out_of_the_jobs_folder_are_not_followed(tmp_path: Path) -> None:
    jobs, outside = tmp_path / "jobs", tmp_path / "outside"
    put_example(outside, REFERENCE, "secret")
    put_example(jobs, ADAPTER_CASE, "job-cost1")
    (jobs / "linked").symlink_to(outside / "secret", target_is_directory=True)
    (jobs / "file-link").mkdir()
    (jobs / "file-link" / "telemetry.json").symlink_to(outside / "secret" / "telemetry.json")
    with live_server(jobs) as base, httpx.Client(base_url=base) as http:
        for job_id in ("linked", "file-link"):
            assert_problem(http.get(f"/api/telemetry/{job_id}"), 404, "Telemetry Not Found")
        assert [i["jobId"] for i in http.get("/api/jobs").json()["items"]] == ["job-cost1"]
        assert http.get("/jobs/linked/telemetry").status_code == 404
