/* The worker pool (pool.h): one thread running a libuv loop that owns every
 * worker connection, the lease timer and the local worker processes.
 * Workload: a few workers (local ones plus a handful of remote ones), each
 * sending a few small messages per training step, so everything is done on
 * the loop thread with plain lists and synchronous store calls (each one a
 * short SQLite transaction). MHD threads never touch loop state: pool_notify/
 * pool_control/pool_stop set flags under a mutex and uv_async_send; the async
 * callback drains them. Lease safety rests on the store: every job message is
 * checked against the connection's (job_id, attempt) and then again by the
 * store, and an FT_EBAD_STATE answer means the worker lost its lease. */
#include "pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "ft_fs.h"
#include "ft_log.h"
#include "formats/hfdir.h"
#include "model_id.h"
#include "obs.h"
#include "wire.h"

#define HELLO_TIMEOUT_MS 10000
#define RESTART_MIN_MS 500
#define RESTART_MAX_MS 30000
#define RESTART_RESET_MS 60000
#define KILL_GRACE_MS 5000
#define MAX_CONNS 256                 /* worker connections at once; more are refused */
#define PREAUTH_MAX_FRAME (64u << 10) /* largest frame before hello is accepted */
#define MAX_COUNT 1000000000000000LL  /* steps, tokens, epochs: 0..1e15 */

typedef enum {
  C_HELLO, /* connected, no hello yet */
  C_READY, /* said hello; not asking for work */
  C_IDLE,  /* sent claim: waiting for a job */
  C_BUSY,  /* holds the lease of (job_id, attempt) */
} conn_state;

typedef struct conn {
  pool *p;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  int is_tcp;
  conn_state st;
  int closing;  /* uv_close called */
  int flushing; /* closing after the pending writes (an error reply) */
  uint64_t connected_ms;
  wire_decoder dec;
  char worker_id[128];
  /* the lease, when C_BUSY */
  char job_id[64];
  int attempt;
  int ctl_sent; /* 0, 1 cancel sent, 2 pause sent, 3 pause for the shutdown sent */
  char model[256];
  char suffix[128];
  char ckpt_dir[4096];
  struct conn *next, *prev;
  char rbuf[65536];
} conn;

typedef struct {
  pool *p;
  int idx;
  uv_process_t proc;
  int proc_alive; /* spawned and its exit not seen yet */
  int proc_open;  /* the handle is initialised and not yet closed */
  uv_timer_t timer;
  uint64_t started_ms;
  int delay_ms;
} lworker;

struct pool {
  store *s;
  char *data_dir, *worker_exe, *token;
  int n_workers, lease_ms, heartbeat_ms, max_attempts;
  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char connect_arg[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];

  uv_loop_t loop;
  uv_thread_t thread;
  int thread_started;
  uv_async_t async;
  uv_timer_t tick;
  uv_timer_t kill_timer;
  uv_pipe_t unix_srv;
  uv_tcp_t tcp_srv;
  int has_unix, has_tcp;
  lworker *lw;
  conn *conns;
  int stopping;
  unsigned serial;
  int n_conns; /* conns allocated (closing ones until their close callback) */
  /* graceful shutdown block: no dispatch while draining */
  int draining;

  uv_mutex_t mu; /* guards the fields below */
  int want_dispatch, want_control, want_stop;
  int want_drain, drain_started, drain_requeue; /* graceful shutdown block */
  int n_connected, n_busy;
};

/* ---- small helpers ----------------------------------------------------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* Compares the offered token with the expected one in time that depends only
 * on the expected token's length. */
static int token_equal(const char *offered, const char *expected) {
  size_t lo = strlen(offered), le = strlen(expected);
  volatile unsigned char d = (unsigned char)(lo != le);
  for (size_t i = 0; i < le; i++) d |= (unsigned char)(expected[i] ^ (i < lo ? offered[i] : 0));
  return d == 0;
}

/* A relative path below a directory of the data dir: no empty, "." or ".."
 * component and no leading '/'. Names come from the store (validated at job
 * creation); this is the last guard before they become paths. */
static int safe_rel(const char *s) {
  if (!s || !*s || *s == '/' || strlen(s) > 255) return 0;
  const char *p = s;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
    if (!e) break;
    p = e + 1;
    if (!*p) return 0;
  }
  return 1;
}

static void update_counts(pool *p) {
  int connected = 0, busy = 0;
  for (conn *c = p->conns; c; c = c->next) {
    if (c->closing || c->st == C_HELLO) continue;
    connected++;
    if (c->st == C_BUSY) busy++;
  }
  uv_mutex_lock(&p->mu);
  p->n_connected = connected;
  p->n_busy = busy;
  uv_mutex_unlock(&p->mu);
}

/* ---- writing ------------------------------------------------------------- */

static void conn_close(conn *c);

/* Sends msg (reference stolen) to c. */
static void conn_send(conn *c, json_t *msg) {
  if (!msg) return;
  if (c->closing || c->flushing) {
    json_decref(msg);
    return;
  }
  int rc = wire_write(&c->h.stream, msg);
  if (rc == FT_EIO)
    conn_close(c);
  else if (rc)
    FT_ERROR("msg=\"cannot encode a worker message\" err=%s", ft_err_code(rc));
}

static void send_job_msg(conn *c, wire_type t, const char *job_id, int attempt) {
  conn_send(c, json_pack("{s:s, s:s, s:i}", "type", wire_type_name(t), "job_id", job_id, "attempt",
                         attempt));
}

static void send_error(conn *c, int code, const char *param, const char *message) {
  conn_send(
      c, json_pack("{s:s, s:{s:s, s:s, s:s?}}", "type", wire_type_name(WIRE_ERROR), "error", "code",
                   ft_err_code(code), "message", message ? message : ft_err_message(code), "param",
                   param && *param ? param : NULL));
}

/* ---- closing ------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  pool *p = c->p;
  if (c->prev)
    c->prev->next = c->next;
  else
    p->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  wire_decoder_free(&c->dec);
  p->n_conns--;
  free(c);
}

static void dispatch(pool *p);

/* The worker holding (job, attempt) is gone: expire the lease now, so the job
 * is queued again (this counts as an attempt; the next one resumes from the
 * last checkpoint) or, while pausing, becomes paused. */
