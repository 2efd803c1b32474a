"""GenAI metrics over OTLP: token usage, operation duration and cost, by stage/provider/model.

The numbers come from each finished job's v1 collection, as written to its file, rather than
from raw spans: a stage's tokens then include its auto-instrumented children exactly once, the
cost is the one the price table produced at fold time, and a dashboard can never disagree
with the files. They are recorded when a job ends (the writer thread, off the application's
path) and exported with the same OTLP settings as the traces.

Instruments (OpenTelemetry GenAI semantic conventions where one exists):

* ``gen_ai.client.token.usage`` histogram, ``{token}``, ``gen_ai.token.type`` = input/output,
  semconv bucket boundaries;
* ``gen_ai.client.operation.duration`` histogram, ``s``, per stage operation that names a
  provider or model, ``error.type`` on failures;
* ``aura.cost`` counter, ``USD``, the estimated cost.

All carry ``aura.stage`` and, when known, ``gen_ai.provider.name`` and ``gen_ai.request.model``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from . import conventions as c
from .figures import record_status
from .forwarding import DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, SharedDeadline, run_bounded
from .schema import ResultStatus
from .settings import otlp_exporter

logger = logging.getLogger("aura_otel")

#: Semantic-convention advice for gen_ai.client.token.usage.
TOKEN_USAGE_BUCKETS: tuple[float, ...] = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
#: Semantic-convention advice for gen_ai.client.operation.duration (seconds).
OPERATION_DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
COST_UNIT = "USD"


class JobMetrics:
    """Turns finished v1 collections into metric measurements on a meter provider."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        from . import __version__

        meter = meter_provider.get_meter("aura_otel", __version__)
        self._tokens = meter.create_histogram(
            c.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used, per stage operation.",
            explicit_bucket_boundaries_advisory=list(TOKEN_USAGE_BUCKETS),
        )
        self._duration = meter.create_histogram(
            c.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of GenAI stage operations.",
            explicit_bucket_boundaries_advisory=list(OPERATION_DURATION_BUCKETS),
        )
        self._cost = meter.create_counter(
            c.METRIC_COST,
            unit=COST_UNIT,
            description="Estimated cost of stage operations, in US dollars.",
        )
        self.skipped_currency = 0

    def record_collection(self, collection: Mapping[str, Any]) -> None:
        """Record every record of one finished job (call once per job)."""
        for record in collection.get("records") or ():
            self.record(record)

    def record(self, record: Mapping[str, Any]) -> None:
        stage = str(record.get("stage", "")).lower()
        attrs: dict[str, str] = {c.STAGE: stage}
        provider = record.get("provider")
        model = record.get("model_id")
        if provider:
            attrs[c.GEN_AI_PROVIDER_NAME] = str(provider)
        if model:
            attrs[c.GEN_AI_REQUEST_MODEL] = str(model)
        for key, token_type in (("tokens_in", "input"), ("tokens_out", "output")):
            count = record.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                self._tokens.record(count, {**attrs, c.GEN_AI_TOKEN_TYPE: token_type})
        latency = record.get("latency_ms")
        if (provider or model) and isinstance(latency, int | float) and latency >= 0:
            duration_attrs = dict(attrs)
            if record_status(record) == ResultStatus.ERROR:
                duration_attrs[c.ERROR_TYPE] = str(record.get("error_code") or "_OTHER")
            self._duration.record(latency / 1000, duration_attrs)
        cost = record.get("cost_estimate")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            if str(record.get("currency") or COST_UNIT).upper() == COST_UNIT:
                self._cost.add(float(cost), attrs)
            else:  # a counter has one unit; other currencies stay in the v1 files only
                self.skipped_currency += 1


def make_otlp_metric_exporter(
    endpoint: str | None = None, protocol: str | None = None
) -> MetricExporter | None:
    """An OTLP metric exporter, or None when no endpoint is configured (then: no metrics)."""
    exporter: MetricExporter | None = otlp_exporter("metrics", endpoint, protocol)
    return exporter


class MetricsPipeline:
    """A meter provider exporting over OTLP, whose shutdown can never hang the host's exit."""

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        resource: Resource | None = None,
        export_interval_millis: float | None = None,
        shutdown_timeout_millis: float = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS,
        deadline: SharedDeadline | None = None,
    ) -> None:
        self.exporter = exporter
        self._deadline = deadline
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=export_interval_millis
        )
        self.meter_provider = SdkMeterProvider(
            metric_readers=[reader],
            resource=resource or Resource.create(),
            shutdown_on_exit=False,  # Telemetry.shutdown stops it after the last job is written
        )
        self.recorder = JobMetrics(self.meter_provider)
        self._shutdown_timeout_millis = shutdown_timeout_millis
        self._stopped = False

    def on_job_complete(self, job_id: str, collection: Mapping[str, Any]) -> None:
        if not self._stopped:
            self.recorder.record_collection(collection)

    def _budget(self, millis: float) -> float:
        return self._deadline.remaining_millis(millis) if self._deadline is not None else millis

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        budget = self._budget(min(float(timeout_millis), self._shutdown_timeout_millis))
        return run_bounded(
            lambda: self.meter_provider.force_flush(int(budget)), budget, "metrics-flush"
        )

    def shutdown(self) -> bool:
        if self._stopped:
            return True
        self._stopped = True
        budget = self._budget(self._shutdown_timeout_millis)
        if budget <= 0:
            # The backend took the whole budget already (the trace forwarding waited for it):
            # a shutdown started now would still be talking to it, on a thread of its own,
            # while the interpreter exits, which gRPC's core answers by aborting the process.
            logger.warning(
                "aura-otel: no time was left for the OTLP metrics backend; last metrics lost"
            )
            return False
        finished = run_bounded(
            lambda: self.meter_provider.shutdown(timeout_millis=int(budget)) is None or True,
            budget,
            "metrics-shutdown",
        )
        if not finished:
            logger.warning(
                "aura-otel: the OTLP metrics backend did not answer within %gs; last metrics lost",
                budget / 1000,
            )
        return finished
