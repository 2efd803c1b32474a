"""The pages in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright's own browser download is never used: the system Chromium is launched through
``executable_path``. Screenshots land in ``test-artifacts/`` for the CI run to keep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from aura_otel.exporter import job_trace_ids
from aura_otel.store import JobStore

from ..server_support import (
    ADAPTER_CASE,
    REFERENCE,
    REFERENCE_PASCAL,
    live_server,
    put_example,
    running_job,
    unpriced_job,
    write_doc,
    write_trace_ids,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JAEGER = "http://127.0.0.1:16686"
DEMO_JOB = "demo-browser"

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium); CI installs it",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def _run_demo(jobs_dir: Path) -> None:
    """Produce a job the way a user does: the ``aura-otel demo`` command, in its own process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys; from aura_otel.cli import main; "
        f"sys.exit(main(['demo', '--jobs-dir', {str(jobs_dir)!r}, '--job-id', {DEMO_JOB!r}, "
        "'--speed', '0.2']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert (jobs_dir / DEMO_JOB / "telemetry.json").is_file()


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    _run_demo(root)
    put_example(root, ADAPTER_CASE, "job-cost1", mtime=1_790_000_001)
    put_example(root, REFERENCE_PASCAL, "job-pascal", mtime=1_790_000_002)
    write_doc(root, unpriced_job("job-unpriced"), mtime=1_790_000_003)
    put_example(root, REFERENCE, "job-abc123", mtime=1_790_000_004)
    write_trace_ids(root, "job-abc123", ["4bf92f3577b34da6a3ce929d0e0e4736"])
    return root


@pytest.fixture(scope="module")
def base_url(jobs_dir: Path) -> Iterator[str]:
    with live_server(jobs_dir, jaeger_url=JAEGER) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("CI must install Debian's chromium for the browser tests")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.requests = []  # type: ignore[attr-defined]
    tab.errors = []  # type: ignore[attr-defined]
    tab.on("request", lambda request: tab.requests.append(request.url))  # type: ignore[attr-defined]
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))  # type: ignore[attr-defined]
    yield tab
    context.close()
    # nothing but this server was ever contacted, and no script error happened
    assert all(url.startswith(base_url) for url in tab.requests), tab.requests  # type: ignore[attr-defined]
    assert tab.errors == []  # type: ignore[attr-defined]


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def expected_cards(jobs_dir: Path, job_id: str) -> dict[str, str]:
    """The six cards computed from the file by the page's documented rules."""
    doc = orjson.loads((jobs_dir / job_id / "telemetry.json").read_bytes())
    s = doc["summary"]
    ops = s["total_operations"]
    all_unpriced = ops > 0 and all(
        (r.get("metadata") or {}).get("pricing") == "unpriced" for r in doc["records"]
    )
    return {
        "operations": f"{ops:,}",
        "success": f"{(s['successful_operations'] / ops * 100 if ops else 0):.1f}%",
        "cost": "unpriced" if all_unpriced else f"${s['total_cost']:,.4f}",
        "latency": f"{s['total_latency_ms'] / 1000:,.1f} s",
        "tokens": f"{s['total_tokens_in'] + s['total_tokens_out']:,}",
        "cache": f"{s['cache_hits']:,}",
    }


def shown_cards(page: Page) -> dict[str, str]:
    return {
        key: page.locator(f'li.card[data-card="{key}"] .card-value').inner_text().strip()
        for key in ("operations", "success", "cost", "latency", "tokens", "cache")
    }


def column_values(page: Page, column: str) -> list[str]:
    return [
        t.strip()
        for t in page.locator(f'#stage-table tbody td[data-column="{column}"]').all_inner_texts()
    ]


def money_values(texts: list[str]) -> list[float]:
    return [float(t.replace("$", "").replace(",", "")) for t in texts if t.startswith("$")]


def test_job_list_to_run_details_and_sort_by_cost(
    page: Page, base_url: str, jobs_dir: Path
) -> None:
    page.goto(f"{base_url}/jobs")
    expect(page.locator("h1")).to_have_text("Jobs")
    row = page.locator('tr[data-job-id="job-abc123"]')
    expect(row.locator(".badge")).to_have_text("Failed")
    row.get_by_role("link", name="View details of job-abc123").click()
    page.wait_for_url(f"{base_url}/jobs/job-abc123/telemetry")
    expect(page.locator("h1")).to_contain_text("Run Details · job-abc123")
    assert shown_cards(page) == expected_cards(jobs_dir, "job-abc123")
    jaeger = page.get_by_role("link", name="Open trace in Jaeger")
    assert jaeger.get_attribute("href") == f"{JAEGER}/trace/4bf92f3577b34da6a3ce929d0e0e4736"

    cost_header = page.locator('#stage-table th[data-column="cost"]')
    cost_header.locator("a").click()
    expect(cost_header).to_have_attribute("aria-sort", "ascending")
    ascending = money_values(column_values(page, "cost"))
    assert ascending == sorted(ascending) and len(ascending) == 3
    assert page.url.endswith("?sort=cost&dir=asc#stages")  # sorted in place, by the script
    cost_header.locator("a").click()
    expect(cost_header).to_have_attribute("aria-sort", "descending")
    descending = money_values(column_values(page, "cost"))
    assert descending == sorted(ascending, reverse=True)
    assert column_values(page, "stage")[0] == "visuals #0"

    # keyboard sorting: a header is a link, so Enter sorts
    page.locator('#stage-table th[data-column="latency"] a').focus()
    page.keyboard.press("Enter")
    expect(page.locator('#stage-table th[data-column="latency"]')).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert column_values(page, "latency") == ["1.50 s", "2.50 s", "5.00 s"]

    cost_header.locator("a").click()  # back to the cost order for the picture
    screenshot(page, "run-details.png")


