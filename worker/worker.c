/* The daemon-connected worker (worker.h). Two threads meet at one narrow
 * point: the engine thread (train_run) pushes messages onto a mutex-guarded
 * queue and wakes the loop with uv_async_send; the loop thread owns the
 * connection and sends them. The loop tells the engine to stop through one
 * atomic (cancel, pause, or "lost": lease lost / daemon gone / signal), read
 * by on_step after every optimizer step. Workload: one job at a time, a few
 * messages per step; the engine's steps take milliseconds to minutes. */
#include "worker.h"

#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ft_log.h"
#include "train/spec.h"
#include "wire.h"

json_t *worker_real(double x) { return isfinite(x) ? json_real(x) : json_null(); }

json_t *worker_metrics_json(const ft_step_metrics *m) {
  json_t *j = json_object();
  json_object_set_new(j, "step", json_integer(m->step));
  json_object_set_new(j, "total_steps", json_integer(m->total_steps));
  json_object_set_new(j, "epoch", json_integer(m->epoch));
  json_object_set_new(j, "epochs_completed", json_integer(m->epochs_completed));
  json_object_set_new(j, "train_loss", worker_real(m->train_loss));
  json_object_set_new(j, "train_mean_token_accuracy", worker_real(m->train_mean_token_accuracy));
  json_object_set_new(j, "learning_rate", worker_real(m->learning_rate));
  json_object_set_new(j, "grad_norm", worker_real(m->grad_norm));
  json_object_set_new(j, "tokens_per_second", worker_real(m->tokens_per_second));
  json_object_set_new(j, "trained_tokens", json_integer(m->trained_tokens));
  if (m->has_valid) {
    json_object_set_new(j, "valid_loss", worker_real(m->valid_loss));
    json_object_set_new(j, "valid_mean_token_accuracy", worker_real(m->valid_mean_token_accuracy));
    if (m->lm) json_object_set_new(j, "valid_perplexity", worker_real(m->valid_perplexity));
  }
  if (m->has_full_valid) {
    json_object_set_new(j, "full_valid_loss", worker_real(m->full_valid_loss));
    json_object_set_new(j, "full_valid_mean_token_accuracy",
                        worker_real(m->full_valid_mean_token_accuracy));
    if (m->lm)
      json_object_set_new(j, "full_valid_perplexity", worker_real(m->full_valid_perplexity));
  }
  if (m->has_cls) {
    json_object_set_new(j, "valid_accuracy", worker_real(m->valid_accuracy));
    json_object_set_new(j, "valid_precision_macro", worker_real(m->valid_precision_macro));
    json_object_set_new(j, "valid_recall_macro", worker_real(m->valid_recall_macro));
    json_object_set_new(j, "valid_f1_macro", worker_real(m->valid_f1_macro));
    json_object_set_new(j, "valid_f1_weighted", worker_real(m->valid_f1_weighted));
  }
  return j;
}

json_t *worker_result_json(const ft_train_result *r, const char *csv) {
  json_t *j = json_object();
  json_object_set_new(j, "steps", json_integer(r->steps));
  json_object_set_new(j, "trained_tokens", json_integer(r->trained_tokens));
  json_object_set_new(j, "epochs_completed", json_integer(r->epochs_completed));
  json_object_set_new(j, "final_train_loss", worker_real(r->final_train_loss));
  json_object_set_new(j, "final_valid_loss", worker_real(r->final_valid_loss));
  json_object_set_new(j, "skipped_steps", json_integer(r->skipped_steps));
  json_object_set_new(j, "early_stopped", json_boolean(r->early_stopped));
  json_object_set_new(j, "best_step", r->best_step > 0 ? json_integer(r->best_step) : json_null());
  json_object_set_new(j, "best_metric",
                      r->best_step > 0 ? worker_real(r->best_metric) : json_null());
  json_object_set_new(j, "best_metric_name", json_string(r->best_metric_name));
  json_object_set_new(j, "test_metrics",
                      r->test_metrics ? json_incref(r->test_metrics) : json_null());
  char abs[4096];
  if (csv && csv[0] != '/' && realpath(csv, abs)) csv = abs;
  json_object_set_new(j, "result_csv", csv ? json_string(csv) : json_null());
  return j;
}

void worker_test_hooks(ft_train_opts *o) {
  const char *v = getenv("FT_TEST_INJECT_NAN");
  o->nan_from = o->nan_count = 0;
  if (!v || !*v) return;
  char *e;
  long from = strtol(v, &e, 10), count = 0;
  if (e == v || from <= 0) return;
  if (*e == ':') {
    const char *c = e + 1;
    count = strtol(c, &e, 10);
    if (e == c || count < 0) return;
  }
  if (*e) return;
  o->nan_from = from;
  o->nan_count = count;
}

