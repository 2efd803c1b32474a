"""The fleet view on PostgreSQL: per-job summaries in indexed tables (migration 0003).

Reading every document to draw a 30-day chart does not scale to 100k jobs, and neither does
keeping every summary in each server's memory when many servers share one database. Each
write therefore also stores the job's summary (the very :class:`~aura_otel.insights.JobSummary`
the folder computes, in the same encoding) in ``job_summaries``, with one row per finished
operation in ``op_summaries``; a fleet request reads the period's summaries by start time and,
for the anomaly baselines, only the earlier jobs that hold the last ``HISTORY`` comparable
jobs and operations (index scans per project and per project/stage/provider). The figures are
then computed by the same Python as on the folder, so both stores agree to the last digit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ..insights.anomalies import HISTORY
from ..insights.source import (
    JobSummary,
    read_collections,
    summarize_bytes,
    summary_from_row,
    summary_row,
)
from ..schema import Collection

if TYPE_CHECKING:
    import psycopg

    from .postgres import PostgresStore

logger = logging.getLogger("aura_otel.insights")

SCHEMA = "aura_otel"
#: The status of a summary row whose job is no longer a v1 job (no figure reads it).
GONE = "gone"
_GONE_AT = datetime.min.replace(tzinfo=UTC)
#: Documents summarised per round when back-filling (bounds the memory of one round).
BATCH = 2_000


def _key(value: str) -> str:
    """``value`` as a text column can hold it. A span may carry NUL characters (the folder
    keeps them) but PostgreSQL's text refuses them, and one refusal would fail the whole write:
    each becomes U+FFFD, alike in what is stored and what is looked up. The summary itself
    (bytes) keeps the name as it was, so the figures are the folder's."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def write_summaries(cur: psycopg.Cursor[Any], jobs: Sequence[tuple[str, datetime, bytes]]) -> None:
    """Store the summaries of ``jobs`` ((job id, jobs.updated_at, document)) inside the
    caller's transaction, which holds their rows' locks: a summary never lags its document.

    Rows are only inserted and updated, never deleted (a role that may read, insert and update
    rows suffices): a job that is no longer a v1 job keeps a ``gone`` row, and operations a
    rewritten job no longer has are moved to ``-infinity``, where no baseline looks.
    """
    if not jobs:
        return
    heads: tuple[list[Any], ...] = ([], [], [], [], [], [])
    ops: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    counts: list[int] = []
    for job_id, updated_at, document in jobs:
        summary = summarize_bytes(document, job_id)
        if summary is None:
            # Not a v1 job (yet): the fleet view leaves it out, as on the folder.
            row: tuple[Any, ...] = (job_id, updated_at, _GONE_AT, "", GONE, b"")
            counts.append(0)
        else:
            started = datetime.fromtimestamp(summary.started, UTC)
            row = (
                job_id,
                updated_at,
                started,
                _key(summary.project),
                summary.status,
                orjson.dumps(summary_row(summary)),
            )
            finished = summary.status != "running"
            counts.append(len(summary.ops) if finished else 0)
            for position, op in enumerate(summary.ops if finished else ()):
                priced = op.cost is not None and not op.cache_hit
                for column, value in zip(
                    ops,
                    (
                        job_id,
                        position,
                        _key(summary.project),
                        _key(op.stage),
                        _key(op.provider),
                        started,
                        priced,
                    ),
                    strict=True,
                ):
                    column.append(value)
        for column, value in zip(heads, row, strict=True):
            column.append(value)
    cur.execute(
        f"INSERT INTO {SCHEMA}.job_summaries (job_id, source_updated_at, started_at, project,"
        " status, summary) SELECT * FROM unnest(%s::text[], %s::timestamptz[],"
        " %s::timestamptz[], %s::text[], %s::text[], %s::bytea[])"
        " ON CONFLICT (job_id) DO UPDATE SET source_updated_at = excluded.source_updated_at,"
        " started_at = excluded.started_at, project = excluded.project,"
        " status = excluded.status, summary = excluded.summary",
        heads,
    )
    if ops[0]:
        cur.execute(
            f"INSERT INTO {SCHEMA}.op_summaries (job_id, position, project, stage, provider,"
            " started_at, priced) SELECT * FROM unnest(%s::text[], %s::int[], %s::text[],"
            " %s::text[], %s::text[], %s::timestamptz[], %s::bool[])"
            " ON CONFLICT (job_id, position) DO UPDATE SET project = excluded.project,"
            " stage = excluded.stage, provider = excluded.provider,"
            " started_at = excluded.started_at, priced = excluded.priced",
            ops,
        )
    # Operations a job no longer has (rare: a hand-edited or shrunk document) leave the
    # baselines; one indexed look per job, not a join the planner may turn into a scan.
    wanted = dict(zip(heads[0], counts, strict=True))
    cur.execute(
        f"SELECT o.job_id, count(*) FROM {SCHEMA}.op_summaries o"
        " JOIN unnest(%s::text[]) AS u(job_id) USING (job_id)"
        " WHERE o.started_at <> '-infinity' GROUP BY o.job_id",
        (heads[0],),
    )
    shrunk = [(job_id, wanted[job_id]) for job_id, had in cur.fetchall() if had > wanted[job_id]]
    if shrunk:
        cur.executemany(
            f"UPDATE {SCHEMA}.op_summaries SET started_at = '-infinity', priced = false"
            " WHERE job_id = %s AND position >= %s",
            shrunk,
        )


