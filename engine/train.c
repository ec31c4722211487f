/* The training loop (see train.h). One straight line: load the base model's
 * config and tokenizer, the data, make the model and optimizer, resume if
 * asked, then per optimizer step: grad_accum micro-batches of forward and
 * backward, clip, schedule, AdamW, report; evaluate, checkpoint and stop as
 * the spec and the hooks say; finally write the model directory.
 *
 * Determinism: everything a step depends on is a function of the state in a
 * checkpoint (weights, moments, step, data position, the dropout seed
 * stream), so a run resumed from ckpt-N gives bit-identical losses to one
 * that never stopped. The micro-batches of a step are scaled by 1/(number of
 * micro-batches in the step): grad_accum, except the last step of an epoch
 * when the batches do not divide evenly. */
#include "train.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt.h"
#include "batcher.h"
#include "data.h"
#include "hfdir.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "tok.h"

#define EVAL_MAX_EXAMPLES 64
#define NONFINITE_MAX_RUN 5

typedef struct {
  const ft_train_opts *o;
  const ft_train_hooks *h;
  ft_spec s; /* resolved against the model (max_seq_len clamped) */
  ft_config cfg;
  tok *tk;
  ft_dataset *train, *valid;
  ft_model *m;
  optim *opt;
  ft_batcher *tb, *vb;
  long n_batches; /* per epoch */
  long steps_per_epoch, total, warmup;
  ft_ckpt_state st;
  ft_step_metrics last; /* metrics of the latest step */
} run;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void event(run *r, const char *level, const char *data_json, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(run *r, const char *level, const char *data_json, const char *fmt, ...) {
  if (!r->h || !r->h->on_event) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->h->on_event(r->h->ud, level, msg, data_json);
}

static int mkdir_p(const char *dir, ft_error *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
    return ft_error_set(err, FT_EIO, NULL, "path too long: %s", dir);
  for (char *p = buf + 1;; p++) {
    if (*p && *p != '/') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return ft_error_set(err, FT_EIO, NULL, "cannot create %s: %s", buf, strerror(errno));
    *p = c;
    if (!c) break;
  }
  return 0;
}

/* A hash of everything that fixes the order and shape of the steps, so a
 * checkpoint of another job setup is refused rather than silently misused. */
static uint64_t fingerprint(const run *r) {
  const ft_spec *s = &r->s;
  uint64_t v[] = {(uint64_t)r->train->n,
                  (uint64_t)s->batch_size,
                  (uint64_t)s->grad_accum,
                  (uint64_t)s->n_epochs,
                  s->seed,
                  (uint64_t)s->task,
                  (uint64_t)s->method,
                  (uint64_t)optim_numel(r->opt),
                  (uint64_t)r->train->off[r->train->n]};
  uint64_t h = 0x6674636B70740001ull;
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) h = rng_mix(h, v[i]);
  return h;
}

/* Mean loss and token (row) accuracy over the first EVAL_MAX_EXAMPLES
 * validation examples. */
static int evaluate(run *r, float *loss, float *acc) {
  double sum = 0.0;
  long ntr = 0, ncor = 0;
  for (long i = 0; i < batcher_num_batches(r->vb); i++) {
    ft_batch b;
    float l;
    long t, c;
    batcher_get(r->vb, 0, i, &b, NULL);
    int rc = model_forward(r->m, &b, 0, 0, &l);
    if (rc) return rc;
    model_last_counts(r->m, &t, &c);
    sum += (double)l * (double)t;
    ntr += t;
    ncor += c;
  }
  *loss = ntr ? (float)(sum / (double)ntr) : NAN;
  *acc = ntr ? (float)((double)ncor / (double)ntr) : NAN;
  return 0;
}

static int checkpoint(run *r, ft_error *err) {
  if (!r->o->ckpt_dir) return 0;
  char path[PATH_MAX];
  int rc = ckpt_save(r->o->ckpt_dir, &r->st, r->opt, path, sizeof path, err);
  if (rc) return rc;
  if (r->h && r->h->on_checkpoint) r->h->on_checkpoint(r->h->ud, r->st.step, path, &r->last);
  return ckpt_prune(r->o->ckpt_dir, r->s.ckpt_keep, err);
}