static void lease_release(pool *p, const char *job_id, int attempt) {
  int rc = store_job_heartbeat(p->s, job_id, attempt, -1);
  if (rc == FT_EBAD_STATE) return; /* already finished or taken over */
  if (rc) {
    FT_WARN("msg=\"cannot release a lease\" job=%s attempt=%d err=%s", job_id, attempt,
            ft_err_code(rc));
    return;
  }
  int n = 0;
  rc = store_jobs_expire(p->s, p->max_attempts, &n);
  if (rc) FT_WARN("msg=\"lease expiry failed\" err=%s", ft_err_code(rc));
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  pool *p = c->p;
  if (c->st == C_BUSY) {
    FT_WARN("msg=\"worker connection lost while running a job\" worker=%s job=%s attempt=%d",
            c->worker_id, c->job_id, c->attempt);
    if (!p->stopping) lease_release(p, c->job_id, c->attempt);
  } else if (c->st != C_HELLO) {
    FT_INFO("msg=\"worker disconnected\" worker=%s", c->worker_id);
  }
  c->st = C_READY;
  uv_close(&c->h.handle, on_conn_closed);
  update_counts(p);
  if (!p->stopping) dispatch(p);
}

static void on_shutdown(uv_shutdown_t *r, int status) {
  conn *c = r->data;
  free(r);
  conn_close(c); /* (a no-op when the handle is already closing) */
}

/* Closes c once what was written has been flushed (an error reply). */
static void conn_close_after_flush(conn *c) {
  if (c->closing || c->flushing) return;
  c->flushing = 1;
  uv_read_stop(&c->h.stream);
  uv_shutdown_t *r = malloc(sizeof *r);
  if (r) {
    r->data = c;
    if (uv_shutdown(r, &c->h.stream, on_shutdown) == 0) return;
    free(r);
  }
  conn_close(c);
}

static void proto_error(conn *c, const ft_error *e) {
  FT_WARN("msg=\"worker protocol error\" worker=%s err=\"%s\"",
          c->worker_id[0] ? c->worker_id : "-", e->message);
  send_error(c, FT_EPROTO, e->param, e->message);
  conn_close_after_flush(c);
}

/* ---- dispatch ------------------------------------------------------------ */

static void set_path(json_t *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_path(json_t *o, const char *key, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  json_object_set_new(o, key, json_string(buf));
}

/* Gives the claimed job to c: paths added, the job message sent. */
static void assign(pool *p, conn *c, json_t *job) {
  const char *id = json_string_value(json_object_get(job, "id"));
  int attempt = (int)json_integer_value(json_object_get(job, "attempt"));
  const char *model = json_string_value(json_object_get(job, "model"));
  const char *tfile = json_string_value(json_object_get(job, "training_file"));
  const char *vfile = json_string_value(json_object_get(job, "validation_file"));
  const char *suffix = json_string_value(json_object_get(job, "user_provided_suffix"));
  if (!id) {
    FT_ERROR("msg=\"claimed job has no id\"");
    return;
  }
  if (!safe_rel(model) || !safe_rel(tfile) || (vfile && !safe_rel(vfile)) || !safe_rel(id)) {
    ft_error e;
    ft_error_set(&e, FT_EINVALID, NULL, "the job's model or file names are not usable as paths");
    store_job_finish(p->s, id, attempt, "failed", &e, NULL, NULL, NULL);
    return;
  }
  json_t *paths = json_object();
  set_path(paths, "model_dir", "%s/models/%s", p->data_dir, model);
  set_path(paths, "train_path", "%s/files/%s", p->data_dir, tfile);
  if (vfile)
    set_path(paths, "valid_path", "%s/files/%s", p->data_dir, vfile);
  else
    json_object_set_new(paths, "valid_path", json_null());
  const char *xfile = json_string_value(json_object_get(job, "test_file"));
  if (xfile && safe_rel(xfile)) set_path(paths, "test_path", "%s/files/%s", p->data_dir, xfile);
  set_path(paths, "out_dir", "%s/jobs/%s/output-%d", p->data_dir, id, attempt);
  /* checkpoints in a directory of their own inside the job's; the worker
   * writes the metrics CSV beside it (jobs/<id>/metrics.csv) */
  set_path(paths, "ckpt_dir", "%s/jobs/%s/checkpoints", p->data_dir, id);
  json_t *resume = json_object_get(job, "resume_from");
  json_object_set(paths, "resume_from", json_is_string(resume) ? resume : json_null());
  json_object_set_new(job, "paths", paths);

  c->st = C_BUSY;
  snprintf(c->job_id, sizeof c->job_id, "%s", id);
  c->attempt = attempt;
  c->ctl_sent = 0;
  snprintf(c->model, sizeof c->model, "%s", model);
  snprintf(c->suffix, sizeof c->suffix, "%s", suffix && *suffix ? suffix : "ft");
  snprintf(c->ckpt_dir, sizeof c->ckpt_dir, "%s/jobs/%s", p->data_dir, id);
  FT_INFO("msg=\"job leased\" job=%s attempt=%d worker=%s", id, attempt, c->worker_id);
  conn_send(c, json_pack("{s:s, s:O}", "type", wire_type_name(WIRE_JOB), "job", job));
}

static void dispatch(pool *p) {
  if (p->stopping || p->draining) return;
  int changed = 0;
  for (conn *c = p->conns; c; c = c->next) {
    if (c->closing || c->flushing || c->st != C_IDLE) continue;
    json_t *job = NULL;
    int rc = store_job_claim(p->s, c->worker_id, p->lease_ms, &job);
    if (rc) {
      FT_ERROR("msg=\"job claim failed\" err=%s", ft_err_code(rc));
      break;
    }
    if (!job) break;
    assign(p, c, job);
    json_decref(job);
    changed = 1;
  }
  if (changed) update_counts(p);
}

/* Tells each busy worker whose job was cancelled or set to pausing. */
static void control_check(pool *p) {
  for (conn *c = p->conns; c; c = c->next) {
    if (c->closing || c->flushing || c->st != C_BUSY) continue;
    int what = 0;
    int rc = store_job_control(p->s, c->job_id, c->attempt, &what);
    if (rc == FT_EBAD_STATE) {
      send_job_msg(c, WIRE_LEASE_LOST, c->job_id, c->attempt);
      c->st = C_READY;
      continue;
    }
    if (rc) continue;
    if (what == 1 && c->ctl_sent != 1) {
      send_job_msg(c, WIRE_CANCEL, c->job_id, c->attempt);
      c->ctl_sent = 1;
    } else if (what == 2 && c->ctl_sent == 0) {
      send_job_msg(c, WIRE_PAUSE, c->job_id, c->attempt);
      c->ctl_sent = 2;
    }
  }
  update_counts(p);
}

/* ---- job messages -------------------------------------------------------- */

static int drain_paused(pool *p, conn *c, json_t *msg); /* graceful shutdown block */

/* The fine-tuned model's id and the name of its directory under models/
 * ('/' of an "org/name" base becomes '_' there; the id keeps it). */
static void model_names(const conn *c, char *id, size_t idn, char *dir, size_t dirn) {
  snprintf(id, idn, "ft:%s:%s:%s", c->model, c->suffix, c->job_id);
  snprintf(dir, dirn, "%s", id);
  for (char *q = dir; *q; q++)
    if (*q == '/') *q = '_';
}

/* Removes path and everything below it (symlinks are removed, not followed). */
static void rm_tree(const char *path) {
  ft_error e;
  if (ft_rmtree(path, &e)) FT_WARN("msg=\"cannot remove\" path=%s err=\"%s\"", path, e.message);
}

/* Whether models/<dirname> is the leftover of job_id's output: the job did
 * not succeed (its output was moved in, then the daemon died before the
 * store recorded it), and no job that is not finished uses it as its base.
 * Unknown jobs and store errors: not a leftover (kept). */
static int is_leftover(pool *p, const char *job_id, const char *dirname) {
  char status[24];
  int users = 1;
  if (store_job_status(p->s, job_id, status, sizeof status) || !strcmp(status, "succeeded"))
    return 0;
  return store_jobs_using_model(p->s, dirname, &users) == 0 && users == 0;
}

/* Moves models/<dirname> aside to models/.deleting-<random> (so the name is
 * free at once) and removes it. 0, or -1 with errno set. */
static int discard_model_dir(const char *models, const char *dirname) {
  char from[4096 + 608], aside[4096 + 80], id[64];
  store_new_id(".deleting", id, sizeof id);
  snprintf(from, sizeof from, "%s/%s", models, dirname);
  snprintf(aside, sizeof aside, "%s/%s", models, id);
  if (rename(from, aside)) return -1;
  ft_fsync_dir(models, NULL);
  rm_tree(aside);
  return 0;
}

/* At start: removes what a crash left under models/: half-removed
 * .deleting-* dirs, and ft:*:<job> dirs whose job did not succeed (the job
 * is retried and moves its own output in). */
static void clean_models(pool *p, const char *models) {
  DIR *d = opendir(models);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *name = e->d_name;
    if (!strncmp(name, ".deleting-", 10)) {
      char path[4096 + 300];
      snprintf(path, sizeof path, "%s/%s", models, name);
      rm_tree(path);
      continue;
    }
    char job[64];
    if (!model_id_job(name, job, sizeof job) || !is_leftover(p, job, name)) continue;
    FT_WARN("msg=\"removing the leftover output of a job that did not succeed\" model=%s", name);
    if (discard_model_dir(models, name))
      FT_WARN("msg=\"cannot remove a leftover model\" model=%s err=\"%s\"", name, strerror(errno));
  }
  closedir(d);
}

