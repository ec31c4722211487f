/* Inference (infer.h): a forward of its own over the weights of an ft_model
 * loaded read-only, with a KV cache, so a prompt is one pass of GEMMs
 * (chunks of INF_CHUNK rows) and each new token one position of GEMVs
 * (layers.c's matmul turns a one-row product into an sgemv: single-row
 * decoding is memory-bound, and sgemv streams the weights several times
 * faster than a 1-row sgemm). Workload: one sequence
 * at a time per ft_infer, small CPU models (every family of nn/arch.h), where
 * decoding speed is the weights' bytes over memory bandwidth. The ops are
 * nn/layers.c's, the same functions training runs (norms, q/k norms, RoPE
 * from the cache's position, the attention block with the layer's sliding
 * window, SwiGLU/GeGLU/GELU); only the loop around them (chunks of rows, the
 * KV cache) is this file's.
 *
 * Prefill (time to first token) is the chunk's GEMMs: Conv1D weights (GPT-2)
 * are transposed in place at load to nn.Linear's (out,in), because OpenBLAS
 * packs an (out,in) weight for a 128-row product ~20% faster (its sgemv
 * streams either layout); attention takes blocks of INF_ATT_ROWS query rows,
 * one sgemm for the scores and one for P V per head and block, over the keys
 * up to the block's last row (the masked half of later blocks is skipped);
 * the activations are layers.c's vectorised ones; only the last row reaches
 * the LM head, unless the prompt is scored (echo), which runs training's
 * fused head (lm_head_xent) over the chunk's rows lm_head_rows() at a time,
 * so a 262k vocabulary never needs more than 64 x V logits; buffers
 * are allocated once per loaded model (echo's at its first use).
 *
 * Text: generated ids are decoded as a whole (with a few prompt tokens in
 * front, so a SentencePiece "\u2581" keeps its space) after every token; the
 * new bytes past what was reported become final unless they end in U+FFFD
 * (an unfinished UTF-8 character, held back) or could still grow into a
 * stop string (held back); a stop string and what follows are never
 * reported. */
#include "infer/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hfdir.h"
#include "nn/layers.h"
#include "nn/rng.h"

#define INF_CHUNK 128 /* prompt rows per forward pass (sgemm packs the weights once per call) */
#define INF_ATT_ROWS 32 /* query rows per attention block (scores: rows x keys) */
#define INF_CTX_TOKENS 4 /* prompt tokens decoded in front of the completion */
#define INF_MAX_EOS 4

typedef struct {
  const float *n1w, *n1b, *n2w, *n2b; /* (C) norms; b NULL for RMSNorm */
  const float *qnw, *knw;             /* (HD) q_norm, k_norm, or NULL */
  const float *nAw, *nMw;             /* (C) post-attention / post-MLP norms, or NULL */
  int window;                         /* sliding window (keys), 0: full attention */
  const float *rope_cos, *rope_sin;   /* this layer's RoPE tables (global or local) */
  const float *w[FT_MOD_N], *b[FT_MOD_N]; /* the family's modules, (out,in) (Conv1D
                                             transposed at load); biases or NULL */
  float *kc, *vc; /* (max_ctx, KD) */
} inf_layer;

typedef struct {
  float p;
  int32_t id;
} inf_cand;

struct ft_infer {
  ft_config cfg;
  ft_task task;
  ft_model *model; /* holds the weights (B=1, T=1, no gradients) */
  tok *tk;
  ft_chat_family chat;
  const ft_arch *a;
  int max_ctx, L, C, NH, NKV, HD, FF, V, QD, KD, NOUT; /* NOUT: V or num_labels */
  const float *wte;  /* (V,C) */
  const float *wpe;  /* (maxP,C) learned positions, or NULL */
  const float *nfw, *nfb; /* final norm (C) */
  const float *head; /* lm_head (V,C) or score (NL,C) */
  inf_layer *lw;     /* (L) */
  float *rope_cos, *rope_sin; /* (max_ctx, HD/2) */
  float *rope_cos_l, *rope_sin_l; /* (max_ctx, HD/2) sliding layers' (rope_local_theta), or NULL */
  float woff, att_scale, emb_scale; /* as model.c's: norm weight offset, score scale, sqrt(C) */
  float *kv;                  /* the cache block */
  /* scratch for INF_CHUNK rows */
  float *x, *xn;     /* (CH,C) residual, normed */
  float *qkv;        /* (CH,QD+2KD) */
  float *att;        /* (CH,QD) */
  float *ff1, *ff2;  /* (CH,FF) */
  float *scores;     /* (INF_ATT_ROWS, max_ctx) one attention block's probabilities */
  float *nmean, *nrstd; /* (INF_CHUNK * NH) norm statistics (scratch) */
  float *logits;        /* (NOUT) the last row's, softcapped as the model says */
  float *hscratch;      /* lm_head_scratch(hR, C, V): echo, from its first use */
  int hR;               /* lm_head_rows(INF_CHUNK, V) */
  float *elp;           /* (CH) echo: log p(next prompt token) of each row */
  int32_t *etop;        /* (CH,k) echo: each row's k most likely tokens */
  float *etlp;          /* (CH,k) their log-probabilities */
  float *work;       /* (V) sampling */
  inf_cand *cand;    /* (V) sampling */
  size_t bytes;
  int32_t eos[INF_MAX_EOS];
  int n_eos;
};

