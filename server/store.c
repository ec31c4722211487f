/* The daemon's SQLite store (see store.h for the contract).
 *
 * Workload: a few writes per training step per running job (metrics events,
 * heartbeats), bursts of reads from API clients, and SSE streams that wait
 * for new events. One connection, one mutex: SQLite serialises writers anyway
 * and the rates are tiny next to a training step, so a pool of connections
 * would buy nothing but lock errors. Every write is one BEGIN IMMEDIATE ..
 * COMMIT with synchronous=FULL, so an acknowledged write survives a crash or
 * a power cut. Terminal states are enforced in the UPDATEs' WHERE clauses,
 * never by a read-then-write, so no interleaving can revive a finished job.
 * store_events_wait sleeps on a condition variable (on the same mutex) that
 * every event append and status change broadcasts. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

extern const struct ft_migration {
  const char *name;
  const char *sql;
} ft_migrations[];

struct store {
  sqlite3 *db;
  pthread_mutex_t mu; /* guards db and everything below */
  pthread_cond_t cv;  /* broadcast on every event and status change */
  int stopping;       /* store_wake_all was called */
  store_transition_fn on_transition; /* store_set_transition_hook; NULL: none */
};

#define TERMINAL_SQL "('succeeded','failed','cancelled')"
#define ACTIVE_SQL "('validating_files','queued','running','pausing','paused')"

static const char *const all_statuses[] = {"validating_files", "queued", "running",
                                           "succeeded",        "failed", "cancelled",
                                           "pausing",          "paused", NULL};

/* ---- small helpers ------------------------------------------------------- */

int64_t store_now(void) { return (int64_t)time(NULL); }

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_new_id(const char *prefix, char *buf, size_t n) {
  unsigned char r[12];
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t k = getrandom(r + got, sizeof r - got, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      /* getrandom cannot fail on Linux >= 3.17 short of EINTR; fall back to
       * the clock rather than leave bytes uninitialised. */
      uint64_t t = (uint64_t)now_ms() ^ (uint64_t)clock();
      for (; got < sizeof r; got++) r[got] = (unsigned char)(t >> (8 * (got % 8)));
      break;
    }
    got += (size_t)k;
  }
  char hex[25];
  for (int i = 0; i < 12; i++) snprintf(hex + 2 * i, 3, "%02x", r[i]);
  snprintf(buf, n, "%s-%s", prefix, hex);
}

int store_status_terminal(const char *st) {
  return st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"));
}

static int db_exec(store *s, const char *sql) {
  return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : FT_EDB;
}
static int begin(store *s) { return db_exec(s, "BEGIN IMMEDIATE"); }
static int commit(store *s) {
  if (db_exec(s, "COMMIT") == 0) return 0;
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return FT_EDB;
}
static void rollback(store *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }
/* Ends the transaction begun by begin(): rolls back when rc is an error,
 * else commits and wakes the SSE waiters. Returns the final code. */
static int end_tx(store *s, int rc) {
  if (rc) {
    rollback(s);
    return rc;
  }
  rc = commit(s);
  pthread_cond_broadcast(&s->cv);
  return rc;
}

static sqlite3_stmt *prep(store *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
  return st;
}

static void bind_str(sqlite3_stmt *st, int i, const char *v) {
  if (v)
    sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

/* JSON text of v (NULL for v NULL or JSON null), malloc'd. */
static char *dump_or_null(const json_t *v) {
  if (!v || json_is_null(v)) return NULL;
  return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void bind_json(sqlite3_stmt *st, int i, const json_t *v) {
  char *t = dump_or_null(v);
  if (t)
    sqlite3_bind_text(st, i, t, -1, free);
  else
    sqlite3_bind_null(st, i);
}

static json_t *col_str(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  return json_string((const char *)sqlite3_column_text(st, i));
}
static json_t *col_int(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  return json_integer(sqlite3_column_int64(st, i));
}
static json_t *col_json(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  json_t *v = json_loads((const char *)sqlite3_column_text(st, i), JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}
static const char *col_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? (const char *)t : "";
}

/* ---- row -> API object ---------------------------------------------------- */

#define FILE_COLS "id, bytes, created_at, filename, purpose, status, status_details, validation"
static json_t *file_json(sqlite3_stmt *st) {
  return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", col_str(st, 0), "object",
                   "file", "bytes", col_int(st, 1), "created_at", col_int(st, 2), "filename",
                   col_str(st, 3), "purpose", col_str(st, 4), "status", col_str(st, 5),
                   "status_details", col_str(st, 6), "validation", col_json(st, 7));
}

#define JOB_COLS                                                                            \
  "id, created_at, model, training_file, validation_file, suffix, seed, status, attempt, "  \
  "spec, metadata, error_code, error_message, error_param, steps_completed, total_steps, "  \
  "trained_tokens, fine_tuned_model, finished_at, resume_from, started_at, epoch, worker, " \
  "result, test_file, datasets, metrics, parent_model, rate_t0_ms, rate_step0, rate_t1_ms"
enum {
  J_ID,
  J_CREATED,
  J_MODEL,
  J_TFILE,
  J_VFILE,
  J_SUFFIX,
  J_SEED,
  J_STATUS,
  J_ATTEMPT,
  J_SPEC,
  J_META,
  J_ECODE,
  J_EMSG,
  J_EPARAM,
  J_STEPS,
  J_TOTAL,
  J_TOKENS,
  J_FTMODEL,
  J_FINISHED,
  J_RESUME,
  J_STARTED,
  J_EPOCH,
  J_WORKER,
  J_RESULT,
  J_TFILE_TEST,
  J_DATASETS,
  J_METRICS,
  J_PARENT,
  J_RATE_T0,
  J_RATE_STEP0,
  J_RATE_T1
};

/* spec.method.<type>.hyperparameters, or {} */
static json_t *spec_hyperparameters(const json_t *spec) {
  json_t *m = json_object_get(spec, "method");
  const char *type = json_string_value(json_object_get(m, "type"));
  json_t *hp = type ? json_object_get(json_object_get(m, type), "hyperparameters") : NULL;
  if (!hp) hp = json_object_get(spec, "hyperparameters");
  return json_is_object(hp) ? json_deep_copy(hp) : json_object();
}

static json_t *spec_part(const json_t *spec, const char *key) {
  json_t *v = json_object_get(spec, key);
  return v ? json_deep_copy(v) : json_null();
}

/* A value of the worker's result (when the job has ended) or else of the
 * latest step's metrics; a new reference, JSON null when neither has it. */
static json_t *result_or_metrics(const json_t *result, const json_t *metrics, const char *key) {
  json_t *v = json_object_get(result, key);
  if (!v) v = json_object_get(metrics, key);
  return v ? json_deep_copy(v) : json_null();
}

/* The fields of datasets (#4) and trustworthy training (#5): the data sets'
 * statistics, the latest metrics, the result's early stopping, best
 * checkpoint and test metrics, the result files, lineage, and the expected
 * finish from the step rate of the current attempt. */
static void job_json_trust(json_t *j, sqlite3_stmt *st) {
  json_t *result = col_json(st, J_RESULT), *metrics = col_json(st, J_METRICS);
  json_object_set_new(j, "test_file", col_str(st, J_TFILE_TEST));
  json_object_set_new(j, "datasets", col_json(st, J_DATASETS));
  json_object_set(j, "metrics", metrics);
  json_object_set_new(j, "parent_model", col_json(st, J_PARENT));
  json_t *ec = result_or_metrics(result, metrics, "epochs_completed");
  json_object_set_new(j, "epochs_completed", json_is_integer(ec) ? ec : json_integer(0));
  if (!json_is_integer(ec)) json_decref(ec);
  json_t *es = json_object_get(result, "early_stopped");
  json_object_set_new(j, "early_stopped", json_boolean(json_is_true(es)));
  json_object_set_new(j, "best_step", result_or_metrics(result, NULL, "best_step"));
  json_object_set_new(j, "best_metric", result_or_metrics(result, NULL, "best_metric"));
  json_object_set_new(j, "best_metric_name", result_or_metrics(result, NULL, "best_metric_name"));
  json_object_set_new(j, "test_metrics", result_or_metrics(result, NULL, "test_metrics"));
  json_t *files = json_object_get(result, "result_files");
  json_object_set_new(j, "result_files",
                      json_is_array(files) ? json_deep_copy(files) : json_array());
  /* estimated_finish: while running, from the rate of this attempt's steps */
  json_t *eta = json_null();
  const char *status = col_text(st, J_STATUS);
  if (!strcmp(status, "running") && sqlite3_column_type(st, J_RATE_T0) != SQLITE_NULL &&
      sqlite3_column_type(st, J_TOTAL) != SQLITE_NULL) {
    int64_t t0 = sqlite3_column_int64(st, J_RATE_T0), t1 = sqlite3_column_int64(st, J_RATE_T1);
    int64_t s0 = sqlite3_column_int64(st, J_RATE_STEP0), s1 = sqlite3_column_int64(st, J_STEPS);
    int64_t total = sqlite3_column_int64(st, J_TOTAL);
    if (s1 > s0 && t1 >= t0 && total >= s1) {
      double ms_per_step = (double)(t1 - t0) / (double)(s1 - s0);
      eta = json_integer((json_int_t)((t1 + ms_per_step * (double)(total - s1)) / 1000.0 + 0.5));
    }
  }
  json_object_set_new(j, "estimated_finish", eta);
  json_decref(result);
  json_decref(metrics);
}

/* The job object as the API returns it; internal adds spec, resume_from,
 * worker and result (what the pool needs). */
static json_t *job_json(sqlite3_stmt *st, int internal) {
  json_t *spec = col_json(st, J_SPEC);
  json_t *err = json_null();
  if (sqlite3_column_type(st, J_ECODE) != SQLITE_NULL)
    err = json_pack("{s:o, s:o, s:o}", "code", col_str(st, J_ECODE), "message", col_str(st, J_EMSG),
                    "param", col_str(st, J_EPARAM));
  json_t *meta = col_json(st, J_META);
  json_t *j = json_pack(
      "{s:o, s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:[], s:o, s:o, s:o, s:o, s:n,"
      " s:o, s:o}",
      "id", col_str(st, J_ID), "object", "fine_tuning.job", "created_at", col_int(st, J_CREATED),
      "model", col_str(st, J_MODEL), "fine_tuned_model", col_str(st, J_FTMODEL), "organization_id",
      "org-local", "status", col_str(st, J_STATUS), "hyperparameters", spec_hyperparameters(spec),
      "method", spec_part(spec, "method"), "training_file", col_str(st, J_TFILE), "validation_file",
      col_str(st, J_VFILE), "result_files", "trained_tokens", col_int(st, J_TOKENS), "error", err,
      "seed", col_int(st, J_SEED), "finished_at", col_int(st, J_FINISHED), "estimated_finish",
      "metadata", meta, "user_provided_suffix", col_str(st, J_SUFFIX));
  if (!j) {
    json_decref(spec);
    return NULL;
  }
  json_object_set_new(j, "attempt", col_int(st, J_ATTEMPT));
  json_object_set_new(j, "steps_completed", col_int(st, J_STEPS));
  json_object_set_new(j, "total_steps", col_int(st, J_TOTAL));
  json_object_set_new(j, "epoch", col_int(st, J_EPOCH));
  json_object_set_new(j, "started_at", col_int(st, J_STARTED));
  json_object_set_new(j, "adapter", spec_part(spec, "adapter"));
  json_object_set_new(j, "evaluation", spec_part(spec, "evaluation"));
  json_object_set_new(j, "checkpoints", spec_part(spec, "checkpoints"));
  json_object_set_new(j, "data", spec_part(spec, "data"));
  job_json_trust(j, st);
  if (internal) {
    json_object_set(j, "spec", spec);
    json_object_set_new(j, "resume_from", col_str(st, J_RESUME));
    json_object_set_new(j, "worker", col_str(st, J_WORKER));
    json_object_set_new(j, "result", col_json(st, J_RESULT));
  }
  json_decref(spec);
  return j;
}

static json_t *job_json_api(sqlite3_stmt *st) { return job_json(st, 0); }

#define EVENT_COLS "id, created_at, level, message, type, data, seq"
static json_t *event_json(sqlite3_stmt *st) {
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "object", "fine_tuning.job.event", "id",
                   col_str(st, 0), "created_at", col_int(st, 1), "level", col_str(st, 2), "message",
                   col_str(st, 3), "type", col_str(st, 4), "data", col_json(st, 5));
}