/* The metrics CSV the worker wrote (result.result_csv, inside the job's
 * directory) becomes a file of purpose "fine-tune-results": copied to
 * files/<id>, its row inserted, its id put in result.result_files. A missing
 * or unusable CSV is logged and skipped (the job still succeeds). */
static void result_csv_register(pool *p, conn *c, json_t *result) {
  const char *csv = json_string_value(json_object_get(result, "result_csv"));
  if (!csv) return;
  size_t n = strlen(c->ckpt_dir);
  if (strncmp(csv, c->ckpt_dir, n) || csv[n] != '/' || !safe_rel(csv + n + 1)) {
    FT_WARN("msg=\"result CSV outside the job's directory; ignored\" job=%s", c->job_id);
    return;
  }
  char id[64], tmp[4096 + 96], dst[4096 + 96];
  store_new_id("file", id, sizeof id);
  snprintf(tmp, sizeof tmp, "%s/files/.tmp-%s", p->data_dir, id);
  snprintf(dst, sizeof dst, "%s/files/%s", p->data_dir, id);
  ft_error e = {0};
  struct stat sb;
  json_t *file = NULL;
  const char *base = strrchr(csv, '/') + 1;
  char fname[256];
  snprintf(fname, sizeof fname, "%s-%s", c->job_id, base);
  if (ft_copy_file(csv, tmp, 0644, &e) || rename(tmp, dst) || stat(dst, &sb)) {
    FT_WARN("msg=\"cannot store the result CSV\" job=%s err=\"%s\"", c->job_id,
            e.message[0] ? e.message : strerror(errno));
    unlink(tmp);
    return;
  }
  char files[4096 + 16];
  snprintf(files, sizeof files, "%s/files", p->data_dir);
  ft_fsync_dir(files, NULL);
  if (store_file_insert(p->s, id, (int64_t)sb.st_size, fname, "fine-tune-results", &file)) {
    FT_WARN("msg=\"cannot record the result CSV\" job=%s", c->job_id);
    unlink(dst);
    return;
  }
  json_decref(file);
  json_object_set_new(result, "result_files", json_pack("[s]", id));
}

static int finish_done(pool *p, conn *c, const json_t *result) {
  /* (before the output moves: the CSV may be inside it) */
  json_t *res = json_is_object(result) ? json_deep_copy(result) : NULL;
  if (res) result_csv_register(p, c, res);
  /* (the data dir is short: its socket path fits in sun_path) */
  char model_id[600], dirname[600], out_dir[sizeof c->ckpt_dir + 32], models[4096];
  char model_path[sizeof models + sizeof dirname + 2];
  model_names(c, model_id, sizeof model_id, dirname, sizeof dirname);
  snprintf(out_dir, sizeof out_dir, "%s/output-%d", c->ckpt_dir, c->attempt);
  snprintf(models, sizeof models, "%s/models", p->data_dir);
  snprintf(model_path, sizeof model_path, "%s/%s", models, dirname);
  int moved = 0;
  struct stat sb;
  int r = rename(out_dir, model_path), rerr = r ? errno : 0;
  if (r && (rerr == EEXIST || rerr == ENOTEMPTY) && is_leftover(p, c->job_id, dirname)) {
    /* an earlier attempt's output, moved in before a crash kept the store
     * from recording it: this attempt's output replaces it */
    FT_WARN("msg=\"replacing a leftover model of this job\" job=%s model=%s", c->job_id, dirname);
    r = discard_model_dir(models, dirname);
    if (!r) r = rename(out_dir, model_path);
    rerr = r ? errno : 0;
  }
  if (r == 0) {
    moved = 1;
    ft_fsync_dir(models, NULL);
  } else if (!(rerr == ENOENT && stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode))) {
    /* (ENOENT with the model in place: a repeated done after a move) */
    ft_error e;
    ft_error_set(&e, FT_EIO, NULL, "cannot move the trained model into models/: %s",
                 strerror(rerr));
    FT_ERROR("msg=\"cannot move output\" job=%s from=%s to=%s err=\"%s\"", c->job_id, out_dir,
             model_path, strerror(rerr));
    json_decref(res);
    return store_job_finish(p->s, c->job_id, c->attempt, "failed", &e, NULL, NULL, NULL);
  }
  int rc =
      store_job_finish(p->s, c->job_id, c->attempt, "succeeded", NULL, model_id, model_path, res);
  json_decref(res);
  if (rc && moved) {
    if (rename(model_path, out_dir) == 0) ft_fsync_dir(models, NULL);
  }
  if (!rc) FT_INFO("msg=\"job succeeded\" job=%s model=%s", c->job_id, model_id);
  return rc;
}