/* Loads everything and makes the model, optimizer and batchers. */
static int setup(run *r, ft_error *err) {
  const ft_train_opts *o = r->o;
  int rc;
  if ((rc = hf_config_load(&r->cfg, o->model_dir, err))) return rc;
  if ((rc = spec_check_model(&r->s, &r->cfg, err))) return rc;
  if ((rc = tok_load(&r->tk, o->model_dir, err))) return rc;

  ft_data_opts dopt = {.task = r->s.task,
                       .arch = r->cfg.arch,
                       .max_seq_len = r->s.max_seq_len,
                       .train_on_inputs = r->s.train_on_inputs,
                       .err_code = FT_ETRAIN_FILE};
  if ((rc = data_load(&r->train, o->train_path, r->tk, &dopt, err))) return rc;
  if (o->valid_path) {
    dopt.err_code = FT_EVALID_FILE;
    dopt.labels = r->s.task == FT_TASK_CLASSIFY ? r->train : NULL;
    if ((rc = data_load(&r->valid, o->valid_path, r->tk, &dopt, err))) return rc;
  }
  if (r->s.task == FT_TASK_CLASSIFY) {
    r->cfg.num_labels = r->train->num_labels;
    memset(r->cfg.id2label, 0, sizeof r->cfg.id2label);
    for (int i = 0; i < r->train->num_labels; i++)
      memcpy(r->cfg.id2label[i], r->train->label_names[i], sizeof r->cfg.id2label[i]);
  } else {
    r->cfg.num_labels = 0;
  }

  int T = r->train->max_len;
  if (r->valid && r->valid->max_len > T) T = r->valid->max_len;
  if (T > r->s.max_seq_len) T = r->s.max_seq_len;
  if (T > r->cfg.max_position) T = r->cfg.max_position;
  int B = r->s.batch_size;
  if ((rc = model_new(&r->m, &r->cfg, r->s.task, r->s.method, &r->s.lora, B, T, 1, err))) return rc;
  /* LoRA and a fresh head get their initial values first; the base weights
   * (and a head the checkpoint has) then overwrite what they cover. */
  model_init_trainable(r->m, r->s.seed);
  int head_missing = 0;
  if ((rc = hf_load_weights(r->m, o->model_dir, &head_missing, err))) return rc;
  if (r->s.task == FT_TASK_CLASSIFY && head_missing)
    event(r, "info", NULL, "the base model has no classification head: a new one is trained");

  if ((rc = optim_new(&r->opt, r->m, r->s.weight_decay, err))) return rc;
  int32_t pad = tok_pad_id(r->tk);
  if (pad < 0) pad = tok_eos_id(r->tk);
  if (pad < 0 || pad >= r->cfg.vocab_size) pad = 0;
  ft_batcher_opts bo = {.B = B, .T = T, .pad_id = pad, .seed = r->s.seed, .shuffle = 1};
  if ((rc = batcher_new(&r->tb, r->train, &bo, err))) return rc;
  ft_batcher_opts vo = {.B = B, .T = T, .pad_id = pad, .limit = EVAL_MAX_EXAMPLES};
  if (r->valid && (rc = batcher_new(&r->vb, r->valid, &vo, err))) return rc;

  r->n_batches = batcher_num_batches(r->tb);
  r->steps_per_epoch = (r->n_batches + r->s.grad_accum - 1) / r->s.grad_accum;
  r->total = (long)r->s.n_epochs * r->steps_per_epoch;
  r->warmup = sched_warmup_steps(r->s.warmup_ratio, r->total);

  memset(&r->st, 0, sizeof r->st);
  r->st.total_steps = r->total;
  r->st.rng = rng_mix(r->s.seed, 0x64726f706f7574ull); /* "dropout" */
  r->st.best_metric = INFINITY;
  r->st.last_train_loss = NAN;
  r->st.last_valid_loss = NAN;
  r->st.fingerprint = fingerprint(r);
  if (o->resume_from) {
    ft_ckpt_state st;
    if ((rc = ckpt_read_state(o->resume_from, &st, err))) return rc;
    if (st.fingerprint != r->st.fingerprint || st.total_steps != r->total)
      return ft_error_set(err, FT_EINVALID, "resume_from",
                          "checkpoint %s was made for another job setup (data, batch size, "
                          "epochs, seed or method differ)",
                          o->resume_from);
    if ((rc = ckpt_load(o->resume_from, &r->st, r->opt, err))) return rc;
    event(r, "info", NULL, "resumed from %s at step %ld", o->resume_from, r->st.step);
  }
  return 0;
}

