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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "obs.h"

extern const struct ft_migration {
  const char *name;
  const char *sql;
} ft_migrations[];

struct store {
  sqlite3 *db;
  pthread_mutex_t mu; /* guards db and everything below */
  pthread_cond_t cv;  /* broadcast on every committed write */
  int stopping;       /* store_wake_all was called */
};

#define TERMINAL_SQL "('succeeded','failed','cancelled')"
#define ACTIVE_SQL "('validating_files','queued','running','pausing','paused')"

static const char *const all_statuses[] = {"validating_files", "queued", "running",
                                           "succeeded",        "failed", "cancelled",
                                           "pausing",          "paused", NULL};

/* ---- small helpers ------------------------------------------------------- */

int64_t store_now(void) { return (int64_t)time(NULL); }

static int64_t st_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* now + timeout_ms (>= 0) on the monotonic clock, for pthread_cond_timedwait */
static void st_deadline(struct timespec *d, int timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, d);
  int64_t ns = (int64_t)d->tv_nsec + (int64_t)timeout_ms * 1000000;
  d->tv_sec += (time_t)(ns / 1000000000);
  d->tv_nsec = (long)(ns % 1000000000);
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
      uint64_t t = (uint64_t)st_now_ms() ^ (uint64_t)clock();
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

/* ---- transactions -------------------------------------------------------- */

static int db_exec(store *s, const char *sql) {
  return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : FT_EDB;
}
static void rollback(store *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }
static int commit(store *s) {
  if (db_exec(s, "COMMIT") == 0) return 0;
  rollback(s);
  return FT_EDB;
}

/* For a read outside a transaction, in one expression:
 * st_unlock(s, query(st_lock(s), …)) holds the mutex for the query and
 * returns the query's code. */
static store *st_lock(store *s) {
  pthread_mutex_lock(&s->mu);
  return s;
}
static int st_unlock(store *s, int rc) {
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Takes the mutex and begins a write (BEGIN IMMEDIATE). made (may be NULL)
 * is where the write will put an object it builds for its caller (st_end
 * says when it is kept): set to NULL here. On failure the mutex is released
 * again and the result is FT_EDB: do not call st_end. */
static int st_begin(store *s, json_t **made) {
  if (made) *made = NULL;
  return db_exec(st_lock(s), "BEGIN IMMEDIATE") ? st_unlock(s, FT_EDB) : 0;
}

/* Ends the write begun by st_begin and releases the mutex: rolls back when rc
 * is an error, else commits and wakes the waiters (store_events_wait,
 * store_job_next_validating). *made (made may be NULL) is what the write
 * built for its caller: released and set to NULL when the write does not
 * commit. Returns the final code. */
static int st_end(store *s, int rc, json_t **made) {
  if (rc)
    rollback(s);
  else if ((rc = commit(s)) == 0)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (rc && made) {
    json_decref(*made);
    *made = NULL;
  }
  return rc;
}

/* ---- the one prepare/bind/step path ---------------------------------------
 * Every statement goes through run(): prepare sql, bind the arguments that
 * the letters of `in` describe to ?1, ?2, … in order, step through the rows,
 * finalize, and map SQLite's result to an FT_E* code. The letters:
 *   s  const char *     text; NULL binds NULL
 *   i  int
 *   I  int64_t          (cast anything else: it is read as an int64_t)
 *   j  const json_t *   its compact JSON text; NULL or JSON null binds NULL
 *   n  const json_t *   its value when a JSON integer, else NULL (a double is
 *                       never converted, so it cannot reach an integer cast)
 * `in` must name every parameter of sql (as many letters as the highest ?N):
 * else the statement is not run and the result is FT_EDB. On FT_EDB,
 * sqlite3_errcode/sqlite3_errmsg say what failed. The caller holds the mutex. */

typedef int (*row_fn)(sqlite3_stmt *row, void *arg); /* 0 go on, 1 stop, or FT_E* */

/* JSON text of v (NULL for v NULL or JSON null), malloc'd. */
static char *dump_or_null(const json_t *v) {
  if (!v || json_is_null(v)) return NULL;
  return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int bind_args(sqlite3_stmt *st, const char *in, va_list *ap) {
  int rc = SQLITE_OK;
  for (int i = 1; in[i - 1] && rc == SQLITE_OK; i++) {
    switch (in[i - 1]) {
      case 's': {
        const char *v = va_arg(*ap, const char *);
        rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
        break;
      }
      case 'i':
        rc = sqlite3_bind_int(st, i, va_arg(*ap, int));
        break;
      case 'I':
        rc = sqlite3_bind_int64(st, i, (sqlite3_int64)va_arg(*ap, int64_t));
        break;
      case 'j': {
        char *t = dump_or_null(va_arg(*ap, const json_t *));
        rc = t ? sqlite3_bind_text(st, i, t, -1, free) : sqlite3_bind_null(st, i);
        break;
      }
      case 'n': {
        const json_t *v = va_arg(*ap, const json_t *);
        rc = json_is_integer(v) ? sqlite3_bind_int64(st, i, (sqlite3_int64)json_integer_value(v))
                                : sqlite3_bind_null(st, i);
        break;
      }
      default:
        rc = SQLITE_MISUSE;
    }
  }
  return rc;
}

/* Runs sql with in's arguments from *ap (afterwards *ap holds what follows
 * them), calling fn (may be NULL) on each row until it returns non-zero.
 * Returns how many rows fn saw (>= 0), fn's error, or FT_EDB. */
static int run(store *s, const char *sql, const char *in, va_list *ap, row_fn fn, void *arg) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return FT_EDB;
  int rc =
      (size_t)sqlite3_bind_parameter_count(st) == strlen(in) ? bind_args(st, in, ap) : SQLITE_RANGE;
  int rows = 0, stop = 0;
  if (rc == SQLITE_OK)
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      rows++;
      stop = fn ? fn(st, arg) : 0;
    }
  sqlite3_finalize(st);
  if (stop) return stop < 0 ? stop : rows;
  return rc == SQLITE_DONE ? rows : FT_EDB;
}

/* A write: 0 when it changed a row, `none` when it changed none, FT_EDB. */
static int st_exec(store *s, int none, const char *sql, const char *in, ...) {
  va_list ap;
  va_start(ap, in);
  int rc = run(s, sql, in, &ap, NULL, NULL);
  va_end(ap);
  return rc < 0 ? rc : sqlite3_changes(s->db) > 0 ? 0 : none;
}

/* The first row's columns into the pointers after in's arguments, one
 * letter of out per column: t (char *buf, size_t n: the text, "" for NULL),
 * i (int *), I (int64_t *); a NULL pointer skips its column. Nothing is
 * written without a row. 0, FT_ENOT_FOUND (no row) or FT_EDB. */
