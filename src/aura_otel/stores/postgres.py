"""PostgreSQL as the shared store: many receivers and API servers, one view of every job.

Tables live in the ``aura_otel`` schema (created by the migrations in ``migrations/``):

* ``units``: one row per span, primary key (job id, span id). A span delivered twice, by a
  retry or through two receivers, is one row (``ON CONFLICT DO NOTHING``): the first unit
  stays, as in the folder's journal, because a span's unit never changes once it ended.
* ``jobs``: per job, the v1 document assembled from its units with the same fold code as the
  folder store (byte for byte the same file for the same spans), plus the columns the job list
  filters and sorts on.

A write is one transaction: lock the job's row (created on first sight), insert the units,
read back every unit of the job in arrival order, assemble, update the row, commit. Writers of
one job queue on its row lock and each one assembles after the previous one committed, so
concurrent writers in any number of processes never lose or double a record; writers of
different jobs never wait for each other. Only after the commit does the caller acknowledge.

Connection trouble, a pool that cannot hand out a connection within ``timeout``, or a
statement over ``statement_timeout`` raise :class:`~aura_otel.errors.StoreUnavailableError`
(retryable); pooled connections are checked before use, so the store recovers by itself once
the database is back.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

from .. import figures
from .._util import BoundedCache, throttled
from ..errors import (
    ConfigurationError,
    StoreUnavailableError,
    TelemetryNotFoundError,
    TelemetryTooLargeError,
)
from ..fold import Pricer, Unit, assemble
from ..schema import EnumCase, dumps, validate_job_id
from ..values import representable
from . import redact_url
from .base import JobFilter, JobLister, Store
from .pg_summaries import PostgresJobSource, summarize_stale, write_summaries

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from ..server.joblist import JobPage

logger = logging.getLogger("aura_otel.store")

SCHEMA = "aura_otel"
#: One number for every aura-otel process: migrations run under this advisory lock, so two
#: receivers starting at once never apply the same migration twice.
_MIGRATION_LOCK = 0x6175726F  # "auro"
#: The migration that adds the fleet view's summary tables: jobs stored before it are
#: summarised right after it is applied.
#: Migrations after which existing jobs are summarised again (by the package's Python).
RESUMMARIZING_MIGRATIONS = ("0003_", "0004_")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration shipped in the package, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise ConfigurationError(f"the packaged migrations are not numbered 1..n: {versions}")
    return found


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def _import_driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "the PostgreSQL store needs psycopg 3 and psycopg-pool: "
            "pip install 'aura-otel[postgres]'"
        ) from None
    return psycopg, psycopg_pool


def _unavailable_types() -> tuple[type[BaseException], ...]:
    psycopg, psycopg_pool = _import_driver()
    return (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg_pool.PoolTimeout,
        psycopg_pool.PoolClosed,
    )


def _describe(data: bytes) -> tuple[str, datetime | None, datetime | None]:
    """(status, start, last activity) of a document's bytes; ``unreadable`` when not v1."""
    from ..errors import AuraOtelError
    from ..schema import load_collection, to_dict

    try:
        doc = to_dict(load_collection(data))
    except AuraOtelError:
        return str(figures.JobStatus.UNREADABLE), None, None
    return (
        str(figures.job_status(doc)),
        figures.parse_time(doc.get("collection_started_at")),
        figures.last_activity(doc),
    )


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class PostgresStore(Store):
    """Jobs in PostgreSQL (see the module docstring). ``url`` is a libpq URL.

    ``migrate`` applies pending migrations when the store opens (``aura-otel db upgrade``
    does the same on its own); with it off, a database whose schema is behind is refused.
    """

    def __init__(
        self,
        url: str,
        *,
        max_file_bytes: int | None = None,
        migrate: bool = True,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 5.0,
        statement_timeout: float = 10.0,
        sync: bool = True,
    ) -> None:
        _psycopg, psycopg_pool = _import_driver()
        self.url = url
        self.description = f"PostgreSQL {redact_url(url)}"
        self.max_file_bytes = max_file_bytes
        self.timeout = timeout
        self._errors = _unavailable_types()
        options = f"-c statement_timeout={max(1, int(statement_timeout * 1000))}"
        if not sync:  # acknowledge before the WAL reaches the disk (like --durability write)
            options += " -c synchronous_commit=off"
        self._new_pool: Callable[[], ConnectionPool] = functools.partial(
            psycopg_pool.ConnectionPool,
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={
                "options": options,
                "connect_timeout": max(1, int(timeout)),
                "application_name": "aura-otel",
            },
            check=psycopg_pool.ConnectionPool.check_connection,
            # A broken connection is replaced in the background with a backoff that doubles
            # up to this bound; then the pool gives up, and the next request that finds it
            # empty starts a fresh attempt. A short bound keeps recovery prompt after a long
            # outage (the backoff never grows past it) while an outage costs one attempt per
            # request at most, not a storm.
            reconnect_timeout=10.0,
            name="aura-otel",
        )
        self.pool: ConnectionPool = self._new_pool()
        #: Pools a forked child inherited: never used nor closed there (see _after_fork).
        self._inherited: list[ConnectionPool] = []
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_fork_in_child() -> None:
                store = ref()
                if store is not None:
                    store._after_fork()

            os.register_at_fork(after_in_child=after_fork_in_child)
        self._failures = 0
        #: The driver's words for the last failure (for start-up errors and diagnostics).
        self.last_error = ""
        try:
            self.pool.open(wait=False)
            if migrate:
                self.upgrade()
            else:
                self._check_schema()
        except StoreUnavailableError as exc:
            self.pool.close()
            raise ConfigurationError(
                f"cannot reach {self.description}: {self.last_error or exc}"
            ) from None
        except BaseException:
            self.pool.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    def _after_fork(self) -> None:
        """A forked child (a prefork server's worker) gets its own connections. The inherited
        ones are the parent's sessions: one socket used by two processes mixes their
        messages. They are kept, never used nor closed (closing would end the parent's
        sessions; psycopg leaves another process's connections alone when they are freed)."""
        self._inherited.append(self.pool)
        self._lock = threading.Lock()
        self.pool = self._new_pool()
        try:
            self.pool.open(wait=False)
        except Exception:  # the next request reports it, as any unreachable database
            logger.warning("aura-otel: %s: reconnecting after fork failed", self.description)

    # -- connections -----------------------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; trouble reaching the database becomes StoreUnavailableError."""
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                yield conn
        except self._errors as exc:
            # The details (host, port, the server's words) go to the log, throttled during an
            # outage; the error itself, which may reach a sender or a browser, stays generic.
            with self._lock:
                self._failures += 1
                count = self._failures
                self.last_error = f"{type(exc).__name__}: {exc}"
            if throttled(count):
                logger.warning(
                    "aura-otel: %s is unavailable (%s #%d): %s",
                    self.description,
                    type(exc).__name__,
                    count,
                    exc,
                )
            raise StoreUnavailableError(
                f"the PostgreSQL store is unavailable ({type(exc).__name__})"
            ) from None

    def check(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self.pool.close()

    # -- migrations ------------------------------------------------------------------------------
    def applied(self) -> dict[int, tuple[str, str]]:
        """version -> (name, checksum) of the migrations the database has."""
        with self.connection() as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s)", (f"{SCHEMA}.schema_migrations",)
            ).fetchone()
            if exists is None or exists[0] is None:
                return {}
            rows = conn.execute(f"SELECT version, name, checksum FROM {SCHEMA}.schema_migrations")
            return {int(v): (n, c) for v, n, c in rows.fetchall()}

    def upgrade(self) -> list[str]:
        """Apply the pending migrations, in order, in one transaction; returns their names.

        Runs under an advisory lock (processes starting together apply each migration once),
        and refuses a database whose applied migrations differ from the packaged ones or that
        is newer than this version: the schema is only ever what the migrations made it.
        """
        shipped = migrations()
        done: list[str] = []
        current = self.applied()
        self._compare(current, shipped)
        if len(current) == len(shipped):
            # Nothing to do, and no DDL issued: a server whose role may only read and write
            # rows starts against an up-to-date schema.
            return done
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute(f"SELECT version, name, checksum FROM {SCHEMA}.schema_migrations")
            applied = {int(v): (n, c) for v, n, c in rows.fetchall()}
            self._compare(applied, shipped)
            for version, name, sql in shipped:
                if version in applied:
                    continue
                conn.execute(sql.encode())  # packaged SQL, not user input
                conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_migrations (version, name, checksum) "
                    "VALUES (%s, %s, %s)",
                    (version, name, _checksum(sql)),
                )
                done.append(name)
        if done:
            logger.info("aura-otel: applied migrations %s to %s", done, self.description)
        if any(name.startswith(RESUMMARIZING_MIGRATIONS) for name in done):
            # Jobs stored before the fleet view's summary tables existed, or summarised by an
            # older rule: summarised once here (in batches, each its own transaction, so
            # writers carry on meanwhile).
            with self.connection() as conn:
                count = summarize_stale(conn)
            logger.info("aura-otel: summarised %d existing job(s) for the fleet view", count)
        return done

    def _check_schema(self) -> None:
        shipped = migrations()
        applied = self.applied()
        self._compare(applied, shipped)
        if len(applied) < len(shipped):
            raise ConfigurationError(
                f"{self.description} is at schema version {len(applied)}, this aura-otel needs "
                f"{len(shipped)}: run `aura-otel db upgrade --store URL`"
            )

    def _compare(
        self, applied: dict[int, tuple[str, str]], shipped: list[tuple[int, str, str]]
    ) -> None:
        known = {version: (name, _checksum(sql)) for version, name, sql in shipped}
        for version, (name, checksum) in sorted(applied.items()):
            if version not in known:
                raise ConfigurationError(
                    f"{self.description} has schema migration {version} ({name}), newer than "
                    "this aura-otel knows: upgrade aura-otel"
                )
            if known[version][1] != checksum:
                raise ConfigurationError(
                    f"schema migration {name} applied to {self.description} differs from the "
                    "packaged one: the schema was changed outside the migrations"
                )

    # -- writing ---------------------------------------------------------------------------------
    def merge(
        self,
        job_id: str,
        units: dict[str, Unit],
        *,
        pricer: Pricer | None = None,
        enum_case: EnumCase = "lower",
    ) -> dict[str, Unit]:
        return self.merge_many({job_id: units}, pricer=pricer, enum_case=enum_case)[job_id]

    def merge_many(
        self,
        jobs: dict[str, dict[str, Unit]],
        *,
        pricer: Pricer | None = None,
        enum_case: EnumCase = "lower",
    ) -> dict[str, dict[str, Unit]]:
        """:meth:`merge` for several jobs in one transaction (one commit, one WAL flush: a
        request's jobs are acknowledged together or not at all).

        Job rows are created and locked in id order, so two transactions sharing jobs take
        their locks in the same order and never deadlock.
        """
        order = sorted(jobs)
        rows = []
        written: dict[str, dict[str, Unit]] = {}  # the units as stored
        for job_id in order:
            validate_job_id(job_id)
            mine = written[job_id] = {}
            for span_id, unit in jobs[job_id].items():
                try:
                    data = orjson.dumps(unit)
                except orjson.JSONEncodeError:  # as the folder's journal does: made writable
                    unit = representable(unit)
                    data = orjson.dumps(unit)
                mine[span_id] = unit
                rows.append((job_id, span_id, data))
        if not order:
            return {}
        with self.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The row lock is what orders writers of one job: created on first sight (a
            # placeholder no reader sees, it is replaced before the commit), then locked.
            # Whole arrays per statement (unnest), not a statement per row: a request's
            # hundreds of spans cost three round trips, not hundreds.
            cur.execute(
                f"INSERT INTO {SCHEMA}.jobs (job_id, document, status, updated_at, span_count)"
                " SELECT j, '', 'running', now(), 0 FROM unnest(%s::text[]) AS j"
                " ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
                (order,),
            )
            # Jobs this transaction created hold only its own units (every writer creates the
            # row before adding units, and nobody else can until this commits): no need to
            # read them back. The usual case, a whole job in one request.
            created = {row[0] for row in cur.fetchall()}
            cur.execute(
                f"SELECT job_id FROM {SCHEMA}.jobs WHERE job_id = ANY(%s) ORDER BY job_id"
                " FOR UPDATE",
                (order,),
            )
            if rows:
                cur.execute(
                    f"INSERT INTO {SCHEMA}.units (job_id, span_id, unit)"
                    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])"
                    " ON CONFLICT (job_id, span_id) DO NOTHING",
                    ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
                )
            stored: dict[str, dict[str, Unit]] = {job_id: {} for job_id in order}
            for job_id in created:
                stored[job_id] = written[job_id]
            existing = [job_id for job_id in order if job_id not in created]
            if existing:
                cur.execute(
                    f"SELECT job_id, span_id, unit FROM {SCHEMA}.units WHERE job_id = ANY(%s)"
                    " ORDER BY job_id, seq",
                    (existing,),
                )
                for job_id, span_id, data in cur.fetchall():
                    stored[job_id][span_id] = orjson.loads(data)
            columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
            for job_id in order:
                doc = assemble(job_id, stored[job_id], pricer=pricer)
                values = (
                    dumps(doc, enum_case=enum_case),
                    str(figures.job_status(doc)),
                    figures.parse_time(doc.get("collection_started_at")),
                    figures.last_activity(doc),
                    len(stored[job_id]),
                    job_id,
                )
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
            cur.execute(
                f"UPDATE {SCHEMA}.jobs AS j SET document = u.document, status = u.status,"
                " started_at = u.started_at, last_activity = u.last_activity,"
                " updated_at = clock_timestamp(), span_count = u.span_count"
                " FROM unnest(%s::bytea[], %s::text[], %s::timestamptz[], %s::timestamptz[],"
                " %s::int[], %s::text[])"
                " AS u(document, status, started_at, last_activity, span_count, job_id)"
                " WHERE j.job_id = u.job_id RETURNING j.job_id, j.updated_at",
                columns,
            )
            documents = dict(zip(columns[5], columns[0], strict=True))
            # The fleet view's summary, in the same transaction as the document it reflects.
            write_summaries(
                cur, [(job_id, updated, documents[job_id]) for job_id, updated in cur.fetchall()]
            )
        return stored

    def import_document(self, job_id: str, data: bytes, updated_at: datetime) -> bool:
        """Store a document written before this store held the job (a ``telemetry.json`` with
        no journal beside it), as it is, even unreadable: the list then shows it as the folder
        did. A job already in the store is left alone (False): its spans are the better source.
        A later span of an imported job rebuilds its document from the spans stored."""
        validate_job_id(job_id)
        status, started, last = _describe(data)
        with self.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {SCHEMA}.jobs (job_id, document, status, started_at, last_activity,"
                " updated_at, span_count) VALUES (%s, %s, %s, %s, %s, %s, 0)"
                " ON CONFLICT (job_id) DO NOTHING RETURNING updated_at",
                (job_id, data, status, started, last, updated_at),
            )
            row = cur.fetchone()
            if row is None:
                return False
            write_summaries(cur, [(job_id, row[0], data)])
            return True

    # -- reading ---------------------------------------------------------------------------------
    def read_bytes(self, job_id: str) -> bytes:
        validate_job_id(job_id)
        with self.connection() as conn:
            row = conn.execute(
                f"SELECT octet_length(document), CASE WHEN %s::bigint IS NULL OR "
                f"octet_length(document) <= %s THEN document END FROM {SCHEMA}.jobs "
                "WHERE job_id = %s",
                (self.max_file_bytes, self.max_file_bytes, job_id),
            ).fetchone()
        if row is None:
            raise TelemetryNotFoundError(f"no telemetry for job {job_id!r} in {self.description}")
        size, data = row
        if data is None:
            raise TelemetryTooLargeError(
                f"the document of job {job_id!r} is {size} bytes; the limit is "
                f"{self.max_file_bytes}",
                size=int(size),
                limit=int(self.max_file_bytes or 0),
            )
        return bytes(data)

    def exists(self, job_id: str) -> bool:
        validate_job_id(job_id)
        with self.connection() as conn:
            return (
                conn.execute(f"SELECT 1 FROM {SCHEMA}.jobs WHERE job_id = %s", (job_id,)).fetchone()
                is not None
            )

    def read_units(self, job_id: str) -> dict[str, Unit]:
        validate_job_id(job_id)
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT span_id, unit FROM {SCHEMA}.units WHERE job_id = %s ORDER BY seq",
                (job_id,),
            ).fetchall()
        return {sid: orjson.loads(data) for sid, data in rows}

    def read_journal(self, job_id: str) -> dict[str, Unit]:
        """The folder store's name for :meth:`read_units` (trace links use it)."""
        return self.read_units(job_id)

    def job_entries(self) -> list[tuple[str, int, int]]:
        """(job id, version stamp, size) of every job, newest first: what the folder's
        (mtime_ns, size) listing gives, so a summary cache works the same on both stores."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT job_id, updated_at, octet_length(document) FROM aura_otel.jobs "
                "ORDER BY updated_at DESC, job_id"
            ).fetchall()
        return [(job_id, _ns(updated), size) for job_id, updated, size in rows]

    def job_ids(self) -> list[str]:
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT job_id FROM {SCHEMA}.jobs ORDER BY updated_at DESC, job_id"
            ).fetchall()
        return [r[0] for r in rows]

    def lister(self, *, abandoned_after: float | None = None) -> JobLister:
        return PostgresJobList(self, abandoned_after=abandoned_after)

    def job_source(self) -> PostgresJobSource:
        return PostgresJobSource(self)


BIGINT_MAX = 2**63 - 1


class PostgresJobList(JobLister):
    """The job list from indexed queries: a count and a page of (id, update time) per request;
    documents are fetched and parsed only for rows not cached at that update time, so a list
    that refreshes every few seconds parses only the jobs that changed."""

    def __init__(self, store: PostgresStore, *, abandoned_after: float | None = None) -> None:
        self.store = store
        self.abandoned_after = abandoned_after
        self.parses = 0  # documents parsed (the benchmark and tests read it)
        # job id -> (update time, row, last activity of a running job)
        self._rows: BoundedCache[str, tuple[datetime, dict[str, Any], datetime | None]] = (
            BoundedCache(20_000)
        )
        self._cache_lock = threading.Lock()

    def page(self, page: int = 1, page_size: int = 50, filters: JobFilter | None = None) -> JobPage:
        from ..server.joblist import JobPage, aged_row, check_page, parse_row

        check_page(page, page_size)
        filters = filters or JobFilter()
        where, params = self._where(filters)
        with self.store.connection() as conn:
            total = conn.execute(f"SELECT count(*) FROM {SCHEMA}.jobs {where}", params).fetchone()
            listed = conn.execute(
                f"SELECT job_id, updated_at FROM {SCHEMA}.jobs {where} "
                "ORDER BY updated_at DESC, job_id LIMIT %s OFFSET %s",
                # A page past any real table is empty; OFFSET is a bigint, so cap it there.
                [*params, page_size, min((page - 1) * page_size, BIGINT_MAX)],
            ).fetchall()
            stale = [
                job_id
                for job_id, updated_at in listed
                if (cached := self._rows.get(job_id)) is None or cached[0] != updated_at
            ]
            fetched = {}
            if stale:
                for job_id, document, updated_at in conn.execute(
                    f"SELECT job_id, document, updated_at FROM {SCHEMA}.jobs"
                    " WHERE job_id = ANY(%s)",
                    (stale,),
                ).fetchall():
                    fetched[job_id] = (bytes(document), updated_at)
        for job_id, (document, updated_at) in fetched.items():
            self.parses += 1
            row, last = parse_row(job_id, document, _ns(updated_at))
            with self._cache_lock:
                self._rows.put(job_id, (updated_at, row, last))
        items = []
        for job_id, _ in listed:
            cached = self._rows.get(job_id)
            if cached is None:  # deleted between the two queries, or forgotten: left out
                continue
            items.append(aged_row(cached[1], cached[2], None, self.abandoned_after))
        return JobPage(
            items=items, page=page, page_size=page_size, total=int(total[0]) if total else 0
        )

    def _where(self, filters: JobFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if filters.since is not None:
            clauses.append("updated_at >= %s")
            params.append(filters.since)
        if filters.until is not None:
            clauses.append("updated_at < %s")
            params.append(filters.until)
        if filters.search and "\x00" in filters.search:
            clauses.append("false")  # no job id holds one, and PostgreSQL's text refuses it
        elif filters.search:
            escaped = filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("job_id ILIKE %s")
            params.append(f"%{escaped}%")
        status = filters.status
        if status is not None:
            live = status in (figures.JobStatus.RUNNING, figures.JobStatus.ABANDONED)
            clauses.append("status = %s")
            params.append(str(figures.JobStatus.RUNNING) if live else status)
            if live and self.abandoned_after is not None:
                try:
                    cutoff = datetime.now(UTC) - timedelta(seconds=self.abandoned_after)
                except OverflowError:  # a quiet time past the calendar: nothing is abandoned
                    cutoff = datetime.min.replace(tzinfo=UTC)
                if status == figures.JobStatus.ABANDONED:
                    clauses.append("last_activity < %s")
                else:
                    clauses.append("(last_activity IS NULL OR last_activity >= %s)")
                params.append(cutoff)
            elif status == figures.JobStatus.ABANDONED:
                clauses.append("false")
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
