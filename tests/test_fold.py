"""Spans -> v1: the span contract through the plain OpenTelemetry API, old names, children."""

from __future__ import annotations

from pathlib import Path

import orjson
from opentelemetry.trace import Status, StatusCode

from aura_otel.fold import assemble, fold_span
from aura_otel.schema import (
    RECORD_FIELDS,
    dumps,
    load_collection,
    parse_timestamp_ns,
    validation_errors,
)

from .conftest import Pipeline

T0 = parse_timestamp_ns("2026-11-20T10:00:00Z")


def at(iso_suffix: str) -> int:
    return parse_timestamp_ns("2026-11-20T" + iso_suffix + "Z")


def test_plain_api_spans_reproduce_the_reference_file(pipeline: Pipeline, examples: Path) -> None:
    """No aura-otel helpers: spans shaped per the contract give exactly the golden file."""
    tracer = pipeline.provider.get_tracer("plain")
    corr = "7d0c5f0e-3c4a-4e0e-9f4e-2b1d8a6c9e11"
    root = tracer.start_span(
        "aura.job",
        start_time=at("10:00:00"),
        attributes={"aura.job.id": "job-abc123", "aura.correlation.id": corr},
    )
    from opentelemetry import trace

    ctx = trace.set_span_in_context(root)
    s = tracer.start_span(
        "aura.stage.script",
        context=ctx,
        start_time=at("10:00:00.1"),
        attributes={
            "aura.stage": "script",
            "gen_ai.provider.name": "OpenAI",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 200,
            "aura.cache.hit": True,
            "aura.cost.amount": 0.01,
            "aura.result.message": "Script generated: 1200 characters",
            "aura.meta.script_length": 1200,
            "aura.meta.rag_enabled": False,
            "aura.meta.used_fallback": False,
        },
    )
    s.end(end_time=at("10:00:02.6"))
    s = tracer.start_span(
        "aura.stage.tts",
        context=ctx,
        start_time=at("10:00:02.7"),
        attributes={
            "aura.stage": "tts",
            "gen_ai.provider.name": "ElevenLabs",
            "gen_ai.request.model": "eleven_multilingual_v2",
            "aura.retry.count": 2,
            "aura.cost.amount": 0.03,
            "aura.meta.total_characters": 1200,
            "aura.meta.scene_count": 6,
            "aura.meta.voice_name": "Rachel",
        },
    )
    s.end(end_time=at("10:00:07.7"))
    s = tracer.start_span(
        "aura.stage.visuals",
        context=ctx,
        start_time=at("10:00:08"),
        attributes={
            "aura.stage": "visuals",
            "aura.scene.index": 0,
            "gen_ai.provider.name": "StableDiffusion",
            "gen_ai.request.model": "sdxl",
            "aura.cost.amount": 0.05,
            "error.type": "TIMEOUT",
        },
    )
    s.set_status(Status(StatusCode.ERROR, "Image generation timed out after 1500 ms"))
    s.end(end_time=at("10:00:09.5"))
    root.end(end_time=at("10:00:12"))
    pipeline.flush()
    written = (pipeline.jobs_dir / "job-abc123" / "telemetry.json").read_bytes()
    assert written == (examples / "reference-job.json").read_bytes()


class FakeSpan:
    """A ReadableSpan-shaped object for the pure fold (no SDK needed)."""

    def __init__(
        self,
        name,
        attrs,
        *,
        span_id,
        parent=None,
        start=T0,
        end=T0 + 1_000_000_000,
        status=None,
        events=(),
        trace_id=0xABC,
    ):
        from opentelemetry.trace import SpanContext

        self.name = name
        self.attributes = attrs
        self.context = SpanContext(trace_id, span_id, False)
        self.parent = SpanContext(trace_id, parent, False) if parent else None
        self.start_time, self.end_time = start, end
        self.status = status or Status(StatusCode.UNSET)
        self.events = list(events)


def fold_all(spans):
    units = {}
    for span in spans:
        item = fold_span(span)
        if item is not None:
            units[item.span_id] = item.unit
    return units


JOB = {"aura.job.id": "job-1", "aura.correlation.id": "c-1"}