static void *xcalloc(ft_infer *m, size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (p) m->bytes += n * size;
  return p;
}

/* ------------------------------------------------------------ loading -- */

static const float *pw(ft_infer *m, const char *fmt, int l, const char *suffix, int need,
                       size_t numel, ft_error *err, int *rc) {
  char name[FT_NAME_MAX];
  if (l >= 0)
    snprintf(name, sizeof name, fmt, l, suffix);
  else
    snprintf(name, sizeof name, fmt, suffix);
  ft_param *p = model_param(m->model, name);
  if (!p) {
    if (need && !*rc) *rc = ft_error_set(err, FT_EFORMAT, name, "model has no tensor %s", name);
    return NULL;
  }
  if (numel && p->numel != numel && !*rc)
    *rc = ft_error_set(err, FT_ESHAPE, name, "tensor %s has %zu elements, expected %zu", name,
                       p->numel, numel);
  return p->w;
}

/* A Conv1D weight (in,out) rewritten in place as nn.Linear's (out,in); tmp
 * holds in*out floats */
static void conv1d_to_linear(float *w, int in, int out, float *tmp) {
  for (int i0 = 0; i0 < in; i0 += 16)
    for (int j0 = 0; j0 < out; j0 += 16)
      for (int i = i0; i < i0 + 16 && i < in; i++)
        for (int j = j0; j < j0 + 16 && j < out; j++)
          tmp[(size_t)j * in + i] = w[(size_t)i * out + j];
  memcpy(w, tmp, (size_t)in * out * sizeof(float));
}

/* in and out of a module slot */
static void mod_dims(const ft_infer *m, int i, int *in, int *out) {
  arch_mod_dims(i, m->C, m->QD, m->KD, m->FF, in, out);
}

static int bind_weights(ft_infer *m, ft_error *err) {
  const ft_arch *a = m->a;
  int rc = 0;
  size_t C = m->C;
  char name[FT_NAME_MAX];
  snprintf(name, sizeof name, "%s.weight", a->embed);
  m->wte = pw(m, "%s", -1, name, 1, (size_t)m->V * C, err, &rc);
  if (a->pos_embed) {
    snprintf(name, sizeof name, "%s.weight", a->pos_embed);
    m->wpe = pw(m, "%s", -1, name, 1, 0, err, &rc);
  }
  m->nfw = pw(m, "%s.weight", -1, a->final_norm, 1, C, err, &rc);
  m->nfb = pw(m, "%s.bias", -1, a->final_norm, a->norm == FT_NORM_LAYER, C, err, &rc);
  if (m->task == FT_TASK_CAUSAL_LM)
    m->head = pw(m, "%s", -1, "lm_head.weight", 1, (size_t)m->V * C, err, &rc);
  else
    m->head = pw(m, "%s", -1, "score.weight", 1, (size_t)m->NOUT * C, err, &rc);
  int lnb = a->norm == FT_NORM_LAYER;
  for (int l = 0; l < m->L && !rc; l++) {
    inf_layer *w = &m->lw[l];
    char f[FT_NAME_MAX];
    snprintf(f, sizeof f, "%s.%%d.%%s", a->layers);
    snprintf(name, sizeof name, "%s.weight", a->norm1);
    w->n1w = pw(m, f, l, name, 1, C, err, &rc);
    snprintf(name, sizeof name, "%s.bias", a->norm1);
    w->n1b = pw(m, f, l, name, lnb, C, err, &rc);
    snprintf(name, sizeof name, "%s.weight", a->norm2);
    w->n2w = pw(m, f, l, name, 1, C, err, &rc);
    snprintf(name, sizeof name, "%s.bias", a->norm2);
    w->n2b = pw(m, f, l, name, lnb, C, err, &rc);
    if (a->post_norms) {
      snprintf(name, sizeof name, "%s.weight", a->norm_attn_out);
      w->nAw = pw(m, f, l, name, 1, C, err, &rc);
      snprintf(name, sizeof name, "%s.weight", a->norm_mlp_out);
      w->nMw = pw(m, f, l, name, 1, C, err, &rc);
    }
    if (a->has_qk_norm) {
      snprintf(name, sizeof name, "%s.weight", a->q_norm);
      w->qnw = pw(m, f, l, name, 1, (size_t)m->HD, err, &rc);
      snprintf(name, sizeof name, "%s.weight", a->k_norm);
      w->knw = pw(m, f, l, name, 1, (size_t)m->HD, err, &rc);
    }
    for (int i = 0; i < FT_MOD_N; i++) {
      if (!a->mods[i].path) continue;
      int in, out;
      mod_dims(m, i, &in, &out);
      snprintf(name, sizeof name, "%s.weight", a->mods[i].path);
      w->w[i] = pw(m, f, l, name, 1, (size_t)in * out, err, &rc);
      snprintf(name, sizeof name, "%s.bias", a->mods[i].path);
      w->b[i] = pw(m, f, l, name, 0, (size_t)out, err, &rc);
    }
  }
  return rc;
}