struct get_arg {
  const char *out;
  va_list *ap;
};
static const char *st_col_text(sqlite3_stmt *row, int i);
static int get_row(sqlite3_stmt *row, void *arg) {
  struct get_arg *g = arg;
  for (int i = 0; g->out[i]; i++) {
    if (g->out[i] == 't') {
      char *buf = va_arg(*g->ap, char *);
      size_t n = va_arg(*g->ap, size_t);
      if (buf) snprintf(buf, n, "%s", st_col_text(row, i));
    } else if (g->out[i] == 'i') {
      int *v = va_arg(*g->ap, int *);
      if (v) *v = sqlite3_column_int(row, i);
    } else if (g->out[i] == 'I') {
      int64_t *v = va_arg(*g->ap, int64_t *);
      if (v) *v = (int64_t)sqlite3_column_int64(row, i);
    }
  }
  return 1;
}
static int st_get(store *s, const char *sql, const char *in, const char *out, ...) {
  va_list ap;
  va_start(ap, out);
  int rc = run(s, sql, in, &ap, get_row, &(struct get_arg){out, &ap});
  va_end(ap);
  return rc < 0 ? rc : rc == 0 ? FT_ENOT_FOUND : 0;
}

/* A row turned into a JSON value (a new reference; NULL: out of memory). */
typedef json_t *(*st_json_fn)(sqlite3_stmt *row);
struct json_arg {
  st_json_fn fn;
  json_t *out; /* the first row's value, or the array rows are appended to */
};
static int json_first(sqlite3_stmt *row, void *arg) {
  struct json_arg *a = arg;
  a->out = a->fn(row);
  return a->out ? 1 : FT_ENOMEM;
}
static int json_append(sqlite3_stmt *row, void *arg) {
  struct json_arg *a = arg;
  json_t *v = a->fn(row);
  return v && json_array_append_new(a->out, v) == 0 ? 0 : FT_ENOMEM;
}

/* *out = fn(first row): 0, FT_ENOT_FOUND (*out NULL), FT_EDB or FT_ENOMEM. */
static int st_get_json(store *s, st_json_fn fn, json_t **out, const char *sql, const char *in,
                       ...) {
  va_list ap;
  va_start(ap, in);
  struct json_arg a = {fn, NULL};
  int rc = run(s, sql, in, &ap, json_first, &a);
  va_end(ap);
  *out = a.out;
  return rc < 0 ? rc : rc == 0 ? FT_ENOT_FOUND : 0;
}

/* Appends fn(row) for every row to the array arr: 0, FT_EDB or FT_ENOMEM. */
static int st_rows(store *s, st_json_fn fn, json_t *arr, const char *sql, const char *in, ...) {
  va_list ap;
  va_start(ap, in);
  int rc = run(s, sql, in, &ap, json_append, &(struct json_arg){fn, arr});
  va_end(ap);
  return rc < 0 ? rc : 0;
}

/* ---- columns -> JSON ------------------------------------------------------ */

static json_t *st_col_str(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  return json_string((const char *)sqlite3_column_text(st, i));
}
static json_t *st_col_int(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  return json_integer(sqlite3_column_int64(st, i));
}
static json_t *st_col_json(sqlite3_stmt *st, int i) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return json_null();
  json_t *v = json_loads((const char *)sqlite3_column_text(st, i), JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}
static const char *st_col_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? (const char *)t : "";
}
/* ---- row -> API object ---------------------------------------------------- */

#define FILE_COLS "id, bytes, created_at, filename, purpose, status, status_details, validation"
static json_t *file_json(sqlite3_stmt *st) {
  return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", st_col_str(st, 0),
                   "object", "file", "bytes", st_col_int(st, 1), "created_at", st_col_int(st, 2),
                   "filename", st_col_str(st, 3), "purpose", st_col_str(st, 4), "status",
                   st_col_str(st, 5), "status_details", st_col_str(st, 6), "validation",
                   st_col_json(st, 7));
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
  json_t *result = st_col_json(st, J_RESULT), *metrics = st_col_json(st, J_METRICS);
  json_object_set_new(j, "test_file", st_col_str(st, J_TFILE_TEST));
  json_object_set_new(j, "datasets", st_col_json(st, J_DATASETS));
  json_object_set(j, "metrics", metrics);
  json_object_set_new(j, "parent_model", st_col_json(st, J_PARENT));
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
  const char *status = st_col_text(st, J_STATUS);
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
  json_t *spec = st_col_json(st, J_SPEC);
  json_t *err = json_null();
  if (sqlite3_column_type(st, J_ECODE) != SQLITE_NULL)
    err = json_pack("{s:o, s:o, s:o}", "code", st_col_str(st, J_ECODE), "message",
                    st_col_str(st, J_EMSG), "param", st_col_str(st, J_EPARAM));
  json_t *meta = st_col_json(st, J_META);
  json_t *j = json_pack(
      "{s:o, s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:[], s:o, s:o, s:o, s:o, s:n,"
      " s:o, s:o}",
      "id", st_col_str(st, J_ID), "object", "fine_tuning.job", "created_at",
      st_col_int(st, J_CREATED), "model", st_col_str(st, J_MODEL), "fine_tuned_model",
      st_col_str(st, J_FTMODEL), "organization_id", "org-local", "status", st_col_str(st, J_STATUS),
      "hyperparameters", spec_hyperparameters(spec), "method", spec_part(spec, "method"),
      "training_file", st_col_str(st, J_TFILE), "validation_file", st_col_str(st, J_VFILE),
      "result_files", "trained_tokens", st_col_int(st, J_TOKENS), "error", err, "seed",
      st_col_int(st, J_SEED), "finished_at", st_col_int(st, J_FINISHED), "estimated_finish",
      "metadata", meta, "user_provided_suffix", st_col_str(st, J_SUFFIX));
  if (!j) {
    json_decref(spec);
    return NULL;
  }
  json_object_set_new(j, "attempt", st_col_int(st, J_ATTEMPT));
  json_object_set_new(j, "steps_completed", st_col_int(st, J_STEPS));
  json_object_set_new(j, "total_steps", st_col_int(st, J_TOTAL));
  json_object_set_new(j, "epoch", st_col_int(st, J_EPOCH));
  json_object_set_new(j, "started_at", st_col_int(st, J_STARTED));
  json_object_set_new(j, "adapter", spec_part(spec, "adapter"));
  json_object_set_new(j, "evaluation", spec_part(spec, "evaluation"));
  json_object_set_new(j, "checkpoints", spec_part(spec, "checkpoints"));
  json_object_set_new(j, "data", spec_part(spec, "data"));
  job_json_trust(j, st);
  if (internal) {
    json_object_set(j, "spec", spec);
    json_object_set_new(j, "resume_from", st_col_str(st, J_RESUME));
    json_object_set_new(j, "worker", st_col_str(st, J_WORKER));
    json_object_set_new(j, "result", st_col_json(st, J_RESULT));
  }
  json_decref(spec);
  return j;
}