def test_older_semconv_and_openinference_names_are_read() -> None:
    spans = [
        FakeSpan(
            "aura.stage.script",
            {
                **JOB,
                "aura.stage": "script",
                "gen_ai.system": "openai",
                "gen_ai.usage.prompt_tokens": 10,
                "gen_ai.usage.completion_tokens": 20,
                "gen_ai.usage.cost": 0.5,
            },
            span_id=2,
        ),
        FakeSpan(
            "aura.stage.plan",
            {
                **JOB,
                "aura.stage": "plan",
                "llm.provider": "anthropic",
                "llm.model_name": "claude",
                "llm.token_count.prompt": 7,
                "llm.token_count.completion": 8,
                "llm.cost.total": 0.25,
            },
            span_id=3,
            start=T0 + 5,
        ),
    ]
    recs = assemble("job-1", fold_all(spans))["records"]
    assert (
        recs[0]["provider"],
        recs[0]["tokens_in"],
        recs[0]["tokens_out"],
        recs[0]["cost_estimate"],
    ) == ("openai", 10, 20, 0.5)
    assert (
        recs[1]["provider"],
        recs[1]["model_id"],
        recs[1]["tokens_in"],
        recs[1]["cost_estimate"],
    ) == ("anthropic", "claude", 7, 0.25)


def test_response_model_wins_over_request_model() -> None:
    units = fold_all(
        [
            FakeSpan(
                "aura.stage.script",
                {
                    **JOB,
                    "aura.stage": "script",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                },
                span_id=2,
            )
        ]
    )
    assert assemble("job-1", units)["records"][0]["model_id"] == "gpt-4o-2024-08-06"


def test_genai_children_fold_into_their_stage_without_double_counting() -> None:
    stage = FakeSpan("aura.stage.script", {**JOB, "aura.stage": "script"}, span_id=2, parent=1)
    http = FakeSpan("POST", {**JOB}, span_id=3, parent=2)
    llm1 = FakeSpan(
        "chat gpt-4o",
        {
            **JOB,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
            "aura.cost.amount": 0.1,
        },
        span_id=4,
        parent=3,
    )
    llm2 = FakeSpan(
        "chat gpt-4o",
        {
            **JOB,
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 5,
            "aura.cost.amount": 0.2,
        },
        span_id=5,
        parent=2,
    )
    rec = assemble("job-1", fold_all([stage, http, llm1, llm2]))["records"]
    assert len(rec) == 1
    assert (rec[0]["tokens_in"], rec[0]["tokens_out"], rec[0]["cost_estimate"]) == (150, 15, 0.3)
    assert (rec[0]["provider"], rec[0]["model_id"]) == ("openai", "gpt-4o")

    own = FakeSpan(
        "aura.stage.script",
        {
            **JOB,
            "aura.stage": "script",
            "gen_ai.usage.input_tokens": 1,
            "gen_ai.usage.output_tokens": 2,
            "aura.cost.amount": 0.01,
            "gen_ai.provider.name": "mine",
        },
        span_id=2,
    )
    rec = assemble("job-1", fold_all([own, llm1, llm2]))["records"]
    assert (
        rec[0]["tokens_in"],
        rec[0]["tokens_out"],
        rec[0]["cost_estimate"],
        rec[0]["provider"],
    ) == (1, 2, 0.01, "mine")


def test_child_with_its_own_stage_is_a_record_of_its_own() -> None:
    parent = FakeSpan("aura.stage.visuals", {**JOB, "aura.stage": "visuals"}, span_id=2)
    child = FakeSpan(
        "aura.stage.visuals",
        {**JOB, "aura.stage": "visuals", "aura.scene.index": 1, "gen_ai.usage.input_tokens": 5},
        span_id=3,
        parent=2,
        start=T0 + 1,
    )
    recs = assemble("job-1", fold_all([parent, child]))["records"]
    assert len(recs) == 2 and "tokens_in" not in recs[0] and recs[1]["tokens_in"] == 5


