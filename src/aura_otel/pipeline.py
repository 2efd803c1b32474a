"""``configure()``: one call wires the provider, stamping, masking, the v1 files and OTLP.

The span path it builds::

    TracerProvider
      ├─ JobContextProcessor           stamps aura.job.id at start (third-party spans too)
      └─ MaskingSpanProcessor          masks a copy at end; only the copy goes on
           ├─ V1SpanSink(RunTelemetryExporter)  v1 files, folded on the masking worker's turn
           └─ ForwardingSpanProcessor(OTLPSpanExporter)  when an endpoint is configured
    MeterProvider -> OTLP metric exporter                when an endpoint is configured

Forwarding is a batch queue with counted drops and failures and a bounded shutdown (see
:mod:`aura_otel.forwarding`): a dead backend never slows the host or the v1 files. Metrics
(token usage, operation duration, cost; see :mod:`aura_otel.metrics`) are recorded from each
finished job's collection and exported with the same OTLP settings.

Standard ``OTEL_*`` variables keep their meaning; aura-otel's own variables are listed in
:mod:`aura_otel.conventions`.
"""

from __future__ import annotations

import atexit
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from . import _threads
from .errors import ConfigurationError
from .exporter import RunTelemetryExporter, default_jobs_dir
from .forwarding import DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, ForwardingSpanProcessor, SharedDeadline
from .instrument import JobContextProcessor
from .masking import MaskingRules, MaskingSpanProcessor
from .metrics import MetricsPipeline, make_otlp_metric_exporter, metrics_disabled_by_env
from .pricing import load_price_table
from .settings import env_flag, otlp_exporter
from .v1path import V1SpanSink

logger = logging.getLogger("aura_otel")


def make_otlp_exporter(endpoint: str | None = None, protocol: str | None = None) -> SpanExporter | None:
    """An OTLP span exporter for ``endpoint`` (or the environment's), None when there is none."""
    exporter: SpanExporter | None = otlp_exporter("traces", endpoint, protocol)
    return exporter


@dataclass
class Telemetry:
    """What ``configure()`` set up; flush it before exit, or let ``shutdown()`` do it."""

    tracer_provider: TracerProvider | None
    exporter: RunTelemetryExporter | None
    otlp_exporter: SpanExporter | None = None
    processors: list[SpanProcessor] = field(default_factory=list)
    enabled: bool = True
    forwarding: ForwardingSpanProcessor | None = None
    metrics: MetricsPipeline | None = None
    v1_queue: V1SpanSink | ForwardingSpanProcessor | None = None
    #: Shared by OTLP forwarding and metrics: one budget for the backend per flush/shutdown.
    backend_deadline: SharedDeadline | None = None
    otlp_budget_millis: float = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS

    @property
    def jobs_dir(self) -> str | None:
        return str(self.exporter.store.root) if self.exporter else None

    def _backend_window(self, budget_millis: float) -> Any:
        if self.backend_deadline is None:
            return nullcontext()
        return self.backend_deadline.window(budget_millis)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Push every finished span through and write every pending job file now.

        Traces and metrics share one wait for the OTLP backend: at most the smaller of
        ``timeout_millis`` and ``otlp_shutdown_timeout`` in all, not that much each.
        """
        ok = True
        with self._backend_window(min(float(timeout_millis), self.otlp_budget_millis)):
            for processor in self.processors:
                ok = processor.force_flush(timeout_millis) and ok
            if self.exporter is not None:
                ok = self.exporter.force_flush(timeout_millis) and ok
            if self.metrics is not None:  # after the exporter: finished jobs record their metrics
                ok = self.metrics.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Write every job file, then stop forwarding and metrics; together they wait for the
        OTLP backend at most ``otlp_shutdown_timeout``."""
        with self._backend_window(self.otlp_budget_millis):
            for processor in self.processors:
                processor.shutdown()
            if self.exporter is not None:
                self.exporter.shutdown()
            if self.metrics is not None:
                self.metrics.shutdown()

    def stats(self) -> dict[str, Any]:
        """Counters: spans folded, ignored, rejected; files written; errors; and
        ``spans_dropped_queue_full``, spans that never reached the fold because a v1 queue was
        full (always 0 with the v1 path ``configure()`` builds, which has no queue of its own)."""
        counts: dict[str, Any] = self.exporter.stats.snapshot() if self.exporter else {}
        if self.v1_queue is not None:
            counts["spans_dropped_queue_full"] = self.v1_queue.stats()["spans_dropped"]
        return counts

    def forwarding_stats(self) -> dict[str, int]:
        """OTLP forwarding counters: spans queued, exported, failed, dropped, pending, in flight.

        Empty when no endpoint is configured. The same figures are logged at shutdown.
        """
        return self.forwarding.stats() if self.forwarding is not None else {}