static json_t *job_json_api(sqlite3_stmt *st) { return job_json(st, 0); }

#define EVENT_COLS "id, created_at, level, message, type, data, seq"
static json_t *event_json(sqlite3_stmt *st) {
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "object", "fine_tuning.job.event", "id",
                   st_col_str(st, 0), "created_at", st_col_int(st, 1), "level", st_col_str(st, 2),
                   "message", st_col_str(st, 3), "type", st_col_str(st, 4), "data",
                   st_col_json(st, 5));
}

#define CKPT_FROM "checkpoints c JOIN jobs j ON j.id = c.job_id"
#define CKPT_COLS "c.id, c.created_at, c.step, c.metrics, c.job_id, j.model, j.suffix"
/* A checkpoint row's model id: the id of the model its job will make
 * (pool.c model_names), then the step. */
static void ckpt_model_name(sqlite3_stmt *st, char *name, size_t n) {
  const char *suffix = st_col_text(st, 6);
  snprintf(name, n, "ft:%s:%s:%s:ckpt-step-%lld", st_col_text(st, 5), *suffix ? suffix : "ft",
           st_col_text(st, 4), (long long)sqlite3_column_int64(st, 2));
}

static json_t *ckpt_json(sqlite3_stmt *st) {
  char name[600];
  ckpt_model_name(st, name, sizeof name);
  json_t *metrics = st_col_json(st, 3);
  if (json_is_null(metrics)) {
    json_decref(metrics);
    metrics = json_object();
  }
  return json_pack("{s:s, s:o, s:o, s:s, s:o, s:o, s:o}", "object", "fine_tuning.job.checkpoint",
                   "id", st_col_str(st, 0), "created_at", st_col_int(st, 1),
                   "fine_tuned_model_checkpoint", name, "step_number", st_col_int(st, 2), "metrics",
                   metrics, "fine_tuning_job_id", st_col_str(st, 4));
}

static json_t *job_json_internal(sqlite3_stmt *st) { return job_json(st, 1); }

#define KEY_COLS "id, name, tenant, admin, prefix, created_at, revoked_at"
static json_t *key_json(sqlite3_stmt *st) {
  return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "id", st_col_str(st, 0), "name",
                   st_col_str(st, 1), "tenant", st_col_str(st, 2), "admin",
                   sqlite3_column_int(st, 3), "prefix", st_col_str(st, 4), "created_at",
                   st_col_int(st, 5), "revoked_at", st_col_int(st, 6));
}

/* A checkpoint row's model id as a JSON string. */
static json_t *ckpt_model_id_json(sqlite3_stmt *st) {
  char name[600];
  ckpt_model_name(st, name, sizeof name);
  return json_string(name);
}

/* ---- open, close, migrations --------------------------------------------- */