static int finish_failed(pool *p, conn *c, const json_t *msg) {
  json_t *e = json_object_get(msg, "error");
  ft_error err;
  const char *code = json_string_value(json_object_get(e, "code"));
  const char *m = json_string_value(json_object_get(e, "message"));
  const char *param = json_string_value(json_object_get(e, "param"));
  ft_error_set(&err, code ? ft_err_from_code(code) : FT_EINTERNAL, param, "%s",
               m ? m : ft_err_message(code ? ft_err_from_code(code) : FT_EINTERNAL));
  FT_WARN("msg=\"job failed\" job=%s attempt=%d code=%s err=\"%s\"", c->job_id, c->attempt,
          ft_err_code(err.code), err.message);
  return store_job_finish(p->s, c->job_id, c->attempt, "failed", &err, NULL, NULL, NULL);
}

/* A checkpoint path must be a directory of this job's checkpoint dir. */
static int ckpt_path_ok(const conn *c, const char *path) {
  size_t n = strlen(c->ckpt_dir);
  return path && strncmp(path, c->ckpt_dir, n) == 0 && path[n] == '/' && safe_rel(path + n + 1);
}

/* A count a worker reports (step, tokens, epoch): absent, or a JSON integer
 * in 0..MAX_COUNT; never a double, which the store would have to convert. */
static int count_ok(const json_t *o, const char *key, int required) {
  json_t *v = json_object_get(o, key);
  if (!v) return !required;
  return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= MAX_COUNT;
}

/* Checks every count of o (the keys, NULL-terminated); the first bad one is
 * FT_EPROTO naming where/key. */
static int counts_or_error(const json_t *o, const char *where, const char *const *keys,
                           ft_error *perr) {
  for (int i = 0; keys[i]; i++)
    if (!count_ok(o, keys[i], i == 0 && !strcmp(where, "metrics")))
      return ft_error_set(perr, FT_EPROTO, keys[i], "%s.%s must be an integer from 0 to %lld",
                          where, keys[i], MAX_COUNT);
  return 0;
}

/* Handles one message about a job (heartbeat ... cancelled). Returns 0 or
 * FT_EPROTO (malformed: the connection is closed). */
static int on_job_msg(pool *p, conn *c, wire_type t, json_t *msg, ft_error *perr) {
  const char *type = wire_type_name(t);
  json_t *jid = json_object_get(msg, "job_id"), *jat = json_object_get(msg, "attempt");
  if (!json_is_string(jid) || !json_is_integer(jat))
    return ft_error_set(perr, FT_EPROTO, "job_id", "%s without job_id and attempt", type);
  const char *job_id = json_string_value(jid);
  int attempt = (int)json_integer_value(jat);
  if (c->st != C_BUSY || strcmp(job_id, c->job_id) != 0 || attempt != c->attempt) {
    send_job_msg(c, WIRE_LEASE_LOST, job_id, attempt);
    return 0;
  }
  int rc = 0, terminal = 0;
  if (t == WIRE_HEARTBEAT) {
    rc = store_job_heartbeat(p->s, job_id, attempt, p->lease_ms);
  } else if (t == WIRE_METRICS) {
    json_t *m = json_object_get(msg, "metrics");
    static const char *const keys[] = {"step", "total_steps", "trained_tokens", "epoch", NULL};
    if (!json_is_object(m))
      return ft_error_set(perr, FT_EPROTO, "metrics", "metrics without an object with a step");
    if (counts_or_error(m, "metrics", keys, perr)) return FT_EPROTO;
    rc = store_job_metrics(p->s, job_id, attempt, m, p->lease_ms);
    if (!rc) /* (obs.h: trained tokens and throughput for /metrics) */
      obs_job_progress(job_id, (long)json_integer_value(json_object_get(m, "step")),
                       json_integer_value(json_object_get(m, "trained_tokens")),
                       json_number_value(json_object_get(m, "tokens_per_second")));
  } else if (t == WIRE_EVENT) {
    const char *level = json_string_value(json_object_get(msg, "level"));
    const char *text = json_string_value(json_object_get(msg, "message"));
    json_t *data = json_object_get(msg, "data");
    if (!text) return ft_error_set(perr, FT_EPROTO, "message", "event without a message");
    if (!level || (strcmp(level, "info") && strcmp(level, "warn") && strcmp(level, "error")))
      level = "info";
    /* (only while this attempt holds a running or pausing job) */
    rc = store_job_event(p->s, job_id, attempt, level, text, json_is_null(data) ? NULL : data);
  } else if (t == WIRE_CHECKPOINT) {
    json_t *step = json_object_get(msg, "step");
    const char *path = json_string_value(json_object_get(msg, "path"));
    json_t *m = json_object_get(msg, "metrics");
    if (!json_is_integer(step) || !path)
      return ft_error_set(perr, FT_EPROTO, "step", "checkpoint without step and path");
    if (!count_ok(msg, "step", 1))
      return ft_error_set(perr, FT_EPROTO, "step", "step must be an integer from 0 to %lld",
                          MAX_COUNT);
    if (!ckpt_path_ok(c, path))
      return ft_error_set(perr, FT_EPROTO, "path", "checkpoint path outside the job's directory");
    rc = store_checkpoint_add(p->s, job_id, attempt, (long)json_integer_value(step), path,
                              json_is_object(m) ? m : NULL);
    /* "kept": the steps still on disk; the others were pruned */
    if (!rc && json_is_array(json_object_get(msg, "kept")))
      rc = store_checkpoints_prune(p->s, job_id, json_object_get(msg, "kept"));
  } else if (t == WIRE_DONE) {
    json_t *result = json_object_get(msg, "result");
    static const char *const keys[] = {"steps", "trained_tokens", NULL};
    if (json_is_object(result) && counts_or_error(result, "result", keys, perr)) return FT_EPROTO;
    terminal = 1;
    rc = finish_done(p, c, result);
  } else if (t == WIRE_FAILED) {
    terminal = 1;
    rc = finish_failed(p, c, msg);
  } else if (t == WIRE_PAUSED || t == WIRE_CANCELLED) {
    terminal = 1;
    if (t == WIRE_PAUSED)
      rc = drain_paused(p, c, msg); /* (the user's pause, or the shutdown's) */
    else
      rc = store_job_finish(p->s, job_id, attempt, "cancelled", NULL, NULL, NULL, NULL);
    if (!rc) FT_INFO("msg=\"job %s\" job=%s attempt=%d", type, job_id, attempt);
  } else {
    return ft_error_set(perr, FT_EINTERNAL, "type", "%s is not a job message", type);
  }
  if (rc == FT_EBAD_STATE) {
    FT_INFO("msg=\"stale attempt\" job=%s attempt=%d worker=%s on=%s", job_id, attempt,
            c->worker_id, type);
    send_job_msg(c, WIRE_LEASE_LOST, job_id, attempt);
    c->st = C_READY;
  } else if (rc) {
    FT_WARN("msg=\"store refused a worker message\" job=%s type=%s err=%s", job_id, type,
            ft_err_code(rc));
    /* a terminal message the store could not record: the lease stays and
     * expires, and the job is retried */
    if (terminal) c->st = C_READY;
  } else if (terminal) {
    c->st = C_READY;
  }
  if (c->st != C_BUSY) update_counts(p);
  return 0;
}

