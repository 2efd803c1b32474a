"""The jobs folder as a :class:`~.base.Store`: :class:`aura_otel.store.JobStore`, unchanged.

Everything the folder already did (journals under ``flock``, atomic file replacement, link
and FIFO refusal) stays in :mod:`aura_otel.store`; this class only adds the interface's merge
and list so the server, receiver and exporter can be given either store.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..fold import Pricer, Unit, assemble
from ..schema import EnumCase, dumps
from ..store import JobStore
from .base import JobLister, Store

if TYPE_CHECKING:
    pass


class LocalStore(JobStore, Store):
    """The jobs folder (see :mod:`aura_otel.store` for the layout and its guarantees)."""

    def __init__(
        self,
        jobs_dir: str | os.PathLike[str],
        *,
        max_file_bytes: int | None = None,
        sync: bool = True,
    ) -> None:
        super().__init__(jobs_dir, max_file_bytes=max_file_bytes)
        self.sync = sync
        self.description = f"jobs folder {self.root}"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def read_units(self, job_id: str) -> dict[str, Unit]:
        return self.read_journal(job_id)

    def lister(self, *, abandoned_after: float | None = None) -> JobLister:
        from ..server.joblist import JobIndex

        return JobIndex(self, abandoned_after=abandoned_after)

    def merge(
        self,
        job_id: str,
        units: dict[str, Unit],
        *,
        pricer: Pricer | None = None,
        enum_case: EnumCase = "lower",
    ) -> dict[str, Unit]:
        with self.journal(job_id) as journal:
            stored, _ = journal.read_from(0)
            new = {sid: unit for sid, unit in units.items() if sid not in stored}
            if new:
                journal.append(new)
                if self.sync:
                    journal.sync()
                stored.update(new)
            journal.write_telemetry(
                dumps(assemble(job_id, stored, pricer=pricer), enum_case=enum_case)
            )
        return stored
