"""Masking cost, measured against the bare OpenTelemetry SDK in the same run.

Run: ``python benchmarks/bench_masking.py`` (with aura-otel importable). Prints

- clean-text throughput of ``Masker.mask_text`` in MB/s (prose with no secret: the common case);
- the cost of one typical stage span (15 short attributes, one event) created and ended on a
  bare SDK ``TracerProvider`` whose processor does nothing, and the extra cost of putting
  ``MaskingSpanProcessor`` in front of that same do-nothing target, as a ratio.

No thresholds: figures vary by machine. The ratio is what docs/masking.md reports.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from aura_otel.masking import Masker, MaskingRules, MaskingSpanProcessor

PROSE = (
    "The render stage composed 42 scenes at 1920x1080 using model gpt-4o-2024-08-06; "
    "keyframe_count=12, max_tokens=4096, file /var/lib/aura/jobs/3f2a/scene_04.png. "
    "Ordinary prose about pacing, colour grading and voice-over timing follows here. "
)


class _Null(SpanProcessor):
    """A target that does nothing, so the measurement is the pipeline, not an exporter."""

    def on_end(self, span) -> None:  # noqa: ANN001
        return None


def _best(fn: Callable[[], None], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def clean_throughput(masker: Masker, size: int = 4 * 1024 * 1024) -> float:
    text = (PROSE * (size // len(PROSE) + 1))[: masker.rules.max_value_length]
    loops = max(1, size // len(text))
    seconds = _best(lambda: [masker.mask_text(text) for _ in range(loops)])
    return loops * len(text.encode()) / seconds / 1e6


def _stage_span(tracer, i: int) -> None:  # noqa: ANN001
    with tracer.start_as_current_span("aura.stage.script") as span:
        span.set_attributes({
            "aura.job.id": "job-2024-11-24-0001",
            "aura.correlation.id": "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b",
            "aura.stage": "script",
            "aura.scene.index": i % 10,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 812,
            "gen_ai.usage.output_tokens": 240,
            "aura.cache.hit": False,
            "aura.retry.count": 0,
            "aura.result.status": "ok",
            "aura.meta.prompt_version": "v7",
            "aura.meta.max_tokens": 4096,
            "aura.meta_json.options": '{"temperature": 0.7, "style": "documentary"}',
        })
        span.add_event("script.generated", {"words": 431, "language": "en"})


def per_span_seconds(provider: TracerProvider, n: int) -> float:
    tracer = provider.get_tracer("bench")
    return _best(lambda: [_stage_span(tracer, i) for i in range(n)]) / n


def main() -> None:
    masker = Masker(MaskingRules())
    mbps = clean_throughput(masker)
    n = 5000
    bare = TracerProvider()
    bare.add_span_processor(_Null())
    masked = TracerProvider()
    masked.add_span_processor(MaskingSpanProcessor(_Null(), masker=masker))
    # Interleave the two so drift (CPU frequency, other load) hits both alike.
    bare_runs, masked_runs = [], []
    for _ in range(5):
        bare_runs.append(per_span_seconds(bare, n))
        masked_runs.append(per_span_seconds(masked, n))
    bare_us = statistics.median(bare_runs) * 1e6
    masked_us = statistics.median(masked_runs) * 1e6
    extra = masked_us - bare_us
    print(f"clean text throughput          : {mbps:8.1f} MB/s")
    print(f"bare SDK stage span            : {bare_us:8.2f} us")
    print(f"same span with masking         : {masked_us:8.2f} us")
    print(f"masking cost per span          : {extra:8.2f} us  ({extra / bare_us:.2f}x a bare span)")


if __name__ == "__main__":
    main()