static int on_hello(pool *p, conn *c, json_t *msg) {
  const char *wid = json_string_value(json_object_get(msg, "worker_id"));
  const char *tok = json_string_value(json_object_get(msg, "token"));
  if (c->is_tcp && (!tok || !token_equal(tok, p->token))) {
    FT_WARN("msg=\"worker refused: bad token\"");
    obs_reject(OBS_REJECT_WORKER_AUTH);
    send_error(c, FT_EUNAUTHORIZED, "token", "missing or invalid worker token");
    conn_close_after_flush(c);
    return 0;
  }
  int ok = wid && *wid && strlen(wid) < 100;
  for (const char *q = wid; ok && *q; q++)
    if ((unsigned char)*q <= ' ' || *q == '"' || *q == '\\' || (unsigned char)*q >= 0x7f) ok = 0;
  if (ok)
    snprintf(c->worker_id, sizeof c->worker_id, "%s", wid);
  else
    snprintf(c->worker_id, sizeof c->worker_id, "worker-%u", ++p->serial);
  c->st = C_READY;
  wire_decoder_set_limit(&c->dec, 0); /* full-size frames from now on */
  FT_INFO("msg=\"worker connected\" worker=%s transport=%s", c->worker_id,
          c->is_tcp ? "tcp" : "unix");
  conn_send(c,
            json_pack("{s:s, s:i, s:i, s:s}", "type", wire_type_name(WIRE_WELCOME), "heartbeat_ms",
                      p->heartbeat_ms, "lease_ms", p->lease_ms, "worker_id", c->worker_id));
  update_counts(p);
  return 0;
}

/* A worker asks for work; one that still holds a lease gave its job up. */
static int on_claim(pool *p, conn *c) {
  if (c->st == C_BUSY) {
    /* it gave up its job without saying how it ended */
    FT_WARN("msg=\"worker claimed while holding a lease\" worker=%s job=%s", c->worker_id,
            c->job_id);
    lease_release(p, c->job_id, c->attempt);
  }
  c->st = C_IDLE;
  update_counts(p);
  dispatch(p);
  return 0;
}

/* Dispatches one message; a type the daemon does not take from a worker is
 * FT_EPROTO like any malformed message (the connection is closed). */
static int on_message(pool *p, conn *c, json_t *msg, ft_error *perr) {
  wire_type t = wire_type_of(msg, WIRE_FROM_WORKER);
  if (c->st == C_HELLO) {
    if (t != WIRE_HELLO) {
      if (c->is_tcp) {
        send_error(c, FT_EUNAUTHORIZED, "token", "the first message must be hello with the token");
        conn_close_after_flush(c);
        return 0;
      }
      return ft_error_set(perr, FT_EPROTO, "type", "the first message must be hello");
    }
    return on_hello(p, c, msg);
  }
  switch (t) {
    case WIRE_HELLO:
      return ft_error_set(perr, FT_EPROTO, "type", "hello sent twice");
    case WIRE_CLAIM:
      return on_claim(p, c);
    case WIRE_HEARTBEAT:
    case WIRE_METRICS:
    case WIRE_EVENT:
    case WIRE_CHECKPOINT:
    case WIRE_DONE:
    case WIRE_FAILED:
    case WIRE_PAUSED:
    case WIRE_CANCELLED:
      return on_job_msg(p, c, t, msg, perr);
    default:
      return ft_error_set(perr, FT_EPROTO, "type", "unknown message type \"%.40s\"",
                          json_string_value(json_object_get(msg, "type")));
  }
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn *c = h->data;
  *b = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn *c = s->data;
  pool *p = c->p;
  if (nread < 0) {
    if (nread != UV_EOF) FT_DEBUG("msg=\"worker read failed\" err=\"%s\"", uv_strerror((int)nread));
    conn_close(c);
    return;
  }
  if (nread == 0 || c->closing || c->flushing) return;
  ft_error e = {0};
  if (wire_feed(&c->dec, b->base, (size_t)nread)) {
    ft_error_set(&e, FT_EPROTO, NULL, "frame exceeds %u bytes%s", wire_decoder_limit(&c->dec),
                 c->st == C_HELLO ? " (before hello)" : "");
    proto_error(c, &e);
    return;
  }
  while (!c->closing && !c->flushing) {
    json_t *msg = NULL;
    int rc = wire_next(&c->dec, &msg, &e);
    if (!rc && !msg) break;
    if (!rc) rc = on_message(p, c, msg, &e);
    json_decref(msg);
    if (rc) {
      proto_error(c, &e);
      return;
    }
  }
}

