"""The one-pass v1 wiring writes the very bytes of the old three-thread wiring.

``configure()`` used to hand masked spans to a ``BatchSpanProcessor`` whose worker folded them;
now the masking worker folds them itself (:class:`aura_otel.v1path.V1SpanSink`). Random jobs
(aliases in any order, invalid values, metadata and JSON metadata, errors and exception events,
GenAI children under HTTP spans, secrets that masking must replace, several batches, pricing on
and off) go through both wirings from one provider, and every file must match byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from aura_otel import JobContextProcessor, RunTelemetryExporter
from aura_otel.fold import Quote
from aura_otel.masking import Masker, MaskingRules, MaskingSpanProcessor
from aura_otel.v1path import V1SpanSink

T0 = 1_790_000_000_000_000_000
STAGES = ["brief", "plan", "script", "ssml", "tts", "visuals", "render", "post", "Script", "nope"]
ALIASES = {
    "provider": ["gen_ai.provider.name", "gen_ai.system", "llm.provider"],
    "model": ["gen_ai.response.model", "gen_ai.request.model", "llm.model_name"],
    "tin": ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"],
    "tout": [
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    ],
    "cost": ["aura.cost.amount", "gen_ai.usage.cost", "llm.cost.total"],
}
SECRETS = [
    "Authorization: Bearer ya29.a0AfH6SMBxQ9t7Lm2",
    "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
    "card 4111 1111 1111 1111",
    "mail jane.doe@example.com",
]


class FixedPricer:
    """Prices some models and not others, so both branches of pricing are exercised."""

    def quote(
        self, *, stage: str, provider: str | None, model: str | None, usage: Any
    ) -> Quote | None:
        if model is None or model.endswith("x"):
            return None
        tokens = (usage.get("tokens_in") or 0) + (usage.get("tokens_out") or 0)
        return Quote(amount=round(tokens * 1e-6, 9), currency="USD", version="t-1")


def _value(rng: random.Random, kind: str) -> Any:
    if kind in ("tin", "tout"):
        return rng.choice([1, 2, 10, 1200, 0, -5, 2.0, 2.5, "12", True, 2**63 - 1])
    if kind == "cost":
        return rng.choice([0.1, 0.2, 0.0123, 0, -1.0, float("nan"), "0.3", 1e308])
    return rng.choice(["openai", "anthropic", "", "gpt-4o", "sdxl-x", 7, ("a", "b")])


def _attributes(rng: random.Random, stage_like: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if stage_like:
        attrs["aura.stage"] = rng.choice(STAGES)
    for kind, keys in ALIASES.items():
        for key in rng.sample(keys, rng.randint(0, len(keys))):
            attrs[key] = _value(rng, kind)
    extras: dict[str, Any] = {
        "aura.cache.hit": rng.choice([True, False, "yes"]),
        "aura.retry.count": rng.choice([0, 2, -1]),
        "aura.scene.index": rng.choice([0, 3, 1.5]),
        "aura.result.status": rng.choice(["ok", "Error", "fallback", "weird"]),
        "aura.result.message": rng.choice(["Script generated: 1200 characters", *SECRETS]),
        "aura.selection.source": rng.choice(["primary", "Fallback", "random"]),
        "aura.fallback.reason": rng.choice(["timeout", 3]),
        "error.type": rng.choice(["TIMEOUT", ""]),
        "aura.correlation.id": rng.choice(["c-1", "c-2"]),
        "aura.project.id": "p-9",
        "aura.usage.characters": rng.choice([1200, -3]),
        "aura.usage.images": 2,
        "aura.usage.image_size": "1024x1024",
        "aura.usage.output_seconds": rng.choice([1.5, float("inf")]),
        "gen_ai.usage.cache_read.input_tokens": rng.choice([5, 0]),
        "aura.meta.voice_name": rng.choice(["Rachel", SECRETS[0]]),
        "aura.meta.scenes": ("a", "b"),
        "aura.meta.api_key": "hunter2-hunter2-hunter2",
        "aura.meta_json.plan": rng.choice(
            [
                '{"steps": [1, 2, {"x": null}]}',
                "not json {",
                '"s"',
                '{"token": "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"}',
            ]
        ),
        "http.status_code": 200,
        "unrelated.key": "value",
    }
    for key in rng.sample(sorted(extras), rng.randint(0, len(extras))):
        attrs[key] = extras[key]
    items = list(attrs.items())
    rng.shuffle(items)  # alias precedence must not depend on order
    return dict(items)


def _run_random_jobs(
    provider: TracerProvider, rng: random.Random, n_jobs: int, prefix: str, epoch: int
) -> None:
    tracer = provider.get_tracer("random")
    for j in range(n_jobs):
        clock = T0 + epoch * 10**13 + j * 10**10  # no ties between the runs of one job id
        root_attrs: dict[str, Any] = {"aura.job.id": f"{prefix}-{j}"}
        if rng.random() < 0.5:
            root_attrs["aura.correlation.id"] = f"corr-{j}"
        root = tracer.start_span("aura.job", start_time=clock, attributes=root_attrs)
        ctx = trace.set_span_in_context(root)
        for i in range(rng.randint(0, 6)):
            start = clock + (i + 1) * 10**8 + rng.randint(0, 10**6)
            stage = tracer.start_span(
                f"aura.stage.{i}",
                context=ctx,
                start_time=start,
                attributes=_attributes(rng, stage_like=rng.random() < 0.9),
            )
            inner = trace.set_span_in_context(stage)
            for k in range(rng.randint(0, 3)):  # GenAI calls, sometimes under an HTTP span
                parent_ctx = inner
                http = None
                if rng.random() < 0.4:
                    http = tracer.start_span("POST", context=inner, start_time=start + k)
                    parent_ctx = trace.set_span_in_context(http)
                child = tracer.start_span(
                    "chat",
                    context=parent_ctx,
                    start_time=start + k + 1,
                    attributes=_attributes(rng, stage_like=False),
                )
                child.end(end_time=start + k + 10**6)
                if http is not None:
                    http.end(end_time=start + k + 2 * 10**6)
            if rng.random() < 0.3:
                stage.add_event(
                    "exception",
                    {
                        "exception.type": "mod.Timeout",
                        "exception.message": rng.choice(["timed out", SECRETS[1]]),
                    },
                )
                stage.set_status(Status(StatusCode.ERROR, rng.choice(["", "failed", SECRETS[2]])))
            stage.add_event("provider.response", {"http.status_code": 200})
            stage.end(end_time=start + rng.randint(0, 5 * 10**9))
        if rng.random() < 0.2:
            root.set_status(Status(StatusCode.ERROR, rng.choice(["job failed", SECRETS[3]])))
            root.set_attribute("error.type", rng.choice(["VALIDATION_ERROR", "X"]))
        if rng.random() < 0.9:  # some jobs never end: their files say so
            root.end(end_time=clock + 9 * 10**9)


@pytest.mark.parametrize("seed", range(6))
def test_random_jobs_give_the_same_bytes_through_old_and_new_wiring(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    pricer = FixedPricer() if seed % 2 else None
    masker = Masker(MaskingRules())
    old = RunTelemetryExporter(tmp_path / "old", pricer=pricer, write_interval=0)
    new = RunTelemetryExporter(tmp_path / "new", pricer=pricer, write_interval=0)
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(
        MaskingSpanProcessor(
            BatchSpanProcessor(old, schedule_delay_millis=10), masker=masker, mask_logs=False
        )
    )
    provider.add_span_processor(
        MaskingSpanProcessor(V1SpanSink(new), masker=masker, mask_logs=False)
    )
    for batch in range(
        3
    ):  # several writes per job folder: journals are appended to, files replaced
        _run_random_jobs(provider, rng, 12, prefix=f"r{seed}-{batch % 2}", epoch=batch)
        provider.force_flush()
        old.force_flush()
        new.force_flush()
    provider.shutdown()
    old_files = sorted(
        p.relative_to(tmp_path / "old") for p in (tmp_path / "old").rglob("*") if p.is_file()
    )
    new_files = sorted(
        p.relative_to(tmp_path / "new") for p in (tmp_path / "new").rglob("*") if p.is_file()
    )
    assert old_files == new_files and old_files
    for rel in old_files:
        if rel.name == "telemetry.json":
            assert (tmp_path / "new" / rel).read_bytes() == (tmp_path / "old" / rel).read_bytes(), (
                rel
            )
    assert old.stats.snapshot()["spans_folded"] == new.stats.snapshot()["spans_folded"] > 0
    assert b"ya29.a0AfH6SMBxQ9t7Lm2" not in b"".join(
        (tmp_path / "new" / rel).read_bytes() for rel in new_files
    )


def test_a_sink_without_a_masking_worker_folds_each_span_at_once(tmp_path: Path) -> None:
    exporter = RunTelemetryExporter(tmp_path / "jobs", write_interval=0)
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(
        MaskingSpanProcessor(V1SpanSink(exporter), background=False, mask_logs=False)
    )
    with provider.get_tracer("t").start_as_current_span(
        "aura.job", attributes={"aura.job.id": "inline-1"}
    ):
        pass
    assert exporter.stats.snapshot()["spans_folded"] == 1  # no flush needed: folded in on_end
    provider.shutdown()
    assert (tmp_path / "jobs" / "inline-1" / "telemetry.json").is_file()


def test_spans_after_shutdown_are_counted_not_lost_silently(tmp_path: Path) -> None:
    exporter = RunTelemetryExporter(tmp_path / "jobs", write_interval=0)
    sink = V1SpanSink(exporter)
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(MaskingSpanProcessor(sink, background=False, mask_logs=False))
    sink.shutdown()
    with provider.get_tracer("t").start_as_current_span(
        "aura.job", attributes={"aura.job.id": "late-1"}
    ):
        pass
    assert sink.stats()["spans_dropped"] == 1
    assert not (tmp_path / "jobs" / "late-1").exists()


class _FailingBatches(V1SpanSink):
    def end_batch(self) -> None:
        raise RuntimeError("boom")


def test_a_failing_end_batch_is_counted_and_masking_goes_on(tmp_path: Path) -> None:
    exporter = RunTelemetryExporter(tmp_path / "jobs", write_interval=0)
    processor = MaskingSpanProcessor(_FailingBatches(exporter), background=False, mask_logs=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for _ in range(2):
        with provider.get_tracer("t").start_as_current_span(
            "aura.job", attributes={"aura.job.id": "fails-1"}
        ):
            pass
    assert processor.stats()["target_errors"] == 2
    provider.shutdown()