/* <parent of ckpt_dir>/metrics.csv into buf; "" when it does not fit. */
static void csv_path_of(const char *ckpt_dir, char *buf, size_t cap) {
  size_t n = strlen(ckpt_dir);
  while (n > 1 && ckpt_dir[n - 1] == '/') n--;
  while (n > 0 && ckpt_dir[n - 1] != '/') n--;
  while (n > 1 && ckpt_dir[n - 1] == '/') n--;
  int w = n == 0 ? snprintf(buf, cap, "metrics.csv")
                 : snprintf(buf, cap, "%.*s/metrics.csv", (int)n, ckpt_dir);
  if (w < 0 || (size_t)w >= cap) buf[0] = 0;
}

typedef struct item {
  json_t *msg;
  struct item *next;
} item;

/* stop requests read by on_step */
enum { STOP_NONE = 0, STOP_PAUSE = 1, STOP_CANCEL = 2, STOP_LOST = 3 };

typedef struct {
  const worker_opts *o;
  uv_loop_t loop;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_connect_t creq;
  uv_timer_t hb;
  uv_async_t async;
  uv_signal_t sigterm, sigint;
  wire_decoder dec;
  char worker_id[128];
  int conn_open; /* the stream handle is open (not closing) */
  int welcomed;
  int exiting; /* shutting down: no new work */
  int exit_code;
  int heartbeat_ms;

  /* the job; set by the loop thread before the engine thread starts and read
   * by it; results written by it before it says it is done */
  int busy; /* engine thread started and not joined */
  uv_thread_t thread;
  char job_id[64];
  int attempt;
  json_t *job; /* keeps the path strings of topts alive */
  ft_spec spec;
  ft_train_opts topts;
  ft_train_result res;
  char csv[4096]; /* the metrics CSV: <job dir>/metrics.csv */
  ft_error err;
  int rc;
  atomic_int stop;

  uv_mutex_t mu; /* guards the queue and thread_done */
  item *head, *tail;
  int thread_done;
  char rbuf[65536];
} worker;

/* ---- sending ------------------------------------------------------------- */

static void conn_lost(worker *w, const char *why);

/* Sends msg (reference stolen). */
static void send_msg(worker *w, json_t *msg) {
  if (!msg) return;
  if (!w->conn_open) {
    json_decref(msg);
    return;
  }
  int rc = wire_write(&w->h.stream, msg);
  if (rc == FT_EIO)
    conn_lost(w, "write failed");
  else if (rc)
    FT_ERROR("msg=\"cannot encode a message\" err=%s", ft_err_code(rc));
}

/* A message about the current job: type, job_id, attempt, then the rest. */
static json_t *job_msg(wire_type t, const char *job_id, int attempt) {
  return json_pack("{s:s, s:s, s:i}", "type", wire_type_name(t), "job_id", job_id, "attempt",
                   attempt);
}

/* ---- the engine thread ---------------------------------------------------- */

static void push(worker *w, json_t *msg) {
  item *it = malloc(sizeof *it);
  if (!it) {
    json_decref(msg);
    return;
  }
  it->msg = msg;
  it->next = NULL;
  uv_mutex_lock(&w->mu);
  if (w->tail)
    w->tail->next = it;
  else
    w->head = it;
  w->tail = it;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}

static int hook_step(void *ud, const ft_step_metrics *m) {
  worker *w = ud;
  json_t *msg = job_msg(WIRE_METRICS, w->job_id, w->attempt);
  json_object_set_new(msg, "metrics", worker_metrics_json(m));
  push(w, msg);
  switch (atomic_load(&w->stop)) {
    case STOP_PAUSE:
      return FT_EPAUSED;
    case STOP_CANCEL:
    case STOP_LOST:
      return FT_ECANCELLED;
    default:
      return 0;
  }
}

static void hook_event(void *ud, const char *level, const char *message, const char *data_json) {
  worker *w = ud;
  json_t *msg = job_msg(WIRE_EVENT, w->job_id, w->attempt);
  json_object_set_new(msg, "level", json_string(level ? level : "info"));
  json_object_set_new(msg, "message", json_string(message ? message : ""));
  if (data_json) {
    json_error_t e;
    json_t *d = json_loads(data_json, 0, &e);
    if (d) json_object_set_new(msg, "data", d);
  }
  push(w, msg);
}

