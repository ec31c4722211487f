/* The store's jobs and their leases: creation, the user's actions (cancel,
 * pause, resume), the claim a worker makes (queued -> running, attempt + 1,
 * leased until a deadline its heartbeats move), the attempt's end (finish,
 * lease expiry, shutdown's interrupt), and the validating_files phase.
 * Every transition is one UPDATE whose WHERE clause names the statuses (and
 * the attempt) it may leave, never a read-then-write, so a stale worker or a
 * late request can never revive a finished job; each appends a status event
 * in the same transaction. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

/* ---- statuses and reads -------------------------------------------------- */

static const char *const all_statuses[] = {"validating_files", "queued", "running",
                                           "succeeded",        "failed", "cancelled",
                                           "pausing",          "paused", NULL};

int store_status_terminal(const char *status) {
  return status && (!strcmp(status, "succeeded") || !strcmp(status, "failed") ||
                    !strcmp(status, "cancelled"));
}

static int job_get_locked(store *s, const char *id, int internal, json_t **job) {
  return st_get_json(s, internal ? st_job_json_internal : st_job_json, job,
                     "SELECT " JOB_COLS " FROM jobs WHERE id = ?", "s", id);
}

int st_job_status_locked(store *s, const char *id, char *buf, size_t n, int *attempt) {
  if (n) buf[0] = 0;
  return st_get(s, "SELECT status, attempt FROM jobs WHERE id = ?", "s", "ti", id, buf, n, attempt);
}

/* ---- jobs: the API's side (api_jobs.c) ----------------------------------- */

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
    rc = st_file_exists_locked(s, file[i]);
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
    rc = st_status_event_locked(s, id, "info", j->queued ? "queued" : "validating_files",
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
  rc = st_job_status_locked(s, id, before, sizeof before, NULL);
  if (rc == FT_ENOT_FOUND) ft_error_set(err, rc, "fine_tuning_job_id", "no such job: %s", id);
  if (!rc) rc = st_exec(s, FT_EBAD_STATE, sql, "sI", id, store_now());
  if (rc == FT_EBAD_STATE) ft_error_set(err, rc, NULL, "cannot %s a job that is %s", what, before);
  if (!rc) rc = st_job_status_locked(s, id, after, sizeof after, NULL);
  if (!rc) {
    const char *msg = !strcmp(after, "cancelled") ? "Job cancelled"
                      : !strcmp(after, "pausing") ? "Pause requested"
                      : !strcmp(after, "paused")  ? "Job paused"
                                                  : "Job resumed";
    rc = st_status_event_locked(s, id, "info", after, msg,
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
  return st_unlock(s, st_job_status_locked(st_lock(s), id, buf, n, NULL));
}

static json_t *col0_json(sqlite3_stmt *row) { return st_col_json(row, 0); }

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

static json_t *origin_json(sqlite3_stmt *row) {
  return json_pack("{s:o, s:o}", "job", st_col_str(row, 0), "parent", st_col_str(row, 1));
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
  return st_unlock(s, st_get(st_lock(s),
                             "SELECT count(*) FROM jobs WHERE tenant = ? AND status IN "
                             "('validating_files', 'queued')",
                             "s", "i", tenant ? tenant : "default", n));
}

/* ---- jobs: the pool's side (pool.c): claims, leases, endings ------------- */

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
    rc = st_status_event_locked(
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

/* A worker's "cancelled": only the acknowledgement of a cancel the user made
 * (the job is already 'cancelled' and this is its attempt); nothing changes.
 * A worker can never cancel a job nobody cancelled: FT_EBAD_STATE. */
static int job_cancel_ack(store *s, const char *job_id, int attempt) {
  char status[24];
  int cur = 0;
  int rc = st_unlock(s, st_job_status_locked(st_lock(s), job_id, status, sizeof status, &cur));
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
    rc = st_status_event_locked(s, job_id, level, status, msg, d);
  }
  return st_end(s, rc, NULL);
}

static json_t *expired_json(sqlite3_stmt *row) {
  return json_pack("[s, s, i, i]", st_col_text(row, 0), st_col_text(row, 1),
                   sqlite3_column_int(row, 2), sqlite3_column_int(row, 3));
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
    rc = st_status_event_locked(s, id, level, to, msg, d);
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
  int rc = st_unlock(s, st_job_status_locked(st_lock(s), job_id, status, sizeof status, &cur));
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

/* ---- jobs: file validation (validate.c) ---------------------------------- */

int store_job_next_validating(store *s, int64_t *after_n, char *id, size_t n, int timeout_ms) {
  if (n) id[0] = 0;
  struct timespec deadline;
  ft_deadline_ms(&deadline, timeout_ms);
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
    rc = st_status_event_locked(s, id, "error", "failed", msg,
                                json_pack("{s:{s:s, s:s, s:s?}}", "error", "code",
                                          ft_err_code(code), "message", emsg, "param", eparam));
  } else if (!rc) {
    rc = st_status_event_locked(s, id, "info", "queued", "Files validated; the job is queued",
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

/* ---- jobs: graceful shutdown (shutdown.c) -------------------------------- */

int store_job_interrupt(store *s, const char *job_id, int attempt, long step) {
  int rc = st_begin(s, NULL);
  if (rc) return rc;
  char before[24];
  int cur = 0;
  rc = st_job_status_locked(s, job_id, before, sizeof before, &cur);
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
                " WHERE j.id = ? AND c.path = j.resume_from "
                "ORDER BY c.n DESC LIMIT 1",
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
    rc = st_status_event_locked(s, job_id, "info", pausing ? "paused" : "queued", msg, d);
  }
  return st_end(s, rc, NULL);
}
