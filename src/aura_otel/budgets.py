"""Budgets: stop a job before it spends money it must not, and warn before it gets there.

The old studio checked spend against soft and hard thresholds, in total and per provider.
A check after the fact cannot stop anything, so the check happens where the money is about
to be spent: ``stage(..., estimated_cost=...)`` raises :class:`BudgetExceeded` *before* the
stage starts when the estimate would cross a hard threshold (the host decides whether to
catch it); crossing a soft threshold turns the stage's record into a ``warn`` with the
reason, logs it and counts it in the ``aura.budget.warnings`` metric.

Scopes: the job (``job(..., budget=X)`` is its hard total; the budgets file may give every
job soft/hard thresholds and per-provider ones), the project and the calendar month (UTC),
from a JSON or TOML file named by ``AURA_OTEL_BUDGETS_FILE``::

    [job]                        # every job
    soft = 0.50
    hard = 1.00
    [job.providers.openai]
    hard = 0.40
    [projects.studio-demo]       # a project, all its jobs together
    soft = 20
    hard = 25
    [month]                      # the calendar month, all projects
    soft = 400
    hard = 500
    [month.providers.elevenlabs]
    hard = 100

Spend is what this process charged (a stage's explicit ``set_cost``, else its estimate); for
the project and month scopes, plus what the store (the jobs folder or PostgreSQL) holds for
them from every process: read at a scope's first check, then re-read in the background once
its figures are older than ``REFRESH_SECONDS`` (through the fleet view's
:class:`~aura_otel.insights.JobSource`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from . import conventions as c
from .errors import BudgetExceeded, ConfigurationError

if TYPE_CHECKING:
    from .store import JobStore
    from .stores import Store

logger = logging.getLogger("aura_otel")

SCOPES = ("job", "project", "month")


@dataclass(frozen=True)
class Limit:
    soft: float | None = None
    hard: float | None = None


@dataclass(frozen=True)
class Scope:
    total: Limit = Limit()
    providers: Mapping[str, Limit] = field(default_factory=dict)

    def limits(self, provider: str | None) -> list[tuple[str | None, Limit]]:
        out: list[tuple[str | None, Limit]] = [(None, self.total)]
        if provider and provider.lower() in self.providers:
            out.append((provider.lower(), self.providers[provider.lower()]))
        return out


def _amount(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"budgets: {where} must be a non-negative amount, not {value!r}")
    return float(value)


def _limit(raw: Any, where: str) -> Limit:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"budgets: {where} must be a table with soft and/or hard")
    unknown = set(raw) - {"soft", "hard", "providers"}
    if unknown:
        raise ConfigurationError(f"budgets: {where} has unknown keys {sorted(unknown)}")
    limit = Limit(
        _amount(raw.get("soft"), f"{where}.soft"), _amount(raw.get("hard"), f"{where}.hard")
    )
    if limit.soft is not None and limit.hard is not None and limit.soft > limit.hard:
        raise ConfigurationError(f"budgets: {where}.soft is above its hard threshold")
    return limit


def _scope(raw: Any, where: str) -> Scope:
    if raw is None:
        return Scope()
    providers = raw.get("providers", {}) if isinstance(raw, Mapping) else None
    if not isinstance(providers, Mapping):
        raise ConfigurationError(f"budgets: {where}.providers must be a table")
    return Scope(
        _limit(raw, where),
        {
            str(name).lower(): _limit(value, f"{where}.providers.{name}")
            for name, value in providers.items()
        },
    )


@dataclass(frozen=True)
class BudgetRules:
    job: Scope = Scope()
    projects: Mapping[str, Scope] = field(default_factory=dict)
    month: Scope = Scope()

    @classmethod
    def parse(cls, doc: Any) -> BudgetRules:
        if not isinstance(doc, Mapping):
            raise ConfigurationError("budgets: the file must hold a table")
        unknown = set(doc) - {"job", "projects", "month"}
        if unknown:
            raise ConfigurationError(f"budgets: unknown sections {sorted(unknown)}")
        projects = doc.get("projects") or {}
        if not isinstance(projects, Mapping):
            raise ConfigurationError("budgets: projects must be a table")
        return cls(
            _scope(doc.get("job"), "job"),
            {str(k): _scope(v, f"projects.{k}") for k, v in projects.items()},
            _scope(doc.get("month"), "month"),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BudgetRules:
        from .store import read_named_file

        file = Path(path)
        try:
            data = read_named_file(file)  # a FIFO or device would hold configure() for good
        except OSError as exc:
            raise ConfigurationError(
                f"budgets file {file} cannot be read: {exc.strerror or exc}"
            ) from None
        try:
            doc = (
                tomllib.loads(data.decode())
                if file.suffix.lower() == ".toml"
                else orjson.loads(data)
            )
        except (tomllib.TOMLDecodeError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"budgets file {file} is not valid: {exc}") from None
        return cls.parse(doc)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BudgetRules:
        path = (os.environ if environ is None else environ).get(c.ENV_BUDGETS_FILE, "").strip()
        return cls.from_file(path) if path else cls()


def _month(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m")


#: Seconds between two reads of the store for a project's or a month's spend: other
#: processes' spend is seen as of the last read (docs/budgets.md, "Project and month spend").
REFRESH_SECONDS = 30.0

Spend = dict[str | None, float]  # None: the total; a provider name: its part


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = int(month[:4]), int(month[5:7])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _add(into: Spend, other: Mapping[str | None, float]) -> None:
    for name, amount in other.items():
        into[name] = into.get(name, 0.0) + amount


class Budgets:
    """The rules and what has been spent against them (thread-safe; one per process).

    A job's spend is this process's charges. A project's or a month's spend is what the store
    holds for it (any store: the jobs folder or PostgreSQL, read through the fleet view's
    summaries, so every process writing to the store is seen), as of the last read, plus what
    this process charged to its own jobs that the store does not yet show as finished. A job
    of this process is counted once: by its charges while it runs, by its stored figures once
    the store has it finished.
    """

    def __init__(
        self,
        rules: BudgetRules | None = None,
        store: Store | JobStore | str | os.PathLike[str] | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        refresh_every: float = REFRESH_SECONDS,
    ) -> None:
        from .store import JobStore
        from .stores import LocalStore, open_store

        if isinstance(store, JobStore) and not isinstance(store, LocalStore):
            store = LocalStore(store.root, max_file_bytes=store.max_file_bytes)
        self.rules = rules or BudgetRules()
        self.store = None if store is None else open_store(store)
        self.refresh_every = refresh_every
        self._meter_provider = meter_provider
        self._counter: Any = None
        #: ("job", id): this process's charges to a job.
        self._spent: dict[tuple[str, str], Spend] = {}
        #: (scope, subject) -> (when read, the store's spend without this process's jobs).
        self._stored: dict[tuple[str, str], tuple[float, Spend]] = {}
        #: (scope, subject) -> job id -> this process's charges not yet in the store.
        self._mine: dict[tuple[str, str], dict[str, Spend]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        #: Scopes being re-read in the background (see _refresh_behind).
        self._refreshing: set[tuple[str, str]] = set()
        self._source: Any = None

    def _scopes(
        self, job_id: str, project: str | None, job_budget: float | None
    ) -> list[tuple[str, str, Scope]]:
        job_scope = self.rules.job
        if job_budget is not None:
            job_scope = Scope(Limit(job_scope.total.soft, job_budget), job_scope.providers)
        scopes = []
        if job_scope.total != Limit() or job_scope.providers:
            scopes.append(("job", job_id, job_scope))
        if project and project in self.rules.projects:
            scopes.append(("project", project, self.rules.projects[project]))
        if self.rules.month.total != Limit() or self.rules.month.providers:
            scopes.append(("month", _month(), self.rules.month))
        return scopes

    def _ledger(self, scope: str, subject: str) -> Spend:
        """The spend of a scope now (a copy), reading the store when its figures are stale.
        Called with the lock held; the store is read without it."""
        key = (scope, subject)
        if scope == "job":
            return dict(self._spent.get(key, {}))
        read = self._stored.get(key)
        if read is None:
            # The first figures are needed to judge a hard limit at all: read them now.
            self._lock.release()
            try:
                stored = self._read_store(scope, subject)
            finally:
                self._lock.acquire()
            self._settle(key, stored)
        elif time.monotonic() - read[0] >= self.refresh_every:
            self._refresh_behind(key)
        total: Spend = dict(self._stored[key][1])
        for charges in self._mine.get(key, {}).values():
            _add(total, charges)
        return total

    def _refresh_behind(self, key: tuple[str, str]) -> None:
        """Re-read a scope on a thread of its own while the stage goes on with the last
        figures: a store read is a database round trip (or, with PostgreSQL down, a wait for
        the pool's timeout) that must not stall the application's stages. One read per scope
        at a time. Called with the lock held."""
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        def read() -> None:
            try:
                self._settle(key, self._read_store(*key), lock=True)
            finally:
                with self._lock:
                    self._refreshing.discard(key)
                    if not self._refreshing:
                        self._idle.notify_all()

        threading.Thread(target=read, name="aura-otel-budgets", daemon=True).start()

    def wait_for_refreshes(self, timeout: float | None = None) -> bool:
        """Wait until no background re-read is under way (False: ``timeout`` passed first)."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._refreshing, timeout)

    def refresh(self) -> None:
        """Read every project's and month's spend from the store again now."""
        with self._lock:
            keys = list(self._stored)
        for key in keys:
            self._settle(key, self._read_store(*key), lock=True)

    def _read_store(self, scope: str, subject: str) -> list[tuple[str, bool, Spend]] | None:
        """(job id, finished, spend) of the store's jobs of a project or month; None when the
        store cannot be read now (the last figures are kept)."""
        if self.store is None:
            return []
        from .errors import AuraOtelError
        from .insights import iter_summaries

        if self._source is None:
            self._source = self.store.job_source()
        since, until = _month_bounds(subject) if scope == "month" else (None, None)
        found = []
        try:
            by_project = getattr(self._source, "project_summaries", None)
            summaries = (
                by_project(subject)
                if scope == "project" and by_project is not None
                else iter_summaries(self._source, since, until)
            )
            for summary in summaries:
                if scope == "project" and summary.project != subject:
                    continue
                spend: Spend = {None: 0.0}
                for op in summary.ops:
                    if op.cost:
                        _add(spend, {None: op.cost})
                        if op.provider:
                            _add(spend, {op.provider.lower(): op.cost})
                found.append((summary.job_id, summary.status != "running", spend))
        except (AuraOtelError, OSError) as exc:
            logger.warning(
                "aura-otel: budget spend of %s %r not refreshed: %s", scope, subject, exc
            )
            return None
        except Exception:  # any other failure of the read must not fail the stage either
            logger.warning(
                "aura-otel: budget spend of %s %r not refreshed", scope, subject, exc_info=True
            )
            return None
        return found

    def _settle(
        self,
        key: tuple[str, str],
        jobs: list[tuple[str, bool, Spend]] | None,
        *,
        lock: bool = False,
    ) -> None:
        """Take a read of the store: this process's jobs the store has finished are counted
        from the store from now on; the others still by their charges."""
        if lock:
            with self._lock:
                self._settle(key, jobs)
            return
        if jobs is None:
            previous = self._stored.get(key, (0.0, {None: 0.0}))[1]
            self._stored[key] = (time.monotonic(), previous)
            return
        mine = self._mine.get(key, {})
        total: Spend = {None: 0.0}
        for job_id, finished, spend in jobs:
            if job_id in mine:
                if not finished:
                    continue  # still running here: its charges count, not its partial file
                del mine[job_id]
            _add(total, spend)
        self._stored[key] = (time.monotonic(), total)

    def check(
        self,
        job_id: str,
        project: str | None,
        job_budget: float | None,
        provider: str | None,
        estimated: float,
        *,
        reserve: bool = False,
    ) -> None:
        """Raise BudgetExceeded when ``estimated`` would cross a hard threshold.

        With ``reserve`` a stage that may start holds its estimate at once, in the same
        lock: stages started together (``asyncio.gather``, a thread pool) are each judged
        with the others' estimates, not all against the spend before any of them ended.
        :meth:`charge` with ``reserved`` replaces the estimate with what the stage cost.
        """
        with self._lock:
            scopes = self._scopes(job_id, project, job_budget)
            for scope, subject, rules in scopes:
                ledger = self._ledger(scope, subject)
                for name, limit in rules.limits(provider):
                    spent = ledger.get(name, 0.0)
                    if limit.hard is not None and spent + estimated > limit.hard + 1e-12:
                        whose = f"{scope} {subject!r}" + (f", provider {name}" if name else "")
                        raise BudgetExceeded(
                            f"budget exceeded: {whose} has spent ${spent:.4f} of its hard limit "
                            f"${limit.hard:.4f}; this stage's estimate ${estimated:.4f} would "
                            "cross it, so the stage was not started",
                            scope=scope,
                            subject=subject,
                            provider=name,
                            limit=limit.hard,
                            spent=spent,
                            estimated=estimated,
                        )
            if reserve:
                for scope, subject, rules in scopes:
                    charges = self._charges(scope, subject, job_id)
                    for name, _ in rules.limits(provider):
                        charges[name] = charges.get(name, 0.0) + estimated

    def _charges(self, scope: str, subject: str, job_id: str) -> Spend:
        """This process's charges to a scope on behalf of a job. Called with the lock held."""
        if scope == "job":
            return self._spent.setdefault((scope, subject), {})
        # Without a store nothing ever settles a job: one running total instead.
        mine = job_id if self.store is not None else ""
        return self._mine.setdefault((scope, subject), {}).setdefault(mine, {})

    def charge(
        self,
        job_id: str,
        project: str | None,
        job_budget: float | None,
        provider: str | None,
        amount: float,
        *,
        reserved: float = 0.0,
    ) -> list[str]:
        """Add ``amount`` in place of the ``reserved`` estimate :meth:`check` held; the soft
        thresholds it crossed, described (empty: none)."""
        crossed = []
        with self._lock:
            for scope, subject, rules in self._scopes(job_id, project, job_budget):
                ledger = self._ledger(scope, subject)
                charges = self._charges(scope, subject, job_id)
                for name, limit in rules.limits(provider):
                    before = ledger.get(name, 0.0) - reserved
                    after = before + amount
                    charges[name] = charges.get(name, 0.0) + amount - reserved
                    if limit.soft is not None and before <= limit.soft < after:
                        whose = f"{scope} {subject!r}" + (f", provider {name}" if name else "")
                        crossed.append(
                            f"budget: {whose} crossed its soft threshold "
                            f"${limit.soft:.4f} (spent ${after:.4f})"
                        )
        return crossed

    def count_warning(self, scope: str) -> None:
        """One more soft-threshold crossing, on the ``aura.budget.warnings`` counter (of the
        meter provider given, else the global one)."""
        try:
            if self._counter is None:
                provider = self._meter_provider or metrics.get_meter_provider()
                self._counter = provider.get_meter("aura_otel.budgets").create_counter(
                    c.METRIC_BUDGET_WARNINGS,
                    unit="{warning}",
                    description="Soft budget thresholds crossed",
                )
            self._counter.add(1, {"aura.budget.scope": scope})
        except Exception:  # a metrics problem must not break the stage
            logger.debug("aura-otel: counting a budget warning failed", exc_info=True)

    def release(self, job_id: str) -> None:
        """Forget a finished job's spend: a process running for months must not keep one
        ledger per job it ever ran."""
        with self._lock:
            self._spent.pop(("job", job_id), None)

    def spent(self, scope: str, subject: str, provider: str | None = None) -> float:
        """What the scope has spent, as :meth:`check` sees it now."""
        with self._lock:
            return self._ledger(scope, subject).get(provider, 0.0)


_active = Budgets()
_active_lock = threading.Lock()


def install(budgets: Budgets) -> Budgets:
    """Make ``budgets`` the process's (``configure()`` installs the file's rules)."""
    global _active
    with _active_lock:
        _active = budgets
    return budgets


def active() -> Budgets:
    return _active