static int migrate(store *s, ft_error *err) {
  if (db_exec(s,
              "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, "
              "applied_at INTEGER NOT NULL)"))
    return ft_error_set(err, FT_EDB, NULL, "creating schema_migrations: %s", sqlite3_errmsg(s->db));
  for (int i = 0; ft_migrations[i].name; i++) {
    const char *name = ft_migrations[i].name;
    if (db_exec(s, "BEGIN IMMEDIATE"))
      return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
    int rc = st_get(s, "SELECT 1 FROM schema_migrations WHERE name = ?", "s", "", name);
    if (rc == FT_ENOT_FOUND) { /* not applied yet */
      rc = db_exec(s, ft_migrations[i].sql);
      if (rc)
        ft_error_set(err, rc, NULL, "migration %s: %s", name, sqlite3_errmsg(s->db));
      else if ((rc = st_exec(s, FT_EDB,
                             "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", "sI",
                             name, store_now())))
        ft_error_set(err, rc, NULL, "recording migration %s", name);
    } else if (rc) { /* (the message now: ROLLBACK clears it) */
      ft_error_set(err, rc, NULL, "%s", sqlite3_errmsg(s->db));
    }
    if (rc) {
      rollback(s);
      return FT_EDB;
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
  char mode[16] = "";
  st_get(s, "PRAGMA journal_mode=WAL", "", "t", mode, sizeof mode);
  if (strcmp(mode, "wal") || db_exec(s, "PRAGMA synchronous=FULL") ||
      db_exec(s, "PRAGMA foreign_keys=ON")) {
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
  int rc = st_unlock(s, st_get(st_lock(s), "SELECT count(*) FROM schema_migrations", "", ""));
  return rc ? FT_EDB : 0;
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
  int rc = st_exec(s, FT_EDB,
                   "INSERT INTO events (id, job_id, created_at, level, type, message, data) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   "ssIsssj", id, job_id, store_now(), level ? level : "info",
                   type ? type : "message", message ? message : "", data);
  if (rc) /* no such job: the foreign key */
    return sqlite3_errcode(s->db) == SQLITE_CONSTRAINT ? FT_ENOT_FOUND : rc;
  if (seq) *seq = sqlite3_last_insert_rowid(s->db);
  return 0;
}

/* The status of job_id's latest status event ("" if none) into buf: every
 * transition appends one, so it is the status the job leaves. */
static void last_status_locked(store *s, const char *job_id, char *buf, size_t n) {
  buf[0] = 0;
  st_get(s,
         "SELECT json_extract(data, '$.status') FROM events WHERE job_id = ? "
         "AND type = 'status' ORDER BY seq DESC LIMIT 1",
         "s", "t", job_id, buf, n);
}

/* A status event {status, ...extra} with message; the transition's log line
 * (obs.h). */
static int status_event_locked(store *s, const char *job_id, const char *level, const char *status,
                               const char *message, json_t *extra) {
  json_t *d = extra ? extra : json_object();
  json_object_set_new(d, "status", json_string(status));
  char from[32];
  last_status_locked(s, job_id, from, sizeof from);
  int rc = event_append_locked(s, job_id, level, "status", message, d, NULL);
  json_decref(d);
  if (!rc) obs_job_transition(job_id, from, status, message);
  return rc;
}

static int job_get_locked(store *s, const char *id, int internal, json_t **job) {
  return st_get_json(s, internal ? job_json_internal : job_json_api, job,
                     "SELECT " JOB_COLS " FROM jobs WHERE id = ?", "s", id);
}

/* status (and attempt, if not NULL) of job id into buf; FT_ENOT_FOUND */
static int job_status_locked(store *s, const char *id, char *buf, size_t n, int *attempt) {
  if (n) buf[0] = 0;
  return st_get(s, "SELECT status, attempt FROM jobs WHERE id = ?", "s", "ti", id, buf, n, attempt);
}

/* What a list is made of: its table (or join), the columns its row builder
 * reads, the key that orders it (newest first), the column of the ids that
 * `after` names, and the column an owner filters on; of_job: the owner is a
 * job, which must exist (FT_ENOT_FOUND). */
typedef struct {
  const char *from, *cols, *key, *idcol, *owner_col;
  int of_job;
  st_json_fn row;
} st_list;

/* The lists, one line each. */
enum { ST_FILES, ST_JOBS, ST_EVENTS, ST_CKPTS };
static const st_list st_lists[] = {
    [ST_FILES] = {"files", FILE_COLS, "n", "id", "tenant", 0, file_json},
    [ST_JOBS] = {"jobs", JOB_COLS, "n", "id", "tenant", 0, job_json_api},
    [ST_EVENTS] = {"events", EVENT_COLS, "seq", "id", "job_id", 1, event_json},
    [ST_CKPTS] = {CKPT_FROM, CKPT_COLS, "c.n", "c.id", "c.job_id", 1, ckpt_json},
};

/* One page of list `which`, of owner's rows (NULL: everyone's); takes the
 * mutex. */
static int st_list_page(store *s, int which, const char *owner, const char *after, int limit,
                        json_t **out) {
  const st_list *l = &st_lists[which];
  *out = NULL;
  if (limit < 1) limit = 1;
  char filter[64], sql[1024];
  if (owner)
    snprintf(filter, sizeof filter, " AND %s = ?2", l->owner_col);
  else
    snprintf(filter, sizeof filter, " AND ?2 IS NULL");
  json_t *data = json_array();
  if (!data) return FT_ENOMEM;
  int64_t after_key = 0;
  st_lock(s);
  int rc = l->of_job ? st_get(s, "SELECT 1 FROM jobs WHERE id = ?", "s", "", owner) : 0;
  if (!rc && after) {
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?1%s", l->key, l->from, l->idcol,
             filter);
    rc = st_get(s, sql, "ss", "I", after, owner, &after_key);
  }
  if (!rc) { /* one row more than the page says whether there are more */
    snprintf(sql, sizeof sql,
             "SELECT %s FROM %s WHERE (?1 = 0 OR %s < ?1)%s ORDER BY %s DESC LIMIT ?3", l->cols,
             l->from, l->key, filter, l->key);
    rc = st_rows(s, l->row, data, sql, "Isi", after_key, owner, limit + 1);
  }
  st_unlock(s, 0);
  int has_more = json_array_size(data) > (size_t)limit;
  if (has_more) json_array_remove(data, (size_t)limit);
  if (rc) {
    json_decref(data);
    return rc;
  }
  *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", has_more);
  return *out ? 0 : FT_ENOMEM;
}

/* ---- files --------------------------------------------------------------- */

static int file_get_locked(store *s, const char *id, json_t **file) {
  return st_get_json(s, file_json, file, "SELECT " FILE_COLS " FROM files WHERE id = ?", "s", id);
}

int store_file_insert(store *s, const char *id, int64_t bytes, const char *filename,
                      const char *purpose, json_t **file) {
  return store_file_insert_tenant(s, NULL, id, bytes, filename, purpose, "processed", NULL, NULL,
                                  file);
}

int store_file_insert_tenant(store *s, const char *tenant, const char *id, int64_t bytes,
                             const char *filename, const char *purpose, const char *status,
                             const char *status_details, const json_t *validation, json_t **file) {
  int rc = st_begin(s, file);
  if (rc) return rc;
  rc = st_exec(s, FT_EDB,
               "INSERT INTO files (id, bytes, created_at, filename, purpose, status, "
               "status_details, validation, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "sIIssssjs", id, bytes, store_now(), filename, purpose, status, status_details,
               validation, tenant ? tenant : "default");
  if (!rc && file) rc = file_get_locked(s, id, file);
  return st_end(s, rc, file);
}

int store_file_get(store *s, const char *id, json_t **file) {
  return st_unlock(s, file_get_locked(st_lock(s), id, file));
}

int store_file_list(store *s, const char *after, int limit, json_t **list) {
  return store_file_list_tenant(s, NULL, after, limit, list);
}

int store_file_list_tenant(store *s, const char *tenant, const char *after, int limit,
                           json_t **list) {
  return st_list_page(s, ST_FILES, tenant, after, limit, list);
}

int store_file_delete(store *s, const char *id, ft_error *err) {
  int rc = st_begin(s, NULL);
  if (rc) return ft_error_set(err, rc, NULL, NULL);
  char job[64];
  rc = st_get(s,
              "SELECT id FROM jobs WHERE (training_file = ?1 OR validation_file = ?1 OR "
              "test_file = ?1) AND status NOT IN " TERMINAL_SQL " LIMIT 1",
              "s", "t", id, job, sizeof job);
  if (!rc)
    rc = ft_error_set(err, FT_EBAD_STATE, "file_id",
                      "file %s is used by job %s, which is not finished", id, job);
  else if (rc == FT_ENOT_FOUND) {
    rc = st_exec(s, FT_ENOT_FOUND, "DELETE FROM files WHERE id = ?", "s", id);
    if (rc == FT_ENOT_FOUND) ft_error_set(err, rc, "file_id", "no such file: %s", id);
  }
  rc = st_end(s, rc, NULL);
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, NULL);
  return rc;
}

/* Whether a file row exists: 0 or FT_ENOT_FOUND. */
static int file_exists_locked(store *s, const char *id) {
  return st_get(s, "SELECT 1 FROM files WHERE id = ?", "s", "", id);
}

/* ---- jobs: API side ------------------------------------------------------ */

int store_job_insert(store *s, const store_job_new *j, json_t **job, ft_error *err) {
  char id[64];
  store_new_id("ftjob", id, sizeof id);
  int rc = st_begin(s, job);
  if (rc) return ft_error_set(err, rc, NULL, NULL);
  /* the files must exist: the training file always, the others when named */
  const char *param[] = {"training_file", "validation_file", "test_file"};
  const char *file[] = {j->training_file, j->validation_file, j->test_file};
  for (int i = 0; i < 3 && !rc; i++) {
    if (i > 0 && !(file[i] && *file[i])) continue;
    rc = file_exists_locked(s, file[i]);
    if (rc == FT_ENOT_FOUND)
      rc = ft_error_set(err, FT_EINVALID, param[i], "no such file: %s", file[i]);
  }
  if (!rc) {
    int64_t now = store_now();
    rc = st_exec(s, FT_EDB,
                 "INSERT INTO jobs (id, created_at, updated_at, model, training_file, "
                 "validation_file, suffix, seed, status, spec, metadata, test_file, "
                 "parent_model, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 "sIIssssIsjjsjs", id, now, now, j->model, j->training_file,
                 j->validation_file && *j->validation_file ? j->validation_file : NULL,
                 j->suffix && *j->suffix ? j->suffix : NULL, (int64_t)j->seed,
                 j->queued ? "queued" : "validating_files", j->spec, j->metadata,
                 j->test_file && *j->test_file ? j->test_file : NULL, j->parent_model,
                 j->tenant ? j->tenant : "default");
  }
  if (!rc)
    rc = status_event_locked(s, id, "info", j->queued ? "queued" : "validating_files",
                             "Job created", NULL);
  if (!rc) rc = job_get_locked(s, id, 0, job);
  rc = st_end(s, rc, job); /* (a failed COMMIT too: the job does not exist) */
  if (rc == FT_EDB || rc == FT_ENOMEM) ft_error_set(err, rc, NULL, NULL);
  return rc;
}

int store_job_get(store *s, const char *id, json_t **job) {
  return st_unlock(s, job_get_locked(st_lock(s), id, 0, job));
}

int store_job_list_tenant(store *s, const char *tenant, const char *after, int limit,
                          json_t **list) {
  return st_list_page(s, ST_JOBS, tenant, after, limit, list);
}

/* A user action: UPDATE sql (params ?1 id, ?2 now) moving the job; on no
 * change says why. The status event says where it went. */
static int user_action(store *s, const char *id, const char *sql, const char *what, json_t **job,
                       ft_error *err) {
  char before[24], after[24];
  int rc = st_begin(s, job);
  if (rc) return ft_error_set(err, rc, NULL, NULL);
  rc = job_status_locked(s, id, before, sizeof before, NULL);
  if (rc == FT_ENOT_FOUND) ft_error_set(err, rc, "fine_tuning_job_id", "no such job: %s", id);
  if (!rc) rc = st_exec(s, FT_EBAD_STATE, sql, "sI", id, store_now());
  if (rc == FT_EBAD_STATE) ft_error_set(err, rc, NULL, "cannot %s a job that is %s", what, before);
  if (!rc) rc = job_status_locked(s, id, after, sizeof after, NULL);
  if (!rc) {
    const char *msg = !strcmp(after, "cancelled") ? "Job cancelled"
                      : !strcmp(after, "pausing") ? "Pause requested"
                      : !strcmp(after, "paused")  ? "Job paused"
                                                  : "Job resumed";
    rc = status_event_locked(s, id, "info", after, msg,
                             json_pack("{s:s}", "previous_status", before));
  }
  if (!rc && job) rc = job_get_locked(s, id, 0, job);
  rc = st_end(s, rc, job); /* (a failed COMMIT too: nothing changed) */
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
  return st_unlock(s, job_status_locked(st_lock(s), id, buf, n, NULL));
}

static json_t *col0_json(sqlite3_stmt *st) { return st_col_json(st, 0); }

int store_job_counts(store *s, json_t **counts) {
  *counts = json_object();
  for (int i = 0; all_statuses[i]; i++)
    json_object_set_new(*counts, all_statuses[i], json_integer(0));
  json_t *got = NULL;
  int rc = st_unlock(
      s, st_get_json(st_lock(s), col0_json, &got,
                     "SELECT json_group_object(status, n) FROM (SELECT status, count(*) AS n "
                     "FROM jobs GROUP BY status)",
                     ""));
  json_object_update(*counts, got);
  json_decref(got);
  return rc ? FT_EDB : 0;
}

int store_jobs_using_model(store *s, const char *model_id, int *n) {
  *n = 0;
  return st_unlock(
      s, st_get(st_lock(s),
                "SELECT count(*) FROM jobs WHERE model = ? AND status NOT IN " TERMINAL_SQL, "s",
                "i", model_id, n));
}

static json_t *origin_json(sqlite3_stmt *st) {
  return json_pack("{s:o, s:o}", "job", st_col_str(st, 0), "parent", st_col_str(st, 1));
}

int store_model_origin(store *s, const char *model_id, json_t **origin) {
  return st_unlock(
      s, st_get_json(st_lock(s), origin_json, origin,
                     "SELECT id, model FROM jobs WHERE fine_tuned_model = ? ORDER BY n DESC "
                     "LIMIT 1",
                     "s", model_id));
}

/* Jobs of tenant waiting to run. */
int store_jobs_waiting(store *s, const char *tenant, int *n) {
  *n = 0;
  pthread_mutex_lock(&s->mu);
  int rc = st_get(s,
                  "SELECT count(*) FROM jobs WHERE tenant = ? AND status IN "
                  "('validating_files', 'queued')",
                  "s", "i", tenant ? tenant : "default", n);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- jobs: pool side ----------------------------------------------------- */

int store_job_claim(store *s, const char *worker_id, int lease_ms, json_t **job) {
  int rc = st_begin(s, job);
  if (rc) return rc;
  char id[64] = "";
  rc = st_get(s, "SELECT id FROM jobs WHERE status = 'queued' ORDER BY n LIMIT 1", "", "t", id,
              sizeof id);
  if (rc == FT_ENOT_FOUND) { /* nothing queued: end the read */
    st_end(s, rc, NULL);
    return 0;
  }
  if (!rc)
    rc = st_exec(s, FT_EDB,
                 "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?2, "
                 "lease_expires_ms = ?3, started_at = COALESCE(started_at, ?4), updated_at = ?4, "
                 "rate_t0_ms = NULL, rate_step0 = NULL, rate_t1_ms = NULL "
                 "WHERE id = ?1 AND status = 'queued'",
                 "ssII", id, worker_id, st_now_ms() + lease_ms, store_now());
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
  return st_end(s, rc, job);
}

int store_job_heartbeat(store *s, const char *job_id, int attempt, int lease_ms) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc = st_exec(s, FT_EBAD_STATE,
               "UPDATE jobs SET lease_expires_ms = ? WHERE id = ? AND attempt = ? AND status IN "
               "('running', 'pausing')",
               "Isi", st_now_ms() + lease_ms, job_id, attempt);
  return st_end(s, rc, NULL);
}

static int has_num(const json_t *o, const char *k) { return json_is_number(json_object_get(o, k)); }
/* Counts are JSON integers (the pool checks their range); a double is never
 * converted, so an out-of-range one cannot reach an integer cast. */
static int has_int(const json_t *o, const char *k) {
  return json_is_integer(json_object_get(o, k));
}
static long long get_int(const json_t *o, const char *k) {
  return (long long)json_integer_value(json_object_get(o, k));
}

int store_job_metrics(store *s, const char *job_id, int attempt, const json_t *metrics,
                      int lease_ms) {
  if (!json_is_object(metrics) || !has_int(metrics, "step")) return FT_EINVALID;
  long long step = get_int(metrics, "step");
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc =
      st_exec(s, FT_EBAD_STATE,
              "UPDATE jobs SET steps_completed = ?3, total_steps = COALESCE(?4, total_steps), "
              "trained_tokens = COALESCE(?5, trained_tokens), epoch = COALESCE(?6, epoch), "
              "lease_expires_ms = ?7, updated_at = ?8, metrics = ?9, "
              "rate_step0 = CASE WHEN rate_t0_ms IS NULL THEN ?3 ELSE rate_step0 END, "
              "rate_t0_ms = COALESCE(rate_t0_ms, ?10), rate_t1_ms = ?10 "
              "WHERE id = ?1 AND attempt = ?2 AND status IN ('running', 'pausing')",
              "siInnnIIjI", job_id, attempt, (int64_t)step, json_object_get(metrics, "total_steps"),
              json_object_get(metrics, "trained_tokens"), json_object_get(metrics, "epoch"),
              st_now_ms() + lease_ms, store_now(), metrics, st_now_ms());
  if (!rc) {
    char msg[256];
    int len = snprintf(msg, sizeof msg, "Step %lld", step);
    if (has_int(metrics, "total_steps"))
      len +=
          snprintf(msg + len, sizeof msg - (size_t)len, "/%lld", get_int(metrics, "total_steps"));
    if (has_num(metrics, "train_loss"))
      len += snprintf(msg + len, sizeof msg - (size_t)len, ": training loss=%.4f",
                      json_number_value(json_object_get(metrics, "train_loss")));
    if (has_num(metrics, "valid_loss"))
      snprintf(msg + len, sizeof msg - (size_t)len, ", validation loss=%.4f",
               json_number_value(json_object_get(metrics, "valid_loss")));
    rc = event_append_locked(s, job_id, "info", "metrics", msg, metrics, NULL);
  }
  return st_end(s, rc, NULL);
}

int store_event_append(store *s, const char *job_id, const char *level, const char *type,
                       const char *message, const json_t *data, int64_t *seq) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  return st_end(s, event_append_locked(s, job_id, level, type, message, data, seq), NULL);
}

