/* Rows to JSON: the store's objects in the API's own shapes (the OpenAI
 * fine-tuning API's), built from rows that select the matching …_COLS of
 * store_int.h, so a handler can pass them straight out. Everything here
 * reads one row of a statement that the caller has stepped (with the mutex
 * held) and returns a new reference, or NULL when out of memory. Also the
 * table of lists that st_list_page pages through. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

/* ---- columns -------------------------------------------------------------- */

json_t *st_col_str(sqlite3_stmt *row, int i) {
  if (sqlite3_column_type(row, i) == SQLITE_NULL) return json_null();
  return json_string((const char *)sqlite3_column_text(row, i));
}

json_t *st_col_int(sqlite3_stmt *row, int i) {
  if (sqlite3_column_type(row, i) == SQLITE_NULL) return json_null();
  return json_integer(sqlite3_column_int64(row, i));
}

json_t *st_col_json(sqlite3_stmt *row, int i) {
  if (sqlite3_column_type(row, i) == SQLITE_NULL) return json_null();
  json_t *v = json_loads((const char *)sqlite3_column_text(row, i), JSON_DECODE_ANY, NULL);
  return v ? v : json_null();
}

const char *st_col_text(sqlite3_stmt *row, int i) {
  const unsigned char *t = sqlite3_column_text(row, i);
  return t ? (const char *)t : "";
}

/* ---- files --------------------------------------------------------------- */

json_t *st_file_json(sqlite3_stmt *row) {
  return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", st_col_str(row, 0),
                   "object", "file", "bytes", st_col_int(row, 1), "created_at", st_col_int(row, 2),
                   "filename", st_col_str(row, 3), "purpose", st_col_str(row, 4), "status",
                   st_col_str(row, 5), "status_details", st_col_str(row, 6), "validation",
                   st_col_json(row, 7));
}

/* ---- jobs ---------------------------------------------------------------- */

/* The columns of JOB_COLS, in order. */
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

/* The fields of datasets and trustworthy training: the data sets'
 * statistics, the latest metrics, the result's early stopping, best
 * checkpoint and test metrics, the result files, lineage, and the expected
 * finish from the step rate of the current attempt. */
