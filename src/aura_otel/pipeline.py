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
import threading
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from . import _threads, budgets
from .budgets import BudgetRules
from .errors import ConfigurationError
from .exporter import DEFAULT_WRITE_INTERVAL, RunTelemetryExporter
from .forwarding import DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, ForwardingSpanProcessor, SharedDeadline
from .instrument import JobContextProcessor
from .masking import Masker, MaskingRules, MaskingSpanProcessor
from .masking.span import masked_resource
from .metrics import MetricsPipeline
from .pricing import load_price_table
from .settings import Settings, otlp_exporter, parse_seconds
from .stores import Store
from .v1path import V1SpanSink

logger = logging.getLogger("aura_otel")


def make_otlp_exporter(
    endpoint: str | None = None, protocol: str | None = None, settings: Settings | None = None
) -> SpanExporter | None:
    """An OTLP span exporter for ``endpoint`` (or the environment's), None when there is none."""
    exporter: SpanExporter | None = otlp_exporter("traces", endpoint, protocol, settings)
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
    stopped: bool = field(default=False, repr=False)

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
        self.stopped = True
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


#: The pipeline configure() built on each provider: a second call must not add another.
_configured: weakref.WeakKeyDictionary[TracerProvider, Telemetry] = weakref.WeakKeyDictionary()
_configure_lock = threading.RLock()


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
    store: str | Store | None = None,
) -> Telemetry:
    """Set up aura-otel and return its handle.

    ``jobs_dir`` defaults to ``$AURA_OTEL_JOBS_DIR``, else ``./jobs``. When a global SDK
    ``TracerProvider`` is already installed it is extended rather than replaced; pass
    ``tracer_provider`` to extend a specific one. ``OTEL_SDK_DISABLED=true`` turns everything
    into a no-op. Bad settings raise :class:`ConfigurationError` here, not at the first span;
    the environment's are checked all at once (:class:`~aura_otel.settings.Settings`), so
    one error lists every bad variable.

    OTLP forwarding and metrics are on when ``otlp_endpoint`` is given or the standard
    ``OTEL_EXPORTER_OTLP_*`` variables name an endpoint, and off (no error, no waiting)
    otherwise; ``metrics=False`` or ``OTEL_METRICS_EXPORTER=none`` keeps metrics off.
    ``otlp_shutdown_timeout`` (seconds, default 5) bounds how long flushing and exiting may
    wait for the backend. ``store`` (default ``$AURA_OTEL_STORE``) is a ``postgresql://`` URL
    or a :class:`~aura_otel.stores.Store`: jobs then go to that shared store instead of
    ``jobs_dir`` (docs/stores.md).

    Called again for a provider it already serves (the zero-code configurator ran, a module
    is imported twice), it returns the running handle with a warning rather than add a second
    pipeline that would fold and forward every span twice; after that handle's
    ``shutdown()`` it configures anew.
    """
    settings = Settings.from_env(masking=masking is None)
    if settings.sdk_disabled:
        logger.info("aura-otel: OTEL_SDK_DISABLED is set; telemetry is off")
        return Telemetry(tracer_provider=None, exporter=None, enabled=False)
    with _configure_lock:
        provider, install_global = _tracer_provider(
            tracer_provider, service_name, settings, set_global
        )
        running = _configured.get(provider)
        if running is not None and not running.stopped:
            logger.warning(
                "aura-otel: configure() was already called for this TracerProvider; the "
                "running pipeline (jobs in %s) is kept and these arguments are ignored. Call "
                "shutdown() on its handle first to configure anew.",
                running.jobs_dir,
            )
            return running
        telemetry = _configure(
            provider,
            install_global,
            settings,
            jobs_dir=jobs_dir,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol,
            enum_case=enum_case,
            masking=masking,
            prices_file=prices_file,
            pricing=pricing,
            set_global=set_global,
            propagate_threads=propagate_threads,
            write_interval=write_interval,
            metrics=metrics,
            otlp_shutdown_timeout=otlp_shutdown_timeout,
            store=store,
        )
        _configured[provider] = telemetry
        return telemetry