def summarize_stale(
    conn: psycopg.Connection[Any], since: datetime | None = None, *, batch: int = BATCH
) -> int:
    """Summarise the documents whose summary is missing or older than they are (a database
    upgraded to schema 3, or a document written outside :meth:`PostgresStore.merge`), only
    among jobs updated after ``since`` when given. Returns how many were (re)summarised.

    Each batch is its own transaction and locks its jobs' rows, so it never races a writer.
    """
    condition = "" if since is None else "AND j.updated_at > %s"
    params: tuple[Any, ...] = () if since is None else (since,)
    stale = [
        row[0]
        for row in conn.execute(
            f"SELECT j.job_id FROM {SCHEMA}.jobs j LEFT JOIN {SCHEMA}.job_summaries s"
            " USING (job_id) WHERE (s.job_id IS NULL OR s.source_updated_at <> j.updated_at)"
            f" AND octet_length(j.document) > 0 {condition}",
            params,
        ).fetchall()
    ]
    conn.commit()  # each batch below is then a transaction of its own, not a savepoint
    done = 0
    for first in range(0, len(stale), batch):
        ids = stale[first : first + batch]
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                f"SELECT j.job_id, j.updated_at, j.document FROM {SCHEMA}.jobs j"
                " JOIN unnest(%s::text[]) AS u(job_id) USING (job_id)"
                " ORDER BY j.job_id FOR UPDATE OF j",
                (ids,),
            )
            rows = [(job_id, updated, bytes(doc)) for job_id, updated, doc in cur.fetchall()]
            write_summaries(cur, rows)
        done += len(rows)
    return done


