-- aura-otel shared store, version 3: the fleet view's per-job summaries, indexed by start time
-- (the period a fleet request asks for) and, for the anomaly baselines, by project and by
-- project, stage and provider (the last 50 comparable jobs and operations before a period).
-- Rows are written in the same transaction as the job's document; `source_updated_at` is the
-- jobs.updated_at they were made from, so a summary older than its document is recognisable.
-- Rows are never deleted (a role that may select, insert and update rows suffices): a job that
-- is not a v1 job keeps a row with status 'gone' that no query reads, an operation a rewritten job no
-- longer has is moved to started_at -infinity.
-- Existing jobs are summarised by `aura-otel db upgrade` (and any store start) right after
-- this migration: the summary is computed by the package's Python, not by SQL.
CREATE TABLE aura_otel.job_summaries (
    job_id            text PRIMARY KEY REFERENCES aura_otel.jobs (job_id) ON DELETE CASCADE,
    source_updated_at timestamptz NOT NULL,
    started_at        timestamptz NOT NULL,
    project           text NOT NULL,
    status            text NOT NULL,
    summary           bytea NOT NULL
);
CREATE INDEX job_summaries_started_idx ON aura_otel.job_summaries (started_at, job_id);
CREATE INDEX job_summaries_project_idx ON aura_otel.job_summaries
    (project, started_at DESC, job_id COLLATE "C" DESC) WHERE status NOT IN ('running', 'gone');

CREATE TABLE aura_otel.op_summaries (
    job_id     text NOT NULL REFERENCES aura_otel.job_summaries (job_id) ON DELETE CASCADE,
    position   integer NOT NULL,
    project    text NOT NULL,
    stage      text NOT NULL,
    provider   text NOT NULL,
    started_at timestamptz NOT NULL,  -- the job's start: baselines are ordered by job
    priced     boolean NOT NULL,      -- in cost baselines: a cost, and not a cache hit
    PRIMARY KEY (job_id, position)
);
-- Only finished jobs have operations here: a running job is neither judged nor history.
-- Job ids order as Python orders them (COLLATE "C"), the order the baselines are walked in.
CREATE INDEX op_summaries_key_idx ON aura_otel.op_summaries
    (project, stage, provider, started_at DESC, job_id COLLATE "C" DESC);
CREATE INDEX op_summaries_priced_idx ON aura_otel.op_summaries
    (project, stage, provider, started_at DESC, job_id COLLATE "C" DESC) WHERE priced;