def _configure(
    provider: TracerProvider,
    install_global: bool,
    settings: Settings,
    *,
    jobs_dir: str | os.PathLike[str] | None,
    otlp_endpoint: str | None,
    otlp_protocol: str | None,
    enum_case: str | None,
    masking: MaskingRules | None,
    prices_file: str | os.PathLike[str] | None,
    pricing: bool,
    set_global: bool,
    propagate_threads: bool,
    write_interval: float | None,
    metrics: bool | None,
    otlp_shutdown_timeout: float | None,
    store: str | Store | None,
) -> Telemetry:
    budget_millis = _shutdown_budget_millis(otlp_shutdown_timeout)
    rules = masking if masking is not None else settings.masking_rules()
    pricer = load_price_table(prices_file or settings.prices_file) if pricing else None
    budget_rules = BudgetRules.from_env()  # a bad budgets file fails here, not at a stage
    otlp = make_otlp_exporter(otlp_endpoint, otlp_protocol, settings)
    metric_exporter = (
        None
        if metrics is False or settings.metrics_off
        else otlp_exporter("metrics", otlp_endpoint, otlp_protocol, settings)
    )
    backend_deadline = SharedDeadline()
    job_metrics = (
        MetricsPipeline(
            metric_exporter,
            # Masked as the spans' resource is: the same attributes go out with every point.
            resource=masked_resource(Masker(rules), provider.resource),
            deadline=backend_deadline,
            shutdown_timeout_millis=budget_millis,
        )
        if metric_exporter is not None
        else None
    )
    try:
        exporter = RunTelemetryExporter(
            jobs_dir if jobs_dir is not None else settings.jobs_dir,
            enum_case=enum_case if enum_case is not None else settings.enum_case,
            pricer=pricer,
            on_job_complete=job_metrics.on_job_complete if job_metrics is not None else None,
            write_interval=write_interval if write_interval is not None else DEFAULT_WRITE_INTERVAL,
            store=store
            if store is not None
            else (None if jobs_dir is not None else settings.store),
        )
    except Exception:
        if job_metrics is not None:  # a bad setting must not leave an exporting thread behind
            job_metrics.shutdown()
        raise
    # Project and month budgets read what the exporter's store holds (folder or PostgreSQL).
    budgets.install(
        budgets.Budgets(
            budget_rules,
            exporter.shared or exporter.store,
            meter_provider=job_metrics.meter_provider if job_metrics is not None else None,
        )
    )
    v1_queue, forwarding, masking_processor = _span_path(
        provider,
        exporter=exporter,
        otlp=otlp,
        rules=rules,
        deadline=backend_deadline,
        budget_millis=budget_millis,
        settings=settings,
    )
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
        otlp_budget_millis=budget_millis,
    )
    if job_metrics is not None:
        _install_metrics(telemetry, job_metrics, set_global)
    return telemetry


def _shutdown_budget_millis(otlp_shutdown_timeout: float | None) -> float:
    """The OTLP backend's budget per flush or shutdown, from seconds (default 5 s)."""
    if otlp_shutdown_timeout is None:
        return DEFAULT_SHUTDOWN_TIMEOUT_MILLIS
    if isinstance(otlp_shutdown_timeout, bool) or not isinstance(
        otlp_shutdown_timeout, int | float
    ):
        raise ConfigurationError(  # a string of digits is a mistake here, not a number
            f"otlp_shutdown_timeout must be a number of seconds >= 0, not {otlp_shutdown_timeout!r}"
        )
    return parse_seconds(otlp_shutdown_timeout, "otlp_shutdown_timeout") * 1000


def _tracer_provider(
    given: TracerProvider | None, service_name: str | None, settings: Settings, set_global: bool
) -> tuple[TracerProvider, bool]:
    """The provider to extend (given, or the global SDK one) or a new one to install."""
    if given is not None:
        return given, False
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current, False
    # service_name is the code's default; OTEL_SERVICE_NAME is the deployment's choice and
    # wins, as the standard variable promises (Resource.create alone would let the explicit
    # attribute win).
    attrs = {SERVICE_NAME: service_name} if service_name and not settings.service_name else {}
    return TracerProvider(resource=Resource.create(attrs)), set_global


def _span_path(
    provider: TracerProvider,
    *,
    exporter: RunTelemetryExporter,
    otlp: SpanExporter | None,
    rules: MaskingRules,
    deadline: SharedDeadline,
    budget_millis: float,
    settings: Settings,
) -> tuple[V1SpanSink, ForwardingSpanProcessor | None, MaskingSpanProcessor]:
    """Stamping, then masking in front of the v1 files and (with an endpoint) OTLP."""
    # The v1 files take masked spans straight from the masking worker (see aura_otel.v1path):
    # one thread, one pass, no second queue.
    v1_queue = V1SpanSink(exporter)
    targets: list[SpanProcessor] = [v1_queue]
    forwarding = None
    if otlp is not None:
        forwarding = ForwardingSpanProcessor(
            otlp,
            deadline=deadline,
            shutdown_timeout_millis=budget_millis,
            max_queue_size=settings.bsp_max_queue_size,
        )
        targets.append(forwarding)
    masking_processor = MaskingSpanProcessor(*targets, rules=rules)
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(masking_processor)
    return v1_queue, forwarding, masking_processor


def _install_metrics(telemetry: Telemetry, job_metrics: MetricsPipeline, set_global: bool) -> None:
    if set_global and not isinstance(metrics_api.get_meter_provider(), SdkMeterProvider):
        # Instrumentations (LLM SDKs, HTTP clients) record their own metrics on the global
        # provider: export them with ours unless the host installed a provider of its own.
        metrics_api.set_meter_provider(job_metrics.meter_provider)
    # Runs before the TracerProvider's own exit hook: files first, then the last metrics.
    atexit.register(telemetry.shutdown)


def _propagate_into_threads() -> None:
    """Make ``Thread`` and ``ThreadPoolExecutor`` work inherit the submitting context."""
    _threads.install()
