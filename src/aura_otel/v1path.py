"""The v1 files as a direct target of masking: folded on the masking worker's own turn.

Before, a masked span crossed three background threads: the masking worker handed it to a
``BatchSpanProcessor`` queue, whose worker folded it, then the exporter's file writer wrote the
job. Every hop cost a queue, a wake-up and a fight for the GIL, and a burst of short jobs could
overflow the middle queue. :class:`V1SpanSink` removes the middle hop: the masking worker
collects the masked spans of one wake-up and folds them right away, in the same thread and the
same turn, so a span's attributes are still hot when the fold reads them, and nothing waits in a
second queue (which also means nothing can be dropped from one: when the masking worker falls
behind, the application's thread masks and folds inline, as masking always did).

Responsibilities do not move: :mod:`aura_otel.masking` decides what is secret and hands on only
masked spans; :func:`aura_otel.fold.fold_span` (through ``RunTelemetryExporter.export``) decides
what a field is. Only the wiring changes, so the files are byte for byte those of the old path.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult

from .exporter import RunTelemetryExporter

logger = logging.getLogger("aura_otel")

#: Spans of one wake-up are folded in chunks of at most this many: large enough that the
#: exporter's per-batch work (locks, counters, waking the writer) is paid once per chunk, small
#: enough that a long drain hands the writer its first jobs early.
DEFAULT_CHUNK: Final = 512
_LOG_FIRST: Final = 20


class V1SpanSink(SpanProcessor):
    """Feeds masked finished spans to a :class:`RunTelemetryExporter` without a queue of its own.

    Meant as a target of :class:`~aura_otel.masking.MaskingSpanProcessor`, which calls
    :meth:`end_batch` after every wake-up of its worker (and, without a worker, after every
    span): spans wait here only until the end of the wake-up that masked them, so the fold runs
    on the thread that masked them. ``force_flush`` and ``shutdown`` fold what is still waiting first.
    """

    def __init__(self, exporter: RunTelemetryExporter, *, chunk: int = DEFAULT_CHUNK) -> None:
        self.exporter = exporter
        self._chunk = max(1, int(chunk))
        self._pending: list[ReadableSpan] = []
        self._lock = threading.Lock()
        self._errors = 0
        self._dropped = 0  # spans that arrived after shutdown: counted, never silent
        ref = weakref.ref(self)

        # A forked child inherits the parent's waiting spans; the parent sends them.
        def forget_in_child() -> None:
            sink = ref()
            if sink is not None:
                sink._lock = threading.Lock()
                sink._pending = []

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=forget_in_child)

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            pending = self._pending
            pending.append(span)
            full = len(pending) >= self._chunk
        if full:
            self.end_batch()

    def end_batch(self) -> None:
        """Fold everything waiting; called by the masking worker once per wake-up."""
        with self._lock:
            batch = self._pending
            if not batch:
                return
            self._pending = []
        try:
            result = self.exporter.export(batch)
            if result is SpanExportResult.FAILURE:  # only after shutdown: nothing is written
                self._dropped += len(batch)
                if self._dropped == len(batch):
                    logger.warning(
                        "aura-otel: %d spans ended after the v1 files were shut down; not written",
                        len(batch),
                    )
        except Exception:  # export counts its own failures; this guards the masking worker
            self._errors += 1
            if self._errors <= _LOG_FIRST or self._errors % 1000 == 0:
                logger.exception(
                    "aura-otel: folding spans into the v1 files failed (#%d)", self._errors
                )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.end_batch()
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.end_batch()
        self.exporter.shutdown()

    def stats(self) -> dict[str, int]:
        """Shaped like the forwarding queues' counters. The v1 path has no queue to overflow;
        ``spans_dropped`` counts only spans that ended after shutdown."""
        return {"spans_dropped": self._dropped, "spans_pending": len(self._pending)}