class PostgresJobSource:
    """The fleet view's :class:`~aura_otel.insights.JobSource` over ``job_summaries``.

    Consistency: each request reads the summaries committed when its queries run (READ
    COMMITTED); every writer stores a job's summary in the transaction that stores its
    document, so a figure never counts half a write. ``generation`` changes whenever any job
    was added or rewritten, which is when memoised anomaly verdicts are dropped.
    """

    def __init__(self, store: PostgresStore, *, history: int = HISTORY) -> None:
        self.store = store
        self.history_size = history
        self.generation: tuple[int, datetime | None, Any] | None = None
        self._watermark: datetime | None = None
        self._lock = threading.Lock()

    # -- the JobSource protocol ------------------------------------------------------------------
    def iter_summaries(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[JobSummary]:
        with self.store.connection() as conn:
            self._catch_up(conn)
            rows = conn.execute(
                f"SELECT summary FROM {SCHEMA}.job_summaries WHERE started_at >= %s"
                " AND started_at < %s AND status <> 'gone'",
                (since or datetime.min.replace(tzinfo=UTC), until or _FAR_FUTURE),
            ).fetchall()
        yield from _decode(row[0] for row in rows)

    def project_summaries(self, project: str) -> list[JobSummary]:
        """Every job of one project (a project budget's spend), by its index."""
        with self.store.connection() as conn:
            self._catch_up(conn)
            rows = conn.execute(
                f"SELECT summary FROM {SCHEMA}.job_summaries WHERE project = %s"
                " AND status <> 'gone'",
                (_key(project),),
            ).fetchall()
        return list(_decode(row[0] for row in rows))

    def iter_collections(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[Collection]:
        return read_collections(self.store, self.iter_summaries(since, until))

    # -- the fast paths the server uses ----------------------------------------------------------
    def latest_start(self) -> float | None:
        with self.store.connection() as conn:
            self._catch_up(conn)
            row = conn.execute(
                f"SELECT max(started_at) FROM {SCHEMA}.job_summaries WHERE status <> 'gone'"
            ).fetchone()
        return row[0].timestamp() if row and row[0] is not None else None

    def history(self, since: datetime, until: datetime) -> list[JobSummary]:
        """The period's jobs, plus the earlier jobs holding the last ``history`` comparable
        jobs (same project) and operations (same project, stage and provider; priced ones
        apart, as cost baselines skip cache hits) before ``since``: exactly the baselines
        :func:`~aura_otel.insights.job_anomalies` walks, without the rest of the history."""
        with self.store.connection() as conn:
            self._catch_up(conn)
            period = list(
                _decode(
                    row[0]
                    for row in conn.execute(
                        f"SELECT summary FROM {SCHEMA}.job_summaries WHERE started_at >= %s"
                        " AND started_at < %s AND status <> 'gone'",
                        (since, until),
                    ).fetchall()
                )
            )
            projects = sorted({_key(job.project) for job in period})
            keys = sorted(
                {
                    (_key(job.project), _key(op.stage), _key(op.provider))
                    for job in period
                    for op in job.ops
                }
            )
            earlier = conn.execute(
                _BASELINE_SQL,
                {
                    "projects": projects,
                    "kp": [k[0] for k in keys],
                    "ks": [k[1] for k in keys],
                    "kv": [k[2] for k in keys],
                    "before": since,
                    "n": self.history_size,
                },
            ).fetchall()
        return list(_decode(row[0] for row in earlier)) + period

    def job_history(self, job_id: str) -> list[JobSummary]:
        """The job's baselines: the jobs started at its very instant, and what came before."""
        return self.jobs_history([job_id])

    def jobs_history(self, job_ids: list[str]) -> list[JobSummary]:
        """Jobs' baselines: every job from the first one's start to the last one's, and the
        baselines before that (a page of the job list: recent jobs, a short span)."""
        with self.store.connection() as conn:
            self._catch_up(conn)
            row = conn.execute(
                f"SELECT min(started_at), max(started_at) FROM {SCHEMA}.job_summaries"
                " WHERE job_id = ANY(%s) AND status <> 'gone'",
                (job_ids,),
            ).fetchone()
        if row is None or row[0] is None:
            return []
        return self.history(row[0], row[1] + timedelta(microseconds=1))

    # -- keeping up with writers that do not summarise --------------------------------------------
    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """Summarise documents changed since the last look without a summary of their version
        (written by ``db import`` or by hand), and note the generation."""
        with self._lock:
            # Not just max(updated_at): a writer that took its timestamp earlier can commit
            # later, below a maximum already seen; the sum of every stamp still moves.
            row = conn.execute(
                "SELECT count(*), max(updated_at),"
                " sum((extract(epoch FROM updated_at) * 1000000)::bigint)"
                f" FROM {SCHEMA}.jobs"
            ).fetchone()
            generation = (int(row[0]), row[1], row[2]) if row else (0, None, None)
            if generation != self.generation:
                count = summarize_stale(
                    conn, None if self._watermark is None else self._watermark - _LATE_COMMITS
                )
                if count:
                    logger.info("insights: summarised %d job(s) written without a summary", count)
                self._watermark = generation[1]
                self.generation = generation


_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
#: How far before the newest stamp seen a document written without a summary is looked for
#: again: a transaction may commit a while after it took its timestamp.
_LATE_COMMITS = timedelta(minutes=5)


def _recent_ops(condition: str) -> str:
    """The newest ``%(n)s`` jobs before ``%(before)s`` of each (project, stage, provider) key
    whose operation meets ``condition``: one branch of the baseline query below."""
    return f"""
    SELECT x.job_id FROM unnest(%(kp)s::text[], %(ks)s::text[], %(kv)s::text[])
        AS k(project, stage, provider)
    CROSS JOIN LATERAL (
        SELECT o.job_id FROM {SCHEMA}.op_summaries o
        WHERE o.project = k.project AND o.stage = k.stage AND o.provider = k.provider
          AND {condition} AND o.started_at < %(before)s AND o.started_at > '-infinity'
        ORDER BY o.started_at DESC, o.job_id COLLATE "C" DESC LIMIT %(n)s) x"""


_BASELINE_SQL = f"""
SELECT s.summary FROM {SCHEMA}.job_summaries s WHERE s.status <> 'gone' AND s.job_id IN (
    SELECT x.job_id FROM unnest(%(projects)s::text[]) AS k(project)
    CROSS JOIN LATERAL (
        SELECT j.job_id FROM {SCHEMA}.job_summaries j
        WHERE j.project = k.project AND j.status NOT IN ('running', 'gone')
          AND j.started_at < %(before)s
        ORDER BY j.started_at DESC, j.job_id COLLATE "C" DESC LIMIT %(n)s) x
    UNION{_recent_ops("true")}
    UNION{_recent_ops("o.priced")}
)
"""


def _decode(rows: Iterable[Any]) -> Iterator[JobSummary]:
    for data in rows:
        try:
            yield summary_from_row(orjson.loads(bytes(data)))
        except (ValueError, orjson.JSONDecodeError) as exc:  # written by us: should not happen
            logger.warning("insights: a stored summary was left out: %s", exc)