/* Conv1D weights to nn.Linear's layout, once at load */
static int transpose_conv1d(ft_infer *m) {
  if (!m->a->conv1d) return 0;
  size_t big = 0;
  for (int i = 0; i < FT_MOD_N; i++) {
    int in, out;
    mod_dims(m, i, &in, &out);
    if (m->a->mods[i].path && (size_t)in * out > big) big = (size_t)in * out;
  }
  float *tmp = malloc(big * sizeof(float));
  if (!tmp) return FT_ENOMEM;
  for (int l = 0; l < m->L; l++)
    for (int i = 0; i < FT_MOD_N; i++) {
      int in, out;
      mod_dims(m, i, &in, &out);
      if (m->lw[l].w[i]) conv1d_to_linear((float *)m->lw[l].w[i], in, out, tmp);
    }
  free(tmp);
  return 0;
}

static void add_eos(ft_infer *m, int id) {
  if (id < 0 || id >= m->V || m->n_eos >= INF_MAX_EOS) return;
  for (int i = 0; i < m->n_eos; i++)
    if (m->eos[i] == id) return;
  m->eos[m->n_eos++] = id;
}

int infer_load(ft_infer **out, const char *model_dir, int max_ctx, ft_error *err) {
  *out = NULL;
  if (!model_dir) return ft_error_set(err, FT_EINVALID, "model_dir", "no model directory");
  if (max_ctx < 0) return ft_error_set(err, FT_ERANGE, "max_ctx", "max_ctx must be >= 0");
  ft_infer *m = calloc(1, sizeof *m);
  if (!m) return ft_error_set(err, FT_ENOMEM, "", "out of memory");
  int rc = hf_config_load(&m->cfg, model_dir, err);
  if (!rc) rc = tok_load(&m->tk, model_dir, err);
  if (!rc) rc = chat_detect(model_dir, m->tk, &m->chat, err);
  if (rc) goto fail;
  const ft_config *c = &m->cfg;
  m->task = c->num_labels > 0 ? FT_TASK_CLASSIFY : FT_TASK_CAUSAL_LM;
  m->a = c->arch;
  m->L = c->n_layer;
  m->C = c->hidden_size;
  m->NH = c->n_head;
  m->NKV = c->n_kv_head;
  m->HD = c->head_dim;
  m->FF = c->intermediate_size;
  m->V = c->vocab_size;
  m->QD = m->NH * m->HD;
  m->KD = m->NKV * m->HD;
  m->NOUT = m->task == FT_TASK_CLASSIFY ? c->num_labels : m->V;
  if (m->NKV <= 0 || m->NH % m->NKV || m->HD % 2 || (m->a->fused_qkv && m->QD != m->C)) {
    rc = ft_error_set(err, FT_EUNSUPPORTED, "num_key_value_heads", "unsupported head layout");
    goto fail;
  }
  m->max_ctx = max_ctx == 0 || max_ctx > c->max_position ? c->max_position : max_ctx;
  rc = model_new(&m->model, c, m->task, FT_METHOD_FULL, NULL, 1, 1, 0, err);
  int head_missing = 0;
  if (!rc) rc = hf_load_weights(m->model, model_dir, &head_missing, err);
  if (!rc && m->task == FT_TASK_CLASSIFY && head_missing)
    rc = ft_error_set(err, FT_EFORMAT, "score.weight",
                      "classification model without score.weight in its weights");
  if (rc) goto fail;
  size_t np = 0;
  ft_param *ps = model_params(m->model, &np);
  for (size_t i = 0; i < np; i++)
    if (ps[i].saved) m->bytes += ps[i].numel * sizeof(float);
  m->lw = xcalloc(m, (size_t)m->L, sizeof *m->lw);
  if (!m->lw) goto nomem;
  rc = bind_weights(m, err);
  if (rc) goto fail;
  if (transpose_conv1d(m)) goto nomem;
  size_t T = (size_t)m->max_ctx, CH = INF_CHUNK;
  m->kv = xcalloc(m, 2 * (size_t)m->L * T * m->KD, sizeof(float));
  m->x = xcalloc(m, CH * m->C, sizeof(float));
  m->xn = xcalloc(m, CH * m->C, sizeof(float));
  m->qkv = xcalloc(m, CH * (m->QD + 2 * m->KD), sizeof(float));
  m->att = xcalloc(m, CH * m->QD, sizeof(float));
  m->ff1 = xcalloc(m, CH * m->FF, sizeof(float));
  m->ff2 = xcalloc(m, CH * m->FF, sizeof(float));
  m->scores = xcalloc(m, INF_ATT_ROWS * T, sizeof(float));
  m->nmean = xcalloc(m, CH, sizeof(float));
  m->nrstd = xcalloc(m, CH * (size_t)m->NH, sizeof(float));
  m->logits = xcalloc(m, (size_t)m->NOUT, sizeof(float));
  m->work = xcalloc(m, (size_t)m->NOUT, sizeof(float));
  m->cand = xcalloc(m, (size_t)m->NOUT, sizeof(inf_cand));
  if (!m->kv || !m->x || !m->xn || !m->qkv || !m->att || !m->ff1 || !m->ff2 || !m->scores ||
      !m->nmean || !m->nrstd || !m->logits || !m->work || !m->cand)
    goto nomem;
  for (int l = 0; l < m->L; l++) {
    m->lw[l].kc = m->kv + (2 * (size_t)l) * T * m->KD;
    m->lw[l].vc = m->kv + (2 * (size_t)l + 1) * T * m->KD;
  }
  if (m->a->pos == FT_POS_ROPE) {
    int h2 = m->HD / 2;
    m->rope_cos = xcalloc(m, T * h2, sizeof(float));
    m->rope_sin = xcalloc(m, T * h2, sizeof(float));
    if (!m->rope_cos || !m->rope_sin) goto nomem;
    rope_tables(m->rope_cos, m->rope_sin, (int)T, m->HD, c->rope_theta, &c->rope_scaling);
    if (m->a->sliding_layers) { /* local layers: their own base, never rope_scaling */
      m->rope_cos_l = xcalloc(m, T * h2, sizeof(float));
      m->rope_sin_l = xcalloc(m, T * h2, sizeof(float));
      if (!m->rope_cos_l || !m->rope_sin_l) goto nomem;
      rope_tables(m->rope_cos_l, m->rope_sin_l, (int)T, m->HD, c->rope_local_theta, NULL);
    }
  }
  /* the same factors as model.c's (model_new) */
  m->woff = m->a->norm == FT_NORM_RMS_1P ? 1.0f : 0.0f;
  m->att_scale = c->attn_scalar > 0.0f ? (float)(1.0 / sqrt((double)c->attn_scalar))
                                       : 1.0f / sqrtf((float)m->HD);
  m->emb_scale = m->a->embed_scale ? (float)sqrt((double)m->C) : 1.0f;
  for (int l = 0; l < m->L; l++) {
    int sl = m->a->sliding_layers && c->sliding[l];
    m->lw[l].window = sl ? c->sliding_window : 0;
    m->lw[l].rope_cos = sl ? m->rope_cos_l : m->rope_cos;
    m->lw[l].rope_sin = sl ? m->rope_sin_l : m->rope_sin;
  }
  add_eos(m, tok_eos_id(m->tk));
  add_eos(m, c->eos_token_id);
  const char *turn_end = chat_turn_end(m->chat); /* serving stops where a turn ends */
  if (turn_end) add_eos(m, tok_token_id(m->tk, turn_end));
  *out = m;
  return 0;
nomem:
  rc = ft_error_set(err, FT_ENOMEM, "", "out of memory loading %s", model_dir);
fail:
  infer_free(m);
  return rc;
}