static void hook_checkpoint(void *ud, const ft_ckpt_info *ci) {
  worker *w = ud;
  json_t *msg = job_msg(WIRE_CHECKPOINT, w->job_id, w->attempt);
  json_object_set_new(msg, "step", json_integer(ci->step));
  json_object_set_new(msg, "path", json_string(ci->path));
  json_object_set_new(msg, "metrics", ci->m ? worker_metrics_json(ci->m) : json_object());
  json_t *kept = json_array();
  for (size_t i = 0; i < ci->n_kept; i++) json_array_append_new(kept, json_integer(ci->kept[i]));
  json_object_set_new(msg, "kept", kept);
  json_object_set_new(msg, "best", json_boolean(ci->best));
  push(w, msg);
}

static void train_thread(void *arg) {
  worker *w = arg;
  ft_train_hooks h = {w, hook_step, hook_event, hook_checkpoint};
  memset(&w->res, 0, sizeof w->res);
  memset(&w->err, 0, sizeof w->err);
  w->rc = train_run(&w->topts, &h, &w->res, &w->err);
  uv_mutex_lock(&w->mu);
  w->thread_done = 1;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}

/* ---- the loop thread ------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {}

static void on_stream_closed(uv_handle_t *h) {}

/* Closes everything once no engine thread runs, so uv_run returns. */
static void maybe_exit(worker *w) {
  if (!w->exiting || w->busy) return;
  if (w->conn_open) {
    w->conn_open = 0;
    uv_close(&w->h.handle, on_stream_closed);
  }
  if (!uv_is_closing((uv_handle_t *)&w->hb)) uv_close((uv_handle_t *)&w->hb, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&w->async))
    uv_close((uv_handle_t *)&w->async, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&w->sigterm))
    uv_close((uv_handle_t *)&w->sigterm, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&w->sigint))
    uv_close((uv_handle_t *)&w->sigint, on_handle_closed);
}

static void begin_exit(worker *w, int code) {
  if (!w->exiting) w->exit_code = code;
  w->exiting = 1;
  maybe_exit(w);
}

/* The daemon connection is gone: stop the job (unleased work is wasted) and
 * exit non-zero once the engine thread has returned. */
static void conn_lost(worker *w, const char *why) {
  if (w->conn_open) {
    w->conn_open = 0;
    uv_close(&w->h.handle, on_stream_closed);
  }
  if (w->exiting) return;
  FT_WARN("msg=\"daemon connection lost\" why=\"%s\"%s", why, w->busy ? " job_stopping=1" : "");
  atomic_store(&w->stop, STOP_LOST);
  begin_exit(w, 1);
}

static void on_shutdown_exit(uv_shutdown_t *r, int status) {
  worker *w = r->data;
  free(r);
  begin_exit(w, w->exit_code);
}

/* Exits after what was written has been flushed (--once). */
static void flush_and_exit(worker *w, int code) {
  w->exit_code = code;
  uv_shutdown_t *r = malloc(sizeof *r);
  if (r && w->conn_open) {
    r->data = w;
    if (uv_shutdown(r, &w->h.stream, on_shutdown_exit) == 0) return;
  }
  free(r);
  begin_exit(w, code);
}

static void send_claim(worker *w) {
  send_msg(w, json_pack("{s:s}", "type", wire_type_name(WIRE_CLAIM)));
}

static void job_failed_now(worker *w, const ft_error *e) {
  json_t *msg = job_msg(WIRE_FAILED, w->job_id, w->attempt);
  json_object_set_new(msg, "error",
                      json_pack("{s:s, s:s, s:s?}", "code", ft_err_code(e->code), "message",
                                e->message[0] ? e->message : ft_err_message(e->code), "param",
                                e->param[0] ? e->param : NULL));
  send_msg(w, msg);
}

static const char *path_of(const json_t *paths, const char *key) {
  return json_string_value(json_object_get(paths, key));
}

static void after_job(worker *w);

