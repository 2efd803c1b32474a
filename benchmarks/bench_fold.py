"""Fold cost: finished SDK spans -> units -> v1 collections, as a fraction of a bare SDK span.

Goal: fold + assemble per span at most 1/5 of a bare SDK span (15 attributes, one event,
BatchSpanProcessor), i.e. 100k spans/s on the reference machine where such a span costs
~50 us. Both are measured in the same run, so the ratio holds on any machine. The spans are
real SDK ReadableSpans (job ids stamped as in use) collected once; the timed part is exactly
what the exporter does per span (fold_span) and per job write (assemble).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _common import bare_span_seconds, run_jobs
from aura_otel import JobContextProcessor
from aura_otel.fold import assemble, fold_span

GOAL = 0.2  # fold + assemble per span, as a fraction of a bare SDK span
REFERENCE_GOAL_RATE = 100_000  # spans/s on the reference machine (bare span ~50 us)


def main() -> int:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())  # every span carries its job id, as in use
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_jobs(provider, 2000)
    spans = memory.get_finished_spans()
    assert all("aura.job.id" in s.attributes for s in spans)

    def fold_all() -> tuple[float, float]:
        start = time.perf_counter()
        jobs: dict[str, dict] = {}
        for span in spans:
            item = fold_span(span)
            if item is not None:
                jobs.setdefault(item.job_id, {})[item.span_id] = item.unit
        folded = time.perf_counter()
        for job_id, units in jobs.items():
            assemble(job_id, units)
        return folded - start, time.perf_counter() - folded

    runs = [fold_all() for _ in range(5)]
    fold_s = statistics.median(r[0] for r in runs) / len(spans)  # median: robust to a busy core
    assemble_s = statistics.median(r[1] for r in runs) / len(spans)
    per_span = fold_s + assemble_s
    bare = bare_span_seconds()
    ratio = per_span / bare
    print(f"spans folded            {len(spans)}")
    print(
        f"bare SDK span           {bare * 1e6:8.1f} us   (15 attributes, one event, BatchSpanProcessor)"
    )
    print(
        f"fold_span               {fold_s * 1e6:8.1f} us/span   {fold_s / bare:5.2f} of a bare span"
    )
    print(
        f"assemble                {assemble_s * 1e6:8.1f} us/span   {assemble_s / bare:5.2f} of a bare span"
    )
    print(
        f"fold + assemble         {per_span * 1e6:8.1f} us/span   {1 / per_span:,.0f} spans/s here"
    )
    print(
        f"ratio to a bare span    {ratio:8.2f}      (goal <= {GOAL}) {'OK' if ratio <= GOAL else 'ABOVE GOAL'}"
    )
    print(
        f"at the reference speed  {REFERENCE_GOAL_RATE * GOAL / ratio:,.0f} spans/s (bare span 50 us; goal {REFERENCE_GOAL_RATE:,})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
