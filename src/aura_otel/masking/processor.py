"""The span processor and its worker: targets receive only masked finished spans.

OpenTelemetry hands ``on_end`` a read-only span, and attributes may be set long after
``on_start``; so the one place that sees a span's final state and still decides what exporters
get is ``on_end``. Targets are owned by the processor, so an unmasked span cannot reach them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .._util import throttled
from ..errors import ConfigurationError
from .logs import install_log_filter
from .masker import Masker, MaskingStats
from .settings import MaskingRules
from .span import SpanMasking

logger = logging.getLogger("aura_otel")

Target = SpanProcessor | SpanExporter
DEFAULT_MAX_QUEUE_SIZE: Final = 8192
#: How often the worker looks at its queue when not woken by a full batch.
_WORKER_INTERVAL_SECONDS: Final = 0.05
_WAKE_AT: Final = 256


class _Worker:
    """Masks spans off the application's threads.

    RE2 releases the GIL on every call; while another thread is busy, getting it back can take
    the interpreter's switch interval (5 ms), which would turn a 2 us scan into a 5 ms stall of
    the application. So ``on_end`` only appends to a bounded queue and this thread masks and
    forwards, the way ``BatchSpanProcessor`` exports. When the queue is full the span is masked
    in the caller's thread instead: no span is lost and memory stays bounded.
    """

    def __init__(
        self,
        process: Callable[[ReadableSpan], None],
        stats: MaskingStats,
        max_queue_size: int,
        batch_done: Callable[[], None] | None = None,
    ) -> None:
        if (
            isinstance(max_queue_size, bool)
            or not isinstance(max_queue_size, int)
            or max_queue_size < 1
        ):
            raise ConfigurationError(
                f"max_queue_size must be a positive integer, got {max_queue_size!r}"
            )
        self._process = process
        self._batch_done = batch_done
        self._stats = stats
        self._max = max_queue_size
        self._queue: deque[ReadableSpan] = deque()
        self._stopped = False
        self._start()
        ref = weakref.ref(self)

        def restart_in_child() -> None:  # a forked child has the queue but not the thread
            worker = ref()
            if worker is not None:
                worker._queue.clear()  # the parent sends those
                worker._start()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=restart_in_child)

    def _start(self) -> None:
        self._wake = threading.Event()
        self._busy = threading.RLock()  # held while spans are in flight to the targets
        self._thread = threading.Thread(target=self._run, name="aura-otel-masking", daemon=True)
        self._thread.start()

    def put(self, span: ReadableSpan) -> None:
        queue = self._queue
        if self._stopped or len(queue) >= self._max:
            # Overload (or after shutdown): mask right here rather than lose the span or grow
            # without bound. The application slows down only while the worker is behind.
            self._stats.add("spans_masked_inline")
            self._process(span)
            if self._stopped and self._batch_done is not None:
                self._batch_done()  # no wake-up will come to hand it on
            return
        queue.append(span)
        if len(queue) == _WAKE_AT:
            self._wake.set()

    def drain(self) -> None:
        """Mask and forward everything queued, in the calling thread if need be; returns once
        nothing queued before the call is still on its way."""
        with self._busy:
            queue = self._queue
            process = self._process
            done = 0
            while queue:
                try:
                    span = queue.popleft()
                except IndexError:
                    break
                process(span)
                done += 1
            if done and self._batch_done is not None:
                self._batch_done()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout)
        self.drain()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(_WORKER_INTERVAL_SECONDS)
            self._wake.clear()
            try:
                self.drain()
            except Exception:  # _process never raises; this is the last guard of the thread
                logger.exception("aura-otel: the masking worker failed; it keeps running")


class MaskingSpanProcessor(SpanProcessor):
    """Sits in front of every exporter: targets receive only masked finished spans.

    Each target is a ``SpanProcessor`` or a ``SpanExporter`` (wrapped in a
    ``BatchSpanProcessor``). A span with something to mask reaches them as a :class:`MaskedSpan`
    copy; a span with nothing to mask as the SDK's read-only snapshot (never the live span).
    ``on_start`` is deliberately not forwarded: a live span is unmasked and may still change.
    Processors that must see spans start (e.g. id stamping) belong on the provider itself, ahead
    of this one; they see unmasked spans but export nothing.

    ``rules`` defaults to :meth:`MaskingRules.from_env`; ``masker`` shares a compiled
    :class:`Masker` instead. With ``mask_logs`` (the default) aura-otel's own logs are masked
    with the same rules.
    """

    def __init__(
        self,
        *targets: Target,
        rules: MaskingRules | None = None,
        masker: Masker | None = None,
        mask_logs: bool = True,
        background: bool = True,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        self._targets: list[SpanProcessor] = []
        for target in targets:
            if isinstance(target, SpanProcessor):
                self._targets.append(target)
            elif isinstance(target, SpanExporter):
                self._targets.append(BatchSpanProcessor(target))
            else:
                raise ConfigurationError(
                    f"masking target must be a SpanProcessor or SpanExporter, "
                    f"not {type(target).__name__}"
                )
        if masker is None:
            masker = Masker(rules if rules is not None else MaskingRules.from_env())
        self.masker = masker
        if mask_logs:  # aura-otel's own logs follow the same rules (extra patterns included)
            install_log_filter(masker)
        self._stats = masker.stats
        self._span_masking = SpanMasking(masker)
        # Targets that take spans in batches (the v1 files' sink) are told when a wake-up's
        # spans have all been handed on, so they work once per wake-up, on this same thread.
        self._batch_targets = [t for t in self._targets if callable(getattr(t, "end_batch", None))]
        self._worker = (
            _Worker(
                self._mask_and_forward,
                self._stats,
                max_queue_size,
                self._end_batch if self._batch_targets else None,
            )
            if background
            else None
        )

    @property
    def targets(self) -> tuple[SpanProcessor, ...]:
        return tuple(self._targets)

    def stats(self) -> dict[str, int]:
        return self._stats.snapshot()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._worker is not None:
            self._worker.put(span)  # the application thread only queues
        else:
            self._mask_and_forward(span)
            if self._batch_targets:
                self._end_batch()

    def _end_batch(self) -> None:
        for target in self._batch_targets:
            try:
                target.end_batch()  # type: ignore[attr-defined]
            except Exception:
                count = self._stats.add("target_errors")
                if throttled(count):
                    logger.exception(
                        "aura-otel: a span processor behind masking failed (#%d)", count
                    )

    def _mask_and_forward(self, span: ReadableSpan) -> None:
        try:
            copy, changed = self._span_masking.mask(span)
        except Exception:
            # Last resort: a span we could not mask is never sent.
            count = self._stats.add("spans_dropped")
            if throttled(count):
                logger.exception(
                    "aura-otel: masking a span failed; the span was dropped (#%d)", count
                )
            return
        if changed:
            self._stats.add("spans_changed")
        for target in self._targets:
            try:
                target.on_end(copy)
            except Exception:
                count = self._stats.add("target_errors")
                if throttled(count):
                    logger.exception(
                        "aura-otel: a span processor behind masking failed (#%d)", count
                    )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        if self._worker is not None:
            self._worker.drain()  # every span queued so far reaches the targets first
        ok = True
        for target in self._targets:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                ok = bool(target.force_flush(remaining)) and ok
            except Exception:
                ok = False
                self._stats.add("target_errors")
                logger.exception("aura-otel: flushing a span processor behind masking failed")
        return ok

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        for target in self._targets:
            try:
                target.shutdown()
            except Exception:
                self._stats.add("target_errors")
                logger.exception("aura-otel: shutting down a span processor behind masking failed")
        stats = self._stats.snapshot()
        if any(stats[k] for k in ("spans_dropped", "values_failed_closed", "target_errors")):
            logger.warning("aura-otel: masking stopped: %s", stats)
