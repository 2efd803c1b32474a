"""Instructions per span of aura-otel's pieces, for machines too loaded for stable times.

Wall and CPU times swing with whatever else the cores run; the number of instructions a piece
executes does not. Run this under valgrind twice, with 0 and with N repeats, and divide the
difference by N times the spans (1,800 by default); nothing of the setup is counted:

    for n in 0 5; do PYTHONPATH=src valgrind --tool=cachegrind --cache-sim=no \\
        --cachegrind-out-file=/dev/null python benchmarks/instructions.py fold $n; done

Pieces: ``mask`` (the masking fast path), ``fold`` (``fold_span``), ``assemble`` (per span),
``stamp`` (spans made with ``JobContextProcessor``) and ``bare`` (the same spans with a
processor that does nothing: the yardstick for ``stamp``). Not a ``bench_*`` file: ``make
bench`` does not run it, as it needs valgrind to mean anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _common import run_jobs
from aura_otel import JobContextProcessor, MaskingRules
from aura_otel.fold import assemble, fold_span
from aura_otel.masking.masker import Masker
from aura_otel.masking.span import SpanMasking


class _Nothing(SpanProcessor):
    def on_start(self, span: object, parent_context: object = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        return None


def _spans(jobs: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())  # job ids stamped, as in use
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_jobs(provider, jobs)
    return list(memory.get_finished_spans())


def _making(processor: SpanProcessor, jobs: int) -> Callable[[], None]:
    provider = TracerProvider()
    provider.add_span_processor(processor)
    rounds = iter(range(1_000_000))
    return lambda: run_jobs(provider, jobs, prefix=f"r{next(rounds)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("piece", choices=("mask", "fold", "assemble", "stamp", "bare"))
    parser.add_argument("repeat", type=int)
    parser.add_argument("--jobs", type=int, default=200, help="jobs of 9 spans (default 200)")
    args = parser.parse_args()
    run: Callable[[], None]
    if args.piece == "stamp":
        run = _making(JobContextProcessor(), args.jobs)
    elif args.piece == "bare":
        run = _making(_Nothing(), args.jobs)
    else:
        spans = _spans(args.jobs)
        if args.piece == "mask":
            masking = SpanMasking(Masker(MaskingRules()))

            def run() -> None:
                for span in spans:
                    masking.mask(span)
        elif args.piece == "fold":

            def run() -> None:
                for span in spans:
                    fold_span(span)
        else:
            jobs: dict[str, dict] = {}
            for span in spans:
                item = fold_span(span)
                if item is not None:
                    jobs.setdefault(item.job_id, {})[item.span_id] = item.unit

            def run() -> None:
                for job_id, units in jobs.items():
                    assemble(job_id, units)

    run()  # warm: caches, plans, compiled rules (counted in both runs, so not in the result)
    for _ in range(args.repeat):
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
