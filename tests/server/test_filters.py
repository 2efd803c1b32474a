"""The job list's filters (status, date range, id search) on the API and the page, on both
stores: the same question gets the same jobs from the folder and from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..server_support import (
    ADAPTER_CASE,
    REFERENCE,
    live_server,
    put_example,
    put_file,
    running_job,
    unpriced_job,
    write_doc,
)
from .store_support import postgres_copy

DAY = 86400
#: 2026-09-01T00:00:00Z and the following days: the files' times, i.e. the jobs' updatedAt.
SEPT_1 = datetime(2026, 9, 1, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    put_example(root, REFERENCE, "render-failed-A", mtime=SEPT_1 + 0 * DAY + 60)
    put_example(root, ADAPTER_CASE, "promo_ok-1", mtime=SEPT_1 + 1 * DAY + 60)
    put_example(root, ADAPTER_CASE, "promo%ok-2", mtime=SEPT_1 + 2 * DAY + 60)
    write_doc(root, running_job("Live-Promo"), mtime=SEPT_1 + 3 * DAY + 60)
    write_doc(root, unpriced_job("warned-job"), mtime=SEPT_1 + 4 * DAY + 60)
    put_file(root, "broken-job", b'{"version": "1.0"', mtime=SEPT_1 + 5 * DAY + 60)
    return root


@pytest.fixture(scope="module")
def base(jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    target: Any = postgres_copy(request, jobs_dir) if store_kind == "postgres" else jobs_dir
    with live_server(target) as url:
        yield url


def ids(base: str, **params: Any) -> list[str]:
    answer = httpx.get(f"{base}/api/jobs", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["totalItems"] == len(body["items"]) or "pageSize" in params
    return [item["jobId"] for item in body["items"]]


def test_status_filter(base: str) -> None:
    assert ids(base, status="ok") == ["promo%ok-2", "promo_ok-1"]
    assert ids(base, status="failed") == ["render-failed-A"]
    assert ids(base, status="running") == ["Live-Promo"]
    assert ids(base, status="warn") == ["warned-job"]
    assert ids(base, status="unreadable") == ["broken-job"]
    assert ids(base, status="abandoned") == []


def test_search_by_id_is_a_case_insensitive_substring(base: str) -> None:
    assert ids(base, q="PROMO") == ["Live-Promo", "promo%ok-2", "promo_ok-1"]
    # Wildcards of SQL are plain characters here.
    assert ids(base, q="%") == ["promo%ok-2"]
    assert ids(base, q="o_o") == ["promo_ok-1"]
    assert ids(base, q="nothing-like-this") == []


def test_date_range_bounds_the_last_update(base: str) -> None:
    assert ids(base, **{"from": "2026-09-02", "to": "2026-09-03"}) == ["promo%ok-2", "promo_ok-1"]
    assert ids(base, **{"from": "2026-09-05T00:00:00Z"}) == ["broken-job", "warned-job"]
    assert ids(base, to="2026-09-01") == ["render-failed-A"]
    # Any spelling of a bare date ISO 8601 has (basic, week date) is that whole day too.
    assert ids(base, to="20260901") == ids(base, to="2026-W36-2") == ["render-failed-A"]
    assert ids(base, **{"from": "2026-09-04T02:00:00+02:00", "to": "2026-09-04"}) == ["Live-Promo"]


def test_filters_combine_with_each_other_and_with_pages(base: str) -> None:
    assert ids(base, q="promo", status="ok", **{"from": "2026-09-03"}) == ["promo%ok-2"]
    first = httpx.get(f"{base}/api/jobs", params={"q": "-", "pageSize": 2}).json()
    second = httpx.get(f"{base}/api/jobs", params={"q": "-", "pageSize": 2, "page": 2}).json()
    assert first["totalItems"] == second["totalItems"] == 6
    assert first["totalPages"] == 3
    everything = ids(base)
    assert [i["jobId"] for i in first["items"] + second["items"]] == everything[:4]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"status": "bogus"}, "status must be one of"),
        ({"from": "yesterday"}, "from must be an ISO 8601"),
        ({"to": "2026-13-01"}, "to must be an ISO 8601"),
        ({"from": "2026-09-03", "to": "2026-09-02"}, "from must be before to"),
        ({"q": "x" * 201}, "limited to 200 characters"),
    ],
)
def test_bad_filters_are_a_400_problem(base: str, params: dict[str, str], says: str) -> None:
    answer = httpx.get(f"{base}/api/jobs", params=params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert says in answer.json()["detail"]


def test_the_page_filters_and_keeps_its_filters_across_pages(base: str) -> None:
    html = httpx.get(f"{base}/jobs", params={"status": "ok"}).text
    assert 'data-job-id="promo_ok-1"' in html and 'data-job-id="promo%ok-2"' in html
    assert 'data-job-id="Live-Promo"' not in html
    assert "matching the filters" in html and 'href="/jobs">Clear filters' in html
    assert '<option value="ok" selected>' in html
    empty = httpx.get(f"{base}/jobs", params={"q": "no-such-job"}).text
    assert "No jobs match the filters" in empty
    bad = httpx.get(f"{base}/jobs", params={"from": "soon"})
    assert bad.status_code == 400 and "from must be an ISO 8601" in bad.text


def test_abandoned_is_judged_by_the_clock_on_both_stores(
    jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    target: Any = postgres_copy(request, jobs_dir) if store_kind == "postgres" else jobs_dir
    with live_server(target, abandoned_after=60) as url:
        assert ids(url, status="abandoned") == ["Live-Promo"]
        assert ids(url, status="running") == []
    # A quiet time past any calendar ("never", in practice) abandons nothing, on both stores.
    for never in (1e11, 1e15):
        with live_server(target, abandoned_after=never) as url:
            assert ids(url, status="abandoned") == []
            assert ids(url, status="running") == ["Live-Promo"]
            assert "Live-Promo" in ids(url)


def fleet_jobs(base: str, **params: Any) -> dict[str, str]:
    """The fleet view's jobs of the running job's day, with the status it gives each."""
    answer = httpx.get(
        f"{base}/api/insights",
        params={"since": "2026-11-20", "until": "2026-11-20", **params},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {
        row["jobId"]: row["status"] for row in answer.json()["charts"]["expensive_jobs"]["rows"]
    }


def test_the_fleet_view_calls_a_quiet_job_what_the_list_calls_it(
    jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """A killed job is abandoned in the fleet view too, and its status filter finds it: the
    same judgement as the list, on both stores (the file alone says running)."""
    target: Any = postgres_copy(request, jobs_dir) if store_kind == "postgres" else jobs_dir
    with live_server(target, abandoned_after=60) as url:
        assert ids(url, status="abandoned") == ["Live-Promo"]
        assert fleet_jobs(url)["Live-Promo"] == "abandoned"
        assert fleet_jobs(url, status="abandoned") == {"Live-Promo": "abandoned"}
        assert fleet_jobs(url, status="running") == {}
        page = httpx.get(f"{url}/insights", params={"since": "2026-11-20", "until": "2026-11-20"})
        assert page.status_code == 200 and "abandoned" in page.text
    with live_server(target, abandoned_after=1e15) as url:
        assert fleet_jobs(url)["Live-Promo"] == "running"
        assert fleet_jobs(url, status="running") == {"Live-Promo": "running"}


def test_the_last_day_of_the_calendar_is_a_valid_bound(base: str) -> None:
    """``to=9999-12-31`` means "up to the end of time", on the API and the page."""
    assert ids(base, to="9999-12-31") == ids(base)
    assert ids(base, **{"from": "0001-01-01", "to": "9999-12-31"}) == ids(base)
    assert httpx.get(f"{base}/jobs", params={"to": "9999-12-31"}).status_code == 200


@pytest.mark.parametrize("page", [2**62, 10**30])
def test_a_page_far_past_the_end_is_empty(base: str, page: int) -> None:
    """The folder and PostgreSQL answer alike: no rows, never a 500 (an offset past bigint)."""
    answer = httpx.get(f"{base}/api/jobs", params={"page": page})
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == [] and answer.json()["totalItems"] == 6
    assert httpx.get(f"{base}/jobs", params={"page": page}).status_code == 200