def test_sorted_page_survives_a_reload(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/jobs/job-abc123/telemetry?sort=cost&dir=desc")
    expect(page.locator('#stage-table th[data-column="cost"]')).to_have_attribute(
        "aria-sort", "descending"
    )
    assert column_values(page, "cost") == ["$0.0500", "$0.0300", "$0.0100"]


def test_demo_job_in_the_browser(page: Page, base_url: str, jobs_dir: Path) -> None:
    page.goto(f"{base_url}/jobs")
    page.locator(f'tr[data-job-id="{DEMO_JOB}"]').get_by_role(
        "link", name=f"View details of {DEMO_JOB}"
    ).click()
    page.wait_for_url(f"{base_url}/jobs/{DEMO_JOB}/telemetry")
    assert shown_cards(page) == expected_cards(jobs_dir, DEMO_JOB)
    doc = orjson.loads((jobs_dir / DEMO_JOB / "telemetry.json").read_bytes())
    assert page.locator("#stage-table tbody tr").count() == len(doc["records"])
    assert page.locator("#timeline li").count() == len(doc["records"])
    assert page.locator("#cost-bars li").count() == len(doc["summary"]["cost_by_stage"])
    trace_ids = job_trace_ids(JobStore(jobs_dir), DEMO_JOB)  # written by the real exporter
    assert len(trace_ids) == 1
    # The demo forwards nowhere: its trace id is shown, but no backend has the trace to link to.
    expect(page.locator("code.trace-id")).to_have_text(trace_ids[0])
    expect(page.get_by_role("link", name="Open trace in Jaeger")).to_have_count(0)
    screenshot(page, "run-details-demo.png")


def test_unpriced_operations_in_the_browser(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/jobs/job-unpriced/telemetry")
    assert column_values(page, "cost") == ["$0.2500", "unpriced", "unpriced", "$0.0000"]
    expect(page.locator('li.card[data-card="cost"] .card-note')).to_have_text(
        "2 unpriced operations not included"
    )
    page.locator('#stage-table th[data-column="cost"] a').click()
    page.locator('#stage-table th[data-column="cost"] a').click()
    assert column_values(page, "cost")[-2:] == ["unpriced", "unpriced"]  # unpriced stay last


def test_running_job_refreshes_by_itself(page: Page, base_url: str, jobs_dir: Path) -> None:
    write_doc(jobs_dir, running_job("job-live"))
    page.goto(f"{base_url}/jobs/job-live/telemetry")
    expect(page.locator("#job-status")).to_have_text("Running")
    expect(page.locator("#running-notice")).to_contain_text("refreshes itself")
    put_example(jobs_dir, ADAPTER_CASE, "job-live")  # the job finishes meanwhile
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=15_000)
    expect(page.locator("#running-notice")).to_have_count(0)


def test_abandoned_job_stops_refreshing(browser: Browser, tmp_path: Path) -> None:
    """A job killed mid-run (no end, quiet for longer than the server's quiet time) is shown
    abandoned, in the list and on its page, and neither page sets itself to refresh."""
    write_doc(tmp_path, running_job("job-killed"))
    with live_server(tmp_path, abandoned_after=60) as base:
        context = browser.new_context()
        tab = context.new_page()
        tab.goto(f"{base}/jobs")
        expect(tab.locator("#jobs-table .badge")).to_have_text("Abandoned")
        expect(tab.locator("#running-notice")).to_have_count(0)
        assert tab.locator("body").get_attribute("data-refresh-seconds") is None
        tab.goto(f"{base}/jobs/job-killed/telemetry")
        expect(tab.locator("#job-status")).to_have_text("Abandoned")
        expect(tab.locator("#abandoned-notice")).to_contain_text("no longer refreshes")
        expect(tab.locator("#running-notice")).to_have_count(0)
        assert tab.locator("body").get_attribute("data-refresh-seconds") is None
        assert tab.locator('meta[http-equiv="refresh"]').count() == 0
        context.close()


def test_unknown_job_is_friendly(page: Page, base_url: str) -> None:
    response = page.goto(f"{base_url}/jobs/no-such-job/telemetry")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Job not found")
    page.get_by_role("link", name="Back to the job list").click()
    page.wait_for_url(f"{base_url}/jobs")


def test_phone_layout_has_no_sideways_scrolling(browser: Browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        phone.goto(f"{base_url}/jobs/job-abc123/telemetry")
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        expect(phone.locator('li.card[data-card="cost"] .card-value')).to_have_text("$0.0900")
        screenshot(phone, "run-details-phone.png")
    finally:
        context.close()
