-- Upload-time dataset validation (engine/dsval.h): a file's status is
-- 'processed' or 'error'; status_details is a one-line summary naming the
-- first bad line, and validation the full report as JSON. Rows from before
-- this migration keep status 'processed' with both NULL.

ALTER TABLE files ADD COLUMN status_details TEXT;
ALTER TABLE files ADD COLUMN validation TEXT;  -- JSON object or NULL
