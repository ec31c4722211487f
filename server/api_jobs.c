/* Fine-tuning jobs API: create (the request validated completely, then the
 * job is inserted in validating_files and validate.c checks its data before
 * it is queued), list, get, cancel, pause, resume, events (a page, or a live
 * Server-Sent Events stream) and checkpoints.
 *
 * SSE: the connection has its own MHD thread (http.c), so the stream's
 * content reader simply blocks: it sends every event after the last one it
 * sent (from Last-Event-ID when a client reconnects), then sleeps in
 * store_events_wait, which every event append and status change wakes, in
 * one-second slices so a shutdown ends it promptly; a comment line every 15 s
 * keeps proxies from timing the stream out and finds departed clients. Once
 * the job is terminal or paused and every event is out, it sends
 * "data: [DONE]" and ends. The job's status and the events after a seq are
 * read in one locked store call, so no event can slip between the last
 * batch and [DONE].
 *
 * Tenants (auth.h): a job belongs to the creating key's tenant, and so do its
 * events, checkpoints and fine-tuned model; its files and a fine-tuned base
 * model must be that tenant's too. Every route with a job id goes through
 * job_id_or_reply, which answers another tenant's job exactly like an
 * unknown one (404). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app.h"
#include "auth.h"
#include "ft_buf.h"
#include "ft_fs.h"
#include "ft_log.h"
#include "formats/hfdir.h"
#include "http.h"
#include "model_id.h"
#include "obs.h"
#include "pool.h"
#include "train/spec.h"
#include "store.h"

#define SSE_WAIT_MS 1000
#define SSE_KEEPALIVE_MS 15000
#define SSE_BATCH 100

#define JOB_ID_LEN 30 /* "ftjob-" + 24 hex digits */