void infer_free(ft_infer *m) {
  if (!m) return;
  model_free(m->model);
  tok_free(m->tk);
  free(m->lw);
  free(m->rope_cos);
  free(m->rope_sin);
  free(m->rope_cos_l);
  free(m->rope_sin_l);
  free(m->kv);
  free(m->x);
  free(m->xn);
  free(m->qkv);
  free(m->att);
  free(m->ff1);
  free(m->ff2);
  free(m->scores);
  free(m->nmean);
  free(m->nrstd);
  free(m->logits);
  free(m->hscratch);
  free(m->elp);
  free(m->etop);
  free(m->etlp);
  free(m->work);
  free(m->cand);
  free(m);
}

const ft_config *infer_config(const ft_infer *m) { return &m->cfg; }
ft_task infer_task(const ft_infer *m) { return m->task; }
const tok *infer_tok(const ft_infer *m) { return m->tk; }
ft_chat_family infer_chat(const ft_infer *m) { return m->chat; }
int infer_max_ctx(const ft_infer *m) { return m->max_ctx; }
size_t infer_bytes(const ft_infer *m) { return m->bytes; }

int infer_is_eos(const ft_infer *m, int32_t id) {
  for (int i = 0; i < m->n_eos; i++)
    if (m->eos[i] == id) return 1;
  return 0;
}

/* ------------------------------------------------------------ forward -- */

/* out (T,C) = norm(inp): the family's norm (layers.c's, with mean/rstd into
 * scratch) */
static void norm_forward(ft_infer *m, float *out, const float *inp, const float *w, const float *b,
                         int T, int C, float eps) {
  if (m->a->norm == FT_NORM_LAYER)
    layernorm_forward(out, m->nmean, m->nrstd, inp, w, b, T, C, eps);
  else
    rmsnorm_forward(out, m->nrstd, inp, w, m->woff, T, C, eps);
}

/* out (T,QD): causal attention of the rows at positions start..start+T-1
 * over the cache rows 0..position (the last w->window of them on a sliding
 * layer). q (T, q_stride) holds the queries. Per
 * head, blocks of INF_ATT_ROWS query rows, each one layers.c attention
 * block over the keys up to the block's last position (one new token: two
 * GEMVs). */
static void cached_attention(ft_infer *m, float *out, const float *q, int q_stride,
                             const inf_layer *w, int T, int start) {
  int rep = m->NH / m->NKV, HD = m->HD, KD = m->KD, QD = m->QD;
  for (int h = 0; h < m->NH; h++) {
    const float *kh = w->kc + (size_t)(h / rep) * HD, *vh = w->vc + (size_t)(h / rep) * HD;
    for (int r0 = 0; r0 < T; r0 += INF_ATT_ROWS) {
      int rb = T - r0 < INF_ATT_ROWS ? T - r0 : INF_ATT_ROWS, q0 = start + r0;
      attention_block_forward(out + (size_t)r0 * QD + (size_t)h * HD, QD, m->scores, q0 + rb,
                              q + (size_t)r0 * q_stride + (size_t)h * HD, q_stride, kh, vh, KD, rb,
                              q0, HD, m->att_scale, w->window);
    }
  }
}

/* Runs ids[0..T) (T <= INF_CHUNK) at positions start.., filling the cache;
 * the last row's logits into m->logits (for a classifier the score head's
 * outputs). all (T,NOUT) or NULL: every row's logits. tgt (T) or NULL: each
 * row's log p(tgt) and its k most likely tokens into m->elp/etop/etlp (LM;
 * rows with tgt -1 skipped). The layer is model.c's forward, op for op, with
 * the cache in place of the batch. */
