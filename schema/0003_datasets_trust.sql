-- Datasets and trustworthy training: a job's test file, the statistics of
-- its prepared data sets (filled in while it is 'validating_files'), the
-- latest step's metrics, where the step rate is measured from (for
-- estimated_finish), and its lineage when its model is a fine-tuned model or
-- a checkpoint (JSON {"model","job"}). Pruned checkpoints are deleted rows.

ALTER TABLE jobs ADD COLUMN test_file TEXT;
ALTER TABLE jobs ADD COLUMN datasets TEXT;       -- JSON or NULL
ALTER TABLE jobs ADD COLUMN metrics TEXT;        -- JSON of the latest step, or NULL
ALTER TABLE jobs ADD COLUMN parent_model TEXT;   -- JSON {"model","job"} or NULL
ALTER TABLE jobs ADD COLUMN rate_t0_ms INTEGER;  -- Unix ms of the attempt's first step
ALTER TABLE jobs ADD COLUMN rate_step0 INTEGER;  -- its step
ALTER TABLE jobs ADD COLUMN rate_t1_ms INTEGER;  -- Unix ms of the latest step