def test_status_derivation_and_last_exception_message() -> None:
    from types import SimpleNamespace

    ev = lambda msg, typ="ValueError": SimpleNamespace(  # noqa: E731
        name="exception", attributes={"exception.message": msg, "exception.type": typ}
    )
    spans = [
        FakeSpan(
            "aura.stage.tts",
            {**JOB, "aura.stage": "tts"},
            span_id=2,
            status=Status(StatusCode.ERROR),
            events=[ev("first"), ev("last", "mod.Timeout")],
        ),
        FakeSpan(
            "aura.stage.tts",
            {**JOB, "aura.stage": "tts", "aura.result.status": "Warn"},
            span_id=3,
            start=T0 + 1,
        ),
        FakeSpan(
            "aura.stage.tts",
            {**JOB, "aura.stage": "tts"},
            span_id=4,
            start=T0 + 2,
            events=[ev("handled")],
        ),
    ]
    recs = assemble("job-1", fold_all(spans))["records"]
    assert (recs[0]["result_status"], recs[0]["message"], recs[0]["error_code"]) == (
        "error",
        "last",
        "Timeout",
    )
    assert recs[1]["result_status"] == "warn"
    assert recs[2]["result_status"] == "ok" and "error_code" not in recs[2]


def test_nested_metadata_round_trips_and_plain_strings_are_not_decoded() -> None:
    nested = {"scenes": [{"i": 0, "tags": ["a", "b"]}, {"i": 1, "tags": []}], "none": None}
    span = FakeSpan(
        "aura.stage.plan",
        {
            **JOB,
            "aura.stage": "plan",
            "aura.meta_json.layout": orjson.dumps(nested).decode(),
            "aura.meta.raw": '{"not": "decoded"}',
            "aura.meta.list": ("x", "y"),
            "aura.meta_json.broken": "{nope",
        },
        span_id=2,
    )
    doc = assemble("job-1", fold_all([span]))
    meta = doc["records"][0]["metadata"]
    assert meta["layout"] == nested
    assert meta["raw"] == '{"not": "decoded"}'
    assert meta["list"] == ["x", "y"]
    assert meta["broken"] == "{nope"
    assert validation_errors(dumps(doc)) == []


def test_bad_attribute_values_never_break_the_record() -> None:
    span = FakeSpan(
        "aura.stage.render",
        {
            **JOB,
            "aura.stage": "render",
            "gen_ai.usage.input_tokens": float("nan"),
            "gen_ai.usage.output_tokens": -3,
            "aura.retry.count": "two",
            "aura.cost.amount": float("inf"),
            "aura.scene.index": True,
            "aura.cache.hit": "yes",
            "aura.selection.source": "random",
            "aura.usage.output_seconds": 10**400 if False else 1e308,
        },
        span_id=2,
    )
    doc = assemble("job-1", fold_all([span]))
    rec = doc["records"][0]
    for field in (
        "tokens_in",
        "tokens_out",
        "cost_estimate",
        "scene_index",
        "cache_hit",
        "selection_source",
    ):
        assert field not in rec
    assert rec["retries"] == 0
    assert validation_errors(dumps(doc)) == []


def test_spans_without_job_id_are_not_folded() -> None:
    assert fold_span(FakeSpan("GET", {}, span_id=9)) is None


def test_unknown_stage_is_not_a_record() -> None:
    units = fold_all([FakeSpan("aura.stage.edit", {**JOB, "aura.stage": "edit"}, span_id=2)])
    assert assemble("job-1", units)["records"] == []


def test_job_failure_outside_stages_adds_the_legacy_post_record() -> None:
    root = FakeSpan(
        "aura.job",
        {**JOB, "error.type": "VALIDATION_ERROR"},
        span_id=1,
        status=Status(StatusCode.ERROR, "brief is empty"),
        end=T0 + 3_000_000_000,
    )
    ok = FakeSpan("aura.stage.brief", {**JOB, "aura.stage": "brief"}, span_id=2, parent=1)
    doc = assemble("job-1", fold_all([root, ok]))
    last = doc["records"][-1]
    assert (last["stage"], last["result_status"], last["error_code"], last["message"]) == (
        "post",
        "error",
        "VALIDATION_ERROR",
        "brief is empty",
    )
    assert doc["summary"]["failed_operations"] == 1

    root2 = FakeSpan(
        "aura.job",
        {**JOB, "error.type": "RuntimeError"},
        span_id=1,
        status=Status(StatusCode.ERROR, "boom"),
    )
    failed_stage = FakeSpan(
        "aura.stage.tts",
        {**JOB, "aura.stage": "tts"},
        span_id=2,
        parent=1,
        status=Status(StatusCode.ERROR, "boom"),
    )
    doc = assemble("job-1", fold_all([root2, failed_stage]))
    assert [r["stage"] for r in doc["records"]] == ["tts"]  # the stage already carries the error
    doc = assemble("job-1", fold_all([root2]))
    assert doc["records"][0]["error_code"] == "GENERATION_ERROR"