static void job_trust_fields(json_t *j, sqlite3_stmt *row) {
  json_t *result = st_col_json(row, J_RESULT), *metrics = st_col_json(row, J_METRICS);
  json_object_set_new(j, "test_file", st_col_str(row, J_TFILE_TEST));
  json_object_set_new(j, "datasets", st_col_json(row, J_DATASETS));
  json_object_set(j, "metrics", metrics);
  json_object_set_new(j, "parent_model", st_col_json(row, J_PARENT));
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
  const char *status = st_col_text(row, J_STATUS);
  if (!strcmp(status, "running") && sqlite3_column_type(row, J_RATE_T0) != SQLITE_NULL &&
      sqlite3_column_type(row, J_TOTAL) != SQLITE_NULL) {
    int64_t t0 = sqlite3_column_int64(row, J_RATE_T0), t1 = sqlite3_column_int64(row, J_RATE_T1);
    int64_t s0 = sqlite3_column_int64(row, J_RATE_STEP0), s1 = sqlite3_column_int64(row, J_STEPS);
    int64_t total = sqlite3_column_int64(row, J_TOTAL);
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
static json_t *job_object(sqlite3_stmt *row, int internal) {
  json_t *spec = st_col_json(row, J_SPEC);
  json_t *err = json_null();
  if (sqlite3_column_type(row, J_ECODE) != SQLITE_NULL)
    err = json_pack("{s:o, s:o, s:o}", "code", st_col_str(row, J_ECODE), "message",
                    st_col_str(row, J_EMSG), "param", st_col_str(row, J_EPARAM));
  json_t *meta = st_col_json(row, J_META);
  json_t *j = json_pack(
      "{s:o, s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:[], s:o, s:o, s:o, s:o, s:n,"
      " s:o, s:o}",
      "id", st_col_str(row, J_ID), "object", "fine_tuning.job", "created_at",
      st_col_int(row, J_CREATED), "model", st_col_str(row, J_MODEL), "fine_tuned_model",
      st_col_str(row, J_FTMODEL), "organization_id", "org-local", "status",
      st_col_str(row, J_STATUS), "hyperparameters", spec_hyperparameters(spec), "method",
      spec_part(spec, "method"), "training_file", st_col_str(row, J_TFILE), "validation_file",
      st_col_str(row, J_VFILE), "result_files", "trained_tokens", st_col_int(row, J_TOKENS),
      "error", err, "seed", st_col_int(row, J_SEED), "finished_at", st_col_int(row, J_FINISHED),
      "estimated_finish", "metadata", meta, "user_provided_suffix", st_col_str(row, J_SUFFIX));
  if (!j) {
    json_decref(spec);
    return NULL;
  }
  json_object_set_new(j, "attempt", st_col_int(row, J_ATTEMPT));
  json_object_set_new(j, "steps_completed", st_col_int(row, J_STEPS));
  json_object_set_new(j, "total_steps", st_col_int(row, J_TOTAL));
  json_object_set_new(j, "epoch", st_col_int(row, J_EPOCH));
  json_object_set_new(j, "started_at", st_col_int(row, J_STARTED));
  json_object_set_new(j, "adapter", spec_part(spec, "adapter"));
  json_object_set_new(j, "evaluation", spec_part(spec, "evaluation"));
  json_object_set_new(j, "checkpoints", spec_part(spec, "checkpoints"));
  json_object_set_new(j, "data", spec_part(spec, "data"));
  job_trust_fields(j, row);
  if (internal) {
    json_object_set(j, "spec", spec);
    json_object_set_new(j, "resume_from", st_col_str(row, J_RESUME));
    json_object_set_new(j, "worker", st_col_str(row, J_WORKER));
    json_object_set_new(j, "result", st_col_json(row, J_RESULT));
  }
  json_decref(spec);
  return j;
}

json_t *st_job_json(sqlite3_stmt *row) { return job_object(row, 0); }

json_t *st_job_json_internal(sqlite3_stmt *row) { return job_object(row, 1); }

/* ---- events and checkpoints ----------------------------------------------- */

json_t *st_event_json(sqlite3_stmt *row) {
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "object", "fine_tuning.job.event", "id",
                   st_col_str(row, 0), "created_at", st_col_int(row, 1), "level",
                   st_col_str(row, 2), "message", st_col_str(row, 3), "type", st_col_str(row, 4),
                   "data", st_col_json(row, 5));
}

/* A checkpoint row's model id: the id of the model its job will make
 * (pool.c model_names), then the step. */
static void ckpt_model_name(sqlite3_stmt *row, char *name, size_t n) {
  const char *suffix = st_col_text(row, 6);
  snprintf(name, n, "ft:%s:%s:%s:ckpt-step-%lld", st_col_text(row, 5), *suffix ? suffix : "ft",
           st_col_text(row, 4), (long long)sqlite3_column_int64(row, 2));
}

json_t *st_ckpt_json(sqlite3_stmt *row) {
  char name[600];
  ckpt_model_name(row, name, sizeof name);
  json_t *metrics = st_col_json(row, 3);
  if (json_is_null(metrics)) {
    json_decref(metrics);
    metrics = json_object();
  }
  return json_pack("{s:s, s:o, s:o, s:s, s:o, s:o, s:o}", "object", "fine_tuning.job.checkpoint",
                   "id", st_col_str(row, 0), "created_at", st_col_int(row, 1),
                   "fine_tuned_model_checkpoint", name, "step_number", st_col_int(row, 2),
                   "metrics", metrics, "fine_tuning_job_id", st_col_str(row, 4));
}

json_t *st_ckpt_model_id_json(sqlite3_stmt *row) {
  char name[600];
  ckpt_model_name(row, name, sizeof name);
  return json_string(name);
}

/* ---- keys ---------------------------------------------------------------- */

json_t *st_key_json(sqlite3_stmt *row) {
  return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "id", st_col_str(row, 0), "name",
                   st_col_str(row, 1), "tenant", st_col_str(row, 2), "admin",
                   sqlite3_column_int(row, 3), "prefix", st_col_str(row, 4), "created_at",
                   st_col_int(row, 5), "revoked_at", st_col_int(row, 6));
}

/* ---- lists (store.h: "Lists"; st_list_page) ------------------------------- */

/* One line per list: table, columns, key, id column, owner column, of_job,
 * row builder (st_list in store_int.h). */
const st_list st_lists[] = {
    [ST_FILES] = {"files", FILE_COLS, "n", "id", "tenant", 0, st_file_json},
    [ST_JOBS] = {"jobs", JOB_COLS, "n", "id", "tenant", 0, st_job_json},
    [ST_EVENTS] = {"events", EVENT_COLS, "seq", "id", "job_id", 1, st_event_json},
    [ST_CKPTS] = {CKPT_FROM, CKPT_COLS, "c.n", "c.id", "c.job_id", 1, st_ckpt_json},
};
