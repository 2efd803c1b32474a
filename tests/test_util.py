"""aura_otel._util: each fast path is the one taken with the installed versions, and the public
fallback gives the same answers."""

from __future__ import annotations

import threading

import pytest
import re2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel import _util
from aura_otel.exporter import ExporterStats
from aura_otel.forwarding import ForwardingStats
from aura_otel.masking import MaskingStats


# -- counters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stats_class", [ExporterStats, ForwardingStats, MaskingStats])
def test_every_stats_class_is_one_counter_shape(stats_class: type[_util.Counters]) -> None:
    stats = stats_class()
    assert isinstance(stats, _util.Counters)
    name = stats_class._names[0]
    assert stats.add(name) == 1 and stats.add(name, 4) == 5
    snapshot = stats.snapshot()
    assert snapshot[name] == 5
    assert set(stats_class._names) <= set(snapshot)
    snapshot[name] = 0  # a copy: the host cannot change the counters
    assert stats.snapshot()[name] == 5


def test_counters_count_every_add_from_many_threads() -> None:
    class Two(_util.Counters):
        _names = ("a", "b")

    stats = Two()

    def work() -> None:
        for _ in range(2000):
            stats.add("a")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.snapshot() == {"a": 8000, "b": 0}


# -- throttled logging ---------------------------------------------------------------------------
def test_throttled_logs_the_first_then_one_in_many() -> None:
    logged = [n for n in range(1, 5001) if _util.throttled(n)]
    assert logged == [*range(1, 21), 1000, 2000, 3000, 4000, 5000]
    assert [n for n in range(1, 301) if _util.throttled(n, first=5, every=100)] == [
        1,
        2,
        3,
        4,
        5,
        100,
        200,
        300,
    ]


# -- bounded caches ------------------------------------------------------------------------------
def test_bounded_cache_never_passes_its_limit() -> None:
    cache: _util.BoundedCache[int, int] = _util.BoundedCache(3)
    for key in range(10):
        assert cache.put(key, key * 2) == key * 2
        assert len(cache) <= 3
        assert cache.get(key) == key * 2  # what was just put is always there


# -- the SDK's attributes ------------------------------------------------------------------------
def finished_span():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span(
        "s", attributes={"a": 1, "b": "two", "c": [1.5, 2.5]}
    ) as span:
        live = span
        span.add_event("e", {"x": True})
    provider.shutdown()
    return live, memory.get_finished_spans()[0]


def test_sdk_attributes_reads_the_dict_behind_the_proxy() -> None:
    live, done = finished_span()
    for span in (live, done):
        fast = _util.sdk_attributes(span)
        assert type(fast) is dict  # the fast path: no proxy
        assert fast is span._attributes._dict
        assert (
            fast == dict(_util.sdk_attributes_public(span)) == {"a": 1, "b": "two", "c": (1.5, 2.5)}
        )
    event = done.events[0]
    assert _util.sdk_attributes(event) == dict(_util.sdk_attributes_public(event)) == {"x": True}


def test_sdk_attributes_falls_back_to_the_public_view() -> None:
    class Plain:
        attributes = {"k": "v"}

    class NonRecording:
        attributes = None

    assert _util.sdk_attributes(Plain()) == {"k": "v"}
    assert _util.sdk_attributes(NonRecording()) == {}


# -- RE2 -----------------------------------------------------------------------------------------
TEXTS = [
    b"",
    b"no secret here",
    b"key sk-abcdef0123456789abcdef0123456789 end",
    b"sk-0123456789abcdef0123456789abcdef" * 3,
    "caf\u00e9 sk-ABCDEFGHIJKLMNOPQRSTUVWXYZ123456".encode(),
]


def test_re2_matcher_takes_the_binding_and_agrees_with_search() -> None:
    regex = re2.compile(rb"sk-[A-Za-z0-9]{32,}")
    fast = _util.re2_matcher(regex)
    assert fast is not None  # the installed google-re2 has the shape the fast path reads
    public = _util.re2_matcher_public(regex)
    for text in TEXTS:
        for start in range(0, len(text) + 1, 7):
            assert fast(text, start, len(text)) == public(text, start, len(text)), (text, start)


def test_re2_matcher_declines_an_object_without_the_binding() -> None:
    class Search:
        def search(self, data: bytes, pos: int = 0, endpos: int | None = None) -> None:
            return None

    assert _util.re2_matcher(Search()) is None