#define CKPT_COLS "c.id, c.created_at, c.step, c.metrics, c.job_id, j.model, j.suffix"
/* A checkpoint row's model id: the id of the model its job will make
 * (pool.c model_names), then the step. */
static void ckpt_model_name(sqlite3_stmt *st, char *name, size_t n) {
  const char *suffix = col_text(st, 6);
  snprintf(name, n, "ft:%s:%s:%s:ckpt-step-%lld", col_text(st, 5), *suffix ? suffix : "ft",
           col_text(st, 4), (long long)sqlite3_column_int64(st, 2));
}

static json_t *ckpt_json(sqlite3_stmt *st) {
  char name[600];
  ckpt_model_name(st, name, sizeof name);
  json_t *metrics = col_json(st, 3);
  if (json_is_null(metrics)) {
    json_decref(metrics);
    metrics = json_object();
  }
  return json_pack("{s:s, s:o, s:o, s:s, s:o, s:o, s:o}", "object", "fine_tuning.job.checkpoint",
                   "id", col_str(st, 0), "created_at", col_int(st, 1),
                   "fine_tuned_model_checkpoint", name, "step_number", col_int(st, 2), "metrics",
                   metrics, "fine_tuning_job_id", col_str(st, 4));
}

/* ---- open, close, migrations --------------------------------------------- */

static int migrate(store *s, ft_error *err) {
  if (db_exec(s,
              "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, "
              "applied_at INTEGER NOT NULL)"))
    return ft_error_set(err, FT_EDB, NULL, "creating schema_migrations: %s", sqlite3_errmsg(s->db));
  for (int i = 0; ft_migrations[i].name; i++) {
    if (begin(s)) return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
    sqlite3_stmt *st = prep(s, "SELECT 1 FROM schema_migrations WHERE name = ?");
    if (!st) {
      rollback(s);
      return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
    }
    bind_str(st, 1, ft_migrations[i].name);
    int done = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!done) {
      if (db_exec(s, ft_migrations[i].sql)) {
        ft_error_set(err, FT_EDB, NULL, "migration %s: %s", ft_migrations[i].name,
                     sqlite3_errmsg(s->db));
        rollback(s);
        return FT_EDB;
      }
      st = prep(s, "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)");
      int rc = st ? (bind_str(st, 1, ft_migrations[i].name), sqlite3_bind_int64(st, 2, store_now()),
                     sqlite3_step(st))
                  : SQLITE_ERROR;
      sqlite3_finalize(st);
      if (rc != SQLITE_DONE) {
        rollback(s);
        return ft_error_set(err, FT_EDB, NULL, "recording migration %s", ft_migrations[i].name);
      }
    }
    if (commit(s)) return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
  }
  return 0;
}