int store_job_event(store *s, const char *job_id, int attempt, const char *level,
                    const char *message, const json_t *data) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc = st_get(s,
              "SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND status IN "
              "('running', 'pausing')",
              "si", "", job_id, attempt);
  if (rc == FT_ENOT_FOUND) rc = FT_EBAD_STATE;
  if (!rc) rc = event_append_locked(s, job_id, level, "message", message, data, NULL);
  return st_end(s, rc, NULL);
}

int store_checkpoint_add(store *s, const char *job_id, int attempt, long step, const char *path,
                         const json_t *metrics) {
  char id[64];
  store_new_id("ftckpt", id, sizeof id);
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc = st_exec(s, FT_EBAD_STATE,
               "UPDATE jobs SET resume_from = ?3, updated_at = ?4 WHERE id = ?1 "
               "AND attempt = ?2 AND status IN ('running', 'pausing')",
               "sisI", job_id, attempt, path, store_now());
  if (!rc)
    rc = st_exec(s, FT_EDB,
                 "INSERT INTO checkpoints (id, job_id, attempt, created_at, step, path, metrics) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 "ssiIIsj", id, job_id, attempt, store_now(), (int64_t)step, path, metrics);
  if (!rc) {
    char msg[96];
    snprintf(msg, sizeof msg, "Checkpoint saved at step %ld", step);
    json_t *d = json_pack("{s:s, s:I}", "id", id, "step", (json_int_t)step);
    rc = event_append_locked(s, job_id, "info", "checkpoint", msg, d, NULL);
    json_decref(d);
  }
  return st_end(s, rc, NULL);
}

/* A worker's "cancelled": only the acknowledgement of a cancel the user made
 * (the job is already 'cancelled' and this is its attempt); nothing changes.
 * A worker can never cancel a job nobody cancelled: FT_EBAD_STATE. */
static int job_cancel_ack(store *s, const char *job_id, int attempt) {
  char status[24];
  int cur = 0;
  int rc = st_unlock(s, job_status_locked(st_lock(s), job_id, status, sizeof status, &cur));
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
  int code = err && err->code ? err->code : FT_EINTERNAL;
  const char *emsg = err && err->message[0] ? err->message : ft_err_message(code);
  const char *eparam = err && err->param[0] ? err->param : NULL;
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc = st_exec(
      s, FT_EBAD_STATE,
      "UPDATE jobs SET status = ?3, worker = NULL, lease_expires_ms = NULL, updated_at = ?4, "
      "finished_at = CASE WHEN ?3 = 'paused' THEN NULL ELSE ?4 END, "
      "fine_tuned_model = COALESCE(?5, fine_tuned_model), model_path = COALESCE(?6, "
      "model_path), result = COALESCE(?7, result), error_code = ?8, error_message = ?9, "
      "error_param = ?10, trained_tokens = COALESCE(?11, trained_tokens), "
      "steps_completed = COALESCE(?12, steps_completed) "
      "WHERE id = ?1 AND attempt = ?2 AND (status = 'pausing' OR (?3 <> 'paused' AND "
      "status = 'running'))",
      "sisIssjsssnn", job_id, attempt, status, store_now(), succeeded ? model_id : NULL,
      succeeded ? model_path : NULL, result, failed ? ft_err_code(code) : NULL,
      failed ? emsg : NULL, failed ? eparam : NULL,
      succeeded ? json_object_get(result, "trained_tokens") : NULL,
      succeeded ? json_object_get(result, "steps") : NULL);
  if (!rc) {
    char msg[700];
    const char *level = "info";
    json_t *d = json_object();
    if (succeeded) {
      snprintf(msg, sizeof msg, "The job has successfully completed");
      if (model_id) json_object_set_new(d, "fine_tuned_model", json_string(model_id));
    } else if (failed) {
      level = "error";
      snprintf(msg, sizeof msg, "The job failed: %s", emsg);
      json_object_set_new(d, "error",
                          json_pack("{s:s, s:s, s:s?}", "code", ft_err_code(code), "message", emsg,
                                    "param", eparam));
    } else {
      snprintf(msg, sizeof msg, "Job paused");
    }
    rc = status_event_locked(s, job_id, level, status, msg, d);
  }
  return st_end(s, rc, NULL);
}

static json_t *expired_json(sqlite3_stmt *st) {
  return json_pack("[s, s, i, i]", st_col_text(st, 0), st_col_text(st, 1),
                   sqlite3_column_int(st, 2), sqlite3_column_int(st, 3));
}

int store_jobs_expire(store *s, int max_attempts, int *n) {
  if (n) *n = 0;
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  json_t *expired = json_array();
  rc = st_rows(s, expired_json, expired,
               "SELECT id, status, attempt, lost FROM jobs WHERE status IN "
               "('running', 'pausing') AND lease_expires_ms < ? ORDER BY n",
               "I", st_now_ms());
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
    rc = st_exec(s, FT_EBAD_STATE,
                 "UPDATE jobs SET status = ?3, worker = NULL, lease_expires_ms = NULL, "
                 "updated_at = ?4, finished_at = CASE WHEN ?3 = 'failed' THEN ?4 ELSE NULL END, "
                 "error_code = CASE WHEN ?3 = 'failed' THEN ?5 ELSE error_code END, "
                 "error_message = CASE WHEN ?3 = 'failed' THEN ?6 ELSE error_message END, "
                 "lost = lost + CASE WHEN ?3 = 'paused' THEN 0 ELSE 1 END "
                 "WHERE id = ?1 AND attempt = ?2 AND status IN ('running', 'pausing')",
                 "sisIss", id, attempt, to, now, ft_err_code(FT_EWORKER_LOST),
                 ft_err_message(FT_EWORKER_LOST));
    if (rc == FT_EBAD_STATE) { /* no longer leased to that attempt */
      rc = 0;
      continue;
    }
    if (rc) break;
    json_t *d = json_pack("{s:i, s:i}", "attempt", attempt, "lost", lost);
    if (!strcmp(to, "failed"))
      json_object_set_new(d, "error",
                          json_pack("{s:s, s:s, s:n}", "code", ft_err_code(FT_EWORKER_LOST),
                                    "message", ft_err_message(FT_EWORKER_LOST), "param"));
    rc = status_event_locked(s, id, level, to, msg, d);
    if (!rc && n) (*n)++;
  }
  json_decref(expired);
  rc = st_end(s, rc, NULL);
  if (rc && n) *n = 0;
  return rc;
}