static void on_connection(uv_stream_t *server, int status) {
  pool *p = server->data;
  if (status < 0) {
    FT_WARN("msg=\"worker accept failed\" err=\"%s\"", uv_strerror(status));
    return;
  }
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->p = p;
  c->is_tcp = server == (uv_stream_t *)&p->tcp_srv;
  int rc = c->is_tcp ? uv_tcp_init(&p->loop, &c->h.tcp) : uv_pipe_init(&p->loop, &c->h.pipe, 0);
  if (rc) {
    free(c);
    return;
  }
  c->h.handle.data = c;
  wire_decoder_init(&c->dec);
  /* until hello is accepted a peer is nobody: small frames only */
  wire_decoder_set_limit(&c->dec, PREAUTH_MAX_FRAME);
  c->st = C_HELLO;
  c->connected_ms = uv_now(&p->loop);
  c->next = p->conns;
  if (p->conns) p->conns->prev = c;
  p->conns = c;
  p->n_conns++;
  /* (accepted even when refused: libuv stops listening until it is) */
  if (uv_accept(server, &c->h.stream) || p->stopping) {
    conn_close(c);
    return;
  }
  if (p->n_conns > MAX_CONNS) {
    FT_WARN("msg=\"worker connection refused: too many connections\" max=%d", MAX_CONNS);
    conn_close(c);
    return;
  }
  if (c->is_tcp) {
    uv_tcp_nodelay(&c->h.tcp, 1);
    uv_tcp_keepalive(&c->h.tcp, 1, 30);
  }
  if (uv_read_start(&c->h.stream, on_alloc, on_read)) conn_close(c);
}

/* ---- local workers ------------------------------------------------------- */

static void lw_spawn(lworker *w);
static void lw_timer_cb(uv_timer_t *t) { lw_spawn(t->data); }

static void lw_proc_closed(uv_handle_t *h) {
  lworker *w = h->data;
  w->proc_open = 0;
}

static void finish_stop_if_done(pool *p);

static void lw_exit(uv_process_t *proc, int64_t status, int sig) {
  lworker *w = proc->data;
  pool *p = w->p;
  w->proc_alive = 0;
  uv_close((uv_handle_t *)proc, lw_proc_closed);
  if (p->stopping) {
    finish_stop_if_done(p);
    return;
  }
  uint64_t lived = uv_now(&p->loop) - w->started_ms;
  if (lived >= RESTART_RESET_MS) w->delay_ms = RESTART_MIN_MS;
  FT_WARN("msg=\"local worker exited\" n=%d status=%lld signal=%d restart_in_ms=%d", w->idx,
          (long long)status, sig, w->delay_ms);
  uv_timer_start(&w->timer, lw_timer_cb, (uint64_t)w->delay_ms, 0);
  w->delay_ms = w->delay_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : w->delay_ms * 2;
}

static void lw_spawn(lworker *w) {
  pool *p = w->p;
  if (p->stopping) return;
  if (w->proc_open) { /* the previous handle is still closing */
    uv_timer_start(&w->timer, lw_timer_cb, 50, 0);
    return;
  }
  char id[32];
  snprintf(id, sizeof id, "local-%d", w->idx);
  char *args[] = {"finetuned-worker", "--connect", p->connect_arg, "--id", id, NULL};
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.exit_cb = lw_exit;
  o.file = p->worker_exe;
  o.args = args;
  o.stdio_count = 3;
  o.stdio = stdio;
  /* its own session: a terminal's ^C reaches only the daemon, which drains */
  o.flags = UV_PROCESS_DETACHED;
  w->proc.data = w;
  int rc = uv_spawn(&p->loop, &w->proc, &o);
  w->proc_open = 1;
  if (rc) {
    uv_close((uv_handle_t *)&w->proc, lw_proc_closed);
    FT_ERROR("msg=\"cannot start a local worker\" exe=%s err=\"%s\" retry_in_ms=%d", p->worker_exe,
             uv_strerror(rc), w->delay_ms);
    uv_timer_start(&w->timer, lw_timer_cb, (uint64_t)w->delay_ms, 0);
    w->delay_ms = w->delay_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : w->delay_ms * 2;
    return;
  }
  w->proc_alive = 1;
  w->started_ms = uv_now(&p->loop);
  FT_INFO("msg=\"local worker started\" n=%d pid=%d", w->idx, w->proc.pid);
}

/* ---- graceful shutdown (shutdown.h) -------------------------------------
 * While the daemon drains, nothing is dispatched and every busy worker is
 * told to pause (ctl_sent 3: our pause, not the user's). Its checkpoint
 * message comes before its "paused", so resume_from is that checkpoint when
 * store_job_interrupt puts the job back to queued, no attempt counted as lost
 * (a job the user was pausing meanwhile ends paused). When the drain timed
 * out, do_stop does the same for the jobs still held (step -1). */

static void drain_begin(pool *p) {
  if (p->draining) return;
  p->draining = 1;
  int n = 0;
  for (conn *c = p->conns; c; c = c->next) {
    if (c->closing || c->flushing || c->st != C_BUSY) continue;
    n++;
    if (c->ctl_sent) continue; /* cancel or pause already sent */
    send_job_msg(c, WIRE_PAUSE, c->job_id, c->attempt);
    c->ctl_sent = 3;
  }
  FT_INFO("msg=\"pool draining: no new leases; pausing running jobs\" jobs=%d", n);
  update_counts(p);
  uv_mutex_lock(&p->mu);
  p->drain_started = 1;
  uv_mutex_unlock(&p->mu);
}

/* From on_async: a drain asked for by pool_drain_begin. */
static void drain_poll(pool *p) {
  uv_mutex_lock(&p->mu);
  int want = p->want_drain;
  uv_mutex_unlock(&p->mu);
  if (want) drain_begin(p);
}

/* A worker's "paused": the user's pause, or ours. */
static int drain_paused(pool *p, conn *c, json_t *msg) {
  if (c->ctl_sent != 3)
    return store_job_finish(p->s, c->job_id, c->attempt, "paused", NULL, NULL, NULL, NULL);
  json_t *step = json_object_get(msg, "step");
  long at = count_ok(msg, "step", 1) ? (long)json_integer_value(step) : -1;
  int rc = store_job_interrupt(p->s, c->job_id, c->attempt, at);
  if (!rc)
    FT_INFO("msg=\"job stopped for the shutdown; queued to resume\" job=%s attempt=%d step=%ld",
            c->job_id, c->attempt, at);
  return rc;
}

