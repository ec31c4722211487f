-- finetuned's first schema: uploaded files, fine-tuning jobs with their lease
-- state, the per-job event log (seq orders every event of the database, so
-- SSE can resume from Last-Event-ID) and checkpoints. Append-only: change the
-- schema with a new numbered file, never by editing this one.

CREATE TABLE files (
  n          INTEGER PRIMARY KEY AUTOINCREMENT,  -- list order
  id         TEXT NOT NULL UNIQUE,                -- "file-…"
  bytes      INTEGER NOT NULL CHECK (bytes >= 0),
  created_at INTEGER NOT NULL,
  filename   TEXT NOT NULL,
  purpose    TEXT NOT NULL,
  status     TEXT NOT NULL DEFAULT 'processed'
);

CREATE TABLE jobs (
  n                INTEGER PRIMARY KEY AUTOINCREMENT,  -- list and claim order
  id               TEXT NOT NULL UNIQUE,               -- "ftjob-…"
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  model            TEXT NOT NULL,
  training_file    TEXT NOT NULL,
  validation_file  TEXT,
  suffix           TEXT,
  seed             INTEGER NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('validating_files', 'queued', 'running',
                     'succeeded', 'failed', 'cancelled', 'pausing', 'paused')),
  attempt          INTEGER NOT NULL DEFAULT 0,  -- claims so far (pauses included)
  lost             INTEGER NOT NULL DEFAULT 0,  -- attempts whose lease ran out
  worker           TEXT,               -- worker id holding the lease
  lease_expires_ms INTEGER,            -- Unix milliseconds
  spec             TEXT NOT NULL,      -- resolved spec, JSON
  metadata         TEXT,               -- JSON object or NULL
  error_code       TEXT,
  error_message    TEXT,
  error_param      TEXT,
  steps_completed  INTEGER NOT NULL DEFAULT 0,
  total_steps      INTEGER,
  trained_tokens   INTEGER,
  epoch            INTEGER,
  fine_tuned_model TEXT,
  model_path       TEXT,
  result           TEXT,               -- JSON from the worker's "done"
  resume_from      TEXT,               -- path of the latest complete checkpoint
  started_at       INTEGER,
  finished_at      INTEGER
);
CREATE INDEX jobs_status ON jobs (status, n);
CREATE INDEX jobs_model ON jobs (fine_tuned_model);

CREATE TABLE events (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,     -- "ftevent-…"
  job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  level      TEXT NOT NULL,
  type       TEXT NOT NULL,
  message    TEXT NOT NULL,
  data       TEXT                      -- JSON or NULL
);
CREATE INDEX events_job ON events (job_id, seq);

CREATE TABLE checkpoints (
  n          INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,     -- "ftckpt-…"
  job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  attempt    INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  step       INTEGER NOT NULL,
  path       TEXT NOT NULL,
  metrics    TEXT                      -- JSON or NULL
);
CREATE INDEX checkpoints_job ON checkpoints (job_id, n);
