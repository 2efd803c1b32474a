"""Fold throughput: finished SDK spans -> units -> v1 collections, in spans per second.

Goal: at least 100k spans/s. The spans are real SDK ReadableSpans collected once; the timed
part is exactly what the exporter does per span and per job write (fold_span + assemble).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import best_of, run_jobs, timed  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from aura_otel import JobContextProcessor  # noqa: E402
from aura_otel.fold import assemble, fold_span  # noqa: E402

GOAL = 100_000


def main() -> int:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())  # every span carries its job id, as in use
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_jobs(provider, 2000)
    spans = memory.get_finished_spans()

    assert all("aura.job.id" in s.attributes for s in spans)

    def fold_all() -> None:
        jobs: dict[str, dict] = {}
        for span in spans:
            item = fold_span(span)
            if item is not None:
                jobs.setdefault(item.job_id, {})[item.span_id] = item.unit
        for job_id, units in jobs.items():
            assemble(job_id, units)

    elapsed = best_of(lambda: timed(fold_all), 5)
    rate = len(spans) / elapsed
    print(f"spans folded            {len(spans)}")
    print(f"fold + assemble         {rate:,.0f} spans/s   (goal {GOAL:,}) {'OK' if rate >= GOAL else 'BELOW GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