/* From do_stop: after a timed-out drain, the jobs still held are queued
 * again rather than left to their leases (their workers are stopped next). */
static void drain_stop(pool *p) {
  uv_mutex_lock(&p->mu);
  int requeue = p->drain_requeue;
  uv_mutex_unlock(&p->mu);
  if (!requeue) return;
  for (conn *c = p->conns; c; c = c->next) {
    if (c->closing || c->st != C_BUSY) continue;
    int rc = store_job_interrupt(p->s, c->job_id, c->attempt, -1);
    FT_WARN("msg=\"job still running at the stop; queued again\" job=%s attempt=%d err=%s",
            c->job_id, c->attempt, rc ? ft_err_code(rc) : "-");
    if (!rc) c->st = C_READY;
  }
  update_counts(p);
}

void pool_drain_begin(pool *p) {
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->want_drain = 1;
  uv_mutex_unlock(&p->mu);
  uv_async_send(&p->async);
}

int pool_drain_started(pool *p) {
  if (!p) return 1;
  uv_mutex_lock(&p->mu);
  int started = p->drain_started;
  uv_mutex_unlock(&p->mu);
  return started;
}

void pool_drain_requeue_at_stop(pool *p) {
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->drain_requeue = 1;
  uv_mutex_unlock(&p->mu);
}

/* ---- timers, async, stop ------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
  pool *p = t->data;
  int n = 0;
  int rc = store_jobs_expire(p->s, p->max_attempts, &n);
  if (rc)
    FT_WARN("msg=\"lease expiry failed\" err=%s", ft_err_code(rc));
  else if (n)
    FT_INFO("msg=\"leases expired\" n=%d", n);
  uint64_t now = uv_now(&p->loop);
  for (conn *c = p->conns; c; c = c->next)
    if (!c->closing && c->st == C_HELLO && now - c->connected_ms > HELLO_TIMEOUT_MS) conn_close(c);
  control_check(p);
  dispatch(p);
  obs_watchdog_tick(p->s); /* systemd's watchdog: the loop and the store answer (obs.h) */
}

static void on_kill_timer(uv_timer_t *t) {
  pool *p = t->data;
  for (int i = 0; i < p->n_workers; i++)
    if (p->lw[i].proc_alive) {
      FT_WARN("msg=\"local worker did not stop; killing it\" pid=%d", p->lw[i].proc.pid);
      uv_process_kill(&p->lw[i].proc, SIGKILL);
    }
}

static void finish_stop_if_done(pool *p) {
  for (int i = 0; i < p->n_workers; i++)
    if (p->lw[i].proc_alive) return;
  if (!uv_is_closing((uv_handle_t *)&p->kill_timer)) uv_close((uv_handle_t *)&p->kill_timer, NULL);
  if (!uv_is_closing((uv_handle_t *)&p->async)) uv_close((uv_handle_t *)&p->async, NULL);
}

static void do_stop(pool *p) {
  if (p->stopping) return;
  drain_stop(p); /* graceful shutdown block */
  p->stopping = 1;
  if (p->has_unix) {
    uv_close((uv_handle_t *)&p->unix_srv, NULL);
    unlink(p->sock_path);
  }
  if (p->has_tcp) uv_close((uv_handle_t *)&p->tcp_srv, NULL);
  uv_close((uv_handle_t *)&p->tick, NULL);
  for (conn *c = p->conns; c; c = c->next) conn_close(c);
  for (int i = 0; i < p->n_workers; i++) {
    lworker *w = &p->lw[i];
    uv_close((uv_handle_t *)&w->timer, NULL);
    if (w->proc_alive) uv_process_kill(&w->proc, SIGTERM);
  }
  uv_timer_start(&p->kill_timer, on_kill_timer, KILL_GRACE_MS, 0);
  finish_stop_if_done(p);
}

static void on_async(uv_async_t *a) {
  pool *p = a->data;
  drain_poll(p); /* graceful shutdown block */
  uv_mutex_lock(&p->mu);
  int stop = p->want_stop, ctl = p->want_control, disp = p->want_dispatch;
  p->want_control = p->want_dispatch = 0;
  uv_mutex_unlock(&p->mu);
  if (stop) {
    do_stop(p);
    return;
  }
  if (ctl) control_check(p);
  if (disp || ctl) dispatch(p);
}

static void run_loop(void *arg) {
  pool *p = arg;
  uv_run(&p->loop, UV_RUN_DEFAULT);
}

/* ---- listening ----------------------------------------------------------- */

static int listen_unix(pool *p, ft_error *err) {
  int n = snprintf(p->sock_path, sizeof p->sock_path, "%s/worker.sock", p->data_dir);
  if (n < 0 || (size_t)n >= sizeof p->sock_path)
    return ft_error_set(err, FT_EINVALID, "data_dir",
                        "the data dir path is too long for a Unix socket (%zu bytes at most)",
                        sizeof p->sock_path - sizeof "/worker.sock");
  snprintf(p->connect_arg, sizeof p->connect_arg, "unix:%s", p->sock_path);
  if (unlink(p->sock_path) && errno != ENOENT)
    return ft_error_set(err, FT_EIO, NULL, "cannot remove the stale socket %s: %s", p->sock_path,
                        strerror(errno));
  int rc = uv_pipe_init(&p->loop, &p->unix_srv, 0);
  if (rc) return ft_error_set(err, FT_EINTERNAL, NULL, "uv_pipe_init: %s", uv_strerror(rc));
  p->has_unix = 1;
  p->unix_srv.data = p;
  rc = uv_pipe_bind(&p->unix_srv, p->sock_path);
  if (!rc && chmod(p->sock_path, 0600)) rc = uv_translate_sys_error(errno);
  if (!rc) rc = uv_listen((uv_stream_t *)&p->unix_srv, 64, on_connection);
  if (rc)
    return ft_error_set(err, FT_EIO, NULL, "cannot listen on %s: %s", p->sock_path,
                        uv_strerror(rc));
  return 0;
}