/* One optimizer step over micro-batches [first, first+ng) of the current
 * epoch. Fills r->last; *skipped is set for a non-finite loss or norm. */
static int one_step(run *r, long first, long ng, int *skipped) {
  double t0 = now_s();
  double sum = 0.0;
  long ntr = 0, ncor = 0, ntok = 0;
  int finite = 1;
  float scale = 1.0f / (float)ng;
  for (long i = first; i < first + ng; i++) {
    ft_batch b;
    long nt, t, c;
    float loss;
    batcher_get(r->tb, r->st.epoch, i, &b, &nt);
    r->st.rng = rng_mix(r->st.rng, 1); /* one dropout seed per micro-batch */
    int rc = model_forward(r->m, &b, 1, r->st.rng, &loss);
    if (rc) return rc;
    if ((rc = model_backward(r->m, scale))) return rc;
    model_last_counts(r->m, &t, &c);
    if (!isfinite(loss)) finite = 0;
    sum += (double)loss * (double)t;
    ntr += t;
    ncor += c;
    ntok += nt;
  }
  float norm = optim_clip_grad_norm(r->opt, r->s.max_grad_norm);
  if (!isfinite(norm)) finite = 0;
  float lr = sched_lr(r->s.lr_scheduler, r->s.learning_rate, r->st.step, r->total, r->warmup);
  *skipped = !finite;
  if (finite) optim_step(r->opt, lr);
  model_zero_grad(r->m);
  double dt = now_s() - t0;

  r->st.step++;
  r->st.trained_tokens += ntok;
  ft_step_metrics *mt = &r->last;
  memset(mt, 0, sizeof *mt);
  mt->step = r->st.step;
  mt->total_steps = r->total;
  mt->epoch = (int)r->st.epoch;
  mt->train_loss = ntr ? (float)(sum / (double)ntr) : NAN;
  mt->train_mean_token_accuracy = ntr ? (float)((double)ncor / (double)ntr) : NAN;
  mt->learning_rate = lr;
  mt->grad_norm = norm;
  mt->tokens_per_second = dt > 0 ? (float)((double)ntok / dt) : 0.0f;
  mt->trained_tokens = r->st.trained_tokens;
  mt->valid_loss = mt->valid_mean_token_accuracy = NAN;
  if (finite) r->st.last_train_loss = mt->train_loss;
  return 0;
}

static int write_output(run *r, ft_error *err) {
  const ft_train_opts *o = r->o;
  int rc;
  if ((rc = mkdir_p(o->out_dir, err))) return rc;
  if (r->s.method == FT_METHOD_LORA) {
    char adir[PATH_MAX];
    if (snprintf(adir, sizeof adir, "%s/adapter", o->out_dir) >= (int)sizeof adir)
      return ft_error_set(err, FT_EIO, NULL, "path too long: %s", o->out_dir);
    if ((rc = mkdir_p(adir, err))) return rc;
    if ((rc = hf_save_peft(r->m, &r->s.lora, r->s.model, adir, err))) return rc;
    model_merge_lora(r->m);
  }
  return hf_save_model(r->m, r->s.task, o->model_dir, o->out_dir, err);
}