static void forward_chunk(ft_infer *m, const int32_t *ids, int T, int start, const int32_t *tgt,
                          int k, float *all) {
  const ft_arch *a = m->a;
  int C = m->C, QD = m->QD, KD = m->KD, FF = m->FF;
  float eps = m->cfg.norm_eps;
  float *x = m->x, *xn = m->xn;
  for (int t = 0; t < T; t++) {
    const float *e = m->wte + (size_t)ids[t] * C;
    for (int i = 0; i < C; i++) x[(size_t)t * C + i] = e[i] * m->emb_scale;
    if (m->wpe) {
      const float *pe = m->wpe + (size_t)(start + t) * C;
      for (int i = 0; i < C; i++) x[(size_t)t * C + i] += pe[i];
    }
  }
  int o = arch_attn_out(a), up = arch_mlp_up(a), gate = arch_mlp_gate(a), down = arch_mlp_down(a);
  for (int l = 0; l < m->L; l++) {
    inf_layer *w = &m->lw[l];
    norm_forward(m, xn, x, w->n1w, w->n1b, T, C, eps);
    float *kc = w->kc + (size_t)start * KD, *vc = w->vc + (size_t)start * KD;
    int qs = QD;
    if (a->fused_qkv) {
      linear_forward(m->qkv, xn, w->w[FT_MOD_QKV], w->b[FT_MOD_QKV], T, C, 3 * C, 0);
      for (int t = 0; t < T; t++) {
        const float *r = m->qkv + (size_t)t * 3 * C;
        memcpy(kc + (size_t)t * KD, r + C, (size_t)C * sizeof(float));
        memcpy(vc + (size_t)t * KD, r + 2 * C, (size_t)C * sizeof(float));
      }
      qs = 3 * C;
    } else {
      linear_forward(m->qkv, xn, w->w[FT_MOD_Q], w->b[FT_MOD_Q], T, C, QD, 0);
      linear_forward(kc, xn, w->w[FT_MOD_K], w->b[FT_MOD_K], T, C, KD, 0);
      linear_forward(vc, xn, w->w[FT_MOD_V], w->b[FT_MOD_V], T, C, KD, 0);
    }
    if (a->has_qk_norm) { /* in place: each row is read before it is written */
      rmsnorm_forward(m->qkv, m->nrstd, m->qkv, w->qnw, m->woff, T * m->NH, m->HD, eps);
      rmsnorm_forward(kc, m->nrstd, kc, w->knw, m->woff, T * m->NKV, m->HD, eps);
    }
    if (a->pos == FT_POS_ROPE) { /* the tables from row start: positions start.. */
      size_t p0 = (size_t)start * (m->HD / 2);
      rope_forward(m->qkv, w->rope_cos + p0, w->rope_sin + p0, NULL, 1, T, m->NH, m->HD);
      rope_forward(kc, w->rope_cos + p0, w->rope_sin + p0, NULL, 1, T, m->NKV, m->HD);
    }
    cached_attention(m, m->att, m->qkv, qs, w, T, start);
    linear_forward(xn, m->att, w->w[o], w->b[o], T, QD, C, 0);
    if (a->post_norms) norm_forward(m, xn, xn, w->nAw, NULL, T, C, eps); /* in place */
    residual_add(x, xn, (size_t)T * C);
    norm_forward(m, xn, x, w->n2w, w->n2b, T, C, eps);
    if (a->gated_mlp) {
      linear_forward(m->ff1, xn, w->w[gate], w->b[gate], T, C, FF, 0);
      linear_forward(m->ff2, xn, w->w[up], w->b[up], T, C, FF, 0);
      if (a->act == FT_ACT_SILU)
        swiglu_forward(m->ff1, m->ff1, m->ff2, (size_t)T * FF);
      else
        geglu_forward(m->ff1, m->ff1, m->ff2, (size_t)T * FF);
    } else {
      linear_forward(m->ff1, xn, w->w[up], w->b[up], T, C, FF, 0);
      gelu_forward(m->ff1, m->ff1, (size_t)T * FF);
    }
    linear_forward(xn, m->ff1, w->w[down], w->b[down], T, FF, C, 0);
    if (a->post_norms) norm_forward(m, xn, xn, w->nMw, NULL, T, C, eps); /* in place */
    residual_add(x, xn, (size_t)T * C);
  }
  float cap = m->task == FT_TASK_CAUSAL_LM ? m->cfg.final_softcap : 0.0f;
  int r0 = all || tgt ? 0 : T - 1;
  norm_forward(m, xn, x + (size_t)r0 * C, m->nfw, m->nfb, T - r0, C, eps);
  if (all) {
    linear_forward(all, xn, m->head, NULL, T, C, m->NOUT, 0);
    if (cap > 0.0f) softcap_forward(all, (size_t)T * m->NOUT, cap);
  }
  if (tgt) {
    ft_xent_sums sums = {0};
    ft_head_rows rows = {.lp = m->elp, .k = k, .top_id = m->etop, .top_lp = m->etlp};
    lm_head_xent(&sums, &rows, NULL, NULL, m->hscratch, xn, tgt, m->head, T, C, m->V, m->hR, cap,
                 0.0f);
  }
  linear_forward(m->logits, xn + (size_t)(T - 1 - r0) * C, m->head, NULL, 1, C, m->NOUT, 0);
  if (cap > 0.0f) softcap_forward(m->logits, (size_t)m->NOUT, cap);
}

