-- aura-otel shared store, version 2: the job list's search by id (a case-insensitive
-- substring, ILIKE '%text%') from a trigram index instead of a scan of every job.
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the database's owner
-- may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX jobs_job_id_trgm_idx ON aura_otel.jobs USING gin (job_id gin_trgm_ops);
