"""Instructions per span of aura-otel's pieces, for machines too loaded for stable times.

Wall and CPU times swing with whatever else the cores run; the number of instructions a piece
executes does not. Run this under valgrind twice, with 0 and with N repeats, and divide the
difference by N times the spans (1,800 by default); nothing of the setup is counted:

    for n in 0 5; do PYTHONPATH=src valgrind --tool=cachegrind --cache-sim=no \\
        --cachegrind-out-file=/dev/null python benchmarks/instructions.py fold $n; done

Pieces: ``mask`` (the masking fast path), ``fold`` (``fold_span``), ``assemble`` (per span),
``stamp`` (spans made with ``JobContextProcessor``), ``bare`` (the same spans with a
processor that does nothing: the yardstick for ``stamp``) and ``receive`` (the fold
receiver's work for OTLP requests of these spans: decode, mask, fold, write-ahead log, then
journals and files in a temporary folder; different spans in every repeat, at most 6, so
masking's memory of clean strings helps no more than it does in use). Not a ``bench_*`` file: ``make
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


def _receiving(jobs: int) -> Callable[[], None]:
    import tempfile

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from aura_otel.receiver import ReceiverConfig, create_receiver
    from aura_otel.receiver.jobs import JobBook
    from aura_otel.store import JobStore

    per = 504  # spans a request, as bench_receiver sends
    rounds = []
    for i in range(7):  # the same setup whatever the repeat count: only the runs differ
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(JobContextProcessor())
        provider.add_span_processor(SimpleSpanProcessor(memory))
        run_jobs(provider, jobs, prefix=f"r{i}")
        spans = list(memory.get_finished_spans())
        rounds.append(
            [
                encode_spans(spans[j : j + per]).SerializeToString()
                for j in range(0, len(spans), per)
            ]
        )
    folder = tempfile.mkdtemp(prefix="aura-instructions-")
    receiver = create_receiver(ReceiverConfig(jobs_dir=folder, http="127.0.0.1:0", grpc=None))
    ingestor, old = receiver.ingestor, receiver.book
    assert isinstance(old, JobBook)
    todo = iter(rounds)

    def run() -> None:
        book = JobBook(JobStore(tempfile.mkdtemp(dir=folder)), old.stats, sync=False)
        book.start()
        book._stopped.set()  # no writer thread: this thread writes, below
        ingestor.book = book
        for body in next(todo):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            ingestor.ingest(request)
        book.stop()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("piece", choices=("mask", "fold", "assemble", "stamp", "bare", "receive"))
    parser.add_argument("repeat", type=int)
    parser.add_argument("--jobs", type=int, default=200, help="jobs of 9 spans (default 200)")
    args = parser.parse_args()
    run: Callable[[], None]
    if args.piece == "stamp":
        run = _making(JobContextProcessor(), args.jobs)
    elif args.piece == "bare":
        run = _making(_Nothing(), args.jobs)
    elif args.piece == "receive":
        run = _receiving(args.jobs)
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
