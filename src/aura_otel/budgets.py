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
the project and month scopes it starts from what the jobs folder already holds for them
(read once, through the fleet view's :class:`~aura_otel.insights.JobSource`).
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from . import conventions as c
from .errors import BudgetExceeded, ConfigurationError

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
        file = Path(path)
        try:
            data = file.read_bytes()
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


class Budgets:
    """The rules and what has been spent against them (thread-safe; one per process)."""

    def __init__(
        self,
        rules: BudgetRules | None = None,
        jobs_dir: str | os.PathLike[str] | None = None,
        *,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.rules = rules or BudgetRules()
        self.jobs_dir = jobs_dir
        self._meter_provider = meter_provider
        self._counter: Any = None
        self._spent: dict[tuple[str, str], dict[str | None, float]] = {}
        self._lock = threading.Lock()

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

    def _ledger(self, scope: str, subject: str) -> dict[str | None, float]:
        key = (scope, subject)
        ledger = self._spent.get(key)
        if ledger is None:
            ledger = self._spent[key] = self._seed(scope, subject)
        return ledger

    def _seed(self, scope: str, subject: str) -> dict[str | None, float]:
        """What the jobs folder already holds for a project or month (0 for a job: a job's
        spend is this process's)."""
        spent: dict[str | None, float] = {None: 0.0}
        if scope == "job" or self.jobs_dir is None:
            return spent
        from .insights import FolderJobSource, iter_summaries
        from .stores import LocalStore

        for summary in iter_summaries(FolderJobSource(LocalStore(self.jobs_dir))):
            if scope == "project" and summary.project != subject:
                continue
            if (
                scope == "month"
                and datetime.fromtimestamp(summary.started, UTC).strftime("%Y-%m") != subject
            ):
                continue
            for op in summary.ops:
                if op.cost:
                    spent[None] += op.cost
                    name = op.provider.lower() or None
                    if name:
                        spent[name] = spent.get(name, 0.0) + op.cost
        return spent

    def check(
        self,
        job_id: str,
        project: str | None,
        job_budget: float | None,
        provider: str | None,
        estimated: float,
    ) -> None:
        """Raise BudgetExceeded when ``estimated`` would cross a hard threshold."""
        with self._lock:
            for scope, subject, rules in self._scopes(job_id, project, job_budget):
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

    def charge(
        self,
        job_id: str,
        project: str | None,
        job_budget: float | None,
        provider: str | None,
        amount: float,
    ) -> list[str]:
        """Add ``amount``; the soft thresholds it crossed, described (empty: none)."""
        crossed = []
        with self._lock:
            for scope, subject, rules in self._scopes(job_id, project, job_budget):
                ledger = self._ledger(scope, subject)
                for name, limit in rules.limits(provider):
                    before = ledger.get(name, 0.0)
                    after = before + amount
                    ledger[name] = after
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
        with self._lock:
            return self._spent.get((scope, subject), {}).get(provider, 0.0)


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