static void start_job(worker *w, json_t *job) {
  const char *id = json_string_value(json_object_get(job, "id"));
  json_t *jat = json_object_get(job, "attempt");
  if (!id || !json_is_integer(jat)) {
    FT_ERROR("msg=\"job message without id or attempt\"");
    return;
  }
  snprintf(w->job_id, sizeof w->job_id, "%s", id);
  w->attempt = (int)json_integer_value(jat);
  atomic_store(&w->stop, STOP_NONE);
  json_t *paths = json_object_get(job, "paths");
  ft_error e = {0};
  int rc = spec_parse(json_object_get(job, "spec"), &w->spec, &e);
  if (!rc && (!path_of(paths, "model_dir") || !path_of(paths, "train_path") ||
              !path_of(paths, "out_dir") || !path_of(paths, "ckpt_dir")))
    rc = ft_error_set(&e, FT_EPROTO, "paths", "the job message has no paths");
  if (rc) {
    if (!e.code) ft_error_set(&e, rc, NULL, NULL);
    FT_ERROR("msg=\"job refused\" job=%s err=\"%s\"", id, e.message);
    job_failed_now(w, &e);
    send_claim(w);
    return;
  }
  w->job = json_incref(job);
  memset(&w->topts, 0, sizeof w->topts);
  w->topts.spec = &w->spec;
  w->topts.model_dir = path_of(paths, "model_dir");
  w->topts.train_path = path_of(paths, "train_path");
  w->topts.valid_path = path_of(paths, "valid_path");
  w->topts.out_dir = path_of(paths, "out_dir");
  w->topts.ckpt_dir = path_of(paths, "ckpt_dir");
  w->topts.resume_from = path_of(paths, "resume_from");
  w->topts.test_path = path_of(paths, "test_path");
  csv_path_of(w->topts.ckpt_dir, w->csv, sizeof w->csv);
  w->topts.metrics_csv = w->csv[0] ? w->csv : NULL;
  worker_test_hooks(&w->topts);
  w->thread_done = 0;
  rc = uv_thread_create(&w->thread, train_thread, w);
  if (rc) {
    ft_error_set(&e, FT_EINTERNAL, NULL, "cannot start the training thread: %s", uv_strerror(rc));
    job_failed_now(w, &e);
    json_decref(w->job);
    w->job = NULL;
    send_claim(w);
    return;
  }
  w->busy = 1;
  FT_INFO("msg=\"job started\" job=%s attempt=%d resume=%s", w->job_id, w->attempt,
          w->topts.resume_from ? w->topts.resume_from : "-");
}

/* The engine thread returned: join it, report how the attempt ended (unless
 * the lease is gone), and claim the next job. */
static void after_job(worker *w) {
  uv_thread_join(&w->thread);
  w->busy = 0;
  int stop = atomic_load(&w->stop);
  int rc = w->rc;
  const ft_train_result *r = &w->res;
  json_t *msg = NULL;
  if (stop == STOP_LOST) {
    FT_INFO("msg=\"job stopped: lease lost\" job=%s attempt=%d", w->job_id, w->attempt);
  } else if (rc == 0 && r->stopped == 0) {
    msg = job_msg(WIRE_DONE, w->job_id, w->attempt);
    json_object_set_new(msg, "result", worker_result_json(r, w->topts.metrics_csv));
    FT_INFO("msg=\"job done\" job=%s steps=%ld", w->job_id, r->steps);
  } else if (rc == FT_EPAUSED || (rc == 0 && r->stopped == FT_EPAUSED)) {
    msg = job_msg(WIRE_PAUSED, w->job_id, w->attempt);
    json_object_set_new(msg, "step", json_integer(r->steps));
    FT_INFO("msg=\"job paused\" job=%s step=%ld", w->job_id, r->steps);
  } else if (rc == FT_ECANCELLED || (rc == 0 && r->stopped == FT_ECANCELLED)) {
    msg = job_msg(WIRE_CANCELLED, w->job_id, w->attempt);
    FT_INFO("msg=\"job cancelled\" job=%s", w->job_id);
  } else {
    ft_error e = w->err;
    if (!e.code) ft_error_set(&e, rc ? rc : FT_EINTERNAL, NULL, NULL);
    if (!e.message[0]) snprintf(e.message, sizeof e.message, "%s", ft_err_message(e.code));
    FT_WARN("msg=\"job failed\" job=%s code=%s err=\"%s\"", w->job_id, ft_err_code(e.code),
            e.message);
    job_failed_now(w, &e);
  }
  send_msg(w, msg);
  json_decref(w->res.test_metrics);
  w->res.test_metrics = NULL;
  json_decref(w->job);
  w->job = NULL;
  w->job_id[0] = 0;
  if (w->exiting) {
    maybe_exit(w);
  } else if (w->o->once) {
    flush_and_exit(w, 0);
  } else {
    send_claim(w);
  }
}

