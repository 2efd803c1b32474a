"""OTLP forwarding that can never block or slow the host, and never loses a span silently.

The OpenTelemetry ``BatchSpanProcessor`` already keeps exports off the application's threads,
but it drops spans quietly when its queue is full and its ``shutdown`` can wait for a dead
backend (an export to a black-holed address blocks until the exporter's own timeout). This
module wraps it so that:

* ``on_end`` only appends to a bounded queue: a full queue drops the new span and counts it;
* every span handed to the exporter is counted as exported or failed (an exception counts as
  a failure and never escapes);
* ``force_flush`` and ``shutdown`` wait at most a fixed budget, then give up and count what
  was still queued as dropped, so a process exits on time whatever the backend does;
* the counters are readable at any time (:meth:`ForwardingSpanProcessor.stats`) and are
  logged once at shutdown.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from ._util import Counters, throttled
from .settings import DEFAULT_BSP_MAX_QUEUE_SIZE, bsp_max_queue_size

logger = logging.getLogger("aura_otel")

DEFAULT_MAX_QUEUE_SIZE = DEFAULT_BSP_MAX_QUEUE_SIZE
#: How long ``shutdown``/``force_flush`` may wait for the backend before giving up.
DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5_000
#: Export failures are logged more sparingly than drops: each may carry a whole batch.
_LOG_FIRST = 5


def max_queue_size_from_env() -> int:
    """``OTEL_BSP_MAX_QUEUE_SIZE``, read like the SDK reads it (bad values fall back)."""
    return bsp_max_queue_size(os.environ)


class ForwardingStats(Counters):
    """Thread-safe counters of one forwarding path."""

    _names: tuple[str, ...] = (
        "spans_queued",  # accepted into the batch queue
        "spans_exported",  # acknowledged by the backend
        "spans_failed",  # handed to the exporter, which failed (refused, timed out, raised)
        "spans_dropped",  # never handed to the exporter (queue full, or still queued at exit)
        "export_failures",  # failed export calls (each may carry many spans)
    )

    def __init__(self) -> None:
        super().__init__()
        self._handed = 0  # spans passed into exporter.export (finished or in flight)
        self._abandoned = 0  # queued spans given up at shutdown (already counted as dropped)

    def hand(self, amount: int) -> None:
        with self._lock:
            self._handed += amount

    def _pending(self) -> int:
        return max(0, self._counts["spans_queued"] - self._handed - self._abandoned)

    def try_queue(self, capacity: int) -> bool:
        """Admit one span unless ``capacity`` spans are already waiting for the exporter."""
        with self._lock:
            if self._pending() >= capacity:
                self._counts["spans_dropped"] += 1
                return False
            self._counts["spans_queued"] += 1
            return True

    def abandon_unsent(self) -> int:
        """Count spans that were queued but never reached the exporter as dropped."""
        with self._lock:
            unsent = self._pending()
            self._counts["spans_dropped"] += unsent
            self._abandoned += unsent
            return unsent

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self._names, 0)
            self._handed = self._abandoned = 0

    def snapshot(self) -> dict[str, int]:
        """The counters plus ``spans_pending`` (queued, not yet sent) and ``spans_in_flight``
        (sent, no answer yet: a black-holed backend keeps them here until its timeout)."""
        with self._lock:
            counts = dict(self._counts)
            counts["spans_pending"] = self._pending()
            counts["spans_in_flight"] = max(
                0, self._handed - counts["spans_exported"] - counts["spans_failed"]
            )
            return counts


class CountingSpanExporter(SpanExporter):
    """Wraps an exporter: counts each span as exported or failed, and never raises."""

    def __init__(self, exporter: SpanExporter, stats: ForwardingStats) -> None:
        self.exporter = exporter
        self._stats = stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._stats.hand(len(spans))
        try:
            result = self.exporter.export(spans)
        except Exception:  # a broken exporter must not kill the batch worker
            result = SpanExportResult.FAILURE
            failures = self._stats.add("export_failures")
            if failures <= _LOG_FIRST:  # a traceback each: the first few only
                logger.exception("aura-otel: OTLP export raised; %d spans lost", len(spans))
        else:
            if result is not SpanExportResult.SUCCESS:
                failures = self._stats.add("export_failures")
                if throttled(failures, first=_LOG_FIRST, every=100):
                    logger.warning(
                        "aura-otel: OTLP export failed (%d failed exports so far); %d spans lost",
                        failures,
                        len(spans),
                    )
        self._stats.add(
            "spans_exported" if result is SpanExportResult.SUCCESS else "spans_failed", len(spans)
        )
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.exporter.force_flush(timeout_millis)
        except Exception:
            logger.exception("aura-otel: OTLP exporter force_flush raised")
            return False

    def shutdown(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception:
            logger.exception("aura-otel: OTLP exporter shutdown raised")


class SharedDeadline:
    """One deadline for the backend waits of a flush or shutdown, across traces and metrics.

    Each forwarding component caps its own wait at the OTLP budget; called one after the
    other, a dead backend would make a flush wait that budget once per component. Within
    :meth:`window` every component that shares this object instead stops waiting at the same
    moment, so the whole flush or shutdown waits for the backend at most once the budget.
    """

    def __init__(self) -> None:
        self._until: float | None = None
        self._lock = threading.Lock()

    @contextmanager
    def window(self, budget_millis: float) -> Iterator[None]:
        """Share a deadline ``budget_millis`` from now (an enclosing, earlier one wins)."""
        until = time.monotonic() + max(0.0, budget_millis) / 1000
        with self._lock:
            previous = self._until
            self._until = until if previous is None else min(previous, until)
        try:
            yield
        finally:
            with self._lock:
                self._until = previous

    def remaining_millis(self, budget_millis: float) -> float:
        """``budget_millis``, cut to what is left of the current window (if any)."""
        until = self._until
        if until is None:
            return budget_millis
        return max(0.0, min(budget_millis, (until - time.monotonic()) * 1000))


def run_bounded(target: Any, timeout_millis: float, name: str) -> bool:
    """Run ``target`` on a daemon thread; True if it returned a truthy value in time."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception:
            logger.exception("aura-otel: %s raised", name)
            outcome.append(False)

    thread = threading.Thread(target=run, name=f"aura-otel-{name}", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout_millis) / 1000)
    return bool(outcome and outcome[0] is not False) and not thread.is_alive()