def test_running_job_has_no_end_and_no_summary() -> None:
    doc = assemble(
        "job-1", fold_all([FakeSpan("aura.stage.brief", {**JOB, "aura.stage": "brief"}, span_id=2)])
    )
    assert "collection_ended_at" not in doc and "summary" not in doc
    assert load_collection(dumps(doc)).collection_ended_at is None


def test_records_are_in_start_time_order() -> None:
    spans = [
        FakeSpan(
            f"aura.stage.{s}", {**JOB, "aura.stage": s}, span_id=i + 2, start=T0 + (5 - i) * 1000
        )
        for i, s in enumerate(["brief", "plan", "script"])
    ]
    assert [r["stage"] for r in assemble("job-1", fold_all(spans))["records"]] == [
        "script",
        "plan",
        "brief",
    ]


def test_assembling_again_gives_the_same_file_and_never_changes_the_units() -> None:
    """A stage's record is reused as built at fold time; a later write must still see it whole."""
    import copy

    spans = [
        FakeSpan("aura.job", {**JOB, "aura.project.id": "p-9"}, span_id=1, end=T0 + 9_000_000_000),
        FakeSpan(
            "aura.stage.script",
            {"aura.job.id": "job-1", "aura.stage": "script", "aura.cost.amount": 0.1},
            span_id=2,
            parent=1,
        ),
        FakeSpan(
            "aura.stage.tts",
            {
                **JOB,
                "aura.project.id": "p-9",
                "aura.stage": "tts",
                "aura.cost.amount": 0.2,
                "aura.meta.voice": "Rachel",
            },
            span_id=3,
            parent=1,
            start=T0 + 5,
        ),
    ]
    units = fold_all(spans)
    before = copy.deepcopy(units)
    first = assemble("job-1", units)
    # the job's ids fill the stage that had none; the one that had both is kept as it was
    assert [(r["correlation_id"], r.get("project_id")) for r in first["records"]] == [
        ("c-1", "p-9")
    ] * 2
    assert first["summary"]["total_cost"] == 0.3
    for rec in first["records"]:  # a listener scribbling on the collection it was given
        rec["metadata"] = {"changed": True}
        rec["stage"] = "post"
    assert units == before
    assert dumps(assemble("job-1", units)) == dumps(assemble("job-1", before))


def test_alias_precedence_does_not_depend_on_attribute_order() -> None:
    current, older, oldest = (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
    )
    orders = [
        (current, older, oldest),
        (oldest, older, current),
        (older, oldest, current),
        (oldest, current, older),
    ]
    for keys in orders:
        values = {current: 1, older: 2, oldest: 3}
        attrs = {**JOB, "aura.stage": "script", **{k: values[k] for k in keys}}
        rec = assemble("job-1", fold_all([FakeSpan("s", attrs, span_id=2)]))["records"][0]
        assert rec["tokens_in"] == 1, keys
        # an invalid value never hides a valid alias, whatever its rank
        attrs[current] = -5
        rec = assemble("job-1", fold_all([FakeSpan("s", attrs, span_id=2)]))["records"][0]
        assert rec["tokens_in"] == 2, keys


def test_huge_values_saturate_and_the_file_stays_valid() -> None:
    big = 2**63 - 1
    parent = FakeSpan("aura.stage.script", {**JOB, "aura.stage": "script"}, span_id=2)
    kids = [
        FakeSpan(
            "chat",
            {**JOB, "gen_ai.usage.input_tokens": big, "aura.cost.amount": 1e308},
            span_id=3 + i,
            parent=2,
        )
        for i in range(2)
    ]
    other = FakeSpan(
        "aura.stage.tts",
        {**JOB, "aura.stage": "tts", "gen_ai.usage.input_tokens": big, "aura.cost.amount": 1e308},
        span_id=9,
        start=T0 + 5,
    )
    root = FakeSpan("aura.job", dict(JOB), span_id=1, end=T0 + 10**10)
    doc = assemble("job-1", fold_all([root, parent, *kids, other]))
    assert doc["records"][0]["tokens_in"] == big
    assert doc["summary"]["total_tokens_in"] == big
    assert validation_errors(dumps(doc)) == []