int store_job_control(store *s, const char *job_id, int attempt, int *what) {
  *what = 0;
  char status[24];
  int cur = 0;
  int rc = st_unlock(s, job_status_locked(st_lock(s), job_id, status, sizeof status, &cur));
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
  st_deadline(&deadline, timeout_ms);
  int rc;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) {
      rc = FT_ECANCELLED;
      break;
    }
    rc = st_get(s,
                "SELECT n, id FROM jobs WHERE status = 'validating_files' AND n > ? "
                "ORDER BY n LIMIT 1",
                "I", "It", *after_n, after_n, id, n);
    if (rc != FT_ENOT_FOUND) break;
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int store_job_get_internal(store *s, const char *id, json_t **job) {
  return st_unlock(s, job_get_locked(st_lock(s), id, 1, job));
}

/* Moves a job out of validating_files: to queued with its data sets'
 * statistics, or to failed with err. */
static int job_validation_end(store *s, const char *id, const json_t *datasets,
                              const ft_error *err) {
  int code = err && err->code ? err->code : FT_EINTERNAL;
  const char *emsg = err ? (err->message[0] ? err->message : ft_err_message(code)) : NULL;
  const char *eparam = err && err->param[0] ? err->param : NULL;
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  rc = st_exec(s, FT_EBAD_STATE,
               "UPDATE jobs SET status = ?2, datasets = COALESCE(?3, datasets), "
               "updated_at = ?4, finished_at = CASE WHEN ?2 = 'failed' THEN ?4 END, "
               "error_code = ?5, error_message = ?6, error_param = ?7 "
               "WHERE id = ?1 AND status = 'validating_files'",
               "ssjIsss", id, err ? "failed" : "queued", datasets, store_now(),
               err ? ft_err_code(code) : NULL, emsg, eparam);
  if (!rc && err) {
    char msg[700];
    snprintf(msg, sizeof msg, "The job failed: %s", emsg);
    rc = status_event_locked(s, id, "error", "failed", msg,
                             json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", ft_err_code(code),
                                       "message", emsg, "param", eparam));
  } else if (!rc) {
    rc = status_event_locked(s, id, "info", "queued", "Files validated; the job is queued",
                             json_pack("{s:O}", "datasets", datasets ? datasets : json_null()));
  }
  return st_end(s, rc, NULL);
}

