"""Pricing at fold time: what the price table adds to fold + assemble, against the bare SDK.

Stage spans here carry usage but no explicit cost, with a mix of model spellings (exact,
dated, provider aliases, an unknown model), so every record goes through the table. The
ratios printed compare, in the same run: the bare OpenTelemetry SDK making the spans, fold +
assemble without a pricer, fold + assemble with the shipped table, and one first-time quote.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _common import STAGES, NullExporter, best_of, timed
from aura_otel.fold import assemble, fold_span
from aura_otel.pricing import load_price_table

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("OpenAI", "gpt-4o-2024-08-06"),
    ("azure.ai.openai", "gpt-4.1-mini"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("gcp.gemini", "gemini-2.5-flash"),
    ("mistral_ai", "mistral-large-latest"),
    ("acme", "unknown-model"),
    ("ollama", "llama3.1:8b"),
]


def make_spans(provider: TracerProvider, n_jobs: int) -> None:
    tracer = provider.get_tracer("bench")
    for j in range(n_jobs):
        job_id = f"bench-{j}"
        with tracer.start_as_current_span("aura.job", attributes={"aura.job.id": job_id}):
            for i in range(8):
                prov, model = MODELS[(i + j) % len(MODELS)]
                with tracer.start_as_current_span(
                    f"aura.stage.{STAGES[i]}",
                    attributes={
                        "aura.job.id": job_id,
                        "aura.stage": STAGES[i],
                        "gen_ai.provider.name": prov,
                        "gen_ai.response.model": model,
                        "gen_ai.usage.input_tokens": 1200 + i,
                        "gen_ai.usage.output_tokens": 300,
                        "gen_ai.usage.cache_read.input_tokens": 200,
                    },
                ):
                    pass


def main() -> int:
    n_jobs = 2000
    table = load_price_table(environ={})

    def bare() -> None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
        make_spans(provider, n_jobs)

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make_spans(provider, n_jobs)
    spans = memory.get_finished_spans()

    def fold_all(pricer: object) -> None:
        jobs: dict[str, dict] = {}
        for span in spans:
            item = fold_span(span)
            if item is not None:
                jobs.setdefault(item.job_id, {})[item.span_id] = item.unit
        for job_id, units in jobs.items():
            assemble(job_id, units, pricer=pricer)  # type: ignore[arg-type]

    sdk = best_of(lambda: timed(bare), 5)
    plain = best_of(lambda: timed(lambda: fold_all(None)), 5)
    priced = best_of(lambda: timed(lambda: fold_all(table)), 5)
    print(f"spans                          {len(spans)}")
    print(f"bare SDK (make + export)       {len(spans) / sdk:,.0f} spans/s")
    print(
        f"fold + assemble, no pricer     {len(spans) / plain:,.0f} spans/s   {plain / sdk:.2f}x the SDK's time"
    )
    print(
        f"fold + assemble, price table   {len(spans) / priced:,.0f} spans/s   {priced / sdk:.2f}x the SDK's time"
    )
    print(
        f"pricing overhead               {priced / plain:.2f}x fold + assemble without a pricer "
        "(quotes are memoised: a job's file is reassembled on every write)"
    )

    def cold() -> None:  # every usage distinct: no memoised quote helps
        for i in range(20_000):
            table.quote(
                stage="script",
                provider="OpenAI",
                model="gpt-4o-2024-08-06",
                usage={"tokens_in": 10_000 + i, "tokens_out": 300, "cached_input_tokens": 200},
            )

    per_quote = timed(cold) / 20_000
    per_span = sdk / len(spans)
    print(
        f"a first-time quote             {per_quote * 1e6:.1f} us   {per_quote / per_span:.2f}x the SDK's time per span"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
