"""Drill-down, trace links, timeline and the fleet view in real headless Chromium.

Debian's ``chromium`` through Playwright's ``executable_path`` (never Playwright's download).
Jobs come from a real TracerProvider (drill-down, links) and from generated v1 files (fleet).
Pixels are checked by Chromium itself: a chart's screenshot is drawn on a canvas in the page
and its non-white pixels counted. Screenshots land in ``test-artifacts/`` (copied to docs/).
"""

from __future__ import annotations

import csv
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel.pricing import load_price_table

from ..conftest import make_pipeline
from ..fleet_support import steady_fleet, write_spike
from ..server_support import live_server
from .store_support import postgres_copy
from .test_browser import CHROMIUM, CHROMIUM_ARGS, screenshot
from .test_operation import _produce

pytestmark = pytest.mark.browser

if CHROMIUM is None:  # test_browser skipped the module already outside CI
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

TEMPLATE = "http://127.0.0.1:9/trace/{trace_id}"  # never visited: only the href is checked


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    steady_fleet(root)
    write_spike(root, visuals=5.0)
    forwarded = make_pipeline(root, downstream=InMemorySpanExporter(), pricer=load_price_table())
    _produce(forwarded, "job-forwarded")
    forwarded.flush()
    forwarded.provider.shutdown()
    local = make_pipeline(root, pricer=load_price_table())
    _produce(local, "job-local")
    local.flush()
    local.provider.shutdown()
    return root


