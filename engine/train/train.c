/* The training loop (see train.h). One straight line: load the base model's
 * config and tokenizer, prepare the data (data_prepare: the same split the
 * daemon validated), make the model and optimizer, resume if asked, then per
 * optimizer step: grad_accum micro-batches of forward and backward, clip,
 * schedule, AdamW, report; evaluate, checkpoint and stop as the spec and the
 * hooks say; finally promote the best checkpoint (early stopping), evaluate
 * the output model on the validation and test sets and write it.
 *
 * Evaluations: every eval_every_steps a periodic one over the first
 * eval_samples validation examples (valid_*), at every epoch end one over all
 * of them (full_valid_*). The early-stopping metric is read from the periodic
 * evaluations, or from the epoch-end ones when there are no periodic ones;
 * with early stopping on, an evaluation that improves it writes a checkpoint,
 * so the best one is always on disk (kept by pruning besides the last keep).
 *
 * Determinism: everything a step depends on is a function of the state in a
 * checkpoint (weights, moments, step, data position, the dropout seed
 * stream, best metric and step), so a run resumed from ckpt-N gives
 * bit-identical losses, evaluations and CSV rows to one that never stopped.
 * The micro-batches of a step are scaled by 1/(number of micro-batches in the
 * step): grad_accum, except the last step of an epoch when the batches do not
 * divide evenly. */
#include "train/train.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/batcher.h"
#include "tok/chat.h"
#include "formats/ckpt.h"
#include "data/data.h"
#include "formats/hfdir.h"
#include "ft_fs.h"
#include "train/metrics.h"
#include "nn/model.h"
#include "train/optim.h"
#include "nn/rng.h"
#include "tok/tok.h"

#define NONFINITE_MAX_RUN 5