def test_plain_api_ok_and_warn_records_take_their_message_from_the_contract_attribute(
    pipeline: Pipeline,
) -> None:
    """OpenTelemetry keeps a status description only for ERROR: a producer that does not use
    aura-otel's helpers says "Render completed successfully" with ``aura.result.message``."""
    from opentelemetry import trace

    tracer = pipeline.provider.get_tracer("plain")
    root = tracer.start_span("aura.job", attributes={"aura.job.id": "plain-msg"})
    ctx = trace.set_span_in_context(root)
    for stage, status, message in (
        ("render", "ok", "Render completed successfully"),
        ("tts", "warn", "voice fell back to default"),
    ):
        span = tracer.start_span(
            f"aura.stage.{stage}",
            context=ctx,
            attributes={
                "aura.stage": stage,
                "aura.result.status": status,
                "aura.result.message": message,
            },
        )
        span.set_status(Status(StatusCode.OK, "ignored: OK carries no description"))
        span.end()
    root.end()
    pipeline.flush()
    records = pipeline.read("plain-msg")["records"]
    assert [(r["result_status"], r["message"]) for r in records] == [
        ("ok", "Render completed successfully"),
        ("warn", "voice fell back to default"),
    ]


def test_the_file_does_not_depend_on_the_order_units_arrived_in() -> None:
    """Batches, receivers and journal reloads deliver a job's units in any order; one file."""
    import random

    spans = [
        # two runs of one job id; only the later root carries a correlation id
        FakeSpan("aura.job", {"aura.job.id": "job-1"}, span_id=1, end=T0 + 9_000_000_000),
        FakeSpan(
            "aura.job",
            {"aura.job.id": "job-1", "aura.correlation.id": "c-root"},
            span_id=10,
            start=T0 + 20_000_000_000,
            end=T0 + 29_000_000_000,
        ),
        FakeSpan(
            "aura.stage.script",
            {"aura.job.id": "job-1", "aura.stage": "script", "aura.correlation.id": "c-stage"},
            span_id=2,
            parent=1,
            start=T0 + 2,
        ),
    ]
    # calls whose costs sum differently in floating point in another order, and whose
    # providers differ: the stage takes the first call's, in time order
    for i, (cost, provider) in enumerate([(0.1, "a"), (0.2, "b"), (0.3, "c"), (1e-17, "d")]):
        spans.append(
            FakeSpan(
                "chat",
                {
                    "aura.job.id": "job-1",
                    "gen_ai.provider.name": provider,
                    "gen_ai.usage.input_tokens": 1,
                    "aura.cost.amount": cost,
                },
                span_id=3 + i,
                parent=2,
                start=T0 + 3 + i,
            )
        )
    units = fold_all(spans)
    expected = dumps(assemble("job-1", units))
    doc = orjson.loads(expected)
    assert doc["correlation_id"] == "c-root"
    assert doc["records"][0]["provider"] == "a"
    rng = random.Random(7)
    for _ in range(50):
        items = list(units.items())
        rng.shuffle(items)
        assert dumps(assemble("job-1", dict(items))) == expected


def test_usable_units_keeps_what_the_fold_makes_and_drops_what_it_never_would() -> None:
    from aura_otel.fold import usable_units

    from .receiver.support import demo_job_spans

    made = {}
    for span in demo_job_spans("usable-1"):
        item = fold_span(span)
        assert item is not None
        made[item.span_id] = item.unit
    assert usable_units(made) == made
    stage_id = next(sid for sid, unit in made.items() if unit.get("k") == "stage")
    broken = {
        **made,
        "00000000000000a1": {"k": "root"},  # no clock readings
        "00000000000000a2": {"k": "stage", "s": 1, "e": 2, "r": "not a record"},
        "00000000000000a3": {"k": "stage", "s": True, "e": 2, "r": made[stage_id]["r"]},
        "00000000000000a4": {
            "k": "stage",
            "s": 1,
            "e": 2,
            "r": {**made[stage_id]["r"], "tokens_in": "many"},
        },
        "00000000000000a5": ["not", "a", "unit"],
        "00000000000000a6": {**made[stage_id], "usage": 7},
        "00000000000000a7": {"s": 5, "e": 6, "k": "child", "p": stage_id, "cost": "x"},
        "00000000000000a8": {"s": 5, "e": 6, "k": "child", "p": stage_id, "tin": True},
    }
    assert usable_units(broken) == made
    assemble("usable-1", usable_units(broken))  # what is left assembles
    # A stage whose span had no correlation id: assemble completes its record from the job.
    plain = {
        sid: {**unit, "r": {k: v for k, v in unit["r"].items() if k != "correlation_id"}}
        if unit.get("k") == "stage"
        else unit
        for sid, unit in made.items()
    }
    assert usable_units(plain) == plain