int train_run(const ft_train_opts *o, const ft_train_hooks *h, ft_train_result *res,
              ft_error *err) {
  run R = {0}, *r = &R;
  ft_train_result res0 = {0};
  if (!res) res = &res0;
  memset(res, 0, sizeof *res);
  res->final_train_loss = NAN;
  res->final_valid_loss = NAN;
  if (!o || !o->spec || !o->model_dir || !o->train_path || !o->out_dir)
    return ft_error_set(err, FT_EINVALID, NULL,
                        "train_run: spec, model_dir, train_path and "
                        "out_dir are required");
  r->o = o;
  r->h = h;
  r->s = *o->spec;
  int rc = setup(r, err);
  if (rc) goto out;
  {
    char data[256];
    snprintf(data, sizeof data,
             "{\"examples\":%zu,\"dropped\":%ld,\"truncated\":%ld,\"total_steps\":%ld,"
             "\"warmup_steps\":%ld,\"trainable_parameters\":%zu}",
             r->train->n, r->train->n_dropped, r->train->n_truncated, r->total, r->warmup,
             optim_numel(r->opt));
    event(r, "info", data, "training started: %zu examples, %ld steps", r->train->n, r->total);
  }

  int early_stop = 0;
  while (r->st.step < r->total && !early_stop) {
    long first = r->st.batch_index;
    long ng = r->n_batches - first < r->s.grad_accum ? r->n_batches - first : r->s.grad_accum;
    int skipped = 0;
    if ((rc = one_step(r, first, ng, &skipped))) {
      ft_error_set(err, rc, NULL, "step %ld failed: %s", r->st.step + 1, ft_err_message(rc));
      goto out;
    }
    int epoch_end = first + ng >= r->n_batches;
    r->st.batch_index = epoch_end ? 0 : first + ng;
    if (epoch_end) r->st.epoch++;
    if (skipped) {
      r->st.skipped_steps++;
      if (++r->st.nonfinite_run >= NONFINITE_MAX_RUN) {
        rc = ft_error_set(err, FT_ENONFINITE, NULL,
                          "the loss or gradient was not finite %d steps in a row (at step %ld)",
                          NONFINITE_MAX_RUN, r->st.step);
        goto out;
      }
      event(r, "warn", NULL, "step %ld skipped: the loss or gradient is not finite", r->st.step);
    } else {
      r->st.nonfinite_run = 0;
    }

    int last_step = r->st.step == r->total;
    if (r->vb &&
        ((r->s.eval_every_steps > 0 && r->st.step % r->s.eval_every_steps == 0) || last_step)) {
      float vl, va;
      if ((rc = evaluate(r, &vl, &va))) {
        ft_error_set(err, rc, NULL, "evaluation at step %ld failed", r->st.step);
        goto out;
      }
      r->last.has_valid = 1;
      r->last.valid_loss = vl;
      r->last.valid_mean_token_accuracy = va;
      r->st.last_valid_loss = vl;
      if (vl < r->st.best_metric - r->s.es_min_delta) {
        r->st.best_metric = vl;
        r->st.bad_evals = 0;
      } else if (++r->st.bad_evals >= r->s.es_patience && r->s.es_patience > 0 && !last_step) {
        early_stop = 1;
      }
    }

    int hook = 0;
    if (!skipped && r->h && r->h->on_step) hook = r->h->on_step(r->h->ud, &r->last);
    if (hook && hook != FT_EPAUSED) {
      res->stopped = FT_ECANCELLED;
      rc = ft_error_set(err, FT_ECANCELLED, NULL, "cancelled at step %ld", r->st.step);
      goto out;
    }
    int pause = hook == FT_EPAUSED || (o->max_steps > 0 && r->st.step >= o->max_steps);
    if (epoch_end) event(r, "info", NULL, "epoch %ld done", r->st.epoch);
    if (pause || epoch_end || early_stop ||
        (r->s.ckpt_every_steps > 0 && r->st.step % r->s.ckpt_every_steps == 0)) {
      if ((rc = checkpoint(r, err))) goto out;
    }
    if (early_stop)
      event(r, "info", NULL, "early stopping at step %ld: no improvement in %ld evaluations",
            r->st.step, r->st.bad_evals);
    if (pause && !(last_step || early_stop)) {
      res->stopped = FT_EPAUSED;
      rc = ft_error_set(err, FT_EPAUSED, NULL, "paused at step %ld", r->st.step);
      goto out;
    }
  }

  if ((rc = write_output(r, err))) goto out;
  event(r, "info", NULL, "model written to %s", o->out_dir);
out:
  if (r->opt) {
    res->steps = r->st.step;
    res->trained_tokens = r->st.trained_tokens;
    res->final_train_loss = (float)r->st.last_train_loss;
    res->final_valid_loss = (float)r->st.last_valid_loss;
  }
  batcher_free(r->tb);
  batcher_free(r->vb);
  optim_free(r->opt);
  if (r->m) model_free(r->m);
  data_free(r->train);
  data_free(r->valid);
  if (r->tk) tok_free(r->tk);
  return rc;
}
