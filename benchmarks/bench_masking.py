"""Masking cost, measured against the bare OpenTelemetry SDK in the same run.

Run: ``python benchmarks/bench_masking.py``. Prints

- text throughput of ``Masker.mask_text`` in MB/s: clean prose (the common case), prose full
  of near misses (``max_tokens=``, ``keyframe_count:``: candidates the post-filters reject), and
  prose with a secret every ~1 KB;
- the cost of a typical stage span (15 short attributes, one event; ``_common.stage_attributes``)
  on a bare SDK ``TracerProvider`` with a do-nothing exporter, and the extra cost of putting
  ``MaskingSpanProcessor`` in front of that same exporter, as a ratio to the bare span;
- the same for a span that does hold a secret (the slow path);
- what the application thread pays with the default background worker (masking then runs on
  the worker, beside the application).

No thresholds: figures vary by machine; docs/masking.md reports the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from _common import NullExporter, stage_attributes, timed
from aura_otel.masking import Masker, MaskingRules, MaskingSpanProcessor

CLEAN = (
    "The render stage composed 42 scenes at 1920x1080 using gpt-4o-2024-08-06, file "
    "/var/lib/aura/jobs/3f2a/scene_04.png, job a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b. Ordinary "
    "prose about pacing, colour grading and voice-over timing follows, at 24 fps and 48 kHz. "
)
NEAR_MISS = "Settings: max_tokens=4096, keyframe_count: 12, author: Jane, design: minimal. "
SECRET = "Call failed: Authorization: Bearer ya29.a0AfH6SMBxQ9t7Lm2 rejected by the provider. "


def throughput(masker: Masker, unit: str, extra: str = "", every: int = 0) -> float:
    """MB/s over ~4 MB of text cut into values of ``max_value_length``."""
    limit = masker.rules.max_value_length
    pieces = []
    while sum(map(len, pieces)) < limit:
        pieces.append(unit)
        if every and len(pieces) % every == 0:
            pieces.append(extra)
    text = "".join(pieces)[: limit - 64]
    loops = max(1, (4 << 20) // len(text))
    seconds = statistics.median(
        timed(lambda: [masker.mask_text(text) for _ in range(loops)]) for _ in range(5)
    )
    return loops * len(text.encode()) / seconds / 1e6


def make_spans(provider: TracerProvider, n: int, secret: bool) -> None:
    tracer = provider.get_tracer("bench")
    for i in range(n):
        attrs = stage_attributes("job-2024-11-24-0001", i)
        attrs["aura.job.id"] = "job-2024-11-24-0001"
        if secret:
            attrs["aura.result.message"] = SECRET
        with tracer.start_as_current_span(
            f"aura.stage.{attrs['aura.stage']}", attributes=attrs
        ) as span:
            span.add_event("provider.response", {"http.status_code": 200, "bytes": 5120})


def per_span_us(provider: TracerProvider, n: int, secret: bool) -> float:
    return timed(lambda: make_spans(provider, n, secret)) / n * 1e6


def providers(masker: Masker, background: bool) -> tuple[TracerProvider, TracerProvider]:
    bare = TracerProvider()
    bare.add_span_processor(SimpleSpanProcessor(NullExporter()))
    masked = TracerProvider()
    masked.add_span_processor(
        MaskingSpanProcessor(
            SimpleSpanProcessor(NullExporter()),
            masker=masker,
            mask_logs=False,
            background=background,
        )
    )
    return bare, masked


def compare(
    masker: Masker, n: int, repeat: int, secret: bool, background: bool = False
) -> tuple[float, float]:
    """Synchronous masking (``background=False``) measures the masking work itself; with the
    background worker, what the application thread pays (the masking then runs beside it)."""
    bare, masked = providers(masker, background)
    per_span_us(bare, 200, secret)  # warm up
    per_span_us(masked, 200, secret)
    bare_runs, masked_runs = [], []
    for _ in range(repeat):  # interleaved: drift on a shared machine hits both alike
        bare_runs.append(per_span_us(bare, n, secret))
        masked_runs.append(per_span_us(masked, n, secret))
    return statistics.median(bare_runs), statistics.median(masked_runs)


def report(label: str, bare_us: float, masked_us: float) -> None:
    extra = masked_us - bare_us
    print(
        f"{label:<34}: bare SDK {bare_us:7.1f} us, with masking {masked_us:7.1f} us, "
        f"masking {extra:6.1f} us = {extra / bare_us:.2f}x a bare span"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    masker = Masker(MaskingRules())
    rows: list[tuple[str, Callable[[], float]]] = [
        ("clean prose", lambda: throughput(masker, CLEAN)),
        ("prose with near misses", lambda: throughput(masker, CLEAN + NEAR_MISS)),
        ("prose with a secret per ~1 KB", lambda: throughput(masker, CLEAN, SECRET, every=4)),
    ]
    for label, measure in rows:
        print(f"{'text: ' + label:<34}: {measure():8.1f} MB/s")
    report("typical stage span, clean", *compare(masker, args.spans, args.repeat, secret=False))
    report("typical stage span, one secret", *compare(masker, args.spans, args.repeat, secret=True))
    report(
        "app thread, worker on, clean",
        *compare(masker, args.spans, args.repeat, secret=False, background=True),
    )
    report(
        "app thread, worker on, one secret",
        *compare(masker, args.spans, args.repeat, secret=True, background=True),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