static int job_id_ok(const char *id) {
  if (strncmp(id, "ftjob-", 6) || strlen(id) != JOB_ID_LEN) return 0;
  for (const char *p = id + 6; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

/* metadata: up to 16 string pairs, keys <= 64 and values <= 512 chars (as
 * OpenAI). On error replies and returns -1. */
static int metadata_or_reply(http_req *r, const json_t *m) {
  if (!m || json_is_null(m)) return 0;
  if (!json_is_object(m)) {
    http_fail(r, FT_ETYPE, "metadata", "metadata must be an object of strings");
    return -1;
  }
  if (json_object_size(m) > 16) {
    http_fail(r, FT_ERANGE, "metadata", "metadata has at most 16 keys");
    return -1;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)m, k, v) {
    if (strlen(k) > 64) {
      http_fail(r, FT_ERANGE, "metadata", "metadata keys are at most 64 characters");
      return -1;
    }
    if (!json_is_string(v)) {
      http_fail(r, FT_ETYPE, "metadata", "metadata value of \"%.64s\" must be a string", k);
      return -1;
    }
    if (json_string_length(v) > 512) {
      http_fail(r, FT_ERANGE, "metadata", "metadata values are at most 512 characters");
      return -1;
    }
  }
  return 0;
}

/* A checkpoint id as the model ("ft:…:ftjob-…:ckpt-step-N", continuing
 * training): the checkpoint must be still on disk; the config that checks
 * the spec is its job's base model's (the checkpoint is materialised from
 * it while the job is validating_files). dir gets that base's directory and
 * *lineage {"model","job","step"}. On error replies and returns -1. */
static int ckpt_model_or_reply(http_req *r, const ft_spec *spec, char *dir, size_t n,
                               json_t **lineage) {
  char job[64];
  long step = 0;
  json_t *ck = NULL;
  if (!model_id_ckpt(spec->model, job, sizeof job, &step)) {
    http_fail(r, FT_EINVALID, "model", "unknown model \"%.200s\"", spec->model);
    return -1;
  }
  int rc = store_checkpoint_find(r->app->store, job, step, &ck);
  if (rc == FT_ENOT_FOUND) {
    http_fail(r, FT_EINVALID, "model",
              "no checkpoint \"%.200s\": job %s has no checkpoint at step %ld on disk", spec->model,
              job, step);
    return -1;
  }
  if (rc) {
    http_fail(r, rc, NULL, NULL);
    return -1;
  }
  /* the id must be exactly the one the checkpoints list shows */
  char want[700];
  snprintf(want, sizeof want, "ft:%s:%s:%s:ckpt-step-%ld",
           json_string_value(json_object_get(ck, "model")),
           json_string_value(json_object_get(ck, "suffix")), job, step);
  if (strcmp(want, spec->model)) {
    http_fail(r, FT_EINVALID, "model", "unknown model \"%.200s\" (the checkpoint is %.300s)",
              spec->model, want);
    json_decref(ck);
    return -1;
  }
  rc = ft_pathf(dir, n, "%s/models/%s", r->app->data_dir,
                  json_string_value(json_object_get(ck, "model")));
  json_decref(ck);
  if (rc) {
    http_fail(r, FT_EINVALID, "model", "model path too long");
    return -1;
  }
  *lineage =
      json_pack("{s:s, s:s, s:I}", "model", spec->model, "job", job, "step", (json_int_t)step);
  return 0;
}

/* The base model must be a loadable HF directory under models/ (a base
 * model, or a fine-tuned "ft:…" one: its lineage goes in *lineage), or a
 * checkpoint id, and the spec must fit it. On error replies and returns -1. */
static int model_or_reply(http_req *r, ft_spec *spec, json_t **lineage) {
  char dir[PATH_MAX];
  struct stat sb;
  /* the name becomes a path below models/ (and part of the fine-tuned
   * model's directory name) */
  if (strchr(spec->model, '/') || spec->model[0] == '.' || !strcmp(spec->model, "..")) {
    http_fail(r, FT_EINVALID, "model",
              "model must be a plain name (no '/', and not starting with '.')");
    return -1;
  }
  /* "ft:<model>:<suffix or ft>:<job id>" names a directory: at most 255 bytes */
  size_t id_len = strlen("ft:") + strlen(spec->model) + 1 +
                  (spec->suffix[0] ? strlen(spec->suffix) : strlen("ft")) + 1 + JOB_ID_LEN;
  if (id_len > MODEL_ID_MAX) {
    http_fail(r, FT_EINVALID, "model",
              "model name too long: the fine-tuned model's id would be %zu bytes (at most %d)",
              id_len, MODEL_ID_MAX);
    return -1;
  }
  /* another tenant's fine-tuned model or checkpoint is unknown here */
  if (!model_id_ok(spec->model) || !auth_model_visible(r, spec->model) ||
      ft_pathf(dir, sizeof dir, "%s/models/%s", r->app->data_dir, spec->model)) {
    http_fail(r, FT_EINVALID, "model", "unknown model \"%.200s\"", spec->model);
    return -1;
  }
  char cdir[PATH_MAX + 16];
  snprintf(cdir, sizeof cdir, "%s/config.json", dir);
  if (strstr(spec->model, ":ckpt-step-") && stat(cdir, &sb)) {
    if (ckpt_model_or_reply(r, spec, dir, sizeof dir, lineage)) return -1;
  } else if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
    http_fail(r, FT_EINVALID, "model", "unknown model \"%.200s\"", spec->model);
    return -1;
  } else if (!strncmp(spec->model, "ft:", 3)) {
    char job[64];
    long step = 0;
    json_t *origin = NULL;
    if (model_id_ckpt(spec->model, job, sizeof job, &step))
      *lineage =
          json_pack("{s:s, s:s, s:I}", "model", spec->model, "job", job, "step", (json_int_t)step);
    else if (store_model_origin(r->app->store, spec->model, &origin) == 0)
      *lineage =
          json_pack("{s:s, s:O}", "model", spec->model, "job", json_object_get(origin, "job"));
    else
      *lineage = json_pack("{s:s, s:n}", "model", spec->model, "job");
    json_decref(origin);
  }
  ft_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) {
    http_fail(r, FT_ENOMEM, NULL, NULL);
    return -1;
  }
  ft_error err = {0};
  int rc = hf_config_load(cfg, dir, &err);
  if (rc) {
    http_fail(r, FT_EINVALID, "model", "model \"%.200s\" cannot be used: %s", spec->model,
              err.message[0] ? err.message : ft_err_message(rc));
  } else if ((rc = spec_check_model(spec, cfg, &err)) != 0) {
    if (!err.code) ft_error_set(&err, rc, NULL, NULL);
    http_fail_err(r, &err);
  }
  free(cfg);
  return rc ? -1 : 0;
}

