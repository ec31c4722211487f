/* bench_infer: single-stream generation speed of engine/infer/infer.c on a model
 * directory (bench/infer makes GPT-2-small and SmolLM-135M shapes with
 * random weights), beside the memory-bandwidth bound of decoding measured in
 * the same process: decoding one token streams every weight once, so
 * tokens/s <= read bandwidth / weight bytes.
 *   bench_infer DIR [--prompt 128] [--gen 64] [--runs 3] [--label NAME]
 * Prints one JSON line: ttft_ms (prompt in, first token out; median),
 * decode_tok_per_s (new tokens after the first, per second; median),
 * weight_bytes (every matrix a decode step reads: all saved tensors, minus
 * the position table GPT-2 reads one row of), read_gbs_1t / read_gbs_2t
 * (a read loop over 512 MiB with 1 and 2 threads), memcpy_gbs (bytes read +
 * written), bound_tok_per_s (best read bandwidth / weight_bytes) and
 * frac_of_bound; ids: the greedy ids (the same prompt as bench/torch_decode.py:
 * an LCG from 12345). */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/hfdir.h"
#include "infer/infer.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ bandwidth -- */

typedef struct {
  const uint64_t *p;
  size_t n;
  uint64_t sum;
} rd_arg;

static void *read_loop(void *ap) {
  rd_arg *a = ap;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  for (size_t i = 0; i + 8 <= a->n; i += 8) {
    s0 += a->p[i];
    s1 += a->p[i + 1];
    s2 += a->p[i + 2];
    s3 += a->p[i + 3];
    s4 += a->p[i + 4];
    s5 += a->p[i + 5];
    s6 += a->p[i + 6];
    s7 += a->p[i + 7];
  }
  a->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
  return NULL;
}

/* GB/s of reading buf (n words) with nt threads, best of reps */
static double read_bw(const uint64_t *buf, size_t n, int nt, int reps) {
  double best = 0;
  for (int r = 0; r < reps; r++) {
    pthread_t th[2];
    rd_arg a[2];
    double t0 = now();
    for (int i = 0; i < nt; i++) {
      a[i].p = buf + n / nt * i;
      a[i].n = n / nt;
      pthread_create(&th[i], NULL, read_loop, &a[i]);
    }
    uint64_t s = 0;
    for (int i = 0; i < nt; i++) {
      pthread_join(th[i], NULL);
      s += a[i].sum;
    }
    double dt = now() - t0;
    if (s == 42) fprintf(stderr, "!"); /* keeps the sums alive */
    double gbs = n * 8.0 / dt / 1e9;
    best = gbs > best ? gbs : best;
  }
  return best;
}

/* ------------------------------------------------------------ decoding -- */

typedef struct {
  double t0, first, last;
  int n;
  int32_t ids[4096];
} timing;