def configure(
    jobs_dir: str | os.PathLike[str] | None = None,
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    enum_case: str | None = None,
    masking: MaskingRules | None = None,
    prices_file: str | os.PathLike[str] | None = None,
    pricing: bool = True,
    tracer_provider: TracerProvider | None = None,
    set_global: bool = True,
    propagate_threads: bool = True,
    write_interval: float | None = None,
    metrics: bool | None = None,
    otlp_shutdown_timeout: float | None = None,
) -> Telemetry:
    """Set up aura-otel and return its handle.

    ``jobs_dir`` defaults to ``$AURA_OTEL_JOBS_DIR``, else ``./jobs``. When a global SDK
    ``TracerProvider`` is already installed it is extended rather than replaced; pass
    ``tracer_provider`` to extend a specific one. ``OTEL_SDK_DISABLED=true`` turns everything
    into a no-op. Bad settings raise :class:`ConfigurationError` here, not at the first span.

    OTLP forwarding and metrics are on when ``otlp_endpoint`` is given or the standard
    ``OTEL_EXPORTER_OTLP_*`` variables name an endpoint, and off (no error, no waiting)
    otherwise; ``metrics=False`` or ``OTEL_METRICS_EXPORTER=none`` keeps metrics off.
    ``otlp_shutdown_timeout`` (seconds, default 5) bounds how long flushing and exiting may
    wait for the backend.
    """
    if env_flag("OTEL_SDK_DISABLED"):
        logger.info("aura-otel: OTEL_SDK_DISABLED is set; telemetry is off")
        return Telemetry(tracer_provider=None, exporter=None, enabled=False)

    if otlp_shutdown_timeout is not None and (
        isinstance(otlp_shutdown_timeout, bool)
        or not isinstance(otlp_shutdown_timeout, int | float)
        or not otlp_shutdown_timeout >= 0
    ):
        raise ConfigurationError(
            f"otlp_shutdown_timeout must be a number of seconds >= 0, not {otlp_shutdown_timeout!r}"
        )
    rules = masking if masking is not None else MaskingRules.from_env()
    pricer = load_price_table(prices_file) if pricing else None
    otlp = make_otlp_exporter(otlp_endpoint, otlp_protocol)
    metric_exporter = None
    if metrics is not False and not metrics_disabled_by_env():
        metric_exporter = make_otlp_metric_exporter(otlp_endpoint, otlp_protocol)

    provider = tracer_provider
    install_global = False
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            # service_name is the code's default; OTEL_SERVICE_NAME is the deployment's choice
            # and wins, as the standard variable promises (Resource.create alone would let the
            # explicit attribute win).
            if not os.environ.get("OTEL_SERVICE_NAME", "").strip():
                attrs = {SERVICE_NAME: service_name} if service_name else {}
            else:
                attrs = {}
            provider = TracerProvider(resource=Resource.create(attrs))
            install_global = set_global

    bounded: dict[str, Any] = (
        {"shutdown_timeout_millis": otlp_shutdown_timeout * 1000}
        if otlp_shutdown_timeout is not None
        else {}
    )
    backend_deadline = SharedDeadline()
    job_metrics = (
        MetricsPipeline(metric_exporter, resource=provider.resource, deadline=backend_deadline,
                        **bounded)
        if metric_exporter is not None
        else None
    )
    try:
        exporter = RunTelemetryExporter(
            jobs_dir if jobs_dir is not None else default_jobs_dir(),
            enum_case=enum_case,
            pricer=pricer,
            on_job_complete=job_metrics.on_job_complete if job_metrics is not None else None,
            **({"write_interval": write_interval} if write_interval is not None else {}),
        )
    except Exception:
        if job_metrics is not None:  # a bad setting must not leave an exporting thread behind
            job_metrics.shutdown()
        raise
    # The v1 files take masked spans straight from the masking worker (see aura_otel.v1path).
    v1_queue = V1SpanSink(exporter)
    targets: list[SpanProcessor] = [v1_queue]
    forwarding = (
        ForwardingSpanProcessor(otlp, deadline=backend_deadline, **bounded) if otlp is not None else None
    )
    if forwarding is not None:
        targets.append(forwarding)
    stamping = JobContextProcessor()
    masking_processor = MaskingSpanProcessor(*targets, rules=rules)
    provider.add_span_processor(stamping)
    provider.add_span_processor(masking_processor)
    if install_global:
        trace.set_tracer_provider(provider)
    if propagate_threads:
        _propagate_into_threads()
    telemetry = Telemetry(
        tracer_provider=provider,
        exporter=exporter,
        otlp_exporter=otlp,
        processors=[masking_processor],
        forwarding=forwarding,
        metrics=job_metrics,
        v1_queue=v1_queue,
        backend_deadline=backend_deadline,
        otlp_budget_millis=(
            otlp_shutdown_timeout * 1000 if otlp_shutdown_timeout is not None
            else DEFAULT_SHUTDOWN_TIMEOUT_MILLIS
        ),
    )
    if job_metrics is not None and set_global:
        # Instrumentations (LLM SDKs, HTTP clients) record their own metrics on the global
        # provider: export them with ours unless the host installed a provider of its own.
        if not isinstance(metrics_api.get_meter_provider(), SdkMeterProvider):
            metrics_api.set_meter_provider(job_metrics.meter_provider)
    if job_metrics is not None:
        # Runs before the TracerProvider's own exit hook: files first, then the last metrics.
        atexit.register(telemetry.shutdown)
    return telemetry


def _propagate_into_threads() -> None:
    """Make ``Thread`` and ``ThreadPoolExecutor`` work inherit the submitting context."""
    _threads.install()