/* A file the job names must exist, belong to the job's tenant (admin keys
 * included: a job never reaches into another tenant's data) and have passed
 * validation at upload (status "processed"). On error replies and returns
 * -1. */
static int file_or_reply(http_req *r, const char *id, const char *param) {
  if (!id[0]) return 0;
  json_t *f = NULL;
  char owner[STORE_TENANT_MAX + 1];
  int rc = store_tenant_of(r->app->store, "file", id, owner, sizeof owner);
  if (rc == 0 && strcmp(owner, r->tenant)) rc = FT_ENOT_FOUND;
  if (rc == 0) rc = store_file_get(r->app->store, id, &f);
  const char *status = rc ? NULL : json_string_value(json_object_get(f, "status"));
  if (status && !strcmp(status, "error")) {
    const char *details = json_string_value(json_object_get(f, "status_details"));
    http_fail(r, FT_EINVALID, param, "file %.100s failed validation: %s", id,
              details ? details : "see its \"validation\" report");
    json_decref(f);
    return -1;
  }
  json_decref(f);
  if (rc == FT_ENOT_FOUND) {
    http_fail(r, FT_EINVALID, param, "no such file: %.100s", id);
    return -1;
  }
  if (rc) {
    http_fail(r, rc, NULL, NULL);
    return -1;
  }
  return 0;
}

enum MHD_Result api_jobs_create(http_req *r) {
  json_t *body;
  if (http_json_body_or_reply(r, &body)) return MHD_YES;
  json_t *metadata = json_incref(json_object_get(body, "metadata"));
  json_object_del(body, "metadata");
  ft_spec *spec = calloc(1, sizeof *spec);
  ft_error err = {0};
  json_t *resolved = NULL, *job = NULL, *lineage = NULL;
  enum MHD_Result res = MHD_YES;
  if (!spec) {
    res = http_fail(r, FT_ENOMEM, NULL, NULL);
    goto out;
  }
  if (metadata_or_reply(r, metadata)) goto out;
  int rc = spec_parse(body, spec, &err);
  if (rc) {
    if (!err.code) ft_error_set(&err, rc, NULL, NULL);
    res = http_fail_err(r, &err);
    goto out;
  }
  if (file_or_reply(r, spec->training_file, "training_file") ||
      file_or_reply(r, spec->validation_file, "validation_file") ||
      file_or_reply(r, spec->test_file, "test_file") || model_or_reply(r, spec, &lineage))
    goto out;
  int waiting = 0;
  if (r->app->max_waiting_jobs > 0 &&
      (rc = store_jobs_waiting(r->app->store, r->tenant, &waiting)) != 0) {
    res = http_fail(r, rc, NULL, NULL);
    goto out;
  }
  if (r->app->max_waiting_jobs > 0 && waiting >= r->app->max_waiting_jobs) {
    obs_reject(OBS_REJECT_QUOTA);
    res = http_fail(r, FT_EQUEUE_FULL, NULL,
                    "too many jobs waiting to run: tenant %s has %d (validating_files or "
                    "queued), at most %d; retry when some have started",
                    r->tenant, waiting, r->app->max_waiting_jobs);
    goto out;
  }
  resolved = spec_to_json(spec);
  if (!resolved) {
    res = http_fail(r, FT_ENOMEM, NULL, NULL);
    goto out;
  }
  store_job_new j = {.model = spec->model,
                     .training_file = spec->training_file,
                     .validation_file = spec->validation_file,
                     .suffix = spec->suffix,
                     .test_file = spec->test_file,
                     .seed = spec->seed,
                     .spec = resolved,
                     .metadata = json_is_null(metadata) ? NULL : metadata,
                     .parent_model = lineage,
                     .tenant = r->tenant};
  if ((rc = store_job_insert(r->app->store, &j, &job, &err)) != 0) {
    res = http_fail_err(r, &err);
    goto out;
  }
  /* (validate.c wakes on the insert, checks the files, then queues it) */
  FT_INFO("msg=\"job created\" id=%s model=%s", json_string_value(json_object_get(job, "id")),
          spec->model);
  res = http_reply_json(r, 200, job);
out:
  json_decref(lineage);
  json_decref(body);
  json_decref(metadata);
  json_decref(resolved);
  free(spec);
  return res;
}