static int on_token(void *ud, const ft_gen_token *t) {
  timing *tm = ud;
  double x = now();
  if (tm->n < 4096) tm->ids[tm->n] = t->id;
  if (tm->n++ == 0) tm->first = x;
  tm->last = x;
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_infer DIR [--prompt N] [--gen N] [--runs N] [--label S]\n");
    return 2;
  }
  const char *dir = argv[1], *label = "";
  int prompt = 128, gen = 64, runs = 3;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--prompt")) prompt = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--gen")) gen = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--label")) label = argv[i + 1];
  }
  if (runs < 1 || runs > 50 || gen < 2 || prompt < 1) {
    fprintf(stderr, "bench_infer: bad --runs/--gen/--prompt\n");
    return 2;
  }
  ft_error e = {0};
  ft_infer *m = NULL;
  double tl = now();
  if (infer_load(&m, dir, prompt + gen, &e)) {
    fprintf(stderr, "bench_infer: %s\n", e.message);
    return 1;
  }
  double load_s = now() - tl;
  /* the bytes a decode step reads: the saved tensors (a tied lm_head is the
   * embedding, read once), minus GPT-2's position table (one row) */
  ft_config cfg;
  if (hf_config_load(&cfg, dir, &e)) return 1;
  ft_model *tmp = NULL;
  if (model_new(&tmp, &cfg, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 1, 1, 0, &e)) return 1;
  size_t np, wbytes = 0, nparams = 0;
  ft_param *ps = model_params(tmp, &np);
  for (size_t i = 0; i < np; i++) {
    if (!ps[i].saved) continue;
    nparams += ps[i].numel;
    if (strcmp(ps[i].name, "transformer.wpe.weight")) wbytes += ps[i].numel * sizeof(float);
  }
  model_free(tmp);

  int V = infer_config(m)->vocab_size;
  int32_t *ids = malloc(prompt * sizeof *ids);
  uint32_t s = 12345;
  for (int i = 0; i < prompt; i++) {
    s = s * 1664525u + 1013904223u;
    ids[i] = (int32_t)((s >> 8) % (uint32_t)(V - 1));
  }
  ft_gen_opts o = {.max_tokens = gen, .temperature = 0.f, .top_p = 1.f, .logprobs = -1};
  double *ttft = calloc(runs, sizeof *ttft), *rate = calloc(runs, sizeof *rate);
  static timing tm;
  for (int r = -1; r < runs; r++) { /* r = -1: warm-up */
    memset(&tm, 0, sizeof tm);
    tm.t0 = now();
    ft_gen_result res;
    if (infer_generate(m, ids, prompt, &o, on_token, &tm, &res, &e)) {
      fprintf(stderr, "bench_infer: %s\n", e.message);
      return 1;
    }
    if (r < 0) continue;
    ttft[r] = (tm.first - tm.t0) * 1e3;
    rate[r] = (tm.n - 1) / (tm.last - tm.first);
  }
  qsort(ttft, runs, sizeof *ttft, cmp_d);
  qsort(rate, runs, sizeof *rate, cmp_d);
  size_t bytes_in_model = infer_bytes(m);
  infer_free(m);

  size_t n = (512u << 20) / 8;
  uint64_t *buf = malloc(n * 8);
  char *dst = malloc(n * 8);
  if (!buf || !dst) return 1;
  for (size_t i = 0; i < n; i++) buf[i] = i;
  memset(dst, 1, n * 8);
  double bw1 = read_bw(buf, n, 1, 3), bw2 = read_bw(buf, n, 2, 3), cp = 0;
  for (int r = 0; r < 3; r++) {
    double t0 = now();
    memcpy(dst, buf, n * 8);
    double g = 2.0 * n * 8 / (now() - t0) / 1e9;
    cp = g > cp ? g : cp;
  }
  free(buf);
  free(dst);
  double bw = bw1 > bw2 ? bw1 : bw2;
  double bound = bw * 1e9 / wbytes;
  json_t *out = json_object();
  json_object_set_new(out, "side", json_string("finetuned"));
  json_object_set_new(out, "label", json_string(label));
  json_object_set_new(out, "model_type", json_string(cfg.model_type));
  json_object_set_new(out, "params", json_integer((json_int_t)nparams));
  json_object_set_new(out, "prompt", json_integer(prompt));
  json_object_set_new(out, "gen", json_integer(gen));
  json_object_set_new(out, "runs", json_integer(runs));
  json_object_set_new(out, "load_s", json_real(load_s));
  json_object_set_new(out, "ttft_ms", json_real(ttft[runs / 2]));
  json_object_set_new(out, "decode_tok_per_s", json_real(rate[runs / 2]));
  json_object_set_new(out, "decode_tok_per_s_best", json_real(rate[runs - 1]));
  json_object_set_new(out, "weight_bytes", json_integer((json_int_t)wbytes));
  json_object_set_new(out, "infer_bytes", json_integer((json_int_t)bytes_in_model));
  json_object_set_new(out, "read_gbs_1t", json_real(bw1));
  json_object_set_new(out, "read_gbs_2t", json_real(bw2));
  json_object_set_new(out, "memcpy_gbs", json_real(cp));
  json_object_set_new(out, "bound_tok_per_s", json_real(bound));
  json_object_set_new(out, "frac_of_bound", json_real(rate[runs / 2] / bound));
  json_t *gid = json_array();
  for (int i = 0; i < tm.n && i < 4096; i++) json_array_append_new(gid, json_integer(tm.ids[i]));
  json_object_set_new(out, "ids", gid);
  json_dumpf(out, stdout, JSON_COMPACT);
  printf("\n");
  json_decref(out);
  free(ids);
  free(ttft);
  free(rate);
  return 0;
}