/* echo's buffers, at its first use */
static int grow_scoring(ft_infer *m) {
  if (m->hscratch) return 0;
  m->elp = xcalloc(m, INF_CHUNK, sizeof(float));
  m->etop = xcalloc(m, (size_t)INF_CHUNK * FT_TOPK_MAX, sizeof(int32_t));
  m->etlp = xcalloc(m, (size_t)INF_CHUNK * FT_TOPK_MAX, sizeof(float));
  m->hR = lm_head_rows(INF_CHUNK, m->V);
  m->hscratch = xcalloc(m, lm_head_scratch(m->hR, m->C, m->V), sizeof(float));
  return m->elp && m->etop && m->etlp && m->hscratch ? 0 : FT_ENOMEM;
}

static int check_ids(const ft_infer *m, const int32_t *ids, size_t n, ft_error *err) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= m->V)
      return ft_error_set(err, FT_ERANGE, "prompt", "token %zu: id %d outside the vocabulary [0,%d)",
                          i, (int)ids[i], m->V);
  return 0;
}

int infer_eval(ft_infer *m, const int32_t *ids, size_t n, size_t start, float *logits,
               ft_error *err) {
  if (!n) return 0;
  if (start + n > (size_t)m->max_ctx)
    return ft_error_set(err, FT_ERANGE, "prompt", "%zu tokens at position %zu exceed the context of %d",
                        n, start, m->max_ctx);
  int rc = check_ids(m, ids, n, err);
  if (rc) return rc;
  for (size_t off = 0; off < n; off += INF_CHUNK) {
    int T = n - off < INF_CHUNK ? (int)(n - off) : INF_CHUNK;
    forward_chunk(m, ids + off, T, (int)(start + off), NULL, 0,
                  logits ? logits + off * m->NOUT : NULL);
  }
  return 0;
}

/* ------------------------------------------------------------ sampling -- */

static int cmp_desc(const void *a, const void *b) {
  const inf_cand *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id - y->id;
}

static int32_t sample(ft_infer *m, const float *logits, const ft_gen_opts *o, ft_rng *rng) {
  int V = m->V;
  if (o->temperature == 0.f) {
    int32_t best = 0;
    topk(logits, V, 1, &best);
    return best;
  }
  float *p = m->work, mx = logits[0];
  for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
  double sum = 0;
  for (int i = 0; i < V; i++) sum += (p[i] = expf((logits[i] - mx) / o->temperature));
  for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
  float u = rng_uniform(rng);
  if (o->top_p >= 1.f) {
    double tot = 0, c = 0;
    int lastnz = 0;
    for (int i = 0; i < V; i++)
      if (p[i] > 0.f) {
        tot += p[i];
        lastnz = i;
      }
    double r = u * tot;
    for (int i = 0; i < V; i++) {
      c += p[i];
      if (r < c) return i;
    }
    return lastnz;
  }
  /* nucleus: the smallest most-probable set whose mass reaches top_p */
  int n = 0;
  for (int i = 0; i < V; i++)
    if (p[i] > 0.f) m->cand[n++] = (inf_cand){p[i], i};
  qsort(m->cand, (size_t)n, sizeof *m->cand, cmp_desc);
  double c = 0;
  int keep = 0;
  while (keep < n) {
    c += m->cand[keep++].p;
    if (c >= o->top_p) break;
  }
  double r = u * c, acc = 0;
  for (int i = 0; i < keep; i++) {
    acc += m->cand[i].p;
    if (r < acc) return m->cand[i].id;
  }
  return m->cand[keep - 1].id;
}

/* ------------------------------------------------------------ text -- */

/* Incremental text of a token sequence: text is the decode of ctx + ids
 * minus the decode of ctx; done bytes were reported. */
typedef struct {
  int32_t *ids; /* ctx tokens then the sequence */
  size_t n, nctx;
  size_t base; /* bytes of the ctx's text */
  char *text;
  size_t len;
  size_t done;
  int skip_special;
} inf_text;

static int text_redecode(const tok *tk, inf_text *s) {
  free(s->text);
  s->text = NULL;
  return tok_decode_len(tk, s->ids, s->n, s->skip_special, &s->text, &s->len);
}

/* bytes of text [done, end) that are final: the trailing U+FFFD run (an
 * unfinished character) is held back */
static size_t text_stable(const inf_text *s) {
  size_t e = s->len;
  while (e >= s->base + 3 && e - 3 >= s->done && !memcmp(s->text + e - 3, "\xEF\xBF\xBD", 3)) e -= 3;
  return e;
}

/* ------------------------------------------------------------ generate -- */

typedef struct {
  infer_token_fn cb;
  void *ud;
  int rc;
} inf_sink;

static void fill_logprobs(ft_gen_token *t, const float *logits, int V, float lse, int k) {
  t->logprob = logits[t->id] - lse;
  t->n_top = 0;
  if (k > 0) {
    t->n_top = topk(logits, V, k, t->top_id);
    for (int i = 0; i < t->n_top; i++) t->top_logprob[i] = logits[t->top_id[i]] - lse;
  }
}

