/* bench_train: the engine's training speed on model shapes people fine-tune,
 * for bench/run (DESIGN.md 8). Builds a randomly initialised model with no
 * files (model_new + model_init_random), times forward + backward + clip +
 * AdamW steps on a fixed random batch (every row full length, every token
 * trained), then measures OpenBLAS's sgemm peak in the same process, and
 * prints one JSON object:
 *   tokens_per_s, step_s (median of the timed steps), gflops (achieved),
 *   peak_gflops (best of a few 3072^3 sgemm), frac_peak, peak_rss_mb
 *   (ru_maxrss after training, before the sgemm buffers), params, trainable.
 * FLOPs per step (stated in the output as "flop_formula"):
 *   full: 6 * N * B*T + 12 * L * B * T^2 * C
 *   lora: 4 * N * B*T + 12 * L * B * T^2 * C
 * N = parameters of the matmuls (every linear layer, and the lm_head even
 * when tied; not the embedding lookups, norms or biases); the T^2 term is
 * QK^T and AV forward (4 B T^2 C per layer) and backward (twice that), with
 * no discount for the causal mask. LoRA does no weight gradient for frozen
 * matmuls (4N instead of 6N); its own r-rank matmuls are ignored (<1%).
 * With --short-epoch N it instead trains one epoch of N short examples (random
 * tokens, lengths uniform in 16..128, every token but each example's last
 * trained) three ways through engine/data/batcher.c: padded rows (one example per
 * row, shuffled), by_length, and packed rows (ft_batch.pos/.seg), and prints
 *   {"bench":"short_epoch", ..., "rows":[{mode, batches, tokens, padded_tokens,
 *    seconds, tokens_per_s}], "packed_over_padded": ratio of tokens_per_s}
 * where tokens are real (non-padding) tokens and padded_tokens sum(B x T);
 * cpu_seconds / tokens_per_cpu_s count the process's CPU time, steadier than
 * wall time on a shared machine (with OPENBLAS_NUM_THREADS=1 it excludes
 * waiting). One untimed step on a full-size batch of each mode first touches
 * all activation memory.
 * usage: bench_train gpt2|smollm|base8m full|lora [--B 4 --T 256 --warmup 1 --steps 3]
 *        [--short-epoch N] */
#include <cblas.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data/batcher.h"
#include "nn/model.h"
#include "train/optim.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void shape_config(ft_config *c, const char *which) {
  memset(c, 0, sizeof *c);
  c->bos_token_id = c->eos_token_id = c->pad_token_id = -1;
  if (!strcmp(which, "gpt2")) { /* GPT-2 small */
    snprintf(c->model_type, sizeof c->model_type, "gpt2");
    c->vocab_size = 50257;
    c->hidden_size = 768;
    c->n_layer = 12;
    c->n_head = c->n_kv_head = 12;
    c->head_dim = 64;
    c->intermediate_size = 3072;
    c->max_position = 1024;
    c->norm_eps = 1e-5f;
    c->tie_embeddings = 1;
    c->attention_bias = 1;
  } else if (!strcmp(which, "base8m")) { /* models/base-8m: small, vocab 8192, tied */
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = 8192;
    c->hidden_size = 256;
    c->n_layer = 8;
    c->n_head = 8;
    c->n_kv_head = 4;
    c->head_dim = 32;
    c->intermediate_size = 688;
    c->max_position = 512;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = 1;
  } else { /* SmolLM-135M */
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = 49152;
    c->hidden_size = 576;
    c->n_layer = 30;
    c->n_head = 9;
    c->n_kv_head = 3;
    c->head_dim = 64;
    c->intermediate_size = 1536;
    c->max_position = 2048;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = 1;
  }
}

/* Matmul parameters: every linear layer plus the lm_head. */
static double matmul_params(const ft_config *c) {
  double C = c->hidden_size, FF = c->intermediate_size, HD = c->head_dim;
  double per_layer = !strcmp(c->model_type, "gpt2")
                         ? C * 3 * C + C * C + 2 * C * FF
                         : C * (c->n_head * HD) * 2 + 2 * C * (c->n_kv_head * HD) + 3 * C * FF;
  return c->n_layer * per_layer + (double)c->vocab_size * C;
}

static double sgemm_peak(void) {
  const int n = 3072;
  float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
        *c = malloc((size_t)n * n * sizeof *c);
  if (!a || !b || !c) return 0;
  for (size_t i = 0; i < (size_t)n * n; i++) {
    a[i] = (float)((i * 7) % 13) * 0.01f;
    b[i] = (float)((i * 5) % 11) * 0.01f;
    c[i] = 0;
  }
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  free(a);
  free(b);
  free(c);
  return 2.0 * n * (double)n * n / best / 1e9;
}

