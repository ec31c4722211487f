/* The store's internal header: what its files (store.c, store_files.c,
 * store_jobs.c, store_events.c, store_keys.c, store_json.c) share, and
 * nothing outside them includes. One connection behind one mutex: a
 * function named …_locked, and every st_exec/st_get/st_get_json/st_rows,
 * expects the caller to hold it (st_lock or st_begin); every write runs
 * between st_begin and st_end, in one BEGIN IMMEDIATE transaction. Objects
 * are built from rows by the builders of store_json.c, whose column lists
 * (…_COLS) the queries select. */
#ifndef FT_STORE_INT_H
#define FT_STORE_INT_H
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <time.h>

#include "ft_sync.h"
#include "store.h"

struct store {
  sqlite3 *db;
  pthread_mutex_t mu; /* guards db and everything below */
  pthread_cond_t cv;  /* broadcast on every committed write */
  int stopping;       /* store_wake_all was called */
  store_transition_fn on_transition; /* store_set_transition_hook; NULL: none */
};

#define TERMINAL_SQL "('succeeded','failed','cancelled')"
#define ACTIVE_SQL "('validating_files','queued','running','pausing','paused')"

/* ---- time (store.c) ------------------------------------------------------ */

int64_t st_now_ms(void); /* wall clock, milliseconds (leases, step rates) */
/* now + timeout_ms (>= 0) on the monotonic clock, for pthread_cond_timedwait */

/* ---- the mutex and transactions (store.c) --------------------------------- */

/* For a read outside a transaction, in one expression:
 * st_unlock(s, query(st_lock(s), …)) holds the mutex for the query and
 * returns the query's code. */
store *st_lock(store *s);
int st_unlock(store *s, int rc);
/* Takes the mutex and begins a write (BEGIN IMMEDIATE). made (may be NULL)
 * is where the write will put an object it builds for its caller (st_end
 * says when it is kept): set to NULL here. On failure the mutex is released
 * again and the result is FT_EDB: do not call st_end. */
int st_begin(store *s, json_t **made);
/* Ends the write begun by st_begin and releases the mutex: rolls back when rc
 * is an error, else commits and wakes the waiters (store_events_wait,
 * store_job_next_validating). *made (made may be NULL) is what the write
 * built for its caller: released and set to NULL when the write does not
 * commit. Returns the final code. */
int st_end(store *s, int rc, json_t **made);

/* ---- the one prepare/bind/step path (store.c) ------------------------------
 * Every statement is prepared, bound, stepped, finalized and its result
 * mapped to an FT_E* code in one place. The letters of `in` say how to bind
 * the arguments that follow it to ?1, ?2, … in order:
 *   s  const char *     text; NULL binds NULL
 *   i  int
 *   I  int64_t          (cast anything else: it is read as an int64_t)
 *   j  const json_t *   its compact JSON text; NULL or JSON null binds NULL
 *   n  const json_t *   its value when a JSON integer, else NULL (a double is
 *                       never converted, so it cannot reach an integer cast)
 * `in` must name every parameter of sql (as many letters as the highest ?N):
 * else the statement is not run and the result is FT_EDB. On FT_EDB,
 * sqlite3_errcode/sqlite3_errmsg say what failed. The caller holds the
 * mutex. */

/* A write: 0 when it changed a row, `none` when it changed none, FT_EDB. */
int st_exec(store *s, int none, const char *sql, const char *in, ...);
/* The first row's columns into the pointers after in's arguments, one
 * letter of out per column: t (char *buf, size_t n: the text, "" for NULL),
 * i (int *), I (int64_t *); a NULL pointer skips its column. Nothing is
 * written without a row. 0, FT_ENOT_FOUND (no row) or FT_EDB. */