int store_job_validated(store *s, const char *id, const json_t *datasets) {
  return job_validation_end(s, id, datasets, NULL);
}

int store_job_invalid(store *s, const char *id, const ft_error *err) {
  ft_error e = {0};
  if (!err) ft_error_set(&e, FT_EINTERNAL, NULL, NULL);
  return job_validation_end(s, id, NULL, err ? err : &e);
}

static json_t *ckpt_found_json(sqlite3_stmt *st) {
  const char *suffix = st_col_text(st, 4);
  return json_pack("{s:o, s:o, s:o, s:o, s:s}", "path", st_col_str(st, 0), "created_at",
                   st_col_int(st, 1), "model", st_col_str(st, 2), "spec", st_col_json(st, 3),
                   "suffix", *suffix ? suffix : "ft");
}

int store_checkpoint_find(store *s, const char *job_id, long step, json_t **ckpt) {
  return st_unlock(
      s, st_get_json(st_lock(s), ckpt_found_json, ckpt,
                     "SELECT c.path, c.created_at, j.model, j.spec, j.suffix FROM " CKPT_FROM
                     " WHERE c.job_id = ? AND "
                     "c.step = ? ORDER BY c.n DESC LIMIT 1",
                     "sI", job_id, (int64_t)step));
}

/* ---- checkpoints as models (GET /v1/models) -------------------------------- */

int store_checkpoint_model_ids(store *s, json_t **ids) {
  *ids = json_array();
  if (!*ids) return FT_ENOMEM;
  int rc = st_unlock(s, st_rows(st_lock(s), ckpt_model_id_json, *ids,
                                "SELECT " CKPT_COLS " FROM " CKPT_FROM " "
                                "ORDER BY c.n",
                                ""));
  if (rc) {
    json_decref(*ids);
    *ids = NULL;
  }
  return rc;
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
  int rc = st_begin(s, NULL);
  if (!rc) rc = st_end(s, st_exec(s, 0, sql, "s", job_id), NULL);
  free(sql);
  return rc;
}

