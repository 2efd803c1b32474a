"""The store interface: where fold units are merged and v1 documents are read from.

Two implementations: the jobs folder (:mod:`.local`, the embedded default) and PostgreSQL
(:mod:`.postgres`, shared by many receivers and servers). Writers hand a job's new fold units
to :meth:`Store.merge`; merging them with what other writers stored and rebuilding the
document is the store's job, so that no writer has to see a whole job to produce a correct one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from ..fold import Pricer, Unit
from ..schema import Collection, EnumCase, load_collection

if TYPE_CHECKING:
    from ..insights.source import JobSource
    from ..server.joblist import JobPage


@dataclass(frozen=True)
class JobFilter:
    """What the job list is narrowed to; every field optional.

    ``since``/``until`` bound the job's last update (``updatedAt``, the key the list is
    sorted by, so both stores answer from the same order); ``search`` is a case-insensitive
    substring of the job id; ``status`` one of :class:`aura_otel.figures.JobStatus`.
    """

    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    @property
    def empty(self) -> bool:
        return self.status is None and self.since is None and self.until is None and not self.search


class JobLister(ABC):
    """Pages of the job list (see :class:`aura_otel.server.joblist.JobPage`)."""

    @abstractmethod
    def page(self, page: int = 1, page_size: int = 50, filters: JobFilter | None = None) -> JobPage:
        """One page, newest first; raises ValueError for a bad page or page size."""


class Store(ABC):
    """A place jobs are stored. Implementations are safe to share between threads."""

    #: A short description for logs and start-up lines (never contains a password).
    description: str
    #: The largest document a reader loads (None: no cap).
    max_file_bytes: int | None

    # -- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def read_bytes(self, job_id: str) -> bytes:
        """The job's v1 document as a file would hold it.

        Raises InvalidJobIdError, TelemetryNotFoundError, TelemetryTooLargeError,
        CorruptTelemetryError, or StoreUnavailableError (the store cannot be reached now).
        """

    def read(self, job_id: str) -> Collection:
        """The job's validated collection."""
        return load_collection(self.read_bytes(job_id), job_id)

    @abstractmethod
    def read_units(self, job_id: str) -> dict[str, Unit]:
        """Every fold unit stored for the job, by span id (empty when none)."""

    @abstractmethod
    def job_entries(self) -> list[tuple[str, int, int]]:
        """(job id, version stamp, size) of every job, newest first: a reader that caches
        per-job figures re-reads a job only when its stamp or size changed."""

    @abstractmethod
    def lister(self, *, abandoned_after: float | None = None) -> JobLister:
        """The job list over this store."""

    def job_source(self) -> JobSource:
        """The fleet view's way to this store's jobs: per-job summaries cached by version, or
        whatever faster path the store has (PostgreSQL: an indexed summary table)."""
        from ..insights.source import FolderJobSource

        return FolderJobSource(self)

    # -- writing ---------------------------------------------------------------------------------
    @abstractmethod
    def merge(
        self,
        job_id: str,
        units: dict[str, Unit],
        *,
        pricer: Pricer | None = None,
        enum_case: EnumCase = "lower",
    ) -> dict[str, Unit]:
        """Store ``units`` durably, rebuild the job's document from every unit stored for it,
        and return that union. A span already stored keeps its first unit (units never change
        once a span has ended), so a retried or doubly delivered span is one record."""

    def merge_many(
        self,
        jobs: dict[str, dict[str, Unit]],
        *,
        pricer: Pricer | None = None,
        enum_case: EnumCase = "lower",
    ) -> dict[str, dict[str, Unit]]:
        """:meth:`merge` for several jobs; a store that can makes it one atomic write."""
        return {
            job_id: self.merge(job_id, units, pricer=pricer, enum_case=enum_case)
            for job_id, units in jobs.items()
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def check(self) -> None:  # noqa: B027 - the folder has nothing to check
        """Raise StoreUnavailableError when the store cannot be used right now."""

    def close(self) -> None:  # noqa: B027 - the folder holds no connections
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
