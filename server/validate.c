/* The validating_files phase (validate.h): one thread, woken by the store
 * whenever a job is inserted, takes the jobs in validating_files in creation
 * order and prepares each one's data with the worker's own code path, so a
 * bad file fails the job in seconds, with the line named, instead of after a
 * worker has claimed it. Workload: a handful of jobs, each file read and
 * tokenized once here (the worker does it again when it trains: the daemon
 * keeps nothing in memory). A cancel while a job is being validated wins:
 * the final status change only applies to a job still in validating_files. */
#include "validate.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tok/chat.h"
#include "data/data.h"
#include "ft_log.h"
#include "formats/hfdir.h"
#include "model_id.h"
#include "train/spec.h"
#include "tok/tok.h"
#include "train/train.h"
#include "ft_fs.h"

#define WAIT_MS 1000

struct validator {
  store *s;
  pool *p;
  char *data_dir;
  pthread_t thread;
  atomic_int stop;
};

/* Prepares the job's data as the worker will; *datasets gets the stats. */
static int prepare(validator *v, const json_t *job, json_t **datasets, ft_error *err) {
  const char *model = json_string_value(json_object_get(job, "model"));
  char mdir[PATH_MAX], tpath[PATH_MAX], vpath[PATH_MAX], xpath[PATH_MAX];
  ft_spec *spec = calloc(1, sizeof *spec);
  ft_config *cfg = calloc(1, sizeof *cfg);
  tok *t = NULL;
  ft_data_sets sets;
  memset(&sets, 0, sizeof sets);
  int rc = 0, have_sets = 0;
  if (!spec || !cfg || !model) {
    rc = ft_error_set(err, spec && cfg ? FT_EINTERNAL : FT_ENOMEM, NULL, NULL);
    goto out;
  }
  if ((rc = spec_parse(json_object_get(job, "spec"), spec, err))) goto out;
  char ck_job[64];
  long ck_step = 0;
  if (model_id_ckpt(model, ck_job, sizeof ck_job, &ck_step) &&
      (rc = model_id_materialise(v->s, v->data_dir, model, err))) {
    if (rc == FT_ENOT_FOUND) rc = err->code = FT_EINVALID; /* a bad spec, not a missing route */
    goto out;
  }
  snprintf(mdir, sizeof mdir, "%s/models/%s", v->data_dir, model);
  if ((rc = hf_config_load(cfg, mdir, err)) || (rc = spec_check_model(spec, cfg, err)) ||
      (rc = tok_load(&t, mdir, err))) {
    if (!err->param[0]) snprintf(err->param, sizeof err->param, "model");
    goto out;
  }
  ft_chat_family chat = FT_CHAT_PLAIN;
  if ((rc = chat_detect(mdir, t, &chat, err))) goto out;
  snprintf(tpath, sizeof tpath, "%s/files/%s", v->data_dir, spec->training_file);
  snprintf(vpath, sizeof vpath, "%s/files/%s", v->data_dir, spec->validation_file);
  snprintf(xpath, sizeof xpath, "%s/files/%s", v->data_dir, spec->test_file);
  ft_data_job dj;
  memset(&dj, 0, sizeof dj);
  train_data_job(&dj, spec, cfg, chat, tpath, spec->validation_file[0] ? vpath : NULL,
                 spec->test_file[0] ? xpath : NULL);
  if ((rc = data_prepare(&sets, &dj, t, err))) goto out;
  have_sets = 1;
  *datasets = json_pack("{s:o, s:o, s:o}", "training", data_stats_json(sets.train, 0), "validation",
                        data_stats_json(sets.valid, sets.valid_from_split), "test",
                        data_stats_json(sets.test, sets.test_from_split));
  if (!*datasets) rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
out:
  if (have_sets) data_sets_free(&sets);
  if (t) tok_free(t);
  free(cfg);
  free(spec);
  return rc;
}

static void validate_job(validator *v, const char *id) {
  json_t *job = NULL;
  int rc = store_job_get_internal(v->s, id, &job);
  if (rc) {
    FT_WARN("msg=\"cannot read a job to validate\" job=%s err=%s", id, ft_err_code(rc));
    return;
  }
  const char *status = json_string_value(json_object_get(job, "status"));
  if (!status || strcmp(status, "validating_files")) {
    json_decref(job); /* cancelled before its turn */
    return;
  }
  ft_error err = {0};
  json_t *datasets = NULL;
  rc = prepare(v, job, &datasets, &err);
  if (rc) {
    if (!err.code) ft_error_set(&err, rc, NULL, NULL);
    FT_INFO("msg=\"job files invalid\" job=%s code=%s param=%s err=\"%s\"", id,
            ft_err_code(err.code), err.param, err.message);
    rc = store_job_invalid(v->s, id, &err);
  } else {
    rc = store_job_validated(v->s, id, datasets);
    if (!rc) {
      FT_INFO("msg=\"job files validated\" job=%s", id);
      pool_notify(v->p);
    }
  }
  if (rc == FT_EBAD_STATE)
    FT_INFO("msg=\"job left validating_files meanwhile\" job=%s", id);
  else if (rc)
    FT_WARN("msg=\"cannot record a job's validation\" job=%s err=%s", id, ft_err_code(rc));
  json_decref(datasets);
  json_decref(job);
}

static void *run(void *arg) {
  validator *v = arg;
  int64_t after = 0;
  while (!atomic_load(&v->stop)) {
    char id[64];
    int rc = store_job_next_validating(v->s, &after, id, sizeof id, WAIT_MS);
    if (rc == FT_ECANCELLED) break;
    if (rc == FT_EDB) {
      FT_WARN("msg=\"validation queue: database error\"");
      usleep(WAIT_MS * 1000);
    }
    if (rc == 0) validate_job(v, id);
  }
  return NULL;
}

int validate_start(validator **out, store *s, pool *p, const char *data_dir, ft_error *err) {
  *out = NULL;
  validator *v = calloc(1, sizeof *v);
  if (!v || !(v->data_dir = strdup(data_dir))) {
    free(v);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  v->s = s;
  v->p = p;
  atomic_init(&v->stop, 0);
  int rc = pthread_create(&v->thread, NULL, run, v);
  if (rc) {
    free(v->data_dir);
    free(v);
    return ft_error_set(err, FT_EINTERNAL, NULL, "cannot start the validation thread: %s",
                        strerror(rc));
  }
  *out = v;
  return 0;
}

void validate_stop(validator *v) {
  if (!v) return;
  atomic_store(&v->stop, 1);
  pthread_join(v->thread, NULL);
  free(v->data_dir);
  free(v);
}