typedef struct {
  long batches, tokens, padded;
  double seconds, cpu_seconds;
} epoch_stats;

/* Trains the batches of epoch 0 of d batched with bo (only the first when
 * warm is 0) and measures them. */
static int run_epoch(ft_model *m, optim *opt, const ft_dataset *d, const ft_batcher_opts *bo,
                     int warm, epoch_stats *st) {
  ft_batcher *bt = NULL;
  ft_error err = {0};
  memset(st, 0, sizeof *st);
  if (batcher_new(&bt, d, bo, &err)) {
    fprintf(stderr, "bench_train: batcher_new: %s\n", err.message);
    return 1;
  }
  st->batches = batcher_num_batches(bt);
  double t0 = now(), c0 = cpu_now();
  for (long i = 0; i < (warm ? st->batches : 1); i++) {
    ft_batch b;
    long nt = 0;
    float loss = 0;
    batcher_get(bt, 0, i, &b, &nt);
    model_zero_grad(m);
    int rc = model_forward_backward(m, &b, (uint64_t)i, 1.0f, &loss);
    if (rc) {
      fprintf(stderr, "bench_train: step failed: %s\n", ft_err_message(rc));
      batcher_free(bt);
      return 1;
    }
    optim_clip_grad_norm(opt, 1.0f);
    optim_step(opt, 1e-5f);
    st->tokens += nt;
    st->padded += (long)b.B * b.T;
  }
  st->seconds = now() - t0;
  st->cpu_seconds = cpu_now() - c0;
  batcher_free(bt);
  return 0;
}

/* One epoch over a synthetic dataset of n short examples per batching mode;
 * prints the JSON line described at the top. */
