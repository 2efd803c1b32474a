"""OTLP forwarding: what it costs the application thread, with a live or a dead backend.

Ratios against the bare OpenTelemetry SDK measured in the same run (a TracerProvider with a
BatchSpanProcessor and an exporter that does nothing). The application's time is the time its
own thread spends making the spans; exports run on background threads as in production.

- counting: ForwardingSpanProcessor (counted drops, bounded waits) vs the bare BatchSpanProcessor.
- black hole: forwarding to an OTLP/HTTP endpoint that accepts connections and never answers.
  The bare SDK with the same dead endpoint is measured too: any batch queue that holds spans
  for a backend that never answers costs the application some garbage-collection time (the
  queued spans are live objects); forwarding must cost no more than that, and never wait.
- configure(): the whole aura-otel pipeline with a black-holed endpoint vs the same without
  any endpoint.

Each scenario runs in a fresh process. Run: python benchmarks/bench_forwarding.py [--jobs N]
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from aura_otel import configure
from aura_otel.forwarding import ForwardingSpanProcessor

STAGES = ("brief", "plan", "script", "ssml", "tts", "visuals", "render", "post")
REPEATS = 5


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def run_jobs(provider: TracerProvider, n_jobs: int, offset: int = 0) -> None:
    tracer = provider.get_tracer("bench")
    for n in range(n_jobs):
        job_id = f"bench-{offset}-{n}"
        with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": job_id}):
            for stage in STAGES:
                with tracer.start_as_current_span(
                    f"aura.stage.{stage}",
                    attributes={
                        "aura.job.id": job_id,
                        "aura.stage": stage,
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 1200,
                        "gen_ai.usage.output_tokens": 800,
                        "aura.meta.topic": "How solar panels work",
                    },
                ):
                    pass


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class BlackHole:
    """A loopback port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


def app_time(make: Callable[[], tuple[TracerProvider, Callable[[], None]]], n_jobs: int) -> float:
    """Median application-thread time over REPEATS fresh pipelines."""
    samples = []
    for repeat in range(REPEATS):
        provider, stop = make()
        samples.append(timed(lambda p=provider, r=repeat: run_jobs(p, n_jobs, r)))
        stop()
    return statistics.median(samples)


def scenarios(
    hole: BlackHole, tmp: Path
) -> dict[str, Callable[[], tuple[TracerProvider, Callable[[], None]]]]:
    def sdk(
        exporter: Callable[[], SpanExporter],
    ) -> Callable[[], tuple[TracerProvider, Callable[[], None]]]:
        def make() -> tuple[TracerProvider, Callable[[], None]]:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(exporter()))
            return provider, lambda: None  # the bare SDK's shutdown would wait for the black hole

        return make

    def forwarding(
        exporter: Callable[[], SpanExporter],
    ) -> Callable[[], tuple[TracerProvider, Callable[[], None]]]:
        def make() -> tuple[TracerProvider, Callable[[], None]]:
            provider = TracerProvider()
            provider.add_span_processor(
                ForwardingSpanProcessor(exporter(), shutdown_timeout_millis=100)
            )
            return provider, provider.shutdown

        return make

    def pipeline(endpoint: str | None) -> Callable[[], tuple[TracerProvider, Callable[[], None]]]:
        def make() -> tuple[TracerProvider, Callable[[], None]]:
            telemetry = configure(
                tmp / f"jobs-{time.monotonic_ns()}",
                tracer_provider=TracerProvider(),
                set_global=False,
                propagate_threads=False,
                otlp_endpoint=endpoint,
                metrics=False,
                otlp_shutdown_timeout=0.1,
                pricing=False,
            )
            assert telemetry.tracer_provider is not None
            return telemetry.tracer_provider, telemetry.shutdown

        return make

    def dead() -> SpanExporter:
        return OTLPSpanExporter(endpoint=f"{hole.endpoint}/v1/traces", timeout=30)

    return {
        "sdk-null": sdk(NullExporter),
        "sdk-black-hole": sdk(dead),
        "forwarding-null": forwarding(NullExporter),
        "forwarding-black-hole": forwarding(dead),
        "configure-no-endpoint": pipeline(None),
        "configure-black-hole": pipeline(hole.endpoint),
    }


LABELS = {
    "sdk-null": "bare SDK: BatchSpanProcessor, null exporter",
    "sdk-black-hole": "bare SDK: BatchSpanProcessor, black-holed OTLP",
    "forwarding-null": "ForwardingSpanProcessor, null exporter",
    "forwarding-black-hole": "ForwardingSpanProcessor, black-holed OTLP",
    "configure-no-endpoint": "configure(), no endpoint",
    "configure-black-hole": "configure(), black-holed endpoint",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the dead backend makes every run log its losses
    if args.scenario:
        hole = BlackHole()
        make = scenarios(hole, Path(tempfile.mkdtemp(prefix="aura-bench-")))[args.scenario]
        print(app_time(make, args.jobs))
        hole.close()
        return 0
    # Each scenario in a fresh process: a dead backend's stuck threads and queued spans must
    # not weigh on the next measurement.
    results = {}
    for name in LABELS:
        out = subprocess.run(
            [sys.executable, __file__, "--jobs", str(args.jobs), "--scenario", name],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        results[name] = float(out.stdout.strip().splitlines()[-1])
    base = results["sdk-null"]
    spans = args.jobs * (len(STAGES) + 1)
    print(
        f"{args.jobs} jobs ({spans} spans) per run; application-thread time, median of {REPEATS} runs"
    )
    for name, label in LABELS.items():
        print(f"{label:48s} {results[name] * 1e3:8.1f} ms  {results[name] / base:5.2f}x")
    print(
        f"forwarding vs bare SDK, same dead backend:       "
        f"{results['forwarding-black-hole'] / results['sdk-black-hole']:5.2f}x"
    )
    print(
        f"configure(): dead endpoint vs no endpoint:       "
        f"{results['configure-black-hole'] / results['configure-no-endpoint']:5.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