/* ---- events and checkpoints ---------------------------------------------- */

int store_events_list(store *s, const char *job_id, const char *after, int limit, json_t **list) {
  return st_list_page(s, ST_EVENTS, job_id, after, limit, list);
}

/* {"seq":n,"event":{…}} */
static json_t *event_seq_json(sqlite3_stmt *st) {
  return json_pack("{s:I, s:o}", "seq", (json_int_t)sqlite3_column_int64(st, 6), "event",
                   event_json(st));
}

int store_events_since(store *s, const char *job_id, int64_t after_seq, int max, json_t **events,
                       char *status, size_t status_n) {
  *events = NULL;
  json_t *arr = json_array();
  if (!arr) return FT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  int rc = job_status_locked(s, job_id, status, status_n, NULL);
  if (!rc)
    rc = st_rows(s, event_seq_json, arr,
                 "SELECT " EVENT_COLS
                 " FROM events WHERE job_id = ? AND seq > ? ORDER BY seq "
                 "LIMIT ?",
                 "sIi", job_id, after_seq, max > 0 ? max : 100);
  pthread_mutex_unlock(&s->mu);
  if (rc)
    json_decref(arr);
  else
    *events = arr;
  return rc;
}

void store_events_wait(store *s, const char *job_id, int64_t after_seq, int timeout_ms) {
  struct timespec deadline;
  st_deadline(&deadline, timeout_ms);
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) break;
    char status[24];
    if (job_status_locked(s, job_id, status, sizeof status, NULL) != 0) break;
    if (store_status_terminal(status) || !strcmp(status, "paused")) break;
    /* a newer event, or an error: let the caller look */
    if (st_get(s, "SELECT 1 FROM events WHERE job_id = ? AND seq > ? LIMIT 1", "sI", "", job_id,
               after_seq) != FT_ENOT_FOUND)
      break;
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&s->mu);
}

int store_checkpoints_list(store *s, const char *job_id, const char *after, int limit,
                           json_t **list) {
  return st_list_page(s, ST_CKPTS, job_id, after, limit, list);
}

/* ---- graceful shutdown (shutdown.c) ----------------------------------------- */

int store_job_interrupt(store *s, const char *job_id, int attempt, long step) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  char before[24];
  int cur = 0;
  rc = job_status_locked(s, job_id, before, sizeof before, &cur);
  if (rc == FT_ENOT_FOUND ||
      (!rc && (cur != attempt || (strcmp(before, "running") && strcmp(before, "pausing")))))
    rc = FT_EBAD_STATE;
  int pausing = !rc && !strcmp(before, "pausing");
  int64_t resume_step = -1;
  if (!rc)
    rc = st_exec(s, FT_EBAD_STATE,
                 "UPDATE jobs SET status = CASE status WHEN 'pausing' THEN 'paused' "
                 "ELSE 'queued' END, worker = NULL, lease_expires_ms = NULL, "
                 "updated_at = ?3 WHERE id = ?1 AND attempt = ?2 AND status IN "
                 "('running', 'pausing')",
                 "siI", job_id, attempt, store_now());
  if (!rc) { /* the step of the checkpoint the next attempt resumes from */
    rc = st_get(s,
                "SELECT c.step FROM " CKPT_FROM
                " "
                "WHERE j.id = ? AND c.path = j.resume_from ORDER BY c.n DESC LIMIT 1",
                "s", "I", job_id, &resume_step);
    if (rc == FT_ENOT_FOUND) rc = 0; /* none yet: from the start */
  }
  if (!rc) {
    char msg[300], from[64];
    if (resume_step >= 0)
      snprintf(from, sizeof from, "its checkpoint at step %lld", (long long)resume_step);
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
  return st_end(s, rc, NULL);
}

/* ---- API keys and tenants (auth.c) ------------------------------------------ */

int store_key_insert(store *s, const char *id, const char *name, const char *tenant, int admin,
                     const char *hash, const char *prefix, ft_error *err) {
  int rc = st_begin(s, NULL);
  if (!rc) {
    rc = st_get(s, "SELECT 1 FROM api_keys WHERE name = ?", "s", "", name);
    if (!rc)
      rc = ft_error_set(err, FT_EBAD_STATE, "name", "a key named \"%s\" exists already", name);
    else if (rc == FT_ENOT_FOUND)
      rc = st_exec(s, FT_EDB,
                   "INSERT INTO api_keys (id, name, tenant, admin, hash, prefix, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   "sssissI", id, name, tenant, admin ? 1 : 0, hash, prefix, store_now());
    rc = st_end(s, rc, NULL);
  }
  if (rc == FT_EDB) ft_error_set(err, FT_EDB, NULL, "recording the key: database error");
  return rc;
}

int store_key_list(store *s, json_t **keys) {
  *keys = json_array();
  if (!*keys) return FT_ENOMEM;
  return st_unlock(
      s, st_rows(st_lock(s), key_json, *keys, "SELECT " KEY_COLS " FROM api_keys ORDER BY n", ""));
}

int store_key_revoke(store *s, const char *id_or_name, json_t **key) {
  int rc = st_begin(s, key);
  if (rc) return rc;
  rc = st_exec(s, FT_ENOT_FOUND,
               "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) "
               "WHERE id = ?1 OR name = ?1",
               "sI", id_or_name, store_now());
  if (!rc && key)
    rc = st_get_json(s, key_json, key,
                     "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1 OR name = ?1", "s",
                     id_or_name);
  return st_end(s, rc, key);
}

int store_key_find(store *s, const char *hash, char *id, size_t id_n, char *tenant, size_t tenant_n,
                   int *admin) {
  return st_unlock(
      s, st_get(st_lock(s),
                "SELECT id, tenant, admin FROM api_keys WHERE hash = ? AND revoked_at IS NULL", "s",
                "tti", hash, id, id_n, tenant, tenant_n, admin));
}

int store_key_count(store *s, int *n) {
  *n = 0;
  return st_unlock(s, st_get(st_lock(s), "SELECT count(*) FROM api_keys", "", "i", n));
}

int store_tenant_of(store *s, const char *kind, const char *id, char *tenant, size_t n) {
  if (n) tenant[0] = 0;
  const char *sql = !strcmp(kind, "file")  ? "SELECT tenant FROM files WHERE id = ?"
                    : !strcmp(kind, "job") ? "SELECT tenant FROM jobs WHERE id = ?"
                                           : NULL;
  if (!sql) return FT_EINVALID;
  return st_unlock(s, st_get(st_lock(s), sql, "s", "t", id, tenant, n));
}