enum MHD_Result api_jobs_list(http_req *r) {
  const char *after;
  int limit;
  if (http_page_or_reply(r, &after, &limit)) return MHD_YES;
  json_t *list;
  int rc = store_job_list_tenant(r->app->store, auth_tenant(r), after, limit, &list);
  if (rc == FT_ENOT_FOUND) return http_fail(r, rc, "after", "no such job: %s", after);
  if (rc) return http_fail(r, rc, NULL, NULL);
  return http_reply_json(r, 200, list);
}

/* Replies 404 for an id that cannot be a job, an unknown job and another
 * tenant's job alike; returns -1 then. */
static int job_id_or_reply(http_req *r) {
  if (!job_id_ok(r->params[0])) {
    http_fail(r, FT_ENOT_FOUND, "fine_tuning_job_id", "no such job: %s", r->params[0]);
    return -1;
  }
  return auth_job_or_reply(r, r->params[0], "fine_tuning_job_id");
}

/* Replies 404 unless the job exists; returns -1 then. */
static int job_exists_or_reply(http_req *r) {
  char status[24];
  int rc = store_job_status(r->app->store, r->params[0], status, sizeof status);
  if (rc == FT_ENOT_FOUND)
    http_fail(r, rc, "fine_tuning_job_id", "no such job: %s", r->params[0]);
  else if (rc)
    http_fail(r, rc, NULL, NULL);
  return rc ? -1 : 0;
}

enum MHD_Result api_jobs_get(http_req *r) {
  if (job_id_or_reply(r)) return MHD_YES;
  json_t *job;
  int rc = store_job_get(r->app->store, r->params[0], &job);
  if (rc == FT_ENOT_FOUND)
    return http_fail(r, rc, "fine_tuning_job_id", "no such job: %s", r->params[0]);
  if (rc) return http_fail(r, rc, NULL, NULL);
  return http_reply_json(r, 200, job);
}

typedef int (*job_action)(store *, const char *, json_t **, ft_error *);

static enum MHD_Result act(http_req *r, job_action fn, int control, int notify) {
  if (job_id_or_reply(r)) return MHD_YES;
  json_t *job = NULL;
  ft_error err = {0};
  int rc = fn(r->app->store, r->params[0], &job, &err);
  if (rc) {
    if (!err.code) ft_error_set(&err, rc, NULL, NULL);
    return http_fail_err(r, &err);
  }
  FT_INFO("msg=\"job %s\" id=%s", json_string_value(json_object_get(job, "status")), r->params[0]);
  if (r->app->pool && control) pool_control(r->app->pool, r->params[0]);
  if (r->app->pool && notify) pool_notify(r->app->pool);
  return http_reply_json(r, 200, job);
}

enum MHD_Result api_jobs_cancel(http_req *r) { return act(r, store_job_cancel, 1, 0); }
enum MHD_Result api_jobs_pause(http_req *r) { return act(r, store_job_pause, 1, 0); }
enum MHD_Result api_jobs_resume(http_req *r) { return act(r, store_job_resume, 0, 1); }

/* ---- events: a page or a stream ------------------------------------------- */

typedef struct {
  ft_app *app;
  char job_id[64];
  int64_t last_seq;
  ft_buf out; /* formatted, not yet read by MHD */
  size_t off; /* how much of out MHD has read */
  int done;
  struct timespec last_write;
} sse;

static void sse_free(void *cls) {
  sse *s = cls;
  ft_buf_free(&s->out);
  free(s);
}

