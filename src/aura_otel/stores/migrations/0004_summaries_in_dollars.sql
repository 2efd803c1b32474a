-- aura-otel shared store, version 4: the fleet view adds only costs in the summary's currency
-- (USD), as every v1 summary does; a summary made before counted a cost in another currency
-- as dollars. The summaries of jobs whose document names another currency are marked older
-- than their document, and `aura-otel db upgrade` (and any store start) summarises them again
-- right after this migration, in Python. Nothing else changes.
UPDATE aura_otel.job_summaries s
   SET source_updated_at = '-infinity'
  FROM aura_otel.jobs j
 WHERE s.job_id = j.job_id
   AND encode(j.document, 'escape') ~ '"currency"\s*:\s*"(?!USD")';