@pytest.fixture(scope="module")
def base_url(jobs_dir: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The server over the folder, then over the same jobs (files and journals) copied into
    PostgreSQL: every page and download must behave alike on both stores."""
    target: Any = postgres_copy(request, jobs_dir) if store_kind == "postgres" else jobs_dir
    with live_server(target, trace_url=TEMPLATE) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _page(browser: Browser, base_url: str, **options: object) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)  # type: ignore[arg-type]
    tab = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert all(url.startswith(base_url) for url in requests), requests  # nothing external
    assert errors == []


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    yield from _page(browser, base_url)


@pytest.fixture
def no_js_page(browser: Browser, base_url: str) -> Iterator[Page]:
    yield from _page(browser, base_url, java_script_enabled=False)


def non_white_pixels(png: bytes) -> int:
    """Pixels of a screenshot that are not (near) white: the PNG decoded here (8-bit RGB or
    RGBA, as Chromium writes them), since the pages' CSP rightly refuses data: images."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    count = 0
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 255
            elif filter_type == 2:
                line[i] = (line[i] + up) & 255
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif filter_type == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        count += sum(
            1 for x in range(0, stride, channels) if min(line[x], line[x + 1], line[x + 2]) < 230
        )
        previous = line
    return count


def test_drill_down_panel_by_mouse_and_keyboard(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/jobs/job-forwarded/telemetry")
    panel = page.locator("#op-panel")
    expect(panel).to_be_hidden()
    page.locator('#stage-table a.op-link[data-op="0"]').click()
    expect(panel).to_be_visible()
    assert page.url == f"{base_url}/jobs/job-forwarded/telemetry"  # no navigation, no reload
    expect(panel.locator("#op-heading")).to_contain_text("script")
    expect(panel.locator("#op-heading")).to_be_focused()
    fields = panel.locator("#op-fields")
    expect(fields).to_contain_text("gpt-4o-2024-08-06")
    expect(fields).to_contain_text("1,200")
    expect(panel.locator("#op-calls tbody tr")).to_have_count(2)
    expect(panel.locator("#op-calls")).to_contain_text("chat gpt-4o")
    expect(panel.locator("#op-pricing")).to_contain_text("per 1M tokens")
    screenshot(page, "operation-panel.png")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator('#stage-table a.op-link[data-op="0"]')).to_be_focused()

    # Keyboard only: Tab reaches the failed stage's link, Enter opens its panel.
    link = page.locator('#stage-table a.op-link[data-op="1"]')
    link.focus()
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    expect(panel.locator("#op-error")).to_contain_text("quota exceeded")
    expect(panel.locator("pre.stack")).to_contain_text("Traceback")
    panel.get_by_role("button", name="Close").press("Enter")
    expect(panel).to_be_hidden()
    expect(link).to_be_focused()

    # The timeline bar opens the same panel.
    page.locator('#timeline a.timeline-bar[data-op="1"]').click()
    expect(panel.locator("#op-heading")).to_contain_text("tts")


def test_drill_down_without_javascript(no_js_page: Page, base_url: str) -> None:
    no_js_page.goto(f"{base_url}/jobs/job-forwarded/telemetry")
    no_js_page.locator('#stage-table a.op-link[data-op="1"]').click()
    no_js_page.wait_for_url(f"{base_url}/jobs/job-forwarded/telemetry/ops/1")
    expect(no_js_page.locator("#op-heading")).to_contain_text("tts")
    expect(no_js_page.locator("#op-error")).to_contain_text("quota exceeded")
    no_js_page.get_by_role("link", name="← previous operation").click()
    no_js_page.wait_for_url(f"{base_url}/jobs/job-forwarded/telemetry/ops/0")
    expect(no_js_page.locator("#op-calls tbody tr")).to_have_count(2)
    screenshot(no_js_page, "operation-page.png")
    # The filter form of the fleet view is a plain GET form: it works without a script too.
    no_js_page.goto(f"{base_url}/insights")
    no_js_page.locator('select[name="project"]').select_option("beta")
    no_js_page.get_by_role("button", name="Show").click()
    expect(no_js_page.locator('li.card[data-card="jobs"] .card-value')).to_have_text("40")


def test_trace_links_and_timeline(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/jobs/job-forwarded/telemetry")
    trace_id = page.locator("code.trace-id").inner_text()
    link = page.locator("a.trace-link")
    expect(link).to_have_count(1)
    assert link.get_attribute("href") == TEMPLATE.replace("{trace_id}", trace_id)
    # Ticks, durations on bars, millisecond hover text, and Elapsed beside the latency sum.
    assert page.locator("#timeline-axis .tick").count() >= 3
    expect(page.locator("#timeline .timeline-duration").first).to_have_text(
        page.locator("#timeline .timeline-duration").first.inner_text()
    )
    assert " ms" in page.locator("#timeline a.timeline-bar").first.get_attribute("title")
    expect(page.locator('li.card[data-card="elapsed"] .card-label')).to_have_text("Elapsed")
    expect(page.locator('li.card[data-card="latency"] .card-label')).to_have_text(
        "Sum of Stage Latencies"
    )
    page.goto(f"{base_url}/jobs/job-local/telemetry")
    expect(page.locator("code.trace-id")).to_have_count(1)
    expect(page.locator("a.trace-link")).to_have_count(0)


def test_fleet_charts_render_and_download(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/insights")
    charts = page.locator("svg.chart")
    assert charts.count() == 9
    for n in range(charts.count()):
        chart = charts.nth(n)
        areas = chart.locator("rect").evaluate_all(
            "rs => rs.map(r => r.getBBox().width * r.getBBox().height)"
        )
        assert areas and max(areas) > 200, n
        assert non_white_pixels(chart.screenshot()) > 500, n
    expect(page.locator("#anomaly-table")).to_contain_text("job-spike")
    screenshot(page, "insights.png")
    with page.expect_download() as info:
        page.locator('#chart-cost_by_stage a:text("CSV")').click()
    download = info.value
    assert download.suggested_filename.startswith(
        "cost_by_stage_"
    ) and download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert {r["stage"] for r in rows} == {"script", "tts", "visuals"}
    # Keyboard: the filter form is reachable and submits with Enter.
    page.locator('select[name="stage"]').select_option("tts")
    page.locator('select[name="stage"]').press("Enter")
    page.get_by_role("button", name="Show").press("Enter")
    page.wait_for_url("**stage=tts**")
    expect(page.locator("#chart-cost_by_stage svg text").first).to_have_text("tts")


def test_job_page_shows_its_anomalies(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/jobs")
    page.get_by_role("link", name="Insights").click()  # the fleet view is one click away
    page.wait_for_url(f"{base_url}/insights")
    page.locator("#anomaly-table").get_by_role("link", name="job-spike").first.click()
    page.wait_for_url(f"{base_url}/jobs/job-spike/telemetry")
    screenshot(page, "run-details-anomalies.png")
    page.goto(f"{base_url}/jobs/job-spike/telemetry")
    expect(page.locator("#job-anomalies")).to_contain_text("visuals")
    page.goto(f"{base_url}/jobs/job-d05-01/telemetry")
    expect(page.locator("#job-anomalies")).to_have_count(0)


def test_phone_layout_of_the_new_pages(browser: Browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        for path in ("/insights", "/jobs/job-forwarded/telemetry/ops/1"):
            phone.goto(f"{base_url}{path}")
            assert (
                phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
            ), path
        screenshot(phone, "insights-phone.png")
    finally:
        context.close()


def test_job_list_flags_an_anomalous_job(page: Page, base_url: str) -> None:
    """The list's badge is a link a keyboard reaches, its tooltip says why, and it opens the
    job's anomalies; an ordinary job has none."""
    page.goto(f"{base_url}/insights")  # a folder server judges the list once it read the fleet
    page.goto(f"{base_url}/jobs?q=spike")
    badge = page.locator("a.badge-anomaly")
    expect(badge).to_have_count(1)
    expect(badge).to_contain_text("anomal")
    assert "took" in (badge.get_attribute("title") or "")
    badge.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/jobs/job-spike/telemetry#job-anomalies")
    expect(page.locator("#job-anomalies")).to_be_visible()
    page.goto(f"{base_url}/jobs?q=job-d05")
    expect(page.locator("tbody tr")).not_to_have_count(0)
    expect(page.locator("a.badge-anomaly")).to_have_count(0)