typedef struct {
  const ft_train_opts *o;
  const ft_train_hooks *h;
  ft_spec s; /* resolved against the model (max_seq_len clamped) */
  ft_config cfg;
  tok *tk;
  ft_data_sets ds;                  /* train, valid, test (data_prepare) */
  ft_dataset *train, *valid, *test; /* = ds's */
  ft_model *m;
  optim *opt;
  ft_batcher *tb;      /* training */
  ft_batcher *vb, *fb; /* validation: eval_samples, all */
  ft_batcher *xb;      /* test */
  ft_cls_metrics *cm;  /* classification */
  int lower_better;    /* direction of the early-stopping metric */
  int es_periodic;     /* the metric comes from the periodic evaluations */
  int promote;         /* early stopping: the best checkpoint becomes the model */
  long n_batches;      /* per epoch */
  long steps_per_epoch, total, warmup;
  ft_ckpt_state st;
  ft_step_metrics last; /* metrics of the latest step */
  json_t *info;         /* trainer_state.json extras */
  FILE *csv;
  long last_full_step; /* step of the latest whole-validation evaluation */
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

void train_data_job(ft_data_job *j, const ft_spec *s, const ft_config *cfg, ft_chat_family chat,
                    const char *train_path, const char *valid_path, const char *test_path) {
  memset(j, 0, sizeof *j);
  j->train_path = train_path;
  j->valid_path = valid_path;
  j->test_path = test_path;
  j->valid_split = valid_path ? 0.0f : s->validation_split;
  j->test_split = test_path ? 0.0f : s->test_split;
  j->seed = s->seed;
  j->min_examples = 10;
  j->opts.task = s->task;
  j->opts.add_bos = cfg->arch && cfg->arch->add_bos;
  j->opts.max_seq_len = s->max_seq_len < cfg->max_position ? s->max_seq_len : cfg->max_position;
  j->opts.train_on_inputs = s->train_on_inputs;
  j->opts.err_code = FT_ETRAIN_FILE;
  j->opts.chat = chat;
  j->opts.drop_long = s->drop_long;
  j->opts.no_clean = !s->clean;
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
  if (s->token_budget > 0) h = rng_mix(h, (uint64_t)s->token_budget ^ 0x746F6B656E73ull);
  return h;
}

/* The steps of a token budget (spec.token_budget): the training tokens of an
 * epoch are the same in every epoch (the same examples, only reordered), so
 * the budget is k whole epochs plus the steps of epoch k until the trained
 * tokens reach it. A function of the data and the seed only, so a resumed
 * run plans the same steps. */
static int budget_steps(run *r, long *total, ft_error *err) {
  long long per_epoch = 0, budget = r->s.token_budget, cum = 0;
  ft_batch b;
  long nt;
  int rc;
  for (long i = 0; i < r->n_batches; i++) {
    if ((rc = batcher_get(r->tb, 0, i, &b, &nt))) return ft_error_set(err, rc, NULL, "batching");
    per_epoch += nt;
  }
  if (per_epoch <= 0)
    return ft_error_set(err, FT_ETRAIN_FILE, "training_file", "the training data has no tokens");
  long long k = (budget - 1) / per_epoch, rem = budget - k * per_epoch, steps = 0;
  for (long first = 0; first < r->n_batches && cum < rem; first += r->s.grad_accum, steps++)
    for (long i = first; i < first + r->s.grad_accum && i < r->n_batches; i++) {
      if ((rc = batcher_get(r->tb, (long)k, i, &b, &nt)))
        return ft_error_set(err, rc, NULL, "batching");
      cum += nt;
    }
  if (k > (1LL << 40) / (r->steps_per_epoch + 1))
    return ft_error_set(err, FT_ERANGE, "token_budget", "token_budget is too large for this data");
  *total = (long)(k * r->steps_per_epoch + steps);
  return 0;
}

/* Mean loss and token (row) accuracy over the batches of bt; for
 * classification also the confusion counts into r->cm (finished). */
static int evaluate(run *r, ft_batcher *bt, float *loss, float *acc) {
  double sum = 0.0;
  long ntr = 0, ncor = 0;
  if (r->cm) metrics_cls_reset(r->cm);
  for (long i = 0; i < batcher_num_batches(bt); i++) {
    ft_batch b;
    float l;
    long t, c;
    int rc = batcher_get(bt, 0, i, &b, NULL);
    if (!rc) rc = model_forward(r->m, &b, 0, 0, &l);
    if (rc) return rc;
    model_last_counts(r->m, &t, &c);
    sum += (double)l * (double)t;
    ntr += t;
    ncor += c;
    if (r->cm && b.labels) metrics_cls_add_logits(r->cm, model_logits(r->m), b.labels, b.B);
  }
  if (r->cm) metrics_cls_finish(r->cm);
  *loss = ntr ? (float)(sum / (double)ntr) : NAN;
  *acc = ntr ? (float)((double)ncor / (double)ntr) : NAN;
  return 0;
}

/* ---- the metrics CSV ---- */

static const char CSV_HEADER[] =
    "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,"
    "full_valid_mean_token_accuracy,valid_accuracy,valid_f1_macro,learning_rate,grad_norm,"
    "trained_tokens,epoch\n";

static void csv_num(FILE *f, int has, double x) {
  if (has && isfinite(x))
    fprintf(f, ",%.9g", x);
  else
    fputc(',', f);
}

static void csv_row(run *r, const ft_step_metrics *m) {
  if (!r->csv) return;
  FILE *f = r->csv;
  fprintf(f, "%ld", m->step);
  csv_num(f, 1, m->train_loss);
  csv_num(f, 1, m->train_mean_token_accuracy);
  csv_num(f, m->has_valid, m->valid_loss);
  csv_num(f, m->has_valid, m->valid_mean_token_accuracy);
  csv_num(f, m->has_full_valid, m->full_valid_loss);
  csv_num(f, m->has_full_valid, m->full_valid_mean_token_accuracy);
  csv_num(f, m->has_cls, m->valid_accuracy);
  csv_num(f, m->has_cls, m->valid_f1_macro);
  csv_num(f, 1, m->learning_rate);
  csv_num(f, 1, m->grad_norm);
  fprintf(f, ",%ld,%d\n", m->trained_tokens, m->epoch);
  fflush(f);
}

/* Opens the CSV: a fresh one with its header, or on resume the rows of
 * steps up to the checkpoint's kept (rewritten atomically) and the rest
 * appended from there, so the file holds every step once. */
static int csv_open(run *r, int resumed, ft_error *err) {
  const char *path = r->o->metrics_csv;
  if (!path) return 0;
  char dir[PATH_MAX];
  if (ft_pathf(dir, sizeof dir, "%s", path))
    return ft_error_set(err, FT_EIO, NULL, "path too long: %s", path);
  char *slash = strrchr(dir, '/');
  int rc;
  if (slash && slash != dir) { /* its directory */
    *slash = 0;
    if ((rc = ft_mkdir_p(dir, 0755, err))) return rc;
  }
  ft_atomic a;
  if ((rc = ft_atomic_open(&a, path, 0644, err))) return rc;
  FILE *out = a.f;
  fputs(CSV_HEADER, out);
  FILE *in = resumed ? fopen(path, "r") : NULL;
  if (in) {
    char line[4096];
    int first = 1;
    while (fgets(line, sizeof line, in)) {
      if (first) { /* a header of another layout: start over */
        first = 0;
        if (strcmp(line, CSV_HEADER) != 0) break;
        continue;
      }
      char *e;
      long step = strtol(line, &e, 10);
      if (e == line || *e != ',' || line[strlen(line) - 1] != '\n') break; /* torn tail */
      if (step > r->st.step) break;
      fputs(line, out);
    }
    fclose(in);
  }
  if ((rc = ft_atomic_commit(&a, err))) return rc;
  r->csv = fopen(path, "a");
  if (!r->csv) return ft_error_set(err, FT_EIO, NULL, "cannot open %s: %s", path, strerror(errno));
  return 0;
}

/* ---- checkpoints and the best one ---- */

static int checkpoint(run *r, ft_error *err) {
  if (!r->o->ckpt_dir) return 0;
  if (r->csv) { /* a checkpoint at step N implies the CSV rows up to N are on disk */
    fflush(r->csv);
    fsync(fileno(r->csv));
  }
  char path[PATH_MAX];
  r->st.info = r->info;
  int rc = ckpt_save(r->o->ckpt_dir, &r->st, r->opt, path, sizeof path, err);
  if (rc) return rc;
  /* the best checkpoint stays besides the last `keep` (when there is one at
   * the best step: always with early stopping, which writes it) */
  if ((rc = ckpt_prune(r->o->ckpt_dir, r->s.ckpt_keep, r->st.best_step, err))) return rc;
  long *kept = NULL;
  size_t n_kept = 0;
  if ((rc = ckpt_list(r->o->ckpt_dir, &kept, &n_kept, err))) return rc;
  if (r->h && r->h->on_checkpoint) {
    ft_ckpt_info ci = {.step = r->st.step,
                       .path = path,
                       .m = &r->last,
                       .kept = kept,
                       .n_kept = n_kept,
                       .best = r->st.best_step == r->st.step};
    r->h->on_checkpoint(r->h->ud, &ci);
  }
  free(kept);
  return 0;
}

/* x as a JSON number, or null. */
static const char *jnum(char *buf, size_t cap, double x) {
  if (isfinite(x))
    snprintf(buf, cap, "%.9g", x);
  else
    snprintf(buf, cap, "null");
  return buf;
}

static int higher_is_better(const char *metric) {
  return !strcmp(metric, "valid_mean_token_accuracy") || !strcmp(metric, "valid_accuracy") ||
         !strcmp(metric, "valid_f1_macro");
}

/* The early-stopping metric out of an evaluation's loss, accuracy and
 * (classification) r->cm. */
static double pick_metric(const run *r, float loss, float acc) {
  const char *k = r->s.es_metric;
  if (!strcmp(k, "valid_mean_token_accuracy")) return acc;
  if (!strcmp(k, "valid_accuracy")) return r->cm ? r->cm->accuracy : acc;
  if (!strcmp(k, "valid_f1_macro")) return r->cm ? r->cm->f1_macro : NAN;
  return loss;
}

/* Tracks the best value of the metric; returns 1 when v improved it. */
static int track_best(run *r, double v) {
  const ft_spec *s = &r->s;
  int improved =
      isfinite(v) &&
      (r->st.best_step == 0 || (r->lower_better ? v < r->st.best_metric - (double)s->es_min_delta
                                                : v > r->st.best_metric + (double)s->es_min_delta));
  if (improved) {
    r->st.best_metric = v;
    r->st.best_step = r->st.step;
    r->st.bad_evals = 0;
  } else {
    r->st.bad_evals++;
  }
  return improved;
}

/* ---- setup ---- */

static int load_data(run *r, ft_error *err) {
  const ft_train_opts *o = r->o;
  ft_chat_family chat = FT_CHAT_PLAIN;
  int rc = chat_detect(o->model_dir, r->tk, &chat, err);
  if (rc) return rc;
  ft_data_job j;
  train_data_job(&j, &r->s, &r->cfg, chat, o->train_path, o->valid_path, o->test_path);
  if ((rc = data_prepare(&r->ds, &j, r->tk, err))) return rc;
  r->train = r->ds.train;
  r->valid = r->ds.valid;
  r->test = r->ds.test;
  return 0;
}

static json_t *make_info(const run *r) {
  json_t *j = json_object();
  json_object_set_new(j, "task",
                      json_string(r->s.task == FT_TASK_CLASSIFY ? "classification" : "causal_lm"));
  json_object_set_new(j, "method",
                      json_string(r->s.method == FT_METHOD_LORA   ? "lora"
                                  : r->s.method == FT_METHOD_FULL ? "full"
                                                                  : "head"));
  json_object_set_new(j, "spec", spec_to_json(&r->s));
  json_object_set_new(j, "best_metric_name", json_string(r->s.es_metric));
  if (r->s.task == FT_TASK_CLASSIFY) {
    json_t *l = json_array();
    for (int i = 0; i < r->cfg.num_labels; i++)
      json_array_append_new(l, json_string(r->cfg.id2label[i]));
    json_object_set_new(j, "labels", l);
  }
  return j;
}

/* Loads everything and makes the model, optimizer and batchers. */
static int setup(run *r, ft_error *err) {
  const ft_train_opts *o = r->o;
  int rc;
  if ((rc = hf_config_load(&r->cfg, o->model_dir, err))) return rc;
  if ((rc = spec_check_model(&r->s, &r->cfg, err))) return rc;
  if ((rc = tok_load(&r->tk, o->model_dir, err))) return rc;
  if ((rc = load_data(r, err))) return rc;
  if (r->s.task == FT_TASK_CLASSIFY) {
    r->cfg.num_labels = r->train->num_labels;
    memset(r->cfg.id2label, 0, sizeof r->cfg.id2label);
    for (int i = 0; i < r->train->num_labels; i++)
      memcpy(r->cfg.id2label[i], r->train->label_names[i], sizeof r->cfg.id2label[i]);
    if (!(r->cm = metrics_cls_new(r->train->num_labels > 0 ? r->train->num_labels : 1)))
      return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  } else {
    r->cfg.num_labels = 0;
  }

  int pack = r->s.packing && r->s.task == FT_TASK_CAUSAL_LM;
  int T;
  if (pack) {
    T = r->s.max_seq_len;
  } else {
    T = r->train->max_len;
    if (r->valid && r->valid->max_len > T) T = r->valid->max_len;
    if (r->test && r->test->max_len > T) T = r->test->max_len;
  }
  if (T > r->s.max_seq_len) T = r->s.max_seq_len;
  if (T > r->cfg.max_position) T = r->cfg.max_position;
  if (T < 1) T = 1;
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
  ft_batcher_opts bo = {
      .B = B, .T = T, .pad_id = pad, .seed = r->s.seed, .shuffle = 1, .pack = pack, .by_length = 1};
  if ((rc = batcher_new(&r->tb, r->train, &bo, err))) return rc;
  ft_batcher_opts eo = {.B = B, .T = T, .pad_id = pad, .by_length = 1};
  if (r->valid) {
    if ((rc = batcher_new(&r->fb, r->valid, &eo, err))) return rc;
    eo.limit = (size_t)r->s.eval_samples;
    if ((rc = batcher_new(&r->vb, r->valid, &eo, err))) return rc;
    eo.limit = 0;
  }
  if (r->test && (rc = batcher_new(&r->xb, r->test, &eo, err))) return rc;

  r->n_batches = batcher_num_batches(r->tb);
  r->steps_per_epoch = (r->n_batches + r->s.grad_accum - 1) / r->s.grad_accum;
  r->total = (long)r->s.n_epochs * r->steps_per_epoch;
  if (r->s.token_budget > 0 && (rc = budget_steps(r, &r->total, err))) return rc;
  r->warmup = sched_warmup_steps(r->s.warmup_ratio, r->total);
  if (!r->s.es_metric[0]) snprintf(r->s.es_metric, sizeof r->s.es_metric, "valid_loss");
  r->lower_better = !higher_is_better(r->s.es_metric);
  r->es_periodic = r->s.eval_every_steps > 0;
  r->promote = r->s.es_patience > 0 && r->valid != NULL;
  r->info = make_info(r);

  memset(&r->st, 0, sizeof r->st);
  r->st.total_steps = r->total;
  r->st.rng = rng_mix(r->s.seed, 0x64726f706f7574ull); /* "dropout" */
  r->st.best_metric = NAN;
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
  r->last_full_step = -1;
  return csv_open(r, o->resume_from != NULL, err);
}

/* The test hook: a non-finite loss at 1-based step `step`. */
static int inject_nan(const run *r, long step) {
  const ft_train_opts *o = r->o;
  return o->nan_from > 0 && step >= o->nan_from &&
         (o->nan_count <= 0 || step < o->nan_from + o->nan_count);
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
    int rc = batcher_get(r->tb, r->st.epoch, i, &b, &nt);
    if (rc) return rc;
    r->st.rng = rng_mix(r->st.rng, 1); /* one dropout seed per micro-batch */
    if ((rc = model_forward_backward(r->m, &b, r->st.rng, scale, &loss))) return rc;
    model_last_counts(r->m, &t, &c);
    if (!isfinite(loss)) finite = 0;
    sum += (double)loss * (double)t;
    ntr += t;
    ncor += c;
    ntok += nt;
  }
  if (inject_nan(r, r->st.step + 1)) {
    finite = 0;
    sum = NAN;
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
  mt->lm = r->s.task == FT_TASK_CAUSAL_LM;
  mt->train_loss = ntr ? (float)(sum / (double)ntr) : NAN;
  mt->train_mean_token_accuracy = ntr ? (float)((double)ncor / (double)ntr) : NAN;
  mt->learning_rate = lr;
  mt->grad_norm = norm;
  mt->tokens_per_second = dt > 0 ? (float)((double)ntok / dt) : 0.0f;
  mt->trained_tokens = r->st.trained_tokens;
  mt->valid_loss = mt->valid_mean_token_accuracy = mt->valid_perplexity = NAN;
  mt->full_valid_loss = mt->full_valid_mean_token_accuracy = mt->full_valid_perplexity = NAN;
  mt->valid_accuracy = mt->valid_precision_macro = mt->valid_recall_macro = NAN;
  mt->valid_f1_macro = mt->valid_f1_weighted = NAN;
  if (finite) r->st.last_train_loss = mt->train_loss;
  return 0;
}

static void set_cls(run *r, ft_step_metrics *m) {
  if (!r->cm) return;
  m->has_cls = 1;
  m->valid_accuracy = (float)r->cm->accuracy;
  m->valid_precision_macro = (float)r->cm->precision_macro;
  m->valid_recall_macro = (float)r->cm->recall_macro;
  m->valid_f1_macro = (float)r->cm->f1_macro;
  m->valid_f1_weighted = (float)r->cm->f1_weighted;
}

/* The evaluations due after a step: periodic, epoch end. *improved is set
 * when the early-stopping metric improved, *stop when it has not for
 * `patience` evaluations. */
static int evaluations(run *r, int epoch_end, int *improved, int *stop) {
  ft_step_metrics *m = &r->last;
  int lm = r->s.task == FT_TASK_CAUSAL_LM, rc;
  *improved = *stop = 0;
  int evaluated = 0;
  double metric = NAN;
  if (r->vb && r->s.eval_every_steps > 0 && r->st.step % r->s.eval_every_steps == 0) {
    float vl, va;
    if ((rc = evaluate(r, r->vb, &vl, &va))) return rc;
    m->has_valid = 1;
    m->valid_loss = vl;
    m->valid_mean_token_accuracy = va;
    m->valid_perplexity = lm ? (float)metrics_perplexity(vl) : NAN;
    set_cls(r, m);
    r->st.last_valid_loss = vl;
    if (r->es_periodic) {
      metric = pick_metric(r, vl, va);
      evaluated = 1;
    }
  }
  if (r->fb && epoch_end) {
    float fl, fa;
    if ((rc = evaluate(r, r->fb, &fl, &fa))) return rc;
    m->has_full_valid = 1;
    m->full_valid_loss = fl;
    m->full_valid_mean_token_accuracy = fa;
    m->full_valid_perplexity = lm ? (float)metrics_perplexity(fl) : NAN;
    if (!m->has_cls) set_cls(r, m);
    r->st.last_valid_loss = fl;
    r->last_full_step = r->st.step;
    if (!r->es_periodic) {
      metric = pick_metric(r, fl, fa);
      evaluated = 1;
    }
  }
  if (evaluated) {
    *improved = track_best(r, metric);
    *stop = r->s.es_patience > 0 && r->st.bad_evals >= r->s.es_patience;
  }
  return 0;
}

/* The output model on the test set, as result JSON. */
static int test_eval(run *r, json_t **out) {
  float tl, ta;
  int rc = evaluate(r, r->xb, &tl, &ta);
  if (rc) return rc;
  json_t *j;
  if (r->cm) {
    j = metrics_cls_json(r->cm, "test_", (const char(*)[64])r->cfg.id2label);
  } else {
    j = json_object();
    json_object_set_new(j, "test_mean_token_accuracy", isfinite(ta) ? json_real(ta) : json_null());
    double ppl = metrics_perplexity(tl);
    json_object_set_new(j, "test_perplexity", isfinite(ppl) ? json_real(ppl) : json_null());
  }
  json_object_set_new(j, "test_loss", isfinite(tl) ? json_real(tl) : json_null());
  json_object_set_new(j, "examples", json_integer((json_int_t)r->test->n));
  *out = j;
  return 0;
}

/* Early stopping: the best checkpoint's trained tensors become the model. */
static int promote_best(run *r, ft_train_result *res, ft_error *err) {
  if (!r->promote || r->st.best_step <= 0 || r->st.best_step == r->st.step || !r->o->ckpt_dir)
    return 0;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/ckpt-%ld", r->o->ckpt_dir, r->st.best_step);
  int rc = ckpt_load_weights(path, r->m, err);
  if (rc) return rc;
  res->promoted = 1;
  char data[160], nb[32];
  snprintf(data, sizeof data, "{\"best_step\":%ld,\"best_metric\":%s,\"metric\":\"%.31s\"}",
           r->st.best_step, jnum(nb, sizeof nb, r->st.best_metric), r->s.es_metric);
  event(r, "info", data, "the best checkpoint (step %ld, %s %.6g) is the fine-tuned model",
        r->st.best_step, r->s.es_metric, r->st.best_metric);
  return 0;
}

static int write_output(run *r, ft_error *err) {
  const ft_train_opts *o = r->o;
  int rc;
  if ((rc = ft_mkdir_p(o->out_dir, 0755, err))) return rc;
  if (r->s.method == FT_METHOD_LORA) {
    char adir[PATH_MAX];
    if (snprintf(adir, sizeof adir, "%s/adapter", o->out_dir) >= (int)sizeof adir)
      return ft_error_set(err, FT_EIO, NULL, "path too long: %s", o->out_dir);
    if ((rc = ft_mkdir_p(adir, 0755, err))) return rc;
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
  res->best_metric = NAN;
  if (!o || !o->spec || !o->model_dir || !o->train_path || !o->out_dir)
    return ft_error_set(err, FT_EINVALID, NULL,
                        "train_run: spec, model_dir, train_path and "
                        "out_dir are required");
  r->o = o;
  r->h = h;
  r->s = *o->spec;
  snprintf(res->best_metric_name, sizeof res->best_metric_name, "%.31s",
           r->s.es_metric[0] ? r->s.es_metric : "valid_loss");
  int rc = setup(r, err);
  if (rc) goto out;
  {
    char data[512];
    snprintf(data, sizeof data,
             "{\"examples\":%zu,\"validation_examples\":%zu,\"test_examples\":%zu,"
             "\"dropped\":%ld,\"truncated\":%ld,\"total_steps\":%ld,"
             "\"warmup_steps\":%ld,\"trainable_parameters\":%zu,\"packing\":%s,"
             "\"token_budget\":%lld}",
             r->train->n, r->valid ? r->valid->n : 0, r->test ? r->test->n : 0, r->train->n_dropped,
             r->train->n_truncated, r->total, r->warmup, optim_numel(r->opt),
             r->s.packing && r->s.task == FT_TASK_CAUSAL_LM ? "true" : "false",
             r->s.token_budget);
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
    r->last.epochs_completed = (int)r->st.epoch;
    if (skipped) {
      r->st.skipped_steps++;
      if (++r->st.nonfinite_run >= NONFINITE_MAX_RUN) {
        rc = ft_error_set(err, FT_ENONFINITE, NULL,
                          "the loss or gradient was not finite %d steps in a row (at step %ld); "
                          "the last good checkpoint is kept",
                          NONFINITE_MAX_RUN, r->st.step);
        goto out;
      }
      char data[96];
      snprintf(data, sizeof data, "{\"step\":%ld,\"skipped_steps\":%ld}", r->st.step,
               r->st.skipped_steps);
      event(r, "warn", data, "step %ld skipped: the loss or gradient is not finite", r->st.step);
    } else {
      r->st.nonfinite_run = 0;
    }

    int last_step = r->st.step == r->total;
    int improved = 0, es = 0;
    if ((rc = evaluations(r, epoch_end, &improved, &es))) {
      ft_error_set(err, rc, NULL, "evaluation at step %ld failed", r->st.step);
      goto out;
    }
    early_stop = es && !last_step;

    int hook = 0;
    if (!skipped) csv_row(r, &r->last);
    if (!skipped && r->h && r->h->on_step) hook = r->h->on_step(r->h->ud, &r->last);
    if (hook && hook != FT_EPAUSED) {
      res->stopped = FT_ECANCELLED;
      rc = ft_error_set(err, FT_ECANCELLED, NULL, "cancelled at step %ld", r->st.step);
      goto out;
    }
    int pause = hook == FT_EPAUSED || (o->max_steps > 0 && r->st.step >= o->max_steps);
    if (epoch_end) event(r, "info", NULL, "epoch %ld done", r->st.epoch);
    /* Routine checkpoints are not written during a run of non-finite steps:
     * the last good one must survive pruning if the run ends the job. */
    int routine = epoch_end || early_stop || (improved && r->promote) ||
                  (r->s.ckpt_every_steps > 0 && r->st.step % r->s.ckpt_every_steps == 0);
    if (pause || (routine && r->st.nonfinite_run == 0)) {
      if ((rc = checkpoint(r, err))) goto out;
    }
    if (early_stop) {
      char data[200], nb[32];
      snprintf(data, sizeof data,
               "{\"step\":%ld,\"best_step\":%ld,\"best_metric\":%s,\"metric\":\"%.31s\"}",
               r->st.step, r->st.best_step, jnum(nb, sizeof nb, r->st.best_metric), r->s.es_metric);
      event(r, "info", data,
            "early stopping at step %ld: %s has not improved in %ld evaluations (best %.6g at "
            "step %ld)",
            r->st.step, r->s.es_metric, r->st.bad_evals, r->st.best_metric, r->st.best_step);
      res->early_stopped = 1;
    }
    if (pause && !(last_step || early_stop)) {
      res->stopped = FT_EPAUSED;
      rc = ft_error_set(err, FT_EPAUSED, NULL, "paused at step %ld", r->st.step);
      goto out;
    }
  }

  if ((rc = promote_best(r, res, err))) goto out;
  if (r->fb && (res->promoted || r->last_full_step != r->st.step)) {
    float fl, fa;
    if ((rc = evaluate(r, r->fb, &fl, &fa))) {
      ft_error_set(err, rc, NULL, "the final evaluation failed");
      goto out;
    }
    r->st.last_valid_loss = fl;
  }
  if (r->xb) {
    if ((rc = test_eval(r, &res->test_metrics))) {
      ft_error_set(err, rc, NULL, "the test evaluation failed");
      goto out;
    }
    event(r, "info", NULL, "test set evaluated: %zu examples", r->test->n);
  }
  if ((rc = write_output(r, err))) goto out;
  event(r, "info", NULL, "model written to %s", o->out_dir);
out:
  if (r->opt) {
    res->steps = r->st.step;
    res->trained_tokens = r->st.trained_tokens;
    res->final_train_loss = (float)r->st.last_train_loss;
    res->final_valid_loss = (float)r->st.last_valid_loss;
    res->epochs_completed = (int)r->st.epoch;
    res->skipped_steps = r->st.skipped_steps;
    res->best_step = r->st.best_step;
    res->best_metric = r->st.best_step > 0 ? r->st.best_metric : NAN;
  }
  if (r->csv) fclose(r->csv);
  json_decref(r->info);
  metrics_cls_free(r->cm);
  batcher_free(r->tb);
  batcher_free(r->vb);
  batcher_free(r->fb);
  batcher_free(r->xb);
  optim_free(r->opt);
  if (r->m) model_free(r->m);
  data_sets_free(&r->ds);
  if (r->tk) tok_free(r->tk);
  return rc;
}

int train_export_checkpoint(const ft_spec *spec, const char *base_model_dir, const char *ckpt_path,
                            const char *out_dir, ft_error *err) {
  ft_spec s = *spec;
  ft_config cfg;
  ft_model *m = NULL;
  json_t *info = NULL;
  int rc;
  if ((rc = hf_config_load(&cfg, base_model_dir, err))) return rc;
  if ((rc = spec_check_model(&s, &cfg, err))) return rc;
  if ((rc = ckpt_verify(ckpt_path, err))) return rc;
  if (s.task == FT_TASK_CLASSIFY) {
    info = ckpt_read_info(ckpt_path);
    json_t *labels = json_object_get(info, "labels");
    size_t n = json_array_size(labels);
    if (!json_is_array(labels) || n == 0 || n > FT_MAX_LABELS) {
      rc = ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s has no labels", ckpt_path);
      goto out;
    }
    cfg.num_labels = (int)n;
    memset(cfg.id2label, 0, sizeof cfg.id2label);
    for (size_t i = 0; i < n; i++) {
      const char *name = json_string_value(json_array_get(labels, i));
      snprintf(cfg.id2label[i], sizeof cfg.id2label[i], "%s", name ? name : "");
    }
  } else {
    cfg.num_labels = 0;
  }
  if ((rc = model_new(&m, &cfg, s.task, s.method, &s.lora, 1, 8, 0, err))) goto out;
  model_init_trainable(m, s.seed);
  if ((rc = hf_load_weights(m, base_model_dir, NULL, err)) ||
      (rc = ckpt_load_weights(ckpt_path, m, err)))
    goto out;
  if (s.method == FT_METHOD_LORA) model_merge_lora(m);
  if ((rc = ft_mkdir_p(out_dir, 0755, err))) goto out;
  rc = hf_save_model(m, s.task, base_model_dir, out_dir, err);
out:
  if (m) model_free(m);
  json_decref(info);
  return rc;
}