static void on_async(uv_async_t *a) {
  worker *w = a->data;
  uv_mutex_lock(&w->mu);
  item *it = w->head;
  w->head = w->tail = NULL;
  int done = w->thread_done;
  uv_mutex_unlock(&w->mu);
  int lost = atomic_load(&w->stop) == STOP_LOST;
  while (it) {
    item *next = it->next;
    if (lost)
      json_decref(it->msg);
    else
      send_msg(w, it->msg);
    free(it);
    it = next;
  }
  if (done && w->busy) after_job(w);
}

static void on_heartbeat(uv_timer_t *t) {
  worker *w = t->data;
  if (w->busy && atomic_load(&w->stop) != STOP_LOST)
    send_msg(w, job_msg(WIRE_HEARTBEAT, w->job_id, w->attempt));
}

static int about_current(worker *w, json_t *msg) {
  const char *id = json_string_value(json_object_get(msg, "job_id"));
  json_t *at = json_object_get(msg, "attempt");
  return w->busy && id && !strcmp(id, w->job_id) &&
         (!json_is_integer(at) || json_integer_value(at) == w->attempt);
}

static void on_welcome(worker *w, json_t *msg) {
  json_t *hb = json_object_get(msg, "heartbeat_ms");
  if (json_is_integer(hb) && json_integer_value(hb) >= 10 && json_integer_value(hb) <= 3600000)
    w->heartbeat_ms = (int)json_integer_value(hb);
  w->welcomed = 1;
  uv_timer_start(&w->hb, on_heartbeat, (uint64_t)w->heartbeat_ms, (uint64_t)w->heartbeat_ms);
  FT_INFO("msg=\"connected to the daemon\" worker=%s heartbeat_ms=%d", w->worker_id,
          w->heartbeat_ms);
}

static void on_job(worker *w, json_t *msg) {
  if (w->busy || w->exiting) {
    FT_WARN("msg=\"job offered while busy; ignored\"");
    return;
  }
  json_t *job = json_object_get(msg, "job");
  if (!json_is_object(job)) {
    FT_ERROR("msg=\"job message without a job\"");
    return;
  }
  start_job(w, job);
}

/* Dispatches one message from the daemon. A type the worker does not know
 * means the two speak different protocols: the connection is dropped (the
 * job stops, as when the daemon goes away) rather than the message ignored. */
