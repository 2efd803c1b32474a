"""The HTML pages as served over HTTP (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..server_support import (
    ADAPTER_CASE,
    REFERENCE,
    REFERENCE_PASCAL,
    collection,
    live_server,
    put_example,
    put_file,
    record,
    running_job,
    unpriced_job,
    write_doc,
    write_trace_ids,
)
from .store_support import postgres_copy

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
JAEGER = "http://jaeger.local:16686"


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    put_example(root, REFERENCE, "job-abc123", mtime=1_790_000_010)
    put_example(root, REFERENCE_PASCAL, "job-pascal", mtime=1_790_000_009)
    put_example(root, ADAPTER_CASE, "job-cost1", mtime=1_790_000_008)
    write_doc(root, running_job("job-running"), mtime=1_790_000_007)
    write_doc(root, unpriced_job("job-unpriced"), mtime=1_790_000_006)
    write_doc(
        root,
        collection(
            "job-xss",
            [
                record(
                    "job-xss",
                    "script",
                    0,
                    10,
                    result_status="error",
                    provider="<b>prov</b>",
                    message='<script>alert("x")</script>',
                )
            ],
            finished_s=1,
        ),
        mtime=1_790_000_005,
    )
    put_file(root, "job-broken", b'{"version": "1.0", "job_id": ', mtime=1_790_000_004)
    write_trace_ids(root, "job-abc123", [TRACE_ID])
    return root


@pytest.fixture(scope="module")
def http(jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    target: Any = postgres_copy(request, jobs_dir) if store_kind == "postgres" else jobs_dir
    with (
        live_server(target, jaeger_url=JAEGER + "/") as base,
        httpx.Client(base_url=base) as client,
    ):
        yield client


def summary_of(jobs_dir: Path, job_id: str) -> dict:
    return orjson.loads((jobs_dir / job_id / "telemetry.json").read_bytes())["summary"]


def cards(html: str) -> dict[str, str]:
    found = re.findall(
        r'<li class="card" data-card="(\w+)">\s*<span class="card-label">([^<]*)</span>'
        r'\s*<span class="card-value">([^<]*)</span>',
        html,
    )
    return {label: unescape(value) for _, label, value in found}


def stage_cells(html: str, column: str) -> list[str]:
    return [
        unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        for cell in re.findall(rf'<td data-column="{column}"[^>]*>(.*?)</td>', html, flags=re.S)
    ]


def positions(html: str) -> list[int]:
    return [int(p) for p in re.findall(r'<tr data-position="(\d+)"', html)]


# -- job list ------------------------------------------------------------------------------------
def test_job_list_page(http: httpx.Client) -> None:
    response = http.get("/jobs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    ids = re.findall(r'<tr data-job-id="([^"]+)">', html)
    assert ids == [
        "job-abc123",
        "job-pascal",
        "job-cost1",
        "job-running",
        "job-unpriced",
        "job-xss",
        "job-broken",
    ]
    for job_id in ids:
        assert f'href="/jobs/{job_id}/telemetry"' in html
    assert html.count(">View Details<") == len(ids)
    assert 'class="badge badge-failed">Failed<' in html
    assert 'class="badge badge-running">Running<' in html
    assert 'class="badge badge-ok">Succeeded<' in html
    assert 'class="badge badge-unreadable">Unreadable<' in html
    assert "$0.0900" in html and "5 min 00 s" in html
    assert 'data-refresh-seconds="5"' in html  # a job on the page is running


def test_job_list_without_running_jobs_does_not_refresh(tmp_path: Path) -> None:
    put_example(tmp_path, ADAPTER_CASE, "done")
    with live_server(tmp_path) as base:
        html = httpx.get(f"{base}/jobs").text
    assert "data-refresh-seconds" not in html and 'id="running-notice"' not in html


def test_job_list_pages_through_many_jobs(tmp_path: Path) -> None:
    for n in range(120):
        put_example(tmp_path, ADAPTER_CASE, f"job-{n:03d}", mtime=1_790_000_000 + n)
    with live_server(tmp_path) as base, httpx.Client(base_url=base) as client:
        first = client.get("/jobs").text
        assert len(re.findall(r"<tr data-job-id=", first)) == 50
        assert 'href="/jobs?page=2"' in first and "page 1 of 3" in first
        third = client.get("/jobs", params={"page": 3}).text
        assert re.findall(r'<tr data-job-id="([^"]+)">', third)[-1] == "job-000"
        assert client.get("/jobs", params={"page": "x"}).status_code == 400


def test_empty_job_list(tmp_path: Path) -> None:
    with live_server(tmp_path / "nothing-here") as base:
        html = httpx.get(f"{base}/jobs").text
        assert "No jobs" in html


# -- Run Details ---------------------------------------------------------------------------------
def test_cards_show_the_files_summary(http: httpx.Client, jobs_dir: Path) -> None:
    summary = summary_of(jobs_dir, "job-abc123")
    html = http.get("/jobs/job-abc123/telemetry").text
    ops = summary["total_operations"]
    assert cards(html) == {
        "Total Operations": str(ops),
        "Success Rate": f"{summary['successful_operations'] / ops * 100:.1f}%",
        "Total Cost": f"${summary['total_cost']:.4f}",
        "Elapsed": "12.0 s",  # collection_started_at to collection_ended_at
        "Sum of Stage Latencies": f"{summary['total_latency_ms'] / 1000:.1f} s",
        "Total Tokens": f"{summary['total_tokens_in'] + summary['total_tokens_out']:,}",
        "Cache Hits": str(summary["cache_hits"]),
    }
    assert cards(html)["Success Rate"] == "66.7%"


def test_pascal_file_renders_like_the_lowercase_one(http: httpx.Client) -> None:
    lower = http.get("/jobs/job-abc123/telemetry").text
    pascal = http.get("/jobs/job-pascal/telemetry").text
    assert cards(pascal) == cards(lower)
    assert stage_cells(pascal, "status") == stage_cells(lower, "status")


def test_stage_table(http: httpx.Client) -> None:
    html = http.get("/jobs/job-abc123/telemetry").text
    assert stage_cells(html, "stage") == ["script", "tts", "visuals #0"]
    assert stage_cells(html, "status") == ["✓ OK", "✓ OK", "✗ Error TIMEOUT"]
    assert stage_cells(html, "latency") == ["2.50 s", "5.00 s", "1.50 s"]
    assert stage_cells(html, "cost") == ["$0.0100", "$0.0300", "$0.0500"]
    assert stage_cells(html, "provider") == ["OpenAI", "ElevenLabs", "StableDiffusion"]
    assert stage_cells(html, "tokens") == ["300", "N/A", "N/A"]
    assert '<th scope="col"' in html and "<caption" in html


@pytest.mark.parametrize(
    ("column", "direction", "expected"),
    [
        ("cost", "asc", [0, 1, 2]),
        ("cost", "desc", [2, 1, 0]),
        ("latency", "desc", [1, 0, 2]),
        ("provider", "asc", [1, 0, 2]),
        ("status", "desc", [2, 0, 1]),
    ],
)
def test_table_sorts_on_the_server_without_javascript(
    http: httpx.Client, column: str, direction: str, expected: list[int]
) -> None:
    html = http.get("/jobs/job-abc123/telemetry", params={"sort": column, "dir": direction}).text
    assert positions(html) == expected
    header = re.search(rf'<th scope="col" aria-sort="(\w+)" data-column="{column}"', html)
    assert header and header.group(1) == ("ascending" if direction == "asc" else "descending")
    link = re.search(rf'data-column="{column}"[^>]*>\s*<a class="sort-link" href="([^"]+)"', html)
    assert link and f"dir={'desc' if direction == 'asc' else 'asc'}" in unescape(link.group(1))


def test_unknown_sort_is_ignored(http: httpx.Client) -> None:
    html = http.get("/jobs/job-abc123/telemetry", params={"sort": "drop table", "dir": "x"}).text
    assert positions(html) == [0, 1, 2]


def test_cost_bars_largest_first_with_share(http: httpx.Client) -> None:
    html = http.get("/jobs/job-abc123/telemetry").text
    bars = re.findall(
        r'<li class="cost-bar" data-stage="(\w+)">.*?<span class="cost-amount">([^<]+)</span>'
        r'.*?<span class="cost-share">([^<]+)</span>',
        html,
        flags=re.S,
    )
    assert bars == [
        ("visuals", "$0.0500", "55.6%"),
        ("tts", "$0.0300", "33.3%"),
        ("script", "$0.0100", "11.1%"),
    ]


def test_providers_failures_and_timeline(http: httpx.Client) -> None:
    html = http.get("/jobs/job-abc123/telemetry").text
    providers = re.search(r'<table class="providers".*?</table>', html, flags=re.S).group(0)
    assert re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td></tr>", providers) == [
        ("ElevenLabs", "1"),
        ("OpenAI", "1"),
        ("StableDiffusion", "1"),
    ]
    issues = re.search(r'<table id="issues-table">.*?</table>', html, flags=re.S).group(0)
    assert "TIMEOUT" in issues and "Image generation timed out after 1500 ms" in issues
    assert "10:00:08" in issues
    bars = re.findall(r'<rect class="bar bar-(\w+)" x="([\d.]+)" y="1" width="([\d.]+)"', html)
    # 12 s job: script 0.1 s -> 2.6 s, tts 2.7 -> 7.7, visuals 8.0 -> 9.5
    assert [(s, float(x), float(w)) for s, x, w in bars] == [
        ("ok", pytest.approx(0.1 / 12 * 100, abs=1e-3), pytest.approx(2.5 / 12 * 100, abs=1e-3)),
        ("ok", pytest.approx(2.7 / 12 * 100, abs=1e-3), pytest.approx(5 / 12 * 100, abs=1e-3)),
        ("error", pytest.approx(8 / 12 * 100, abs=1e-3), pytest.approx(1.5 / 12 * 100, abs=1e-3)),
    ]


def test_unpriced_operations_are_counted_never_zero(http: httpx.Client) -> None:
    html = http.get("/jobs/job-unpriced/telemetry").text
    assert stage_cells(html, "cost") == ["$0.2500", "unpriced", "unpriced", "$0.0000"]
    assert "2 unpriced operations not included" in html
    assert 'id="unpriced-note"' in html
    assert "Caching" in html and "$0.0750" in html  # no cache hits: 30% of 0.25
    assert "fallback model" in re.search(
        r'<table id="issues-table">.*?</table>', html, flags=re.S
    ).group(0)
    bars = dict(
        re.findall(
            r'<li class="cost-bar" data-stage="(\w+)">.*?<span class="cost-amount">([^<]+)</span>',
            html,
            flags=re.S,
        )
    )
    assert bars == {
        "script": "$0.2500",
        "render": "$0.0000",
        "tts": "unpriced",
        "visuals": "unpriced",
    }


def test_a_job_without_any_price_is_not_shown_as_free(tmp_path: Path) -> None:
    write_doc(
        tmp_path,
        collection(
            "free?",
            [
                record("free?", "tts", 0, 100, metadata={"pricing": "unpriced"}),
                record("free?", "render", 1, 100, metadata={"pricing": "unpriced"}),
            ],
            finished_s=2,
        ),
    )
    with live_server(tmp_path) as base:
        html = httpx.get(f"{base}/jobs/free%3F/telemetry").text
    assert cards(html)["Total Cost"] == "unpriced"
    assert "$0.0000" not in html


def test_running_job_says_so_and_refreshes(http: httpx.Client) -> None:
    html = http.get("/jobs/job-running/telemetry").text
    assert 'id="running-notice"' in html and "refreshes itself every 5 seconds" in html
    assert 'data-refresh-seconds="5"' in html
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    assert cards(html)["Total Operations"] == "2"  # figures so far
    finished = http.get("/jobs/job-abc123/telemetry").text
    assert "data-refresh-seconds" not in finished and "refresh" not in finished.split("</head>")[0]


def test_jaeger_link(http: httpx.Client, jobs_dir: Path) -> None:
    html = http.get("/jobs/job-abc123/telemetry").text
    assert f'href="{JAEGER}/trace/{TRACE_ID}"' in html and "Open trace in Jaeger" in html
    assert "Open trace in Jaeger" not in http.get("/jobs/job-cost1/telemetry").text  # no trace ids
    with live_server(jobs_dir) as base:  # no Jaeger configured: no link
        assert "Open trace in Jaeger" not in httpx.get(f"{base}/jobs/job-abc123/telemetry").text


def test_text_from_the_file_is_escaped(http: httpx.Client) -> None:
    html = http.get("/jobs/job-xss/telemetry").text
    assert "<script>alert" not in html and "<b>prov</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_pages_use_no_external_assets(http: httpx.Client) -> None:
    for path in ("/jobs", "/jobs/job-abc123/telemetry", "/jobs/nope/telemetry"):
        html = http.get(path).text
        for attr, value in re.findall(r'\b(src|href)="([^"]*)"', html):
            if value.startswith(JAEGER):
                continue
            assert value.startswith(("/", "?", "#")), (path, attr, value)
        assert "@import" not in html and "url(http" not in html
    css = http.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert "http" not in css.text
    js = http.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "http" not in js.text and "fetch(" not in js.text


# -- not found and errors ------------------------------------------------------------------------
def test_unknown_job_is_a_friendly_404(http: httpx.Client) -> None:
    response = http.get("/jobs/no-such-job/telemetry")
    assert response.status_code == 404
    assert "Job not found" in response.text and "no-such-job" in response.text
    assert 'href="/jobs"' in response.text and "Back to the job list" in response.text


def test_invalid_and_corrupt_jobs_are_friendly_errors(http: httpx.Client, jobs_dir: Path) -> None:
    bad = http.get("/jobs/..%2F..%2Fetc/telemetry")
    assert bad.status_code == 400 and "Not a valid job id" in bad.text
    spaced = http.get("/jobs/%20x/telemetry")
    assert spaced.status_code == 400
    broken = http.get("/jobs/job-broken/telemetry")
    assert broken.status_code == 500 and "corrupt or incomplete" in broken.text
    assert str(jobs_dir) not in broken.text and "Traceback" not in broken.text
    assert http.get("/nowhere").status_code == 404


def test_short_links_redirect(http: httpx.Client) -> None:
    response = http.get("/jobs/job-abc123")
    assert (
        response.status_code == 307 and response.headers["location"] == "/jobs/job-abc123/telemetry"
    )
    root = http.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/jobs"
