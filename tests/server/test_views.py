"""The page's view model: formatting rules and orderings from docs/run-details-page.md."""

from __future__ import annotations

import pytest

from aura_otel.schema import load_collection
from aura_otel.server import views

from ..server_support import REFERENCE, collection, record, running_job


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0.09, "$0.0900"), (1234.5, "$1,234.5000"), (0.0, "$0.0000"), (None, "N/A")],
)
def test_money(amount: float | None, text: str) -> None:
    assert views.money(amount) == text


def test_latency_and_counts() -> None:
    assert views.seconds(45_240, 1) == "45.2 s"
    assert views.seconds(2_500, 2) == "2.50 s"
    assert views.seconds(1_234_500, 1) == "1,234.5 s"
    assert views.count(7500) == "7,500"
    assert views.count(None) == "N/A"
    assert views.percent(11 / 12 * 100) == "91.7%"
    assert views.duration(300) == "5 min 00 s" and views.duration(12) == "12.0 s"
    assert views.duration(3725) == "1 h 02 min" and views.duration(None) == "N/A"


def test_job_url_quotes_the_id() -> None:
    assert views.job_url("a b?#") == "/jobs/a%20b%3F%23/telemetry"


def _rows():
    doc = collection(
        "v1",
        [
            record("v1", "tts", 0, 300, cost_estimate=0.2, provider="b"),
            record("v1", "script", 1, 100),  # no cost, no provider
            record("v1", "visuals", 2, 200, cost_estimate=0.2, provider="A", scene_index=2),
            record("v1", "brief", 3, 100, cost_estimate=0.5),
        ],
        finished_s=4,
    )
    return views.run_details(doc).rows


@pytest.mark.parametrize(
    ("column", "direction", "order"),
    [
        ("cost", "asc", [0, 2, 3, 1]),  # ties keep file order; missing last
        ("cost", "desc", [3, 0, 2, 1]),  # missing still last
        ("stage", "asc", [3, 1, 0, 2]),  # pipeline order, not alphabetical
        ("provider", "asc", [2, 0, 1, 3]),  # case-insensitive
        ("latency", "desc", [0, 2, 1, 3]),
        ("bogus", "asc", [0, 1, 2, 3]),
    ],
)
def test_sort_rows(column: str, direction: str, order: list[int]) -> None:
    rows = views.sort_rows(_rows(), column, direction)
    assert [r.position for r in rows] == order


def test_run_details_of_the_reference_job() -> None:
    details = views.run_details(
        load_collection(REFERENCE.read_bytes()), sort="cost", direction="desc"
    )
    assert [c.value for c in details.cards] == [
        "3",
        "66.7%",
        "$0.0900",
        "12.0 s",
        "9.0 s",
        "300",
        "1",
    ]
    assert [b.stage for b in details.cost_bars] == ["visuals", "tts", "script"]
    assert details.status == "failed" and details.status_label == "Failed"
    assert details.short_correlation == "7d0c5f0e…"
    assert details.providers == [("ElevenLabs", 1), ("OpenAI", 1), ("StableDiffusion", 1)]
    assert [(i.kind, i.code) for i in details.issues] == [("Failure", "TIMEOUT")]
    header = {h.column: h for h in details.headers}
    assert header["cost"].aria_sort == "descending" and "dir=asc" in header["cost"].href
    assert header["latency"].aria_sort == "none" and "dir=asc" in header["latency"].href


def test_running_job_view() -> None:
    details = views.run_details(running_job("r1"))
    assert details.running and details.finished == "still running"
    assert details.cards[0].value == "2" and details.cards[2].value == "$0.0200"
    # a running job's timeline ends at its latest record
    assert details.timeline[-1].left + details.timeline[-1].width == pytest.approx(100, abs=1e-3)


def test_zero_length_operations_stay_visible() -> None:
    doc = collection("z", [record("z", "brief", 0, 0), record("z", "post", 10, 0)], finished_s=10)
    bars = views.run_details(doc).timeline
    assert all(b.width >= views.MIN_BAR_PERCENT for b in bars)
    assert all(0 <= b.left and b.left + b.width <= 100 for b in bars)


def test_cost_bars_put_unpriced_stages_after_priced_ones() -> None:
    doc = collection(
        "u",
        [
            record("u", "brief", 0, 10, metadata={"pricing": "unpriced"}),
            record("u", "tts", 1, 10, cost_estimate=0.0),
            record("u", "script", 2, 10, cost_estimate=0.2),
            record("u", "script", 3, 10, metadata={"pricing": "unpriced"}),
        ],
        finished_s=4,
    )
    bars = views.run_details(doc).cost_bars
    assert [(b.stage, b.cost_text, b.unpriced, b.priced) for b in bars] == [
        ("script", "$0.2000", 1, 1),
        ("tts", "$0.0000", 0, 1),
        ("brief", "unpriced", 1, 0),
    ]
    assert views.run_details(doc).cards[2].note == "2 unpriced operations not included"