class ForwardingSpanProcessor(SpanProcessor):
    """A ``BatchSpanProcessor`` in front of ``exporter``, with counted drops and bounded waits.

    Queue and batch settings come from the arguments, else the standard ``OTEL_BSP_*``
    variables. ``shutdown_timeout_millis`` bounds how long the host's exit can wait for the
    backend (default 5 s): a healthy backend is flushed well within it, a dead one costs at
    most that long and the spans it never received are reported as dropped. With a
    ``deadline`` shared with other components, a flush or shutdown inside its window also
    stops waiting when the window ends.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        shutdown_timeout_millis: float = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS,
        name: str = "otlp",
        label: str | None = None,
        deadline: SharedDeadline | None = None,
    ) -> None:
        self.name = name
        self._deadline = deadline
        self.label = label or f"OTLP forwarding ({name})"
        self._stats = ForwardingStats()
        self._capacity = max_queue_size if max_queue_size is not None else max_queue_size_from_env()
        self._shutdown_timeout_millis = float(shutdown_timeout_millis)
        self._counting = CountingSpanExporter(exporter, self._stats)
        batch = max_export_batch_size
        if batch is not None:
            batch = min(batch, self._capacity)
        elif self._capacity < 512:  # the SDK refuses a batch larger than its queue
            batch = self._capacity
        self._batch = BatchSpanProcessor(
            self._counting,
            max_queue_size=self._capacity,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=batch,
            export_timeout_millis=export_timeout_millis,
        )
        self._closed = threading.Event()
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            # The batch processor empties its queue in a forked child; start counting afresh.
            stats_ref = weakref.ref(self._stats)

            def _reset_in_child() -> None:
                stats = stats_ref()
                if stats is not None:
                    stats.reset()

            os.register_at_fork(after_in_child=_reset_in_child)

    @property
    def exporter(self) -> SpanExporter:
        """The wrapped exporter (e.g. the ``OTLPSpanExporter``)."""
        return self._counting.exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed.is_set():
            self._stats.add("spans_dropped")
            return
        if not self._stats.try_queue(self._capacity):
            dropped = self._stats.snapshot()["spans_dropped"]
            if throttled(dropped, first=_LOG_FIRST):
                logger.warning(
                    "aura-otel: %s queue full (%d spans); %d spans dropped so far",
                    self.label,
                    self._capacity,
                    dropped,
                )
            return
        try:
            self._batch.on_end(span)
        except Exception:
            self._stats.abandon_unsent()
            logger.exception("aura-otel: queueing a span for OTLP failed")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._closed.is_set():
            return False
        budget = self._budget(min(float(timeout_millis), self._shutdown_timeout_millis))
        return run_bounded(
            lambda: self._batch.force_flush(int(budget)), budget, f"{self.name}-flush"
        )

    def _budget(self, millis: float) -> float:
        return self._deadline.remaining_millis(millis) if self._deadline is not None else millis

    def shutdown(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        budget = self._budget(self._shutdown_timeout_millis)
        finished = run_bounded(
            lambda: self._batch.shutdown() is None or True,
            budget,
            f"{self.name}-shutdown",
        )
        self._stats.abandon_unsent()
        stats = self.stats()
        lost = stats["spans_failed"] + stats["spans_dropped"] + stats["spans_in_flight"]
        level = logging.WARNING if lost or not finished else logging.INFO
        logger.log(
            level,
            "aura-otel: %s stopped%s: exported=%d failed=%d dropped=%d "
            "in_flight=%d (failed exports: %d)",
            self.label,
            "" if finished else f" after waiting {budget / 1000:g}s for the backend",
            stats["spans_exported"],
            stats["spans_failed"],
            stats["spans_dropped"],
            stats["spans_in_flight"],
            stats["export_failures"],
        )

    def stats(self) -> dict[str, int]:
        """Counters so far: queued, exported, failed, dropped, pending, in flight, failed exports."""
        return self._stats.snapshot()