int st_get(store *s, const char *sql, const char *in, const char *out, ...);
/* A row turned into a JSON value (a new reference; NULL: out of memory). */
typedef json_t *(*st_json_fn)(sqlite3_stmt *row);
/* *out = fn(first row): 0, FT_ENOT_FOUND (*out NULL), FT_EDB or FT_ENOMEM. */
int st_get_json(store *s, st_json_fn fn, json_t **out, const char *sql, const char *in, ...);
/* Appends fn(row) for every row to the array arr: 0, FT_EDB or FT_ENOMEM. */
int st_rows(store *s, st_json_fn fn, json_t *arr, const char *sql, const char *in, ...);

/* ---- lists (store.c, the table in store_json.c) --------------------------- */

/* What a list is made of: its table (or join), the columns its row builder
 * reads, the key that orders it (newest first), the column of the ids that
 * `after` names, and the column an owner filters on; of_job: the owner is a
 * job, which must exist (FT_ENOT_FOUND). */
typedef struct {
  const char *from, *cols, *key, *idcol, *owner_col;
  int of_job;
  st_json_fn row;
} st_list;
enum { ST_FILES, ST_JOBS, ST_EVENTS, ST_CKPTS };
extern const st_list st_lists[]; /* indexed by ST_FILES … */
/* One page of list `which` (store.h: "Lists"), of owner's rows (NULL:
 * everyone's); takes the mutex. */
int st_list_page(store *s, int which, const char *owner, const char *after, int limit,
                 json_t **out);

/* ---- rows -> JSON (store_json.c) ------------------------------------------ */

/* Column i as JSON: JSON null for SQL NULL; st_col_json parses the text
 * (JSON null when it does not parse). st_col_text: the text, "" for NULL. */
json_t *st_col_str(sqlite3_stmt *row, int i);
json_t *st_col_int(sqlite3_stmt *row, int i);
json_t *st_col_json(sqlite3_stmt *row, int i);
const char *st_col_text(sqlite3_stmt *row, int i);

/* The API's objects, each from a row of its …_COLS. */
#define FILE_COLS "id, bytes, created_at, filename, purpose, status, status_details, validation"
#define JOB_COLS                                                                            \
  "id, created_at, model, training_file, validation_file, suffix, seed, status, attempt, "  \
  "spec, metadata, error_code, error_message, error_param, steps_completed, total_steps, "  \
  "trained_tokens, fine_tuned_model, finished_at, resume_from, started_at, epoch, worker, " \
  "result, test_file, datasets, metrics, parent_model, rate_t0_ms, rate_step0, rate_t1_ms"
#define EVENT_COLS "id, created_at, level, message, type, data, seq"
#define CKPT_FROM "checkpoints c JOIN jobs j ON j.id = c.job_id"
#define CKPT_COLS "c.id, c.created_at, c.step, c.metrics, c.job_id, j.model, j.suffix"
#define KEY_COLS "id, name, tenant, admin, prefix, created_at, revoked_at"
json_t *st_file_json(sqlite3_stmt *row);
json_t *st_job_json(sqlite3_stmt *row); /* as the API returns it */
/* plus spec, resume_from, worker and result (what the pool needs) */
json_t *st_job_json_internal(sqlite3_stmt *row);
json_t *st_event_json(sqlite3_stmt *row);
json_t *st_ckpt_json(sqlite3_stmt *row);
json_t *st_ckpt_model_id_json(sqlite3_stmt *row); /* the checkpoint's model id, a string */
json_t *st_key_json(sqlite3_stmt *row);

/* ---- locked helpers shared between the files ------------------------------ */

/* status (and attempt, if not NULL) of job id into buf; FT_ENOT_FOUND
 * (store_jobs.c) */
int st_job_status_locked(store *s, const char *id, char *buf, size_t n, int *attempt);
/* Whether a file row exists: 0 or FT_ENOT_FOUND (store_files.c). */
int st_file_exists_locked(store *s, const char *id);
/* In a transaction: appends a status event {status, ...extra} (extra is
 * consumed) with message, and logs the transition (obs.h) (store_events.c). */
int st_status_event_locked(store *s, const char *job_id, const char *level, const char *status,
                           const char *message, json_t *extra);
#endif
