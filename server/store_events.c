/* The store's events and checkpoints: each job's event log (status changes,
 * a worker's messages and step metrics, checkpoints saved), which the API
 * lists, SSE streams follow (store_events_wait sleeps until a commit
 * broadcasts), and the log line of every transition reads; and the rows of
 * the checkpoints still on disk, the latest of which a job resumes from.
 * A worker's report counts only while its attempt is the job's and the job
 * is running or pausing (else FT_EBAD_STATE: the worker lost its lease). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* ---- appending events ---------------------------------------------------- */

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

int st_status_event_locked(store *s, const char *job_id, const char *level, const char *status,
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

int store_event_append(store *s, const char *job_id, const char *level, const char *type,
                       const char *message, const json_t *data, int64_t *seq) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  return st_end(s, event_append_locked(s, job_id, level, type, message, data, seq), NULL);
}

/* ---- what a worker reports: metrics, messages, checkpoints --------------- */

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

/* ---- reading events (the API, SSE) --------------------------------------- */

int store_events_list(store *s, const char *job_id, const char *after, int limit, json_t **list) {
  return st_list_page(s, ST_EVENTS, job_id, after, limit, list);
}

/* {"seq":n,"event":{…}} */
static json_t *event_seq_json(sqlite3_stmt *row) {
  return json_pack("{s:I, s:o}", "seq", (json_int_t)sqlite3_column_int64(row, 6), "event",
                   st_event_json(row));
}

int store_events_since(store *s, const char *job_id, int64_t after_seq, int max, json_t **events,
                       char *status, size_t status_n) {
  *events = NULL;
  json_t *arr = json_array();
  if (!arr) return FT_ENOMEM;
  pthread_mutex_lock(&s->mu);
  int rc = st_job_status_locked(s, job_id, status, status_n, NULL);
  if (!rc)
    rc = st_rows(s, event_seq_json, arr,
                 "SELECT " EVENT_COLS
                 " FROM events WHERE job_id = ? AND seq > ? "
                 "ORDER BY seq LIMIT ?",
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
  ft_deadline_ms(&deadline, timeout_ms);
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stopping) break;
    char status[24];
    if (st_job_status_locked(s, job_id, status, sizeof status, NULL) != 0) break;
    if (store_status_terminal(status) || !strcmp(status, "paused")) break;
    /* a newer event, or an error: let the caller look */
    if (st_get(s, "SELECT 1 FROM events WHERE job_id = ? AND seq > ? LIMIT 1", "sI", "", job_id,
               after_seq) != FT_ENOT_FOUND)
      break;
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&s->mu);
}

/* ---- reading checkpoints (the API, GET /v1/models, validate.c) ----------- */

static json_t *ckpt_found_json(sqlite3_stmt *row) {
  const char *suffix = st_col_text(row, 4);
  return json_pack("{s:o, s:o, s:o, s:o, s:s}", "path", st_col_str(row, 0), "created_at",
                   st_col_int(row, 1), "model", st_col_str(row, 2), "spec", st_col_json(row, 3),
                   "suffix", *suffix ? suffix : "ft");
}

int store_checkpoint_find(store *s, const char *job_id, long step, json_t **ckpt) {
  return st_unlock(
      s, st_get_json(st_lock(s), ckpt_found_json, ckpt,
                     "SELECT c.path, c.created_at, j.model, j.spec, j.suffix FROM " CKPT_FROM
                     " WHERE c.job_id = ? AND c.step = ? ORDER BY c.n DESC LIMIT 1",
                     "sI", job_id, (int64_t)step));
}

int store_checkpoints_list(store *s, const char *job_id, const char *after, int limit,
                           json_t **list) {
  return st_list_page(s, ST_CKPTS, job_id, after, limit, list);
}

int store_checkpoint_model_ids(store *s, json_t **ids) {
  *ids = json_array();
  if (!*ids) return FT_ENOMEM;
  int rc = st_unlock(s, st_rows(st_lock(s), st_ckpt_model_id_json, *ids,
                                "SELECT " CKPT_COLS " FROM " CKPT_FROM " ORDER BY c.n", ""));
  if (rc) {
    json_decref(*ids);
    *ids = NULL;
  }
  return rc;
}