static int short_epoch(ft_model *m, optim *opt, const ft_config *cfg, int B, int T, int n,
                       const char *which, const char *method_s) {
  ft_dataset d;
  memset(&d, 0, sizeof d);
  d.format = FT_DATA_TEXT;
  d.n = (size_t)n;
  d.off = calloc((size_t)n + 1, sizeof *d.off);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    d.off[i + 1] = d.off[i] + 16 + (size_t)(s % 113); /* 16..128 tokens */
  }
  d.tokens = malloc(d.off[n] * sizeof *d.tokens);
  d.targets = malloc(d.off[n] * sizeof *d.targets);
  for (size_t i = 0; i < d.off[n]; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    d.tokens[i] = (int32_t)(s % (uint64_t)cfg->vocab_size);
  }
  for (int e = 0; e < n; e++)
    for (size_t i = d.off[e]; i < d.off[e + 1]; i++)
      d.targets[i] = i + 1 < d.off[e + 1] ? d.tokens[i + 1] : -1;
  static const char *const modes[3] = {"padded", "by_length", "packed"};
  ft_batcher_opts bo[3];
  for (int k = 0; k < 3; k++)
    bo[k] = (ft_batcher_opts){
        .B = B, .T = T, .seed = 7, .shuffle = 1, .by_length = k == 1, .pack = k == 2};
  epoch_stats st[3];
  int rc = 0;
  for (int k = 0; k < 3 && !rc; k++) rc = run_epoch(m, opt, &d, &bo[k], 0, &st[k]); /* warmup */
  for (int k = 0; k < 3 && !rc; k++) rc = run_epoch(m, opt, &d, &bo[k], 1, &st[k]);
  if (!rc) {
    json_t *rows = json_array();
    double tps[3], tpc[3];
    for (int k = 0; k < 3; k++) {
      tps[k] = (double)st[k].tokens / st[k].seconds;
      tpc[k] = (double)st[k].tokens / st[k].cpu_seconds;
      json_array_append_new(
          rows,
          json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "mode", modes[k], "batches",
                    (json_int_t)st[k].batches, "tokens", (json_int_t)st[k].tokens, "padded_tokens",
                    (json_int_t)st[k].padded, "seconds", st[k].seconds, "tokens_per_s", tps[k],
                    "cpu_seconds", st[k].cpu_seconds, "tokens_per_cpu_s", tpc[k]));
    }
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:f, s:f, s:f, s:f}", "bench",
                  "short_epoch", "side", "finetuned", "model", which, "method", method_s, "B", B,
                  "T", T, "examples", n, "rows", rows, "packed_over_padded", tps[2] / tps[0],
                  "by_length_over_padded", tps[1] / tps[0], "packed_over_padded_cpu",
                  tpc[2] / tpc[0], "by_length_over_padded_cpu", tpc[1] / tpc[0]);
    char *txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    printf("%s\n", txt);
    free(txt);
    json_decref(j);
  }
  free(d.off);
  free(d.tokens);
  free(d.targets);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: bench_train gpt2|smollm|base8m full|lora [--B n --T n --warmup n --steps n]\n");
    return 2;
  }
  const char *which = argv[1], *method_s = argv[2];
  int B = 4, T = 256, warmup = 1, steps = 3, short_n = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--B"))
      B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--T"))
      T = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup"))
      warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps"))
      steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--short-epoch"))
      short_n = atoi(argv[i + 1]);
  }
  if (steps < 1 || steps > 100) steps = 3;
  int lora_m = !strcmp(method_s, "lora");
  ft_config cfg;
  shape_config(&cfg, which);
  ft_lora lora = {.r = 8, .alpha = 16, .dropout = 0};
  char names[128]; /* the family's default target_modules, comma-separated */
  snprintf(names, sizeof names, "%s", arch_find(cfg.model_type)->lora_default);
  lora.targets = 0;
  for (char *save, *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save))
    lora.targets |= arch_lora_bits(arch_find(cfg.model_type), t);

  ft_error err = {0};
  ft_model *m = NULL;
  if (model_new(&m, &cfg, FT_TASK_CAUSAL_LM, lora_m ? FT_METHOD_LORA : FT_METHOD_FULL,
                lora_m ? &lora : NULL, B, T, 1, &err)) {
    fprintf(stderr, "bench_train: model_new: %s\n", err.message);
    return 1;
  }
  model_init_random(m, 1234);
  size_t np = 0;
  ft_param *ps = model_params(m, &np);
  double nparams = 0;
  for (size_t i = 0; i < np; i++)
    if (ps[i].saved) nparams += (double)ps[i].numel;

  int32_t *tokens = malloc((size_t)B * T * sizeof *tokens);
  int32_t *targets = malloc((size_t)B * T * sizeof *targets);
  int32_t *lens = malloc((size_t)B * sizeof *lens);
  uint64_t s = 88172645463325252ull;
  for (int i = 0; i < B * T; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    tokens[i] = (int32_t)(s % (uint64_t)cfg.vocab_size);
  }
  for (int b = 0; b < B; b++) {
    lens[b] = T;
    for (int t = 0; t < T; t++)
      targets[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : tokens[b * T];
  }
  ft_batch batch = {.B = B, .T = T, .tokens = tokens, .targets = targets, .lens = lens};

  optim *opt = NULL;
  if (optim_new(&opt, m, 0.0f, &err)) {
    fprintf(stderr, "bench_train: optim_new: %s\n", err.message);
    return 1;
  }
  if (short_n > 0) {
    int rc = short_epoch(m, opt, &cfg, B, T, short_n, which, method_s);
    optim_free(opt);
    model_free(m);
    free(tokens);
    free(targets);
    free(lens);
    return rc;
  }
  double *times = calloc((size_t)steps, sizeof *times);
  float loss = 0;
  for (int k = 0; k < warmup + steps; k++) {
    double t0 = now();
    model_zero_grad(m);
    int rc = model_forward_backward(m, &batch, (uint64_t)k, 1.0f, &loss);
    if (rc) {
      fprintf(stderr, "bench_train: step failed: %s\n", ft_err_message(rc));
      return 1;
    }
    optim_clip_grad_norm(opt, 1.0f);
    optim_step(opt, 1e-4f);
    if (k >= warmup) times[k - warmup] = now() - t0;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double rss_mb = (double)ru.ru_maxrss / 1024.0;

  qsort(times, (size_t)steps, sizeof *times, cmp_double);
  double step_s = times[steps / 2];
  double step_tok = (double)B * T;
  double N = matmul_params(&cfg);
  double flops = (lora_m ? 4.0 : 6.0) * N * step_tok +
                 12.0 * cfg.n_layer * (double)B * T * T * cfg.hidden_size;
  double gflops = flops / step_s / 1e9;
  double peak = sgemm_peak();

  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}",
      "side", "finetuned", "model", which, "method", method_s, "B", B, "T", T, "steps", steps,
      "step_s", step_s, "tokens_per_s", step_tok / step_s, "gflops", gflops, "peak_gflops", peak,
      "frac_peak", peak > 0 ? gflops / peak : 0.0, "peak_rss_mb", rss_mb, "params", nparams,
      "trainable", (double)model_num_trainable(m), "matmul_params", N, "last_loss", (double)loss,
      "flop_formula", lora_m ? "4*N*B*T + 12*L*B*T^2*C" : "6*N*B*T + 12*L*B*T^2*C");
  char *txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  printf("%s\n", txt);
  free(txt);
  json_decref(j);
  optim_free(opt);
  model_free(m);
  free(times);
  free(tokens);
  free(targets);
  free(lens);
  return 0;
}
