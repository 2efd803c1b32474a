-- aura-otel shared store, version 1: one row per span (the fold unit) and one per job (the
-- v1 document assembled from them, plus the columns the job list filters and sorts on).
CREATE TABLE aura_otel.jobs (
    job_id        text PRIMARY KEY,
    document      bytea NOT NULL,
    status        text NOT NULL,
    started_at    timestamptz,
    last_activity timestamptz,
    updated_at    timestamptz NOT NULL,
    span_count    integer NOT NULL
);
-- The job list: newest first, optionally by status, bounded by a time range.
CREATE INDEX jobs_updated_idx ON aura_otel.jobs (updated_at DESC, job_id);
CREATE INDEX jobs_status_updated_idx ON aura_otel.jobs (status, updated_at DESC, job_id);

CREATE TABLE aura_otel.units (
    job_id  text NOT NULL,
    span_id text NOT NULL,
    -- arrival order: the document is assembled from units in the order a journal would hold them
    seq     bigint GENERATED ALWAYS AS IDENTITY,
    unit    bytea NOT NULL,
    PRIMARY KEY (job_id, span_id)
);
CREATE INDEX units_job_seq_idx ON aura_otel.units (job_id, seq);