static void on_message(worker *w, json_t *msg) {
  switch (wire_type_of(msg, WIRE_FROM_DAEMON)) {
    case WIRE_WELCOME:
      on_welcome(w, msg);
      break;
    case WIRE_JOB:
      on_job(w, msg);
      break;
    case WIRE_CANCEL:
      if (about_current(w, msg)) {
        int expect = atomic_load(&w->stop);
        if (expect != STOP_LOST) atomic_store(&w->stop, STOP_CANCEL);
        FT_INFO("msg=\"cancel requested\" job=%s", w->job_id);
      }
      break;
    case WIRE_PAUSE:
      if (about_current(w, msg)) {
        int expect = STOP_NONE;
        atomic_compare_exchange_strong(&w->stop, &expect, STOP_PAUSE);
        FT_INFO("msg=\"pause requested\" job=%s", w->job_id);
      }
      break;
    case WIRE_LEASE_LOST:
      if (about_current(w, msg)) {
        atomic_store(&w->stop, STOP_LOST);
        FT_WARN("msg=\"lease lost; stopping the job\" job=%s attempt=%d", w->job_id, w->attempt);
      }
      break;
    case WIRE_ERROR: {
      json_t *e = json_object_get(msg, "error");
      const char *code = json_string_value(json_object_get(e, "code"));
      const char *text = json_string_value(json_object_get(e, "message"));
      FT_ERROR("msg=\"the daemon refused us\" code=%s err=\"%s\"", code ? code : "?",
               text ? text : "?");
      break;
    }
    default: {
      const char *type = json_string_value(json_object_get(msg, "type"));
      char t[64];
      FT_ERROR("msg=\"protocol error: unknown message type from the daemon\" type=\"%s\"",
               ft_log_esc(t, sizeof t, type ? type : ""));
      conn_lost(w, "protocol error: unknown message type");
      break;
    }
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  worker *w = h->data;
  *b = uv_buf_init(w->rbuf, sizeof w->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  worker *w = s->data;
  if (nread < 0) {
    conn_lost(w, nread == UV_EOF ? "closed by the daemon" : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  if (wire_feed(&w->dec, b->base, (size_t)nread)) {
    conn_lost(w, "oversized frame from the daemon");
    return;
  }
  while (w->conn_open) {
    json_t *msg = NULL;
    ft_error e = {0};
    int rc = wire_next(&w->dec, &msg, &e);
    if (rc) {
      conn_lost(w, e.message);
      return;
    }
    if (!msg) break;
    on_message(w, msg);
    json_decref(msg);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  worker *w = req->data;
  if (status < 0) {
    FT_ERROR("msg=\"cannot connect to the daemon\" addr=%s err=\"%s\"", w->o->connect,
             uv_strerror(status));
    conn_lost(w, "connect failed");
    return;
  }
  if (uv_read_start(&w->h.stream, on_alloc, on_read)) {
    conn_lost(w, "read failed");
    return;
  }
  json_t *hello = json_pack("{s:s, s:s, s:i}", "type", wire_type_name(WIRE_HELLO), "worker_id",
                            w->worker_id, "pid", (int)getpid());
  if (w->o->token) json_object_set_new(hello, "token", json_string(w->o->token));
  send_msg(w, hello);
  send_claim(w);
}

static void on_signal(uv_signal_t *s, int sig) {
  worker *w = s->data;
  FT_INFO("msg=\"signal: stopping\" signal=%d%s", sig, w->busy ? " job_stopping=1" : "");
  /* the daemon sees the connection close and requeues the job at once */
  atomic_store(&w->stop, STOP_LOST);
  if (w->conn_open) {
    w->conn_open = 0;
    uv_close(&w->h.handle, on_stream_closed);
  }
  begin_exit(w, 0);
}

static int start_connect(worker *w) {
  const char *a = w->o->connect;
  w->creq.data = w;
  if (!strncmp(a, "unix:", 5)) {
    int rc = uv_pipe_init(&w->loop, &w->h.pipe, 0);
    if (rc) return rc;
    w->conn_open = 1;
    w->h.handle.data = w;
    uv_pipe_connect(&w->creq, &w->h.pipe, a + 5, on_connect);
    return 0;
  }
  if (!strncmp(a, "tcp:", 4)) {
    const char *hp = a + 4, *colon = strrchr(hp, ':');
    char host[256];
    if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof host) return UV_EINVAL;
    size_t hl = (size_t)(colon - hp);
    memcpy(host, hp, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
      memmove(host, host + 1, hl - 2);
      host[hl - 2] = 0;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g || !ai) {
      FT_ERROR("msg=\"cannot resolve\" addr=%s err=\"%s\"", a, gai_strerror(g));
      return UV_EINVAL;
    }
    int rc = uv_tcp_init(&w->loop, &w->h.tcp);
    if (!rc) {
      w->conn_open = 1;
      w->h.handle.data = w;
      uv_tcp_nodelay(&w->h.tcp, 1);
      rc = uv_tcp_connect(&w->creq, &w->h.tcp, ai->ai_addr, on_connect);
    }
    freeaddrinfo(ai);
    return rc;
  }
  return UV_EINVAL;
}

int worker_run(const worker_opts *o) {
  worker *w = calloc(1, sizeof *w);
  if (!w) return 1;
  w->o = o;
  w->heartbeat_ms = 2000;
  if (o->id && *o->id) {
    snprintf(w->worker_id, sizeof w->worker_id, "%s", o->id);
  } else {
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(w->worker_id, sizeof w->worker_id, "%s-%d", host, (int)getpid());
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&w->loop);
  uv_mutex_init(&w->mu);
  wire_decoder_init(&w->dec);
  uv_timer_init(&w->loop, &w->hb);
  w->hb.data = w;
  uv_async_init(&w->loop, &w->async, on_async);
  w->async.data = w;
  uv_signal_init(&w->loop, &w->sigterm);
  w->sigterm.data = w;
  uv_signal_start_oneshot(&w->sigterm, on_signal, SIGTERM);
  uv_signal_init(&w->loop, &w->sigint);
  w->sigint.data = w;
  uv_signal_start_oneshot(&w->sigint, on_signal, SIGINT);
  int rc = start_connect(w);
  if (rc) {
    FT_ERROR("msg=\"bad --connect address\" addr=%s err=\"%s\"", o->connect, uv_strerror(rc));
    begin_exit(w, 2);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  int code = w->exit_code;
  if (uv_loop_close(&w->loop)) FT_WARN("msg=\"loop not empty at exit\"");
  wire_decoder_free(&w->dec);
  uv_mutex_destroy(&w->mu);
  for (item *it = w->head; it;) {
    item *next = it->next;
    json_decref(it->msg);
    free(it);
    it = next;
  }
  free(w);
  return code;
}