static int check_opts(const ft_infer *m, size_t n, const ft_gen_opts *o, ft_error *err) {
  if (m->task != FT_TASK_CAUSAL_LM)
    return ft_error_set(err, FT_EINVALID, "model", "a classification model does not generate text");
  if (!o) return ft_error_set(err, FT_EINVALID, "options", "no options");
  if (o->max_tokens < 0)
    return ft_error_set(err, FT_ERANGE, "max_tokens", "max_tokens must be >= 0");
  if (!(o->temperature >= 0.f) || !isfinite(o->temperature))
    return ft_error_set(err, FT_ERANGE, "temperature", "temperature must be >= 0");
  if (!(o->top_p > 0.f && o->top_p <= 1.f))
    return ft_error_set(err, FT_ERANGE, "top_p", "top_p must be in (0, 1]");
  if (o->logprobs > FT_MAX_TOP_LOGPROBS)
    return ft_error_set(err, FT_ERANGE, "logprobs", "logprobs must be at most %d",
                        FT_MAX_TOP_LOGPROBS);
  if (o->n_stop < 0 || o->n_stop > FT_MAX_STOP)
    return ft_error_set(err, FT_ERANGE, "stop", "at most %d stop strings", FT_MAX_STOP);
  for (int i = 0; i < o->n_stop; i++)
    if (!o->stop[i] || !o->stop[i][0])
      return ft_error_set(err, FT_EINVALID, "stop", "stop string %d is empty", i);
  if (n == 0) return ft_error_set(err, FT_EINVALID, "prompt", "the prompt has no tokens");
  if (n > (size_t)m->max_ctx)
    return ft_error_set(err, FT_ERANGE, "prompt", "the prompt has %zu tokens, the context holds %d",
                        n, m->max_ctx);
  if (n + (size_t)o->max_tokens > (size_t)m->max_ctx)
    return ft_error_set(err, FT_ERANGE, "max_tokens",
                        "prompt (%zu tokens) + max_tokens (%d) exceeds the context of %d", n,
                        o->max_tokens, m->max_ctx);
  return 0;
}

/* earliest start of a stop string in s[from, end), or -1 */
static long find_stop(const char *s, size_t from, size_t end, const ft_gen_opts *o) {
  long best = -1;
  for (int i = 0; i < o->n_stop; i++) {
    size_t k = strlen(o->stop[i]);
    for (size_t p = from; p + k <= end && (best < 0 || p < (size_t)best); p++)
      if (!memcmp(s + p, o->stop[i], k)) {
        best = (long)p;
        break;
      }
  }
  return best;
}

/* length of the longest suffix of s[from, end) that is a proper prefix of a stop string */
static size_t stop_prefix(const char *s, size_t from, size_t end, const ft_gen_opts *o) {
  size_t best = 0;
  if (end <= from) return 0;
  for (int i = 0; i < o->n_stop; i++) {
    size_t k = strlen(o->stop[i]);
    for (size_t len = k - 1; len > best; len--)
      if (len <= end - from && !memcmp(s + end - len, o->stop[i], len)) {
        best = len;
        break;
      }
  }
  return best;
}

static int emit(inf_sink *k, ft_gen_token *t) {
  if (!k->rc && k->cb) k->rc = k->cb(k->ud, t);
  return k->rc;
}

/* Reports the prompt (echo) with its log-probabilities while filling the
 * cache; leaves the last prompt row's logits in m->logits[0]. */
static int prefill(ft_infer *m, const int32_t *prompt, size_t n, const ft_gen_opts *o,
                   inf_sink *k, ft_error *err) {
  if (!o->echo) {
    for (size_t off = 0; off < n; off += INF_CHUNK) {
      int T = n - off < INF_CHUNK ? (int)(n - off) : INF_CHUNK;
      forward_chunk(m, prompt + off, T, (int)off, NULL, 0, NULL);
    }
    return 0;
  }
  if (grow_scoring(m)) return ft_error_set(err, FT_ENOMEM, "", "out of memory");
  int nk = o->logprobs > 0 ? o->logprobs : 0, n_top = nk < m->V ? nk : m->V;
  inf_text tx = {.skip_special = 0};
  tx.ids = malloc(n * sizeof(int32_t));
  if (!tx.ids) return ft_error_set(err, FT_ENOMEM, "", "out of memory");
  ft_gen_token t = {.is_prompt = 1};
  int rc = 0;
  size_t loaded = (size_t)-1; /* offset of the chunk m->elp/etop/etlp score */
  for (size_t i = 0; i < n && !rc && !k->rc; i++) {
    t.id = prompt[i];
    t.n_top = 0;
    if (i == 0) {
      t.logprob = NAN; /* nothing before it */
    } else { /* token i's logprob comes from row i-1 */
      size_t off = (i - 1) / INF_CHUNK * INF_CHUNK;
      if (off != loaded) { /* row j's target: the prompt token after it */
        int T = n - off < INF_CHUNK ? (int)(n - off) : INF_CHUNK;
        int32_t tg[INF_CHUNK];
        for (int j = 0; j < T; j++) tg[j] = off + j + 1 < n ? prompt[off + j + 1] : -1;
        forward_chunk(m, prompt + off, T, (int)off, tg, nk, NULL);
        loaded = off;
      }
      size_t j = i - 1 - off;
      t.logprob = m->elp[j];
      t.n_top = n_top;
      memcpy(t.top_id, m->etop + j * nk, (size_t)n_top * sizeof(int32_t));
      memcpy(t.top_logprob, m->etlp + j * nk, (size_t)n_top * sizeof(float));
    }
    tx.ids[tx.n++] = prompt[i];
    rc = text_redecode(m->tk, &tx);
    if (rc) {
      rc = ft_error_set(err, rc, "prompt", "cannot decode the prompt");
      break;
    }
    size_t end = i + 1 == n ? tx.len : text_stable(&tx);
    t.text = tx.text + tx.done;
    t.text_len = end > tx.done ? end - tx.done : 0;
    if (end > tx.done) tx.done = end;
    emit(k, &t);
  }
  if (!rc && !k->rc) { /* the last chunk leaves the last row's logits, for the first new token */
    size_t off = (n - 1) / INF_CHUNK * INF_CHUNK;
    if (off != loaded)
      forward_chunk(m, prompt + off, n - off < INF_CHUNK ? (int)(n - off) : INF_CHUNK, (int)off,
                    NULL, 0, NULL);
  }
  free(tx.ids);
  free(tx.text);
  return rc;
}