int store_open(store **out, const char *db_path, ft_error *err) {
  *out = NULL;
  store *s = calloc(1, sizeof *s);
  if (!s) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  int rc = sqlite3_open_v2(db_path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    ft_error_set(err, FT_EDB, NULL, "opening %s: %s", db_path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    store_close(s);
    return FT_EDB;
  }
  sqlite3_busy_timeout(s->db, 5000);
  /* journal_mode answers with the mode in force: insist on WAL. */
  sqlite3_stmt *st = prep(s, "PRAGMA journal_mode=WAL");
  int wal = st && sqlite3_step(st) == SQLITE_ROW &&
            !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  if (!wal || db_exec(s, "PRAGMA synchronous=FULL") || db_exec(s, "PRAGMA foreign_keys=ON")) {
    ft_error_set(err, FT_EDB, NULL, "configuring %s: %s", db_path, sqlite3_errmsg(s->db));
    store_close(s);
    return FT_EDB;
  }
  if (migrate(s, err)) {
    store_close(s);
    return FT_EDB;
  }
  *out = s;
  return 0;
}

void store_close(store *s) {
  if (!s) return;
  if (s->db) sqlite3_close_v2(s->db);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int store_ping(store *s) {
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s, "SELECT count(*) FROM schema_migrations");
  int ok = st && sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return ok ? 0 : FT_EDB;
}

void store_wake_all(store *s) {
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* ---- locked internals ---------------------------------------------------- */

/* Appends an event; call inside a transaction with the mutex held. */
static int event_append_locked(store *s, const char *job_id, const char *level, const char *type,
                               const char *message, const json_t *data, int64_t *seq) {
  char id[64];
  store_new_id("ftevent", id, sizeof id);
  sqlite3_stmt *st = prep(s,
                          "INSERT INTO events (id, job_id, created_at, level, type, message, "
                          "data) VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!st) return FT_EDB;
  bind_str(st, 1, id);
  bind_str(st, 2, job_id);
  sqlite3_bind_int64(st, 3, store_now());
  bind_str(st, 4, level ? level : "info");
  bind_str(st, 5, type ? type : "message");
  bind_str(st, 6, message ? message : "");
  bind_json(st, 7, data);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc == SQLITE_CONSTRAINT) return FT_ENOT_FOUND; /* no such job (foreign key) */
  if (rc != SQLITE_DONE) return FT_EDB;
  if (seq) *seq = sqlite3_last_insert_rowid(s->db);
  return 0;
}

/* ---- job transitions for the log (store_set_transition_hook) ---- */
void store_set_transition_hook(store *s, store_transition_fn fn) { s->on_transition = fn; }

/* The status of job_id's latest status event ("" if none) into buf: every
 * transition appends one, so it is the status the job leaves. */
static void last_status_locked(store *s, const char *job_id, char *buf, size_t n) {
  buf[0] = 0;
  sqlite3_stmt *st = prep(s,
                          "SELECT json_extract(data, '$.status') FROM events WHERE job_id = ? "
                          "AND type = 'status' ORDER BY seq DESC LIMIT 1");
  if (!st) return;
  bind_str(st, 1, job_id);
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
}

/* A status event {status, ...extra} with message. */
static int status_event_locked(store *s, const char *job_id, const char *level, const char *status,
                               const char *message, json_t *extra) {
  json_t *d = extra ? extra : json_object();
  json_object_set_new(d, "status", json_string(status));
  char from[32]; /* (for the transition hook) */
  last_status_locked(s, job_id, from, sizeof from);
  int rc = event_append_locked(s, job_id, level, "status", message, d, NULL);
  json_decref(d);
  if (!rc && s->on_transition) s->on_transition(job_id, from, status, message);
  return rc;
}

static int job_get_locked(store *s, const char *id, int internal, json_t **job) {
  *job = NULL;
  sqlite3_stmt *st = prep(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?");
  if (!st) return FT_EDB;
  bind_str(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *job = job_json(st, internal);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return FT_ENOT_FOUND;
  if (rc != SQLITE_ROW) return FT_EDB;
  return *job ? 0 : FT_ENOMEM;
}

/* status of job id into buf; FT_ENOT_FOUND */
static int job_status_locked(store *s, const char *id, char *buf, size_t n, int *attempt) {
  if (n) buf[0] = 0;
  sqlite3_stmt *st = prep(s, "SELECT status, attempt FROM jobs WHERE id = ?");
  if (!st) return FT_EDB;
  bind_str(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    snprintf(buf, n, "%s", col_text(st, 0));
    if (attempt) *attempt = sqlite3_column_int(st, 1);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

/* Runs a prepared UPDATE; returns changes (>= 0) or FT_EDB. Finalizes st. */
static int run_update(store *s, sqlite3_stmt *st) {
  if (!st) return FT_EDB;
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return FT_EDB;
  return sqlite3_changes(s->db);
}

/* One page of a list, newest first by key; job_id filters events and
 * checkpoints. The row builder turns a row into the API object. */
static int list_page_locked(store *s, const char *from, const char *cols, const char *key,
                            const char *idcol, const char *jobcol, const char *job_id,
                            const char *after, int limit, json_t *(*row)(sqlite3_stmt *),
                            json_t **out) {
  *out = NULL;
  if (limit < 1) limit = 1;
  char sql[1024];
  int64_t after_key = 0;
  if (after) {
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?%s%s%s", key, from, idcol,
             jobcol ? " AND " : "", jobcol ? jobcol : "", jobcol ? " = ?" : "");
    sqlite3_stmt *st = prep(s, sql);
    if (!st) return FT_EDB;
    bind_str(st, 1, after);
    if (jobcol) bind_str(st, 2, job_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) after_key = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) return FT_ENOT_FOUND;
    if (rc != SQLITE_ROW) return FT_EDB;
  }
  snprintf(sql, sizeof sql,
           "SELECT %s FROM %s WHERE (?1 = 0 OR %s < ?1)%s%s%s ORDER BY %s DESC "
           "LIMIT ?3",
           cols, from, key, jobcol ? " AND " : "", jobcol ? jobcol : "", jobcol ? " = ?2" : "",
           key);
  sqlite3_stmt *st = prep(s, sql);
  if (!st) return FT_EDB;
  sqlite3_bind_int64(st, 1, after ? after_key : 0);
  if (jobcol) bind_str(st, 2, job_id);
  sqlite3_bind_int(st, 3, limit + 1);
  json_t *data = json_array();
  int n = 0, rc, has_more = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      has_more = 1;
      break;
    }
    json_t *o = row(st);
    if (!o) {
      rc = SQLITE_NOMEM;
      break;
    }
    json_array_append_new(data, o);
    n++;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    json_decref(data);
    return rc == SQLITE_NOMEM ? FT_ENOMEM : FT_EDB;
  }
  *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", has_more);
  return *out ? 0 : FT_ENOMEM;
}

/* Whether the job exists (for lists under a job). */
static int job_exists_locked(store *s, const char *id) {
  char st[24];
  return job_status_locked(s, id, st, sizeof st, NULL);
}

/* ---- files --------------------------------------------------------------- */

static int file_get_locked(store *s, const char *id, json_t **file) {
  *file = NULL;
  sqlite3_stmt *st = prep(s, "SELECT " FILE_COLS " FROM files WHERE id = ?");
  if (!st) return FT_EDB;
  bind_str(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *file = file_json(st);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return FT_ENOT_FOUND;
  if (rc != SQLITE_ROW) return FT_EDB;
  return *file ? 0 : FT_ENOMEM;
}

int store_file_insert(store *s, const char *id, int64_t bytes, const char *filename,
                      const char *purpose, json_t **file) {
  return store_file_insert_checked(s, id, bytes, filename, purpose, "processed", NULL, NULL, file);
}

int store_file_insert_checked(store *s, const char *id, int64_t bytes, const char *filename,
                              const char *purpose, const char *status, const char *status_details,
                              const json_t *validation, json_t **file) {
  return store_file_insert_tenant(s, NULL, id, bytes, filename, purpose, status, status_details,
                                  validation, file);
}

int store_file_insert_tenant(store *s, const char *tenant, const char *id, int64_t bytes,
                             const char *filename, const char *purpose, const char *status,
                             const char *status_details, const json_t *validation, json_t **file) {
  if (file) *file = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO files (id, bytes, created_at, filename, purpose, "
                            "status, status_details, validation, tenant) VALUES (?, ?, ?, ?, ?, "
                            "?, ?, ?, ?)");
    if (st) {
      bind_str(st, 1, id);
      sqlite3_bind_int64(st, 2, bytes);
      sqlite3_bind_int64(st, 3, store_now());
      bind_str(st, 4, filename);
      bind_str(st, 5, purpose);
      bind_str(st, 6, status);
      bind_str(st, 7, status_details);
      bind_json(st, 8, validation);
      bind_str(st, 9, tenant ? tenant : "default");
    }
    rc = run_update(s, st) == 1 ? 0 : FT_EDB;
    if (!rc)
      rc = commit(s);
    else
      rollback(s);
  }
  if (!rc && file) rc = file_get_locked(s, id, file);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_file_get(store *s, const char *id, json_t **file) {
  pthread_mutex_lock(&s->mu);
  int rc = file_get_locked(s, id, file);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_file_list(store *s, const char *after, int limit, json_t **list) {
  pthread_mutex_lock(&s->mu);
  int rc =
      list_page_locked(s, "files", FILE_COLS, "n", "id", NULL, NULL, after, limit, file_json, list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_file_delete(store *s, const char *id, ft_error *err) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  sqlite3_stmt *st = prep(s,
                          "SELECT id FROM jobs WHERE (training_file = ?1 OR validation_file "
                          "= ?1 OR test_file = ?1) AND status NOT IN " TERMINAL_SQL " LIMIT 1");
  if (!st) {
    rc = FT_EDB;
    rollback(s);
    goto out;
  }
  bind_str(st, 1, id);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    rc = ft_error_set(err, FT_EBAD_STATE, "file_id",
                      "file %s is used by job %s, which is not "
                      "finished",
                      id, col_text(st, 0));
  else if (r != SQLITE_DONE)
    rc = FT_EDB;
  sqlite3_finalize(st);
  if (rc) {
    rollback(s);
    goto out;
  }
  st = prep(s, "DELETE FROM files WHERE id = ?");
  if (st) bind_str(st, 1, id);
  int n = run_update(s, st);
  if (n < 0)
    rc = n;
  else if (n == 0)
    rc = ft_error_set(err, FT_ENOT_FOUND, "file_id", "no such file: %s", id);
  if (rc)
    rollback(s);
  else
    rc = commit(s);
out:
  pthread_mutex_unlock(&s->mu);
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, NULL);
  return rc;
}

/* ---- jobs: API side ------------------------------------------------------ */

static int file_exists_locked(store *s, const char *id) {
  sqlite3_stmt *st = prep(s, "SELECT 1 FROM files WHERE id = ?");
  if (!st) return FT_EDB;
  bind_str(st, 1, id);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

int store_job_insert(store *s, const store_job_new *j, json_t **job, ft_error *err) {
  *job = NULL;
  char id[64];
  store_new_id("ftjob", id, sizeof id);
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  rc = file_exists_locked(s, j->training_file);
  if (rc == FT_ENOT_FOUND)
    rc = ft_error_set(err, FT_EINVALID, "training_file", "no such file: %s", j->training_file);
  if (!rc && j->validation_file && *j->validation_file) {
    rc = file_exists_locked(s, j->validation_file);
    if (rc == FT_ENOT_FOUND)
      rc =
          ft_error_set(err, FT_EINVALID, "validation_file", "no such file: %s", j->validation_file);
  }
  if (!rc && j->test_file && *j->test_file) {
    rc = file_exists_locked(s, j->test_file);
    if (rc == FT_ENOT_FOUND)
      rc = ft_error_set(err, FT_EINVALID, "test_file", "no such file: %s", j->test_file);
  }
  if (!rc) {
    int64_t now = store_now();
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO jobs (id, created_at, updated_at, model, "
                            "training_file, validation_file, suffix, seed, status, spec, "
                            "metadata, test_file, parent_model, tenant) VALUES (?, ?, ?, ?, ?, "
                            "?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (st) {
      bind_str(st, 1, id);
      sqlite3_bind_int64(st, 2, now);
      sqlite3_bind_int64(st, 3, now);
      bind_str(st, 4, j->model);
      bind_str(st, 5, j->training_file);
      bind_str(st, 6, j->validation_file && *j->validation_file ? j->validation_file : NULL);
      bind_str(st, 7, j->suffix && *j->suffix ? j->suffix : NULL);
      sqlite3_bind_int64(st, 8, (sqlite3_int64)j->seed);
      bind_str(st, 9, j->queued ? "queued" : "validating_files");
      bind_json(st, 10, j->spec);
      bind_json(st, 11, j->metadata);
      bind_str(st, 12, j->test_file && *j->test_file ? j->test_file : NULL);
      bind_json(st, 13, j->parent_model);
      bind_str(st, 14, j->tenant ? j->tenant : "default");
    }
    rc = run_update(s, st) == 1 ? 0 : FT_EDB;
  }
  if (!rc)
    rc = status_event_locked(s, id, "info", j->queued ? "queued" : "validating_files",
                             "Job created", NULL);
  if (!rc) rc = job_get_locked(s, id, 0, job);
  rc = end_tx(s, rc);
  if (rc) { /* (a failed COMMIT too: the job does not exist) */
    json_decref(*job);
    *job = NULL;
  }
out:
  pthread_mutex_unlock(&s->mu);
  if (rc == FT_EDB || rc == FT_ENOMEM) ft_error_set(err, rc, NULL, NULL);
  return rc;
}

int store_job_get(store *s, const char *id, json_t **job) {
  pthread_mutex_lock(&s->mu);
  int rc = job_get_locked(s, id, 0, job);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_list(store *s, const char *after, int limit, json_t **list) {
  pthread_mutex_lock(&s->mu);
  int rc = list_page_locked(s, "jobs", JOB_COLS, "n", "id", NULL, NULL, after, limit, job_json_api,
                            list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* A user action: UPDATE sql (params ?1 id, ?2 now) moving the job; on no
 * change says why. message/level describe the event; new status read back. */
static int user_action(store *s, const char *id, const char *sql, const char *what, json_t **job,
                       ft_error *err) {
  if (job) *job = NULL;
  pthread_mutex_lock(&s->mu);
  char before[24], after[24];
  int rc = begin(s);
  if (rc) goto out;
  rc = job_status_locked(s, id, before, sizeof before, NULL);
  if (rc == FT_ENOT_FOUND) ft_error_set(err, rc, "fine_tuning_job_id", "no such job: %s", id);
  if (rc) {
    rollback(s);
    goto out;
  }
  sqlite3_stmt *st = prep(s, sql);
  if (st) {
    bind_str(st, 1, id);
    sqlite3_bind_int64(st, 2, store_now());
    sqlite3_bind_int64(st, 3, now_ms());
  }
  int n = run_update(s, st);
  if (n < 0)
    rc = n;
  else if (n == 0)
    rc = ft_error_set(err, FT_EBAD_STATE, NULL, "cannot %s a job that is %s", what, before);
  if (!rc) rc = job_status_locked(s, id, after, sizeof after, NULL);
  if (!rc) {
    char msg[128];
    if (!strcmp(after, "cancelled"))
      snprintf(msg, sizeof msg, "Job cancelled");
    else if (!strcmp(after, "pausing"))
      snprintf(msg, sizeof msg, "Pause requested");
    else if (!strcmp(after, "paused"))
      snprintf(msg, sizeof msg, "Job paused");
    else
      snprintf(msg, sizeof msg, "Job resumed");
    rc = status_event_locked(s, id, "info", after, msg,
                             json_pack("{s:s}", "previous_status", before));
  }
  if (!rc && job) rc = job_get_locked(s, id, 0, job);
  rc = end_tx(s, rc);
  if (rc && job) { /* (a failed COMMIT too: nothing changed) */
    json_decref(*job);
    *job = NULL;
  }
out:
  pthread_mutex_unlock(&s->mu);
  if (rc == FT_EDB || rc == FT_ENOMEM) ft_error_set(err, rc, NULL, NULL);
  return rc;
}

int store_job_cancel(store *s, const char *id, json_t **job, ft_error *err) {
  return user_action(s, id,
                     "UPDATE jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2 "
                     "WHERE id = ?1 AND status IN " ACTIVE_SQL,
                     "cancel", job, err);
}

int store_job_pause(store *s, const char *id, json_t **job, ft_error *err) {
  return user_action(s, id,
                     "UPDATE jobs SET status = CASE status WHEN 'running' THEN 'pausing' "
                     "ELSE 'paused' END, updated_at = ?2 WHERE id = ?1 AND status IN "
                     "('running', 'queued')",
                     "pause", job, err);
}

int store_job_resume(store *s, const char *id, json_t **job, ft_error *err) {
  return user_action(s, id,
                     "UPDATE jobs SET status = 'queued', worker = NULL, lease_expires_ms = NULL, "
                     "updated_at = ?2 WHERE id = ?1 AND status = 'paused'",
                     "resume", job, err);
}

int store_job_status(store *s, const char *id, char *buf, size_t n) {
  pthread_mutex_lock(&s->mu);
  int rc = job_status_locked(s, id, buf, n, NULL);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_counts(store *s, json_t **counts) {
  *counts = json_object();
  for (int i = 0; all_statuses[i]; i++)
    json_object_set_new(*counts, all_statuses[i], json_integer(0));
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s, "SELECT status, count(*) FROM jobs GROUP BY status");
  int rc = st ? SQLITE_ROW : SQLITE_ERROR;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
    json_object_set_new(*counts, col_text(st, 0), json_integer(sqlite3_column_int64(st, 1)));
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_DONE ? 0 : FT_EDB;
}

int store_jobs_using_model(store *s, const char *model_id, int *n) {
  *n = 0;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st =
      prep(s, "SELECT count(*) FROM jobs WHERE model = ? AND status NOT IN " TERMINAL_SQL);
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, model_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *n = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : FT_EDB;
}

int store_model_origin(store *s, const char *model_id, json_t **origin) {
  *origin = NULL;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st =
      prep(s, "SELECT id, model FROM jobs WHERE fine_tuned_model = ? ORDER BY n DESC LIMIT 1");
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, model_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      *origin = json_pack("{s:o, s:o}", "job", col_str(st, 0), "parent", col_str(st, 1));
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

/* ---- jobs: pool side ----------------------------------------------------- */

int store_job_claim(store *s, const char *worker_id, int lease_ms, json_t **job) {
  *job = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  char id[64] = "";
  sqlite3_stmt *st = prep(s, "SELECT id FROM jobs WHERE status = 'queued' ORDER BY n LIMIT 1");
  if (!st)
    rc = FT_EDB;
  else {
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
      snprintf(id, sizeof id, "%s", col_text(st, 0));
    else if (r != SQLITE_DONE)
      rc = FT_EDB;
    sqlite3_finalize(st);
  }
  if (rc || !id[0]) {
    rollback(s);
    goto out;
  }
  int64_t now = store_now();
  st = prep(s,
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?2, "
            "lease_expires_ms = ?3, started_at = COALESCE(started_at, ?4), updated_at = ?4, "
            "rate_t0_ms = NULL, rate_step0 = NULL, rate_t1_ms = NULL "
            "WHERE id = ?1 AND status = 'queued'");
  if (st) {
    bind_str(st, 1, id);
    bind_str(st, 2, worker_id);
    sqlite3_bind_int64(st, 3, now_ms() + lease_ms);
    sqlite3_bind_int64(st, 4, now);
  }
  rc = run_update(s, st) == 1 ? 0 : FT_EDB;
  if (!rc) rc = job_get_locked(s, id, 1, job);
  if (!rc) {
    json_int_t attempt = json_integer_value(json_object_get(*job, "attempt"));
    const char *resume = json_string_value(json_object_get(*job, "resume_from"));
    char msg[256];
    snprintf(msg, sizeof msg, "Job started (attempt %lld)%s", (long long)attempt,
             resume ? ", resuming from the last checkpoint" : "");
    rc = status_event_locked(
        s, id, "info", "running", msg,
        json_pack("{s:I, s:s}", "attempt", attempt, "worker", worker_id ? worker_id : ""));
  }
  if (rc) {
    rollback(s);
    json_decref(*job);
    *job = NULL;
  } else {
    rc = commit(s);
    if (rc) {
      json_decref(*job);
      *job = NULL;
    }
    pthread_cond_broadcast(&s->cv);
  }
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_heartbeat(store *s, const char *job_id, int attempt, int lease_ms) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    sqlite3_stmt *st = prep(s,
                            "UPDATE jobs SET lease_expires_ms = ? WHERE id = ? AND attempt = "
                            "? AND status IN ('running', 'pausing')");
    if (st) {
      sqlite3_bind_int64(st, 1, now_ms() + lease_ms);
      bind_str(st, 2, job_id);
      sqlite3_bind_int(st, 3, attempt);
    }
    int n = run_update(s, st);
    rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
    if (rc)
      rollback(s);
    else
      rc = commit(s);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static int has_num(const json_t *o, const char *k) { return json_is_number(json_object_get(o, k)); }
/* Counts are JSON integers (the pool checks their range); a double is never
 * converted, so an out-of-range one cannot reach an integer cast. */
static int has_int(const json_t *o, const char *k) {
  return json_is_integer(json_object_get(o, k));
}
static sqlite3_int64 get_int(const json_t *o, const char *k) {
  return (sqlite3_int64)json_integer_value(json_object_get(o, k));
}

int store_job_metrics(store *s, const char *job_id, int attempt, const json_t *metrics,
                      int lease_ms) {
  if (!json_is_object(metrics) || !has_int(metrics, "step")) return FT_EINVALID;
  long long step = (long long)get_int(metrics, "step");
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  sqlite3_stmt *st =
      prep(s,
           "UPDATE jobs SET steps_completed = ?4, total_steps = COALESCE(?5, total_steps), "
           "trained_tokens = COALESCE(?6, trained_tokens), epoch = COALESCE(?7, epoch), "
           "lease_expires_ms = ?8, updated_at = ?9, metrics = ?10, "
           "rate_step0 = CASE WHEN rate_t0_ms IS NULL THEN ?4 ELSE rate_step0 END, "
           "rate_t0_ms = COALESCE(rate_t0_ms, ?11), rate_t1_ms = ?11 "
           "WHERE id = ?1 AND attempt = ?2 AND status IN ('running', 'pausing')");
  if (st) {
    bind_str(st, 1, job_id);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_int64(st, 4, step);
    if (has_int(metrics, "total_steps")) sqlite3_bind_int64(st, 5, get_int(metrics, "total_steps"));
    if (has_int(metrics, "trained_tokens"))
      sqlite3_bind_int64(st, 6, get_int(metrics, "trained_tokens"));
    if (has_int(metrics, "epoch")) sqlite3_bind_int64(st, 7, get_int(metrics, "epoch"));
    sqlite3_bind_int64(st, 8, now_ms() + lease_ms);
    sqlite3_bind_int64(st, 9, store_now());
    bind_json(st, 10, metrics);
    sqlite3_bind_int64(st, 11, now_ms());
  }
  int n = run_update(s, st);
  rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
  if (!rc) {
    char msg[256];
    int len = snprintf(msg, sizeof msg, "Step %lld", step);
    if (has_int(metrics, "total_steps"))
      len += snprintf(msg + len, sizeof msg - (size_t)len, "/%lld",
                      (long long)get_int(metrics, "total_steps"));
    if (has_num(metrics, "train_loss"))
      len += snprintf(msg + len, sizeof msg - (size_t)len, ": training loss=%.4f",
                      json_number_value(json_object_get(metrics, "train_loss")));
    if (has_num(metrics, "valid_loss"))
      snprintf(msg + len, sizeof msg - (size_t)len, ", validation loss=%.4f",
               json_number_value(json_object_get(metrics, "valid_loss")));
    rc = event_append_locked(s, job_id, "info", "metrics", msg, metrics, NULL);
  }
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_event_append(store *s, const char *job_id, const char *level, const char *type,
                       const char *message, const json_t *data, int64_t *seq) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    rc = event_append_locked(s, job_id, level, type, message, data, seq);
    if (rc)
      rollback(s);
    else
      rc = commit(s);
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_event(store *s, const char *job_id, int attempt, const char *level,
                    const char *message, const json_t *data) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  sqlite3_stmt *st = prep(s,
                          "SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND status IN "
                          "('running', 'pausing')");
  if (!st)
    rc = FT_EDB;
  else {
    bind_str(st, 1, job_id);
    sqlite3_bind_int(st, 2, attempt);
    int r = sqlite3_step(st);
    rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? FT_EBAD_STATE : FT_EDB;
    sqlite3_finalize(st);
  }
  if (!rc) rc = event_append_locked(s, job_id, level, "message", message, data, NULL);
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_checkpoint_add(store *s, const char *job_id, int attempt, long step, const char *path,
                         const json_t *metrics) {
  char id[64];
  store_new_id("ftckpt", id, sizeof id);
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  sqlite3_stmt *st = prep(s,
                          "UPDATE jobs SET resume_from = ?3, updated_at = ?4 WHERE id = ?1 "
                          "AND attempt = ?2 AND status IN ('running', 'pausing')");
  if (st) {
    bind_str(st, 1, job_id);
    sqlite3_bind_int(st, 2, attempt);
    bind_str(st, 3, path);
    sqlite3_bind_int64(st, 4, store_now());
  }
  int n = run_update(s, st);
  rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
  if (!rc) {
    st = prep(s,
              "INSERT INTO checkpoints (id, job_id, attempt, created_at, step, path, metrics) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (st) {
      bind_str(st, 1, id);
      bind_str(st, 2, job_id);
      sqlite3_bind_int(st, 3, attempt);
      sqlite3_bind_int64(st, 4, store_now());
      sqlite3_bind_int64(st, 5, step);
      bind_str(st, 6, path);
      bind_json(st, 7, metrics);
    }
    rc = run_update(s, st) == 1 ? 0 : FT_EDB;
  }
  if (!rc) {
    char msg[96];
    snprintf(msg, sizeof msg, "Checkpoint saved at step %ld", step);
    json_t *d = json_pack("{s:s, s:I}", "id", id, "step", (json_int_t)step);
    rc = event_append_locked(s, job_id, "info", "checkpoint", msg, d, NULL);
    json_decref(d);
  }
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* A worker's "cancelled": only the acknowledgement of a cancel the user made
 * (the job is already 'cancelled' and this is its attempt); nothing changes.
 * A worker can never cancel a job nobody cancelled: FT_EBAD_STATE. */
static int job_cancel_ack(store *s, const char *job_id, int attempt) {
  char status[24];
  int cur = 0;
  pthread_mutex_lock(&s->mu);
  int rc = job_status_locked(s, job_id, status, sizeof status, &cur);
  pthread_mutex_unlock(&s->mu);
  if (rc == FT_ENOT_FOUND) return FT_EBAD_STATE;
  if (rc) return rc;
  return cur == attempt && !strcmp(status, "cancelled") ? 0 : FT_EBAD_STATE;
}

int store_job_finish(store *s, const char *job_id, int attempt, const char *status,
                     const ft_error *err, const char *model_id, const char *model_path,
                     const json_t *result) {
  int succeeded = !strcmp(status, "succeeded"), failed = !strcmp(status, "failed");
  int cancelled = !strcmp(status, "cancelled"), paused = !strcmp(status, "paused");
  if (!succeeded && !failed && !cancelled && !paused) return FT_EINVALID;
  if (cancelled) return job_cancel_ack(s, job_id, attempt);
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  int64_t now = store_now();
  sqlite3_stmt *st =
      prep(s,
           "UPDATE jobs SET status = ?3, worker = NULL, lease_expires_ms = NULL, updated_at = ?4, "
           "finished_at = CASE WHEN ?3 = 'paused' THEN NULL ELSE ?4 END, "
           "fine_tuned_model = COALESCE(?5, fine_tuned_model), model_path = COALESCE(?6, "
           "model_path), result = COALESCE(?7, result), error_code = ?8, error_message = ?9, "
           "error_param = ?10, trained_tokens = COALESCE(?11, trained_tokens), "
           "steps_completed = COALESCE(?12, steps_completed) "
           "WHERE id = ?1 AND attempt = ?2 AND (status = 'pausing' OR (?3 <> 'paused' AND "
           "status = 'running'))");
  if (st) {
    bind_str(st, 1, job_id);
    sqlite3_bind_int(st, 2, attempt);
    bind_str(st, 3, status);
    sqlite3_bind_int64(st, 4, now);
    bind_str(st, 5, succeeded ? model_id : NULL);
    bind_str(st, 6, succeeded ? model_path : NULL);
    bind_json(st, 7, result);
    if (failed) {
      int code = err && err->code ? err->code : FT_EINTERNAL;
      bind_str(st, 8, ft_err_code(code));
      bind_str(st, 9, err && err->message[0] ? err->message : ft_err_message(code));
      bind_str(st, 10, err && err->param[0] ? err->param : NULL);
    }
    if (succeeded && has_int(result, "trained_tokens"))
      sqlite3_bind_int64(st, 11, get_int(result, "trained_tokens"));
    if (succeeded && has_int(result, "steps")) sqlite3_bind_int64(st, 12, get_int(result, "steps"));
  }
  int n = run_update(s, st);
  rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
  if (!rc) {
    char msg[700];
    const char *level = "info";
    json_t *d = json_object();
    if (succeeded) {
      snprintf(msg, sizeof msg, "The job has successfully completed");
      if (model_id) json_object_set_new(d, "fine_tuned_model", json_string(model_id));
    } else if (failed) {
      level = "error";
      int code = err && err->code ? err->code : FT_EINTERNAL;
      snprintf(msg, sizeof msg, "The job failed: %s",
               err && err->message[0] ? err->message : ft_err_message(code));
      json_object_set_new(d, "error",
                          json_pack("{s:s, s:s, s:s?}", "code", ft_err_code(code), "message",
                                    err && err->message[0] ? err->message : ft_err_message(code),
                                    "param", err && err->param[0] ? err->param : NULL));
    } else {
      snprintf(msg, sizeof msg, "Job paused");
    }
    rc = status_event_locked(s, job_id, level, status, msg, d);
  }
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_jobs_expire(store *s, int max_attempts, int *n) {
  if (n) *n = 0;
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  json_t *expired = json_array();
  sqlite3_stmt *st = prep(s,
                          "SELECT id, status, attempt, lost FROM jobs WHERE status IN "
                          "('running', 'pausing') AND lease_expires_ms < ? ORDER BY n");
  if (!st)
    rc = FT_EDB;
  else {
    sqlite3_bind_int64(st, 1, now_ms());
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
      json_array_append_new(expired,
                            json_pack("[s, s, i, i]", col_text(st, 0), col_text(st, 1),
                                      sqlite3_column_int(st, 2), sqlite3_column_int(st, 3)));
    if (r != SQLITE_DONE) rc = FT_EDB;
    sqlite3_finalize(st);
  }
  size_t i;
  json_t *row;
  int64_t now = store_now();
  json_array_foreach(expired, i, row) {
    if (rc) break;
    const char *id = json_string_value(json_array_get(row, 0));
    const char *status = json_string_value(json_array_get(row, 1));
    int attempt = (int)json_integer_value(json_array_get(row, 2));
    int lost = (int)json_integer_value(json_array_get(row, 3)) + 1; /* counting this one */
    const char *to, *level = "warn";
    char msg[256];
    if (!strcmp(status, "pausing")) {
      to = "paused";
      snprintf(msg, sizeof msg, "The worker was lost while pausing; the job is paused");
    } else if (lost >= max_attempts) {
      to = "failed";
      level = "error";
      snprintf(msg, sizeof msg, "The job failed: %s (%d of %d attempts lost)",
               ft_err_message(FT_EWORKER_LOST), lost, max_attempts);
    } else {
      to = "queued";
      snprintf(msg, sizeof msg,
               "The worker was lost (%d of %d attempts lost); the job is queued again", lost,
               max_attempts);
    }
    st = prep(s,
              "UPDATE jobs SET status = ?3, worker = NULL, lease_expires_ms = NULL, "
              "updated_at = ?4, finished_at = CASE WHEN ?3 = 'failed' THEN ?4 ELSE NULL END, "
              "error_code = CASE WHEN ?3 = 'failed' THEN ?5 ELSE error_code END, "
              "error_message = CASE WHEN ?3 = 'failed' THEN ?6 ELSE error_message END, "
              "lost = lost + CASE WHEN ?3 = 'paused' THEN 0 ELSE 1 END "
              "WHERE id = ?1 AND attempt = ?2 AND status IN ('running', 'pausing')");
    if (st) {
      bind_str(st, 1, id);
      sqlite3_bind_int(st, 2, attempt);
      bind_str(st, 3, to);
      sqlite3_bind_int64(st, 4, now);
      bind_str(st, 5, ft_err_code(FT_EWORKER_LOST));
      bind_str(st, 6, ft_err_message(FT_EWORKER_LOST));
    }
    int changed = run_update(s, st);
    if (changed < 0)
      rc = changed;
    else if (changed == 1) {
      json_t *d = json_pack("{s:i, s:i}", "attempt", attempt, "lost", lost);
      if (!strcmp(to, "failed"))
        json_object_set_new(d, "error",
                            json_pack("{s:s, s:s, s:n}", "code", ft_err_code(FT_EWORKER_LOST),
                                      "message", ft_err_message(FT_EWORKER_LOST), "param"));
      rc = status_event_locked(s, id, level, to, msg, d);
      if (!rc && n) (*n)++;
    }
  }
  json_decref(expired);
  if (rc) {
    rollback(s);
    if (n) *n = 0;
  } else {
    rc = commit(s);
    pthread_cond_broadcast(&s->cv);
  }
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_control(store *s, const char *job_id, int attempt, int *what) {
  *what = 0;
  char status[24];
  int cur = 0;
  pthread_mutex_lock(&s->mu);
  int rc = job_status_locked(s, job_id, status, sizeof status, &cur);
  pthread_mutex_unlock(&s->mu);
  if (rc) return rc;
  if (cur != attempt) {
    *what = 1; /* stale attempt: whatever runs it must stop */
    return FT_EBAD_STATE;
  }
  if (!strcmp(status, "running"))
    *what = 0;
  else if (!strcmp(status, "pausing"))
    *what = 2;
  else if (!strcmp(status, "cancelled"))
    *what = 1;
  else {
    /* queued (its lease expired and nobody has claimed it yet), paused,
     * failed, succeeded: this attempt is over; it is stale, not cancelled */
    *what = 1; /* (whatever runs it must stop) */
    return FT_EBAD_STATE;
  }
  return 0;
}

/* ---- jobs: file validation (validate.c) ----------------------------------- */

int store_job_next_validating(store *s, int64_t *after_n, char *id, size_t n, int timeout_ms) {
  if (n) id[0] = 0;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  int rc = FT_ENOT_FOUND;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) {
      rc = FT_ECANCELLED;
      break;
    }
    sqlite3_stmt *st = prep(s,
                            "SELECT n, id FROM jobs WHERE status = 'validating_files' AND n > ? "
                            "ORDER BY n LIMIT 1");
    if (!st) {
      rc = FT_EDB;
      break;
    }
    sqlite3_bind_int64(st, 1, *after_n);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      *after_n = sqlite3_column_int64(st, 0);
      snprintf(id, n, "%s", col_text(st, 1));
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW) {
      rc = 0;
      break;
    }
    if (r != SQLITE_DONE) {
      rc = FT_EDB;
      break;
    }
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_get_internal(store *s, const char *id, json_t **job) {
  pthread_mutex_lock(&s->mu);
  int rc = job_get_locked(s, id, 1, job);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Moves a job out of validating_files: to queued with its data sets'
 * statistics, or to failed with err. */
static int job_validation_end(store *s, const char *id, const json_t *datasets,
                              const ft_error *err) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  int64_t now = store_now();
  sqlite3_stmt *st = prep(s,
                          "UPDATE jobs SET status = ?2, datasets = COALESCE(?3, datasets), "
                          "updated_at = ?4, finished_at = CASE WHEN ?2 = 'failed' THEN ?4 END, "
                          "error_code = ?5, error_message = ?6, error_param = ?7 "
                          "WHERE id = ?1 AND status = 'validating_files'");
  if (st) {
    bind_str(st, 1, id);
    bind_str(st, 2, err ? "failed" : "queued");
    bind_json(st, 3, datasets);
    sqlite3_bind_int64(st, 4, now);
    if (err) {
      int code = err->code ? err->code : FT_EINTERNAL;
      bind_str(st, 5, ft_err_code(code));
      bind_str(st, 6, err->message[0] ? err->message : ft_err_message(code));
      bind_str(st, 7, err->param[0] ? err->param : NULL);
    }
  }
  int n = run_update(s, st);
  rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
  if (!rc && err) {
    int code = err->code ? err->code : FT_EINTERNAL;
    const char *m = err->message[0] ? err->message : ft_err_message(code);
    char msg[700];
    snprintf(msg, sizeof msg, "The job failed: %s", m);
    rc = status_event_locked(s, id, "error", "failed", msg,
                             json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", ft_err_code(code),
                                       "message", m, "param", err->param[0] ? err->param : NULL));
  } else if (!rc) {
    rc = status_event_locked(s, id, "info", "queued", "Files validated; the job is queued",
                             json_pack("{s:O}", "datasets", datasets ? datasets : json_null()));
  }
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_validated(store *s, const char *id, const json_t *datasets) {
  return job_validation_end(s, id, datasets, NULL);
}

int store_job_invalid(store *s, const char *id, const ft_error *err) {
  ft_error e = {0};
  if (!err) ft_error_set(&e, FT_EINTERNAL, NULL, NULL);
  return job_validation_end(s, id, NULL, err ? err : &e);
}

int store_checkpoint_find(store *s, const char *job_id, long step, json_t **ckpt) {
  *ckpt = NULL;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s,
                          "SELECT c.path, c.created_at, j.model, j.spec, j.suffix FROM "
                          "checkpoints c JOIN jobs j ON j.id = c.job_id WHERE c.job_id = ? AND "
                          "c.step = ? ORDER BY c.n DESC LIMIT 1");
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, job_id);
    sqlite3_bind_int64(st, 2, step);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const char *suffix = col_text(st, 4);
      *ckpt = json_pack("{s:o, s:o, s:o, s:o, s:s}", "path", col_str(st, 0), "created_at",
                        col_int(st, 1), "model", col_str(st, 2), "spec", col_json(st, 3), "suffix",
                        *suffix ? suffix : "ft");
    }
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  if (rc == SQLITE_ROW) return *ckpt ? 0 : FT_ENOMEM;
  return rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

/* ---- checkpoints as models (GET /v1/models, issue #6) ---------------------- */

int store_checkpoint_model_ids(store *s, json_t **ids) {
  *ids = json_array();
  if (!*ids) return FT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st =
      prep(s, "SELECT " CKPT_COLS " FROM checkpoints c JOIN jobs j ON j.id = c.job_id ORDER BY c.n");
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
    char name[600];
    ckpt_model_name(st, name, sizeof name);
    json_array_append_new(*ids, json_string(name));
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  if (rc == SQLITE_DONE) return 0;
  json_decref(*ids);
  *ids = NULL;
  return FT_EDB;
}

int store_checkpoints_prune(store *s, const char *job_id, const json_t *kept) {
  if (!json_is_array(kept)) return 0;
  /* the kept steps as "(a,b,c)": integers only, so the SQL is ours */
  size_t i, cap = 16 + 24 * json_array_size(kept), len = 0;
  char *in = malloc(cap);
  if (!in) return FT_ENOMEM;
  len += (size_t)snprintf(in + len, cap - len, "(-1");
  json_t *v;
  json_array_foreach(kept, i, v) {
    if (json_is_integer(v))
      len += (size_t)snprintf(in + len, cap - len, ",%lld", (long long)json_integer_value(v));
  }
  snprintf(in + len, cap - len, ")");
  char *sql = NULL;
  if (asprintf(&sql, "DELETE FROM checkpoints WHERE job_id = ? AND step NOT IN %s", in) < 0)
    sql = NULL;
  free(in);
  if (!sql) return FT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    sqlite3_stmt *st = prep(s, sql);
    if (st) bind_str(st, 1, job_id);
    int n = run_update(s, st);
    rc = n < 0 ? n : 0;
    rc = end_tx(s, rc);
  }
  pthread_mutex_unlock(&s->mu);
  free(sql);
  return rc;
}

/* ---- events and checkpoints ---------------------------------------------- */

int store_events_list(store *s, const char *job_id, const char *after, int limit, json_t **list) {
  *list = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = job_exists_locked(s, job_id);
  if (!rc)
    rc = list_page_locked(s, "events", EVENT_COLS, "seq", "id", "job_id", job_id, after, limit,
                          event_json, list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_events_since(store *s, const char *job_id, int64_t after_seq, int max, json_t **events,
                       char *status, size_t status_n) {
  *events = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = job_status_locked(s, job_id, status, status_n, NULL);
  if (rc) goto out;
  sqlite3_stmt *st = prep(s, "SELECT " EVENT_COLS
                             " FROM events WHERE job_id = ? AND seq > ? "
                             "ORDER BY seq LIMIT ?");
  if (!st) {
    rc = FT_EDB;
    goto out;
  }
  bind_str(st, 1, job_id);
  sqlite3_bind_int64(st, 2, after_seq);
  sqlite3_bind_int(st, 3, max > 0 ? max : 100);
  json_t *arr = json_array();
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW)
    json_array_append_new(
        arr, json_pack("{s:I, s:o}", "seq", (json_int_t)sqlite3_column_int64(st, 6), "event",
                       event_json(st)));
  sqlite3_finalize(st);
  if (r != SQLITE_DONE) {
    json_decref(arr);
    rc = FT_EDB;
  } else {
    *events = arr;
  }
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

void store_events_wait(store *s, const char *job_id, int64_t after_seq, int timeout_ms) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) break;
    char status[24];
    if (job_status_locked(s, job_id, status, sizeof status, NULL) != 0) break;
    if (store_status_terminal(status) || !strcmp(status, "paused")) break;
    sqlite3_stmt *st = prep(s, "SELECT 1 FROM events WHERE job_id = ? AND seq > ? LIMIT 1");
    if (!st) break;
    bind_str(st, 1, job_id);
    sqlite3_bind_int64(st, 2, after_seq);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) break; /* a newer event, or an error: let the caller look */
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&s->mu);
}

int store_checkpoints_list(store *s, const char *job_id, const char *after, int limit,
                           json_t **list) {
  *list = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = job_exists_locked(s, job_id);
  if (!rc)
    rc = list_page_locked(s, "checkpoints c JOIN jobs j ON j.id = c.job_id", CKPT_COLS, "c.n",
                          "c.id", "c.job_id", job_id, after, limit, ckpt_json, list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- graceful shutdown (shutdown.c, issue #7) ----------------------------- */

int store_job_interrupt(store *s, const char *job_id, int attempt, long step) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (rc) goto out;
  char before[24];
  int cur = 0;
  rc = job_status_locked(s, job_id, before, sizeof before, &cur);
  if (rc == FT_ENOT_FOUND ||
      (!rc && (cur != attempt || (strcmp(before, "running") && strcmp(before, "pausing")))))
    rc = FT_EBAD_STATE;
  int pausing = !rc && !strcmp(before, "pausing");
  long resume_step = -1;
  if (!rc) {
    sqlite3_stmt *st = prep(s,
                            "UPDATE jobs SET status = CASE status WHEN 'pausing' THEN 'paused' "
                            "ELSE 'queued' END, worker = NULL, lease_expires_ms = NULL, "
                            "updated_at = ?3 WHERE id = ?1 AND attempt = ?2 AND status IN "
                            "('running', 'pausing')");
    if (st) {
      bind_str(st, 1, job_id);
      sqlite3_bind_int(st, 2, attempt);
      sqlite3_bind_int64(st, 3, store_now());
    }
    int n = run_update(s, st);
    rc = n < 0 ? n : n == 0 ? FT_EBAD_STATE : 0;
  }
  if (!rc) { /* the step of the checkpoint the next attempt resumes from */
    sqlite3_stmt *st = prep(s,
                            "SELECT c.step FROM checkpoints c JOIN jobs j ON j.id = c.job_id "
                            "WHERE j.id = ? AND c.path = j.resume_from ORDER BY c.n DESC LIMIT 1");
    if (!st)
      rc = FT_EDB;
    else {
      bind_str(st, 1, job_id);
      int r = sqlite3_step(st);
      if (r == SQLITE_ROW)
        resume_step = (long)sqlite3_column_int64(st, 0);
      else if (r != SQLITE_DONE)
        rc = FT_EDB;
      sqlite3_finalize(st);
    }
  }
  if (!rc) {
    char msg[300], from[64];
    if (resume_step >= 0)
      snprintf(from, sizeof from, "its checkpoint at step %ld", resume_step);
    else
      snprintf(from, sizeof from, "the start (no checkpoint yet)");
    if (pausing)
      snprintf(msg, sizeof msg, "Job paused");
    else if (step >= 0)
      snprintf(msg, sizeof msg,
               "The daemon is shutting down: the job stopped at step %ld and is queued again; "
               "it resumes from %s after the restart",
               step, from);
    else
      snprintf(msg, sizeof msg,
               "The daemon is shutting down and the job did not reach a step boundary in time: "
               "it is queued again and resumes from %s after the restart",
               from);
    json_t *d = json_pack("{s:s, s:i}", "reason", "shutdown", "attempt", attempt);
    json_object_set_new(d, "step", step >= 0 ? json_integer(step) : json_null());
    json_object_set_new(d, "resume_step",
                        resume_step >= 0 ? json_integer(resume_step) : json_null());
    rc = status_event_locked(s, job_id, "info", pausing ? "paused" : "queued", msg, d);
  }
  rc = end_tx(s, rc);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- API keys and tenants (auth.c, issue #7) ------------------------------ */

int store_key_insert(store *s, const char *id, const char *name, const char *tenant, int admin,
                     const char *hash, const char *prefix, ft_error *err) {
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    sqlite3_stmt *st = prep(s, "SELECT 1 FROM api_keys WHERE name = ?");
    int r = SQLITE_ERROR;
    if (st) {
      bind_str(st, 1, name);
      r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
      rc = ft_error_set(err, FT_EBAD_STATE, "name", "a key named \"%s\" exists already", name);
    else if (r != SQLITE_DONE)
      rc = FT_EDB;
  }
  if (!rc) {
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO api_keys (id, name, tenant, admin, hash, prefix, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (st) {
      bind_str(st, 1, id);
      bind_str(st, 2, name);
      bind_str(st, 3, tenant);
      sqlite3_bind_int(st, 4, admin ? 1 : 0);
      bind_str(st, 5, hash);
      bind_str(st, 6, prefix);
      sqlite3_bind_int64(st, 7, store_now());
    }
    rc = run_update(s, st) == 1 ? 0 : FT_EDB;
  }
  rc = end_tx(s, rc);
  pthread_mutex_unlock(&s->mu);
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, "recording the key: database error");
  return rc;
}

#define KEY_COLS "id, name, tenant, admin, prefix, created_at, revoked_at"

static json_t *key_json(sqlite3_stmt *st) {
  return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "id", col_str(st, 0), "name",
                   col_str(st, 1), "tenant", col_str(st, 2), "admin", sqlite3_column_int(st, 3),
                   "prefix", col_str(st, 4), "created_at", col_int(st, 5), "revoked_at",
                   col_int(st, 6));
}

int store_key_list(store *s, json_t **keys) {
  *keys = json_array();
  if (!*keys) return FT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s, "SELECT " KEY_COLS " FROM api_keys ORDER BY n");
  int rc = SQLITE_ERROR;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(*keys, key_json(st));
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_DONE ? 0 : FT_EDB;
}

int store_key_revoke(store *s, const char *id_or_name, json_t **key) {
  if (key) *key = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = begin(s);
  if (!rc) {
    sqlite3_stmt *st = prep(s,
                            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) "
                            "WHERE id = ?1 OR name = ?1");
    if (st) {
      bind_str(st, 1, id_or_name);
      sqlite3_bind_int64(st, 2, store_now());
    }
    int n = run_update(s, st);
    rc = n < 0 ? n : n == 0 ? FT_ENOT_FOUND : 0;
  }
  if (!rc && key) {
    sqlite3_stmt *st = prep(s, "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1 OR name = ?1");
    if (st) bind_str(st, 1, id_or_name);
    if (st && sqlite3_step(st) == SQLITE_ROW) *key = key_json(st);
    sqlite3_finalize(st);
  }
  rc = end_tx(s, rc);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_key_find(store *s, const char *hash, char *id, size_t id_n, char *tenant, size_t tenant_n,
                   int *admin) {
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st =
      prep(s, "SELECT id, tenant, admin FROM api_keys WHERE hash = ? AND revoked_at IS NULL");
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, hash);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      snprintf(id, id_n, "%s", col_text(st, 0));
      snprintf(tenant, tenant_n, "%s", col_text(st, 1));
      *admin = sqlite3_column_int(st, 2);
    }
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

int store_key_count(store *s, int *n) {
  *n = 0;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s, "SELECT count(*) FROM api_keys");
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  if (rc == SQLITE_ROW) *n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : FT_EDB;
}

int store_tenant_of(store *s, const char *kind, const char *id, char *tenant, size_t n) {
  if (n) tenant[0] = 0;
  const char *sql = !strcmp(kind, "file")  ? "SELECT tenant FROM files WHERE id = ?"
                    : !strcmp(kind, "job") ? "SELECT tenant FROM jobs WHERE id = ?"
                                           : NULL;
  if (!sql) return FT_EINVALID;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s, sql);
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) snprintf(tenant, n, "%s", col_text(st, 0));
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FT_ENOT_FOUND : FT_EDB;
}

int store_file_list_tenant(store *s, const char *tenant, const char *after, int limit,
                           json_t **list) {
  pthread_mutex_lock(&s->mu);
  int rc = list_page_locked(s, "files", FILE_COLS, "n", "id", tenant ? "tenant" : NULL, tenant,
                            after, limit, file_json, list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_list_tenant(store *s, const char *tenant, const char *after, int limit,
                          json_t **list) {
  pthread_mutex_lock(&s->mu);
  int rc = list_page_locked(s, "jobs", JOB_COLS, "n", "id", tenant ? "tenant" : NULL, tenant, after,
                            limit, job_json_api, list);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_jobs_waiting(store *s, const char *tenant, int *n) {
  *n = 0;
  pthread_mutex_lock(&s->mu);
  sqlite3_stmt *st = prep(s,
                          "SELECT count(*) FROM jobs WHERE tenant = ? AND status IN "
                          "('validating_files', 'queued')");
  int rc = SQLITE_ERROR;
  if (st) {
    bind_str(st, 1, tenant ? tenant : "default");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *n = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->mu);
  return rc == SQLITE_ROW ? 0 : FT_EDB;
}
