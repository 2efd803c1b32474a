"""Jobs in a shared store (PostgreSQL): merged and rebuilt in the store before the answer.

The folder receiver (:mod:`.jobs`) journals first and rewrites files later, so it has open
jobs, dirty files and a crash list to repair. With a shared store none of that exists: each
request's units are merged into the store and the job's document is rebuilt in the same
transaction (:meth:`aura_otel.stores.Store.merge`), so what is acknowledged is already in the
document every API server reads, whichever receiver got which span. This class offers the
:class:`.jobs.JobBook` methods the ingestor and the service call, with nothing to keep.
"""

from __future__ import annotations

from ..fold import Pricer, Unit
from ..schema import EnumCase
from ..stores import Store
from .jobs import JobBook
from .stats import ReceiverStats


class StoreBook:
    def __init__(
        self,
        store: Store,
        stats: ReceiverStats,
        *,
        enum_case: EnumCase = "lower",
        pricer: Pricer | None = None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.enum_case = enum_case
        self.pricer = pricer

    def append_request(self, jobs: dict[str, dict[str, Unit]]) -> dict[str, int]:
        """A request's jobs merged in one transaction, committed before this returns: a
        request is stored whole or not at all, and the database flushes its log once per
        request. Raises StoreUnavailableError (an OSError the ingestor answers as retryable)."""
        self.store.merge_many(jobs, pricer=self.pricer, enum_case=self.enum_case)
        self.stats.add("files_written", len(jobs))
        return {}

    def dirty_jobs(self) -> int:
        return 0

    def wait_for_room(self, timeout: float = 0.0) -> bool:
        return True  # each request is committed before its answer: nothing is pending

    def pending_bytes(self) -> int:
        return 0

    def write_soon(self) -> None:
        return None

    def open_jobs(self) -> int:
        return 0

    def is_open(self, job_id: str) -> bool:
        return False

    def write_dirty(self) -> int:
        return 0

    def sweep(self, now: float | None = None) -> None:
        return None

    def recover(self) -> int:
        return 0

    def start(self) -> None:
        return None

    def stop(self) -> bool:
        """Always clean: every acknowledged request was committed before its answer."""
        self.store.close()
        return True


#: Either kind of book: the ingestor, admission and service use only what both offer.
AnyBook = JobBook | StoreBook