int infer_generate(ft_infer *m, const int32_t *prompt, size_t n, const ft_gen_opts *o,
                   infer_token_fn cb, void *ud, ft_gen_result *res, ft_error *err) {
  ft_gen_result r0 = {(long)n, 0, "length"};
  if (res) *res = r0;
  int rc = check_opts(m, n, o, err);
  if (!rc) rc = check_ids(m, prompt, n, err);
  if (rc) return rc;
  inf_sink k = {cb, ud, 0};
  if (o->max_tokens == 0 && !o->echo) return 0;
  rc = prefill(m, prompt, n, o, &k, err);
  if (rc) return rc;
  if (k.rc) {
    if (res) res->finish_reason = "cancelled";
    return k.rc;
  }
  inf_text tx = {.skip_special = 1};
  size_t nctx = n < INF_CTX_TOKENS ? n : INF_CTX_TOKENS;
  tx.ids = malloc((nctx + (size_t)o->max_tokens + 1) * sizeof(int32_t));
  if (!tx.ids) return ft_error_set(err, FT_ENOMEM, "", "out of memory");
  memcpy(tx.ids, prompt + n - nctx, nctx * sizeof(int32_t));
  tx.n = tx.nctx = nctx;
  rc = text_redecode(m->tk, &tx);
  if (!rc) {
    tx.done = tx.len;
    while (tx.done >= 3 && !memcmp(tx.text + tx.done - 3, "\xEF\xBF\xBD", 3)) tx.done -= 3;
    tx.base = tx.done;
  }
  ft_rng rng;
  rng_init(&rng, o->seed);
  const char *finish = "length";
  long made = 0;
  for (int i = 0; i < o->max_tokens && !rc; i++) {
    const float *lg = m->logits;
    ft_gen_token t = {0};
    t.id = sample(m, lg, o, &rng);
    fill_logprobs(&t, lg, m->V, logsumexp(lg, m->V), o->logprobs);
    made++;
    int last = i + 1 == o->max_tokens;
    int eos = o->stop_eos && infer_is_eos(m, t.id);
    if (eos) { /* the marker has no text; what was held back becomes final */
      finish = "stop";
      last = 1;
    } else {
      tx.ids[tx.n++] = t.id;
      rc = text_redecode(m->tk, &tx);
      if (rc) {
        rc = ft_error_set(err, rc, "", "cannot decode the completion");
        break;
      }
    }
    size_t end = last ? tx.len : text_stable(&tx);
    long at = find_stop(tx.text, tx.done, end, o);
    if (at >= 0) {
      end = (size_t)at;
      finish = "stop";
      last = 1;
    } else if (!last) {
      end -= stop_prefix(tx.text, tx.done, end, o);
    }
    if (end < tx.done) end = tx.done;
    t.text = tx.text + tx.done;
    t.text_len = end - tx.done;
    tx.done = end;
    if (emit(&k, &t)) {
      finish = "cancelled";
      break;
    }
    if (last) break;
    forward_chunk(m, &t.id, 1, (int)(n + (size_t)i), NULL, 0, NULL);
  }
  free(tx.ids);
  free(tx.text);
  if (res) {
    res->completion_tokens = made;
    res->finish_reason = finish;
  }
  return rc ? rc : k.rc;
}

/* ------------------------------------------------------------ classify -- */

int infer_classify(ft_infer *m, const int32_t *ids, size_t n, float *probs, ft_error *err) {
  if (m->task != FT_TASK_CLASSIFY)
    return ft_error_set(err, FT_EINVALID, "model", "a causal LM has no classification head");
  if (n == 0) return ft_error_set(err, FT_EINVALID, "input", "the input has no tokens");
  if (n > (size_t)m->max_ctx)
    return ft_error_set(err, FT_ERANGE, "input", "the input has %zu tokens, the context holds %d",
                        n, m->max_ctx);
  int rc = check_ids(m, ids, n, err);
  if (rc) return rc;
  for (size_t off = 0; off < n; off += INF_CHUNK) {
    int T = n - off < INF_CHUNK ? (int)(n - off) : INF_CHUNK;
    forward_chunk(m, ids + off, T, (int)off, NULL, 0, NULL);
  }
  float lse = logsumexp(m->logits, m->NOUT);
  for (int i = 0; i < m->NOUT; i++) probs[i] = expf(m->logits[i] - lse);
  return 0;
}