def test_a_call_cost_in_another_currency_is_not_taken_for_dollars() -> None:
    """A call's explicit cost keeps its currency; amounts in two currencies make no sum."""
    from aura_otel.pricing import shipped_price_table

    stage = FakeSpan("aura.stage.script", {**JOB, "aura.stage": "script"}, span_id=2, parent=1)

    def call(span_id: int, cost: float, currency: str | None) -> FakeSpan:
        attrs = {**JOB, "gen_ai.usage.input_tokens": 10, "gen_ai.usage.cost": cost}
        if currency is not None:
            attrs["aura.cost.currency"] = currency
        return FakeSpan("chat", attrs, span_id=span_id, parent=2)

    [rec] = assemble("job-1", fold_all([stage, call(3, 0.1, "EUR"), call(4, 0.2, "EUR")]))[
        "records"
    ]
    assert (rec["cost_estimate"], rec["currency"]) == (0.3, "EUR")

    [rec] = assemble("job-1", fold_all([stage, call(3, 0.1, "EUR"), call(4, 0.2, None)]))["records"]
    assert "cost_estimate" not in rec and rec["currency"] == "USD"
    assert rec["metadata"]["pricing"] == "unpriced"

    priced = FakeSpan(
        "chat",
        {
            **JOB,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
        },
        span_id=5,
        parent=2,
    )
    units = fold_all([stage, call(3, 0.1, "EUR"), priced])
    [rec] = assemble("job-1", units, pricer=shipped_price_table())["records"]
    assert "cost_estimate" not in rec and rec["metadata"]["pricing"] == "unpriced"


def test_a_stage_with_its_own_cost_still_counts_its_calls_tokens_and_model() -> None:
    """set_cost() on the stage decides the cost only: the tokens, provider and model of the
    LLM calls under it still fill the record (the summary's token totals and provider counts
    were missing them)."""
    stage = FakeSpan(
        "aura.stage.script", {**JOB, "aura.stage": "script", "aura.cost.amount": 0.5}, span_id=2
    )
    llm = FakeSpan(
        "chat gpt-4o",
        {
            **JOB,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cache_read.input_tokens": 40,
        },
        span_id=4,
        parent=2,
    )
    [rec] = assemble("job-1", fold_all([stage, llm]))["records"]
    assert (rec["tokens_in"], rec["tokens_out"], rec["provider"], rec["model_id"]) == (
        100,
        10,
        "openai",
        "gpt-4o",
    )
    assert (rec["cost_estimate"], rec["metadata"]) == (
        0.5,
        {"cached_input_tokens": 40, "pricing": "explicit"},
    )
    assert list(rec) == [k for k in RECORD_FIELDS if k in rec]


def test_an_unpriced_record_names_no_price_table() -> None:
    """A span's aura.pricing.version names the table that produced a cost; with no cost (the
    table could not price the usage) the record must not claim one did."""
    from aura_otel.pricing import shipped_price_table

    stage = FakeSpan(
        "aura.stage.script",
        {
            **JOB,
            "aura.stage": "script",
            "aura.pricing.version": "2025.1.0",
            "gen_ai.provider.name": "acme-ai",
            "gen_ai.usage.input_tokens": 5,
        },
        span_id=2,
    )
    [rec] = assemble("job-1", fold_all([stage]), pricer=shipped_price_table())["records"]
    assert rec["metadata"] == {"pricing": "unpriced"}
    assert "cost_estimate" not in rec and "pricing_version" not in rec
