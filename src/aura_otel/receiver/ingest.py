"""One request's spans: mask, fold, make durable, then (and only then) say yes.

The order is the guarantee:

1. rebuild the spans (:mod:`.decode`);
2. mask them with the same ``MaskingSpanProcessor`` the in-process pipeline uses, so nothing
   unmasked reaches a journal, a file, a log line or a forward;
3. fold them with the in-process fold (``fold_span``) and make the units durable: one line in
   the receiver's write-ahead log, synced (:meth:`.jobs.JobBook.append_request`); journals
   and files follow on the writer thread;
4. answer: accepted, or a partial success naming how many spans were rejected and why.

A failure in step 3 raises :class:`Unavailable` and the sender is told to retry the whole
request; units are keyed by span id, so whatever part was already appended is not doubled.
Forwarding (optional) happens after step 3, through the never-blocking forwarding queue.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ..errors import InvalidJobIdError
from ..fold import ROOT, Unit, fold_span
from ..forwarding import ForwardingSpanProcessor
from ..masking import MaskingSpanProcessor
from ..schema import validate_job_id
from .decode import to_spans
from .shared import AnyBook
from .stats import ReceiverStats

logger = logging.getLogger("aura_otel.receiver")

UNMASKABLE = "that could not be masked (dropped, never written)"
UNFOLDABLE = "that could not be folded (a receiver bug, logged; left out of the file)"
UNSAFE_JOB_ID = "with an unsafe aura.job.id (no file is written for it)"
UNUSABLE_FOLDER = "whose job folder cannot be written (something else is in its place)"
_LOG_FIRST = 20


class Unavailable(Exception):
    """The spans could not be made durable; nothing was acknowledged, the sender retries."""


class _Batch(NamedTuple):
    """A request decoded, masked and folded; nothing of it stored yet."""

    received: int
    masked: list[ReadableSpan]
    by_job: dict[str, dict[str, Unit]]
    rejected: dict[str, int]
    without_job: int


@dataclass(frozen=True)
class Outcome:
    accepted: int
    rejected: int
    message: str


class _Collect(SpanProcessor):
    """The masking processor's only target: hands the masked copies back to the calling thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def begin(self) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        self._local.spans = spans
        return spans

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self._local.spans.append(span)


def make_masking(rules: Any) -> tuple[MaskingSpanProcessor, _Collect]:
    collect = _Collect()
    # No background worker: the request thread masks, so the answer waits for the masking.
    return MaskingSpanProcessor(collect, rules=rules, background=False), collect


class Ingestor:
    def __init__(
        self,
        book: AnyBook,
        stats: ReceiverStats,
        masking: MaskingSpanProcessor,
        collect: _Collect,
        forward: ForwardingSpanProcessor | None = None,
    ) -> None:
        self.book = book
        self.stats = stats
        self.masking = masking
        self._collect = collect
        self.forward = forward
        self._compute = threading.Lock()  # see ingest

    def ingest(self, request: ExportTraceServiceRequest) -> Outcome:
        self.book.wait_for_room()  # a writer far behind: wait for its round (bounded)
        # One request computes at a time; the others wait here, not inside the interpreter.
        # Threads that share one GIL gain nothing from computing together: they take turns
        # every few milliseconds anyway, and each turn costs a hand-over and the cache the
        # other request's spans had warmed (measured: ~11% more CPU a span with four
        # concurrent requests than with this gate). The durable append below stays outside,
        # so one request's sync overlaps the next one's decoding.
        with self._compute:
            received, masked, by_job, rejected, without_job = self._fold(request)
        self.stats.add("spans_received", received)
        try:
            refused = self.book.append_request(by_job)
        except OSError as exc:
            self._count_error("journal_errors", "making the spans durable failed")
            raise Unavailable(
                f"the spans could not be stored ({exc.strerror or exc}); retry later"
            ) from None
        for job_id, count in refused.items():
            # This job's folder can never be written (a file or a link in its place): a
            # retry would fail the same way, so its spans are refused, not retried.
            self._count_error("journal_errors", f"the folder of job {job_id!r} is unusable")
            rejected[UNUSABLE_FOLDER] = rejected.get(UNUSABLE_FOLDER, 0) + count
        folded = sum(len(units) for units in by_job.values())
        self.stats.add("spans_folded", folded)
        self.stats.add("spans_without_job", without_job)
        if self.forward is not None:
            for span in masked:
                self.forward.on_end(span)  # never blocks: a bounded queue that counts its drops
        count = sum(rejected.values())
        self.stats.add("spans_rejected", count)
        self.stats.add("spans_accepted", received - count)
        message = ""
        if count:
            message = "rejected " + "; ".join(
                f"{n} span{'s' if n != 1 else ''} {why}" for why, n in sorted(rejected.items())
            )
        return Outcome(received - count, count, message)

    def _fold(self, request: ExportTraceServiceRequest) -> _Batch:
        """Decode, mask and fold a request: CPU only, nothing stored yet."""
        masker = self.masking.masker
        decoded = to_spans(request, masker.mask_text, masker.mask_json_text)
        rejected = dict(decoded.rejected)
        received = len(decoded.spans) + sum(rejected.values())
        masked = self._collect.begin()
        for span in decoded.spans:
            self.masking.on_end(span)
        if len(masked) < len(decoded.spans):
            rejected[UNMASKABLE] = len(decoded.spans) - len(masked)
        by_job: dict[str, dict[str, Unit]] = {}
        valid: set[str] = set()
        without_job = 0
        for span in masked:
            try:
                item = fold_span(span)
            except Exception:
                self._count_error(
                    "fold_errors", "folding a received span failed; it is left out of v1"
                )
                rejected[UNFOLDABLE] = rejected.get(UNFOLDABLE, 0) + 1
                continue
            if item is None:
                without_job += 1
                continue
            if item.job_id not in valid:
                try:
                    validate_job_id(item.job_id)
                except InvalidJobIdError:
                    rejected[UNSAFE_JOB_ID] = rejected.get(UNSAFE_JOB_ID, 0) + 1
                    continue
                valid.add(item.job_id)
            if self.forward is not None and item.unit.get("k") == ROOT:
                item.unit["fw"] = 1  # trace links are offered only for forwarded jobs
            by_job.setdefault(item.job_id, {})[item.span_id] = item.unit
        return _Batch(received, masked, by_job, rejected, without_job)

    def _count_error(self, name: str, message: str) -> None:
        count = self.stats.add(name)
        if count <= _LOG_FIRST or count % 1000 == 0:
            logger.exception("aura-otel: %s (%s #%d)", message, name, count)
