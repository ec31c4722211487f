-- API keys and tenants (issue #7). A key is stored only as the SHA-256 of the
-- whole key string (hex), with its first characters for display; the secret
-- is printed once by `finetuned keys create` and never kept. Every file and
-- job belongs to a tenant; events, checkpoints and fine-tuned models belong
-- to their job's. Existing rows get 'default': the tenant of the open
-- loopback mode (no keys), so they stay visible there and to admin keys.

CREATE TABLE api_keys (
  n          INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,            -- "key-…"
  name       TEXT NOT NULL UNIQUE,
  tenant     TEXT NOT NULL,
  admin      INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
  hash       TEXT NOT NULL UNIQUE,            -- hex SHA-256 of the key
  prefix     TEXT NOT NULL,                   -- first characters, for people
  created_at INTEGER NOT NULL,
  revoked_at INTEGER                          -- NULL while the key works
);

ALTER TABLE files ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX files_tenant ON files (tenant, n);
CREATE INDEX jobs_tenant ON jobs (tenant, n);

-- A job's results file (the metrics CSV, purpose 'fine-tune-results', named
-- "<job id>-<name>" by the pool) belongs to the job's tenant from the moment
-- its row exists.
CREATE TRIGGER files_results_tenant AFTER INSERT ON files
WHEN NEW.purpose = 'fine-tune-results'
BEGIN
  UPDATE files SET tenant = (SELECT tenant FROM jobs WHERE id = substr(NEW.filename, 1, 30))
  WHERE id = NEW.id AND EXISTS (SELECT 1 FROM jobs WHERE id = substr(NEW.filename, 1, 30));
END;
