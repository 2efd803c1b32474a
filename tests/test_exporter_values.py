"""The v1 sink on its own (no masking in front): no value a span can carry loses a job.

A host may wire ``RunTelemetryExporter`` without ``MaskingSpanProcessor``, so the exporter must
stand on its own against what OpenTelemetry accepts and JSON cannot hold: integers beyond 64
bits, lone surrogates (``os.fsdecode`` of a non-UTF-8 file name), NaN and infinities, absurd
timestamps, in any place of a span. Real TracerProvider, real files.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

from aura_otel import JobContextProcessor, RunTelemetryExporter
from aura_otel.fold import assemble, fold_span
from aura_otel.schema import dumps, is_safe_job_id, validation_errors

SURROGATE = os.fsdecode(b"clip-\xff.mp4")  # 'clip-\udcff.mp4'
BIG = 2**70


@dataclass
class Plain:
    """TracerProvider -> RunTelemetryExporter, nothing in between (no masking)."""

    provider: TracerProvider
    exporter: RunTelemetryExporter
    jobs_dir: Path

    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("values")

    def flush(self) -> None:
        self.provider.force_flush()
        self.exporter.force_flush()

    def read(self, job_id: str) -> dict[str, Any]:
        data = (self.jobs_dir / job_id / "telemetry.json").read_bytes()
        assert validation_errors(data) == [], data[:500]
        return orjson.loads(data)


class CountingIds(IdGenerator):
    """Unique ids without the ``random`` module, whose state Hypothesis owns during a test."""

    def __init__(self) -> None:
        self._next = iter(range(1, 2**62))

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return next(self._next) << 64


def plain(jobs_dir: Path, *, batch: bool = False, **kwargs: Any) -> Plain:
    exporter = RunTelemetryExporter(jobs_dir, write_interval=0, pricer=None, **kwargs)
    provider = TracerProvider(id_generator=CountingIds())
    provider.add_span_processor(JobContextProcessor())
    if batch:  # one export call for every span: a bad one must not cost its neighbours
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=512)
        )
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Plain(provider, exporter, jobs_dir)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Plain]:
    p = plain(tmp_path / "jobs")
    yield p
    p.provider.shutdown()


def hostile_job(p: Plain, job_id: str) -> None:
    """One job whose every field holds something JSON cannot write as given."""
    tracer = p.tracer()
    root = tracer.start_span(
        "aura.job",
        attributes={
            "aura.job.id": job_id,
            "aura.correlation.id": "corr-" + SURROGATE,
            "aura.project.id": SURROGATE,
        },
    )
    ctx = trace.set_span_in_context(root)
    s = tracer.start_span(
        "aura.stage.script " + SURROGATE,
        context=ctx,
        attributes={
            "aura.stage": "script",
            "gen_ai.provider.name": "openai" + SURROGATE,
            "gen_ai.request.model": SURROGATE,
            "gen_ai.usage.input_tokens": BIG,  # not a valid count: left out
            "gen_ai.usage.output_tokens": 12,
            "aura.cost.amount": math.inf,  # not a valid amount: left out
            "gen_ai.usage.cost": 10**400,  # beyond any float: left out too
            "aura.result.message": "wrote " + SURROGATE,
            "aura.meta.big": BIG,
            "aura.meta.negative_big": -BIG,
            "aura.meta.nan": math.nan,
            "aura.meta.inf": -math.inf,
            "aura.meta.file": SURROGATE,
            "aura.meta.list": (BIG, 1, 2),
            "aura.meta.enormous": 10**5000,  # more digits than Python will print
            "aura.meta.names": (SURROGATE, "ok"),
            "aura.meta." + SURROGATE: "key with a surrogate",
            "aura.meta_json.doc": '{"n": 1e400, "s": "x"}',
            "aura.meta_json.raw": "not json " + SURROGATE,
            "aura.meta_json.deep": "[" * 300
            + "]" * 300,  # orjson writes ~254 levels, pydantic reads ~200
            "aura.meta_json.deep_objects": '{"a":' * 200 + "1" + "}" * 200,
        },
    )
    s.add_event("note " + SURROGATE, {"detail": SURROGATE, "n": BIG})
    s.set_status(Status(StatusCode.ERROR, "failed on " + SURROGATE))
    s.add_event(
        "exception",
        {"exception.type": "mod.Err" + SURROGATE, "exception.message": "boom " + SURROGATE},
    )
    s.end()
    t = tracer.start_span(
        "aura.stage.tts",
        context=ctx,
        start_time=2**80,
        attributes={"aura.stage": "tts", "aura.retry.count": BIG},
    )
    t.end(end_time=2**81)
    root.set_status(Status(StatusCode.ERROR, SURROGATE))
    root.end()


def test_values_json_cannot_hold_cost_only_themselves(sink: Plain) -> None:
    hostile_job(sink, "hostile")
    sink.flush()
    doc = sink.read("hostile")
    script = next(r for r in doc["records"] if r["stage"] == "script")
    meta = script["metadata"]
    assert meta["big"] == str(BIG) == "1180591620717411303424"  # decimal string
    assert meta["negative_big"] == str(-BIG)
    assert meta["nan"] is None and meta["inf"] is None  # NaN and infinities: null
    assert meta["file"] == "clip-\ufffd.mp4"  # the surrogate, and only it, replaced
    assert meta["list"] == [str(BIG), 1, 2]
    assert meta["enormous"] == "[integer of 16610 bits]"
    assert meta["names"] == ["clip-\ufffd.mp4", "ok"]
    assert meta["clip-\ufffd.mp4"] == "key with a surrogate"
    assert meta["raw"] == "not json clip-\ufffd.mp4"
    deep = meta["deep"]
    for _ in range(63):
        deep = deep[0]
    assert deep == ["[nested too deeply]"]  # 64 levels kept, the rest cut
    assert "[nested too deeply]" in orjson.dumps(meta["deep_objects"]).decode()
    assert script["provider"] == "openaiclip-\ufffd.mp4"
    assert script["message"] == "wrote clip-\ufffd.mp4"
    assert (
        script["tokens_out"] == 12 and "tokens_in" not in script and "cost_estimate" not in script
    )
    tts = next(r for r in doc["records"] if r["stage"] == "tts")
    assert tts["started_at"].startswith("2262-04-11T23:47:16")  # clamped, not lost
    assert doc["correlation_id"] == "corr-clip-\ufffd.mp4"
    assert doc["summary"]["total_operations"] == 3  # script, tts, and the job's failure record
    stats = sink.exporter.stats.snapshot()
    assert stats["values_replaced"] >= 1
    assert stats["write_errors"] == stats["fold_errors"] == 0


def test_one_bad_job_in_a_batch_costs_none_of_its_neighbours(tmp_path: Path) -> None:
    p = plain(tmp_path / "jobs", batch=True)
    tracer = p.tracer()
    for n in range(20):
        with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": f"job-{n}"}):
            attrs: dict[str, Any] = {"aura.stage": "brief", "aura.meta.n": n}
            if n == 7:
                attrs["aura.meta.n"] = BIG
                attrs["aura.result.message"] = SURROGATE
            with tracer.start_as_current_span("aura.stage.brief", attributes=attrs):
                pass
    p.flush()  # the batch processor hands over all 40 spans in one export call
    for n in range(20):
        doc = p.read(f"job-{n}")
        assert doc["records"][0]["metadata"]["n"] == (str(BIG) if n == 7 else n)
    assert p.exporter.stats.snapshot()["write_errors"] == 0
    p.provider.shutdown()


def test_a_job_that_cannot_be_written_is_given_up_once_not_retried_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aura_otel")
    jobs, outside = tmp_path / "jobs", tmp_path / "outside"
    jobs.mkdir()
    outside.mkdir()
    (jobs / "doomed").symlink_to(outside, target_is_directory=True)  # can never be written
    p = plain(jobs, give_up_after=0)
    tracer = p.tracer()
    with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": "doomed"}):
        with tracer.start_as_current_span("aura.stage.brief", attributes={"aura.stage": "brief"}):
            pass
    with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": "fine"}):
        pass
    for _ in range(6):
        p.exporter.force_flush()
    stats = p.exporter.stats.snapshot()
    assert stats["jobs_abandoned"] == 1
    assert stats["write_errors"] == 3  # three attempts, then no more
    assert p.exporter.pending_jobs() == 0
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "gave up" in r.getMessage())
    ) == 1
    assert list(outside.iterdir()) == []
    p.read("fine")
    p.provider.shutdown()


@pytest.mark.parametrize(
    "bad",
    [
        "job\u0085x",
        "job\u200bx",
        "job\u202ex",
        "job\u2028x",
        "job\ue000x",
        os.fsdecode(b"job-\xff"),
        "\u20ac" * 128,
        "../escape",
    ],
)
def test_unsafe_ids_are_rejected_up_front_counted_and_nothing_is_written(
    sink: Plain, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aura_otel")
    tracer = sink.tracer()
    with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": bad}):
        with tracer.start_as_current_span("aura.stage.brief", attributes={"aura.stage": "brief"}):
            pass
    sink.flush()
    assert sink.exporter.stats.snapshot()["spans_rejected_job_id"] == 2
    assert sink.exporter.stats.snapshot()["write_errors"] == 0
    assert not sink.jobs_dir.exists() or list(sink.jobs_dir.iterdir()) == []
    assert not (sink.jobs_dir.parent / "escape").exists()
    assert "nothing written" in caplog.text


# -- Hypothesis: arbitrary values, names and events, no masking in front -------------------------
#: Any text, lone surrogates included (Hypothesis leaves them out unless asked).
_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    )
)
_scalars = st.one_of(
    _text,
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=2**63, max_value=2**1100),
    st.integers(min_value=-(2**1100), max_value=-(2**63)),
)
# What the SDK accepts: a scalar or a homogeneous sequence of one scalar type.
_values = st.one_of(
    _scalars,
    st.integers(min_value=0, max_value=400).map(lambda d: "[" * d + "]" * d),  # JSON, nested
    st.lists(_text, max_size=4).map(tuple),
    st.lists(st.integers(), max_size=4).map(tuple),
    st.lists(st.floats(), max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4).map(tuple),
)
_contract_keys = st.sampled_from(
    [
        "aura.stage",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.prompt_tokens",
        "aura.cost.amount",
        "aura.cost.currency",
        "aura.result.status",
        "aura.result.message",
        "error.type",
        "aura.selection.source",
        "aura.fallback.reason",
        "aura.cache.hit",
        "aura.retry.count",
        "aura.scene.index",
        "aura.usage.characters",
        "aura.usage.images",
        "aura.usage.image_size",
        "aura.usage.output_seconds",
        "aura.correlation.id",
        "aura.project.id",
    ]
)
_keys = st.one_of(
    _contract_keys,
    _text.filter(bool).map(lambda k: "aura.meta." + k),
    _text.filter(bool).map(lambda k: "aura.meta_json." + k),
    _text.filter(bool),
)
_attributes = st.dictionaries(_keys, _values, max_size=8)
_events = st.lists(
    st.tuples(
        st.one_of(st.just("exception"), _text),
        st.dictionaries(
            st.one_of(st.sampled_from(["exception.type", "exception.message"]), _text.filter(bool)),
            _values,
            max_size=3,
        ),
    ),
    max_size=3,
)
_stage_spans = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["aura.stage.script", "aura.stage.tts", "aura.job"]), _text),
        st.sampled_from(["script", "tts", "visuals", "Render", "bogus"]),
        _attributes,
        _events,
        st.one_of(st.none(), _text),
        st.one_of(st.none(), st.integers(min_value=1, max_value=2**90)),
    ),
    min_size=1,
    max_size=4,
)


def _emit(
    tracer: trace.Tracer, job_id: str, spans: list[tuple[Any, ...]], root_status: str | None
) -> None:
    root = tracer.start_span("aura.job", attributes={"aura.job.id": job_id})
    ctx = trace.set_span_in_context(root)
    for name, stage_name, attrs, events, status, start in spans:
        span = tracer.start_span(
            name,
            context=ctx,
            start_time=start,
            attributes={"aura.stage": stage_name, **attrs, "aura.job.id": job_id},
        )
        for event_name, event_attrs in events:
            span.add_event(event_name, event_attrs)
        if status is not None:
            span.set_status(Status(StatusCode.ERROR, status))
        span.end()
    if root_status is not None:
        root.set_status(Status(StatusCode.ERROR, root_status))
    root.end()


_fuzz = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_fuzz
@given(spans=_stage_spans, root_status=st.one_of(st.none(), _text))
def test_fuzz_the_fold_always_gives_a_valid_file(
    spans: list[tuple[Any, ...]], root_status: str | None
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aura_otel.values import representable

    memory = InMemorySpanExporter()
    provider = TracerProvider(id_generator=CountingIds())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _emit(provider.get_tracer("fuzz"), "fuzz-job", spans, root_status)
    units = {}
    for span in memory.get_finished_spans():
        folded = fold_span(span)
        assert folded is not None and folded.job_id == "fuzz-job"
        units[folded.span_id] = folded.unit
    doc = assemble("fuzz-job", units)
    try:
        data = dumps(doc)
    except orjson.JSONEncodeError:
        data = dumps(representable(doc))  # what the exporter does when a value cannot be written
    assert validation_errors(data) == []


_counter = iter(range(10**9))


@_fuzz
@given(
    spans=_stage_spans, root_status=st.one_of(st.none(), _text), job_id=st.one_of(st.none(), _text)
)
def test_fuzz_the_v1_exporter_always_writes_a_valid_file(
    tmp_path_factory: pytest.TempPathFactory,
    spans: list[tuple[Any, ...]],
    root_status: str | None,
    job_id: str | None,
) -> None:
    p = plain(tmp_path_factory.mktemp("fuzz") / "jobs")
    try:
        job = job_id if job_id is not None else f"fuzz-{next(_counter)}"
        _emit(p.tracer(), job, spans, root_status)
        p.flush()
        stats = p.exporter.stats.snapshot()
        assert stats["write_errors"] == stats["fold_errors"] == 0
        if is_safe_job_id(job):
            doc = p.read(job)
            assert doc["job_id"] == job
            assert doc.get("collection_ended_at") is not None
        else:  # an unsafe id is refused up front (an empty one is no job): nothing is written
            refused = stats["spans_without_job"] if job == "" else stats["spans_rejected_job_id"]
            assert refused == len(spans) + 1
            assert not p.jobs_dir.exists()
    finally:
        p.provider.shutdown()


def test_a_huge_value_is_cut_so_its_job_stays_readable(sink: Plain) -> None:
    """20 MB in one attribute (no masking in front to cut it): the file stays under what the
    server parses by default, with that value cut and everything else whole."""
    from aura_otel.settings import DEFAULT_MAX_FILE_BYTES
    from aura_otel.store import JobStore

    tracer = sink.tracer()
    with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": "huge"}):
        with tracer.start_as_current_span(
            "aura.stage.script",
            attributes={
                "aura.stage": "script",
                "aura.meta.log": "x" * 20_000_000,
                "aura.meta.small": "kept",
                "aura.result.message": "done",
            },
        ):
            pass
    sink.flush()
    path = sink.jobs_dir / "huge" / "telemetry.json"
    assert path.stat().st_size < DEFAULT_MAX_FILE_BYTES
    record = sink.read("huge")["records"][0]
    assert (
        record["metadata"]["log"].endswith(" [TRUNCATED]")
        and len(record["metadata"]["log"]) == 65536
    )
    assert record["metadata"]["small"] == "kept" and record["message"] == "done"
    JobStore(sink.jobs_dir, max_file_bytes=DEFAULT_MAX_FILE_BYTES).read("huge")  # the server's read