static int listen_tcp(pool *p, const char *spec, ft_error *err) {
  char host[256], port[16];
  const char *colon = strrchr(spec, ':');
  if (!colon || colon == spec || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port ||
      (size_t)(colon - spec) >= sizeof host)
    return ft_error_set(err, FT_EINVALID, "worker_listen",
                        "worker listen address must be HOST:PORT");
  size_t hl = (size_t)(colon - spec);
  memcpy(host, spec, hl);
  host[hl] = 0;
  if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  snprintf(port, sizeof port, "%s", colon + 1);
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int g = getaddrinfo(host, port, &hints, &ai);
  if (g || !ai)
    return ft_error_set(err, FT_EINVALID, "worker_listen", "cannot resolve %s: %s", spec,
                        gai_strerror(g));
  int rc = uv_tcp_init(&p->loop, &p->tcp_srv);
  if (!rc) {
    p->has_tcp = 1;
    p->tcp_srv.data = p;
    rc = uv_tcp_bind(&p->tcp_srv, ai->ai_addr, 0);
  }
  freeaddrinfo(ai);
  if (!rc) rc = uv_listen((uv_stream_t *)&p->tcp_srv, 64, on_connection);
  if (rc)
    return ft_error_set(err, FT_EIO, "worker_listen", "cannot listen on %s: %s", spec,
                        uv_strerror(rc));
  FT_INFO("msg=\"listening for remote workers\" addr=%s", spec);
  return 0;
}

/* ---- public API ---------------------------------------------------------- */

static void pool_free(pool *p) {
  if (!p) return;
  free(p->data_dir);
  free(p->worker_exe);
  free(p->token);
  free(p->lw);
  free(p);
}

int pool_start(pool **out, store *s, const pool_opts *o, ft_error *err) {
  *out = NULL;
  if (!o->data_dir || o->data_dir[0] != '/')
    return ft_error_set(err, FT_EINVALID, "data_dir", "the data dir must be an absolute path");
  if (o->worker_listen && (!o->worker_token || !*o->worker_token))
    return ft_error_set(err, FT_EINVALID, "worker_token",
                        "a worker token is required to listen for remote workers");
  if (o->n_workers > 0 && (!o->worker_exe || !*o->worker_exe))
    return ft_error_set(err, FT_EINVALID, "worker_exe", "no worker executable for local workers");
  pool *p = calloc(1, sizeof *p);
  if (!p) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  p->s = s;
  p->data_dir = xstrdup(o->data_dir);
  p->worker_exe = xstrdup(o->worker_exe);
  p->token = xstrdup(o->worker_token);
  p->n_workers = o->n_workers > 0 ? o->n_workers : 0;
  p->lease_ms = o->lease_ms > 0 ? o->lease_ms : 30000;
  p->heartbeat_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 2000;
  p->max_attempts = o->max_attempts > 0 ? o->max_attempts : 3;
  p->lw = calloc((size_t)p->n_workers + 1, sizeof *p->lw);
  if (!p->data_dir || !p->lw || (o->worker_exe && !p->worker_exe) ||
      (o->worker_token && !p->token)) {
    pool_free(p);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  /* a worker dying under a write must not take the daemon with it */
  signal(SIGPIPE, SIG_IGN);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/models", p->data_dir);
  mkdir(dir, 0755);
  clean_models(p, dir);
  snprintf(dir, sizeof dir, "%s/jobs", p->data_dir);
  mkdir(dir, 0755);

  int rc = uv_loop_init(&p->loop);
  if (rc) {
    pool_free(p);
    return ft_error_set(err, FT_EINTERNAL, NULL, "uv_loop_init: %s", uv_strerror(rc));
  }
  uv_mutex_init(&p->mu);
  uv_async_init(&p->loop, &p->async, on_async);
  p->async.data = p;
  uv_timer_init(&p->loop, &p->tick);
  p->tick.data = p;
  uv_timer_init(&p->loop, &p->kill_timer);
  p->kill_timer.data = p;
  for (int i = 0; i < p->n_workers; i++) {
    lworker *w = &p->lw[i];
    w->p = p;
    w->idx = i;
    w->delay_ms = RESTART_MIN_MS;
    uv_timer_init(&p->loop, &w->timer);
    w->timer.data = w;
  }
  rc = listen_unix(p, err);
  if (!rc && o->worker_listen) rc = listen_tcp(p, o->worker_listen, err);
  if (!rc) {
    for (int i = 0; i < p->n_workers; i++) lw_spawn(&p->lw[i]);
    uv_timer_start(&p->tick, on_tick, 1000, 1000);
    rc = uv_thread_create(&p->thread, run_loop, p);
    if (rc)
      rc = ft_error_set(err, FT_EINTERNAL, NULL, "uv_thread_create: %s", uv_strerror(rc));
    else
      p->thread_started = 1;
  }
  if (rc) {
    /* unwind on this thread: the loop never ran */
    do_stop(p);
    for (int i = 0; i < p->n_workers; i++)
      if (p->lw[i].proc_alive) uv_process_kill(&p->lw[i].proc, SIGKILL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_loop_close(&p->loop);
    uv_mutex_destroy(&p->mu);
    pool_free(p);
    return rc;
  }
  FT_INFO("msg=\"worker pool started\" socket=%s local_workers=%d", p->sock_path, p->n_workers);
  *out = p;
  return 0;
}

void pool_notify(pool *p) {
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->want_dispatch = 1;
  uv_mutex_unlock(&p->mu);
  uv_async_send(&p->async);
}

void pool_control(pool *p, const char *job_id) {
  (void)job_id; /* every busy worker's job is checked: there are few */
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->want_control = 1;
  uv_mutex_unlock(&p->mu);
  uv_async_send(&p->async);
}

void pool_counts(pool *p, int *connected, int *busy) {
  int c = 0, b = 0;
  if (p) {
    uv_mutex_lock(&p->mu);
    c = p->n_connected;
    b = p->n_busy;
    uv_mutex_unlock(&p->mu);
  }
  if (connected) *connected = c;
  if (busy) *busy = b;
}

void pool_stop(pool *p) {
  if (!p) return;
  uv_mutex_lock(&p->mu);
  p->want_stop = 1;
  uv_mutex_unlock(&p->mu);
  uv_async_send(&p->async);
  uv_thread_join(&p->thread);
  int rc = uv_loop_close(&p->loop);
  if (rc) FT_WARN("msg=\"worker pool loop not empty at stop\" err=\"%s\"", uv_strerror(rc));
  uv_mutex_destroy(&p->mu);
  FT_INFO("msg=\"worker pool stopped\"");
  pool_free(p);
}