static int64_t ms_since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Formats a batch of {seq, event} into the pending buffer. */
static void sse_format(sse *s, json_t *batch) {
  size_t i;
  json_t *it;
  json_array_foreach(batch, i, it) {
    json_t *ev = json_object_get(it, "event");
    char *data = json_dumps(ev, JSON_COMPACT);
    if (!data) continue;
    const char *type = json_string_value(json_object_get(ev, "type"));
    s->last_seq = (int64_t)json_integer_value(json_object_get(it, "seq"));
    ft_buf_printf(&s->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)s->last_seq,
                  type ? type : "message", data);
    free(data);
  }
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
  sse *s = cls;
  for (;;) {
    if (s->off < s->out.len) {
      size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
      memcpy(out, s->out.data + s->off, n);
      s->off += n;
      clock_gettime(CLOCK_MONOTONIC, &s->last_write);
      return (ssize_t)n;
    }
    s->off = 0;
    ft_buf_clear(&s->out);
    if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
    if (atomic_load(&s->app->stopping)) return MHD_CONTENT_READER_END_WITH_ERROR;
    json_t *batch = NULL;
    char status[24];
    if (store_events_since(s->app->store, s->job_id, s->last_seq, SSE_BATCH, &batch, status,
                           sizeof status))
      return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = json_array_size(batch);
    if (n) sse_format(s, batch);
    json_decref(batch);
    if (n) continue;
    if (store_status_terminal(status) || !strcmp(status, "paused")) {
      ft_buf_printf(&s->out, "data: [DONE]\n\n");
      s->done = 1;
      continue;
    }
    store_events_wait(s->app->store, s->job_id, s->last_seq, SSE_WAIT_MS);
    if (ms_since(&s->last_write) >= SSE_KEEPALIVE_MS) ft_buf_printf(&s->out, ": keepalive\n\n");
  }
}

static enum MHD_Result events_stream(http_req *r) {
  if (job_exists_or_reply(r)) return MHD_YES;
  sse *s = calloc(1, sizeof *s);
  if (!s) return http_fail(r, FT_ENOMEM, NULL, NULL);
  s->app = r->app;
  ft_pathf(s->job_id, sizeof s->job_id, "%s", r->params[0]); /* 30 bytes: job_id_ok */
  clock_gettime(CLOCK_MONOTONIC, &s->last_write);
  const char *last = http_header(r, "Last-Event-ID");
  if (last) {
    char *end;
    errno = 0;
    long long v = strtoll(last, &end, 10);
    /* digits only: no sign, no space, no garbage, no overflow */
    if (isdigit((unsigned char)*last) && !*end && errno == 0 && v >= 0)
      s->last_seq = v;
    else {
      free(s);
      return http_fail(r, FT_EINVALID, "Last-Event-ID",
                       "Last-Event-ID must be an event id "
                       "(a non-negative integer) sent by this stream");
    }
  }
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, s, sse_free);
  if (!resp) {
    free(s);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}

enum MHD_Result api_jobs_events(http_req *r) {
  if (job_id_or_reply(r)) return MHD_YES;
  const char *stream = http_query(r, "stream");
  if (stream && strcmp(stream, "true") && strcmp(stream, "false"))
    return http_fail(r, FT_ETYPE, "stream", "stream must be true or false");
  if (stream && !strcmp(stream, "true")) return events_stream(r);
  const char *after;
  int limit;
  if (http_page_or_reply(r, &after, &limit)) return MHD_YES;
  if (job_exists_or_reply(r)) return MHD_YES;
  json_t *list;
  int rc = store_events_list(r->app->store, r->params[0], after, limit, &list);
  if (rc == FT_ENOT_FOUND) return http_fail(r, rc, "after", "no such event of this job: %s", after);
  if (rc) return http_fail(r, rc, NULL, NULL);
  return http_reply_json(r, 200, list);
}

enum MHD_Result api_jobs_checkpoints(http_req *r) {
  if (job_id_or_reply(r)) return MHD_YES;
  const char *after;
  int limit;
  if (http_page_or_reply(r, &after, &limit)) return MHD_YES;
  if (job_exists_or_reply(r)) return MHD_YES;
  json_t *list;
  int rc = store_checkpoints_list(r->app->store, r->params[0], after, limit, &list);
  if (rc == FT_ENOT_FOUND)
    return http_fail(r, rc, "after", "no such checkpoint of this job: %s", after);
  if (rc) return http_fail(r, rc, NULL, NULL);
  return http_reply_json(r, 200, list);
}
