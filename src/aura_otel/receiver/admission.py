"""Saying "retry later" before taking on work that memory or the disk cannot absorb.

OTLP exporters retry 429/503 (HTTP) and RESOURCE_EXHAUSTED/UNAVAILABLE with retry info (gRPC)
after the delay the receiver names, and keep the spans meanwhile; refusing early is how the
receiver stays within bounds without losing what they send.
"""

from __future__ import annotations

import threading
from enum import Enum

from .balance import LoadTable
from .jobs import MAX_PENDING_BYTES
from .shared import AnyBook


class Refusal(Enum):
    BUSY = "busy"  # too many requests in flight: 429 / RESOURCE_EXHAUSTED
    BACKLOG = "backlog"  # the file writer is far behind: 503 / UNAVAILABLE


class Admission:
    def __init__(self, book: AnyBook, max_concurrent: int, max_dirty_jobs: int) -> None:
        self._book = book
        self._max = max_concurrent
        self._max_dirty = max_dirty_jobs
        self._lock = threading.Lock()
        self._in_flight = 0
        #: A worker's view of its supervisor's load table: requests in flight published for
        #: the other workers (see :mod:`.balance`). None outside ``--workers``.
        self.loads: LoadTable | None = None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def enter(self) -> Refusal | None:
        """None when the request may go ahead (then :meth:`leave` must follow)."""
        with self._lock:
            if self._in_flight >= self._max:
                return Refusal.BUSY
            self._in_flight += 1
            if self.loads is not None:
                self.loads.publish(self._in_flight)
        if (
            self._book.dirty_jobs() > self._max_dirty
            or self._book.pending_bytes() > MAX_PENDING_BYTES
        ):
            self.leave()
            return Refusal.BACKLOG
        return None

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self.loads is not None:
                self.loads.publish(self._in_flight)
