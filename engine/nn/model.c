/* The transformer models (see model.h): every family of nn/arch.h, as causal
 * LMs or sequence classifiers, trained in full, with LoRA, or head-only. The
 * family's row decides which tensors exist and which ops run (norm kind,
 * fused q/k/v, q/k norms, RoPE or learned positions, gated MLP, post norms,
 * sliding-window layers with their own RoPE base, the embedding scale);
 * nothing here knows a family by name.
 * Workload: CPU training at B x T up to a few thousand tokens, where the
 * GEMMs (OpenBLAS) dominate; everything else is a streaming loop in layers.c.
 * Three allocations per model (parameters, gradients, activations) plus a
 * small copy of the batch's integers, all sized at model_new() by running the
 * same builder twice: once to count, once to set pointers. Forward is one loop
 * over layers, backward the same list in reverse (llm.c), stopping at the
 * lowest layer that holds something trainable; weight-gradient GEMMs of frozen
 * tensors are skipped. */
#include "nn/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/rng.h"

/* The linear modules of a layer: nn/arch.h's slots, in the bit order of FT_LORA_*. */
enum { M_Q = FT_MOD_Q, M_K = FT_MOD_K, M_V = FT_MOD_V, M_QKV = FT_MOD_QKV, M_N = FT_MOD_N };

typedef struct {
  float *w, *b, *dw, *db;     /* weight (out,in), or (in,out) when conv1d; bias (out) or NULL */
  float *la, *lb, *dla, *dlb; /* LoRA A (r,in), B (out,r); NULL when not adapted */
  int in, out, conv1d;
} lin;

typedef struct {
  float *h;    /* (N,r) = xd @ A^T */
  float *xd;   /* (N,in) input after dropout; training with dropout only */
  float *mask; /* (N,in) 0 or 1/(1-p) */
} lin_act;

typedef struct {
  float *n1w, *n1b, *dn1w, *dn1b; /* ln_1 / input_layernorm (C); biases GPT-2 only */
  float *n2w, *n2b, *dn2w, *dn2b; /* ln_2 / post_attention_layernorm (C) */
  float *qnw, *dqnw, *knw, *dknw; /* q_norm, k_norm (HD) when arch->has_qk_norm */
  float *nAw, *dnAw, *nMw, *dnMw; /* norms of the attention's and the MLP's outputs (C),
                                     arch->post_norms */
  lin m[M_N];                     /* only the arch's modules are set */
} layer_w;

typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd; /* (N,C) (N) (N); mean GPT-2 only */
  float *q, *k,
      *v; /* fused: into qkv (N,3C) with row stride 3C; else (N,QD) (N,KD) (N,KD), normed, roped */
  float *qpre, *kpre;     /* (N,QD) (N,KD) q, k before q_norm/k_norm (has_qk_norm) */
  float *qn_rstd, *kn_rstd; /* (N*NH) (N*NKV) */
  float *att;  /* (B,NH,T,T) attention probabilities */
  float *atty; /* (N,QD) attention output before the projection */
  float *attn_o, *pa_rstd; /* (N,C) (N) the projection's output before its norm (post_norms) */
  float *res2; /* (N,C) residual after attention */
  float *ln2, *ln2_mean, *ln2_rstd;
  float *ffa, *ffb; /* GPT-2: c_fc out, -; Llama: gate, up (N,FF) */
  float *ffh;       /* gelu(ffa) or silu(gate)*up (N,FF): one buffer shared by all
                       layers, recomputed in backward (cheap; saves L x N x FF) */
  float *mlp_o, *pm_rstd; /* (N,C) (N) the MLP's output before its norm (post_norms) */
  float *res3;      /* (N,C) layer output */
  lin_act la[M_N];
} layer_a;

struct ft_model {
  ft_config cfg;
  const ft_arch *a; /* cfg.arch */
  ft_task task;
  ft_method method;
  ft_lora lora;
  int has_lora, training, B, T;
  int V, C, L, NH, NKV, HD, QD, KD, FF, NL, maxP;
  float lscale; /* alpha / r */
  float woff;   /* RMSNorm weight offset: 1 for x * (1 + w) (FT_NORM_RMS_1P), else 0 */
  float att_scale; /* attention scores' scale: attn_scalar (or HD)^-0.5 */
  float emb_scale; /* token embeddings' factor: sqrt(C) (arch->embed_scale) or 1 */

  ft_param *params;
  size_t n_params, p_n, g_n, a_n; /* counts of the three blocks, in floats */
  float *pblock, *gblock, *ablock;
  int32_t *iblock; /* batch copy: tokens, targets, pos, seg (N), lens, labels (B) */
  ft_param dummy;  /* target of the counting pass */

  /* weights */
  float *wte, *dwte;              /* (V,C) token embedding */
  float *wpe, *dwpe;              /* (maxP,C) GPT-2 positions */
  float *nfw, *nfb, *dnfw, *dnfb; /* final norm (C) */
  lin head;                       /* lm_head (V,C) or score (NL,C), no bias */
  layer_w *lw;
  int emb_trainable; /* embeddings (and so every layer's input gradient) trained */
  int bw_stop;       /* lowest layer with a trainable tensor; L if none */
  int below_head;    /* anything under the head trainable */

  /* activations */
  layer_a *la;
  float *x0;                        /* (N,C) embeddings */
  float *lnf, *lnf_mean, *lnf_rstd; /* (N,C) (N) (N) */
  float *pooled;                    /* (B,C) classification: last valid token of each row */
  float *logits;                    /* (B,NL) classification only */
  float *lse;                       /* (B) classification: logsumexp of the rows with a loss */
  float *hscratch;                  /* LM: lm_head_xent's (hR,V) logits + 2 (hR,C) */
  float *tlp;                       /* (N) LM: log p(target), NaN on rows without one */
  int hR;                           /* LM: rows per head chunk */
  float *rope_cos, *rope_sin;       /* (T,HD/2) */
  float *rope_cos_l, *rope_sin_l;   /* (T,HD/2) sliding layers' (rope_local_theta), or NULL */
  /* backward scratch */
  float *dres, *dln;   /* (N,C) */
  float *dpost;        /* (N,C) gradient of a post-normed output (post_norms) */
  float *datty;        /* (N,QD) */
  float *dq, *dk, *dv; /* fused: into one (N,3C) block; else (N,QD) (N,KD) (N,KD) */
  float *dqpre, *dkpre; /* (N,QD) (N,KD) gradients before q_norm/k_norm (has_qk_norm) */
  float *dff1, *dff2;  /* (N,FF) */
  float *datt;         /* (T,T) */
  float *dlogits;      /* (B,NL) classification */
  float *dpooled;      /* (B,C) */
  float *dh;           /* (N,r) */
  float *dxd;          /* (N,max in) with dropout */

  /* last forward */
  int fw_train, fw_B, fw_T, fw_dropout, merged;
  long n_trained, n_correct;
  int32_t *tokens, *targets, *lens, *labels;
  int32_t *pos, *seg;       /* (N) the batch's, padding positions set to t */
  int32_t *fw_pos, *fw_seg; /* pos/seg, or NULL for a batch without them */
};

/* ---- building the tables ---- */

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* dst = a + b, cut at FT_NAME_MAX - 1 (no name here comes near it) */
static void join(char *dst, const char *a, const char *b) {
  size_t na = strnlen(a, FT_NAME_MAX - 1), nb = strnlen(b, FT_NAME_MAX - 1 - na);
  memcpy(dst, a, na);
  memcpy(dst + na, b, nb);
  dst[na + nb] = 0;
}

/* Adds a tensor: pass 0 counts, pass 1 fills the table and points into the
 * blocks. Returns the entry (the dummy in pass 0). */
static ft_param *addp(ft_model *m, int pass, const char *name, int ndim, int s0, int s1,
                      int trainable) {
  size_t numel = (size_t)s0 * (ndim > 1 ? (size_t)s1 : 1);
  int has_g = trainable && m->training;
  if (pass == 0) {
    m->n_params++;
    m->p_n += align16(numel);
    if (has_g) m->g_n += align16(numel);
    return &m->dummy;
  }
  ft_param *p = &m->params[m->n_params++];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  p->shape[0] = s0;
  p->shape[1] = ndim > 1 ? s1 : 0;
  p->numel = numel;
  p->w = m->pblock + m->p_n;
  m->p_n += align16(numel);
  p->g = NULL;
  if (has_g) {
    p->g = m->gblock + m->g_n;
    m->g_n += align16(numel);
  }
  p->trainable = trainable;
  p->saved = 1;
  return p;
}

/* A tensor that shares another's storage (tied lm_head): not saved, and not
 * trainable itself, so optimizers and counts see the shared tensor once. */
static void add_alias(ft_model *m, int pass, const char *name, const ft_param *target) {
  if (pass == 0) {
    m->n_params++;
    return;
  }
  ft_param *p = &m->params[m->n_params++];
  *p = *target;
  snprintf(p->name, sizeof p->name, "%s", name);
  p->g = NULL;
  p->trainable = 0;
  p->saved = 0;
}

static void add_lin(ft_model *m, int pass, lin *ln, const char *path, int in, int out, int conv1d,
                    int bias, int trainable) {
  char name[FT_NAME_MAX];
  join(name, path, ".weight");
  ft_param *p = addp(m, pass, name, 2, conv1d ? in : out, conv1d ? out : in, trainable);
  ln->w = p->w;
  ln->dw = p->g;
  ln->b = ln->db = NULL;
  if (bias) {
    join(name, path, ".bias");
    p = addp(m, pass, name, 1, out, 0, trainable);
    ln->b = p->w;
    ln->db = p->g;
  }
  ln->in = in;
  ln->out = out;
  ln->conv1d = conv1d;
  ln->la = ln->lb = ln->dla = ln->dlb = NULL;
}

static void add_norm(ft_model *m, int pass, const char *path, int bias, int trainable, float **w,
                     float **dw, float **b, float **db) {
  char name[FT_NAME_MAX];
  join(name, path, ".weight");
  ft_param *p = addp(m, pass, name, 1, m->C, 0, trainable);
  *w = p->w;
  *dw = p->g;
  *b = *db = NULL;
  if (bias) {
    join(name, path, ".bias");
    p = addp(m, pass, name, 1, m->C, 0, trainable);
    *b = p->w;
    *db = p->g;
  }
}

static int mod_in_arch(const ft_model *m, int i) { return m->a->mods[i].path != NULL; }

static void add_head_norm(ft_model *m, int pass, const char *path, int trainable, float **w,
                          float **dw) {
  char name[FT_NAME_MAX];
  join(name, path, ".weight");
  ft_param *p = addp(m, pass, name, 1, m->HD, 0, trainable);
  *w = p->w;
  *dw = p->g;
}

/* in and out of a module slot */
static void mod_dims(const ft_model *m, int i, int *in, int *out) {
  arch_mod_dims(i, m->C, m->QD, m->KD, m->FF, in, out);
}

/* a slot's bias: attention inputs follow attention_bias where config.json
 * sets it (else the family's fixed choice), the attention output too when
 * the family says so, the MLP the family's mlp_bias */
static int mod_bias(const ft_model *m, int i) {
  const ft_arch *a = m->a;
  int attn = a->bias_key ? m->cfg.attention_bias : a->qkv_bias; /* config.json's, or fixed */
  if (i <= M_V || i == M_QKV) return attn;
  if (i == arch_attn_out(a)) return attn && a->o_bias;
  return a->mlp_bias;
}
static void build_params(ft_model *m, int pass) {
  const ft_arch *A = m->a;
  int full = m->method == FT_METHOD_FULL, nbias = A->norm == FT_NORM_LAYER;
  int C = m->C;
  char path[FT_NAME_MAX], name[FT_NAME_MAX];
  float *dummy_b, *dummy_db; /* post norms have no bias */
  m->n_params = m->p_n = m->g_n = 0;
  join(name, A->embed, ".weight");
  ft_param *emb = addp(m, pass, name, 2, m->V, C, full);
  if (A->pos_embed) {
    join(name, A->pos_embed, ".weight");
    ft_param *p = addp(m, pass, name, 2, m->maxP, C, full);
    m->wpe = p->w;
    m->dwpe = p->g;
  }
  m->wte = emb->w;
  m->dwte = emb->g;
  ft_param emb_copy = *emb; /* the table entry moves nowhere, but keep it plain */
  for (int l = 0; l < m->L; l++) {
    layer_w *w = &m->lw[l];
    char pre[FT_NAME_MAX];
    snprintf(pre, sizeof pre, "%s.%d.", A->layers, l);
    char n1[FT_NAME_MAX], n2[FT_NAME_MAX];
    join(n1, pre, A->norm1);
    join(n2, pre, A->norm2);
    if (!A->norms_last) add_norm(m, pass, n1, nbias, full, &w->n1w, &w->dn1w, &w->n1b, &w->dn1b);
    int mlp_first = A->gated_mlp ? arch_mlp_gate(A) : arch_mlp_up(A);
    for (int i = 0; i < M_N; i++) {
      if (i == mlp_first && !A->norms_last) /* GPT-2's order: ln_1, attn, ln_2, mlp */
        add_norm(m, pass, n2, nbias, full, &w->n2w, &w->dn2w, &w->n2b, &w->dn2b);
      if (!mod_in_arch(m, i)) continue;
      int in, out;
      mod_dims(m, i, &in, &out);
      join(path, pre, A->mods[i].path);
      add_lin(m, pass, &w->m[i], path, in, out, A->conv1d, mod_bias(m, i), full);
      if (i == M_V && A->has_qk_norm) { /* after the projections, as HF lists them */
        join(path, pre, A->q_norm);
        add_head_norm(m, pass, path, full, &w->qnw, &w->dqnw);
        join(path, pre, A->k_norm);
        add_head_norm(m, pass, path, full, &w->knw, &w->dknw);
      }
    }
    if (A->norms_last) { /* HF's order: input, (post-attention), pre-MLP, (post-MLP) */
      add_norm(m, pass, n1, nbias, full, &w->n1w, &w->dn1w, &w->n1b, &w->dn1b);
      if (A->post_norms) {
        join(path, pre, A->norm_attn_out);
        add_norm(m, pass, path, 0, full, &w->nAw, &w->dnAw, &dummy_b, &dummy_db);
      }
      add_norm(m, pass, n2, nbias, full, &w->n2w, &w->dn2w, &w->n2b, &w->dn2b);
      if (A->post_norms) {
        join(path, pre, A->norm_mlp_out);
        add_norm(m, pass, path, 0, full, &w->nMw, &w->dnMw, &dummy_b, &dummy_db);
      }
    }
  }
  add_norm(m, pass, A->final_norm, nbias, full, &m->nfw, &m->dnfw, &m->nfb, &m->dnfb);
  memset(&m->head, 0, sizeof m->head);
  m->head.in = C;
  if (m->task == FT_TASK_CAUSAL_LM) {
    m->head.out = m->V;
    if (m->cfg.tie_embeddings) {
      add_alias(m, pass, "lm_head.weight", &emb_copy);
      m->head.w = emb_copy.w;
      m->head.dw = emb_copy.g;
    } else {
      ft_param *p =
          addp(m, pass, "lm_head.weight", 2, m->V, C, full || m->method == FT_METHOD_HEAD);
      m->head.w = p->w;
      m->head.dw = p->g;
    }
  } else {
    m->head.out = m->NL;
    ft_param *p = addp(m, pass, "score.weight", 2, m->NL, C, 1);
    m->head.w = p->w;
    m->head.dw = p->g;
  }
  if (m->has_lora) {
    int r = m->lora.r;
    for (int l = 0; l < m->L; l++)
      for (int i = 0; i < M_N; i++) {
        lin *ln = &m->lw[l].m[i];
        if (!mod_in_arch(m, i) || !(m->lora.targets & (1u << i))) continue;
        snprintf(path, sizeof path, "base_model.model.%s.%d.%s", A->layers, l, A->mods[i].path);
        join(name, path, ".lora_A.weight");
        ft_param *a = addp(m, pass, name, 2, r, ln->in, 1);
        join(name, path, ".lora_B.weight");
        ft_param *b = addp(m, pass, name, 2, ln->out, r, 1);
        ln->la = a->w;
        ln->dla = a->g;
        ln->lb = b->w;
        ln->dlb = b->g;
      }
  }
}

/* Activations: pass 0 counts, pass 1 hands out pointers (bump allocator). */
static float *take(ft_model *m, int pass, size_t n) {
  float *p = pass ? m->ablock + m->a_n : NULL;
  m->a_n += align16(n);
  return p;
}

static void build_acts(ft_model *m, int pass) {
  size_t B = (size_t)m->B, T = (size_t)m->T, N = B * T, C = (size_t)m->C, FF = (size_t)m->FF;
  size_t QD = (size_t)m->QD, KD = (size_t)m->KD;
  const ft_arch *A = m->a;
  int lnorm = A->norm == FT_NORM_LAYER, tr = m->training;
  int drop = tr && m->has_lora && m->lora.dropout > 0.0f;
  size_t max_in = 0;
  m->a_n = 0;
  m->x0 = take(m, pass, N * C);
  for (int l = 0; l < m->L; l++) {
    layer_a *a = &m->la[l];
    if (!tr && l > 0) { /* inference: the layers share one set of buffers */
      *a = m->la[0];
      continue;
    }
    a->ln1 = take(m, pass, N * C);
    a->ln1_mean = lnorm ? take(m, pass, N) : NULL;
    a->ln1_rstd = take(m, pass, N);
    if (A->fused_qkv) {
      a->q = take(m, pass, N * 3 * C);
      a->k = a->q ? a->q + C : NULL;
      a->v = a->q ? a->q + 2 * C : NULL;
    } else {
      a->q = take(m, pass, N * QD);
      a->k = take(m, pass, N * KD);
      a->v = take(m, pass, N * KD);
    }
    a->qpre = A->has_qk_norm ? take(m, pass, N * QD) : NULL;
    a->kpre = A->has_qk_norm ? take(m, pass, N * KD) : NULL;
    a->qn_rstd = A->has_qk_norm ? take(m, pass, N * (size_t)m->NH) : NULL;
    a->kn_rstd = A->has_qk_norm ? take(m, pass, N * (size_t)m->NKV) : NULL;
    a->att = take(m, pass, B * (size_t)m->NH * T * T);
    a->atty = take(m, pass, N * QD);
    a->attn_o = A->post_norms ? take(m, pass, N * C) : NULL;
    a->pa_rstd = A->post_norms ? take(m, pass, N) : NULL;
    a->res2 = take(m, pass, N * C);
    a->ln2 = take(m, pass, N * C);
    a->ln2_mean = lnorm ? take(m, pass, N) : NULL;
    a->ln2_rstd = take(m, pass, N);
    a->ffa = take(m, pass, N * FF);
    a->ffb = A->gated_mlp ? take(m, pass, N * FF) : NULL;
    a->ffh = l == 0 ? take(m, pass, N * FF) : m->la[0].ffh;
    a->mlp_o = A->post_norms ? take(m, pass, N * C) : NULL;
    a->pm_rstd = A->post_norms ? take(m, pass, N) : NULL;
    a->res3 = take(m, pass, N * C);
    for (int i = 0; i < M_N; i++) {
      lin *ln = &m->lw[l].m[i];
      memset(&a->la[i], 0, sizeof a->la[i]);
      if (!mod_in_arch(m, i) || !m->has_lora || !(m->lora.targets & (1u << i))) continue;
      a->la[i].h = take(m, pass, N * (size_t)m->lora.r);
      if (drop) {
        a->la[i].xd = take(m, pass, N * (size_t)ln->in);
        a->la[i].mask = take(m, pass, N * (size_t)ln->in);
      }
      if ((size_t)ln->in > max_in) max_in = (size_t)ln->in;
    }
  }
  m->lnf = take(m, pass, N * C);
  m->lnf_mean = take(m, pass, N);
  m->lnf_rstd = take(m, pass, N);
  /* LM: the head runs in chunks of hR rows (lm_head_xent), never (N,V) */
  int lm = m->task == FT_TASK_CAUSAL_LM;
  m->hR = lm_head_rows((int)N, m->V);
  m->hscratch = lm ? take(m, pass, lm_head_scratch(m->hR, m->C, m->V)) : NULL;
  m->tlp = lm ? take(m, pass, N) : NULL;
  m->logits = lm ? NULL : take(m, pass, B * (size_t)m->NL);
  m->lse = lm ? NULL : take(m, pass, B);
  m->pooled = lm ? NULL : take(m, pass, B * C);
  int rope = A->pos == FT_POS_ROPE;
  m->rope_cos = rope ? take(m, pass, T * (size_t)m->HD / 2) : NULL;
  m->rope_sin = rope ? take(m, pass, T * (size_t)m->HD / 2) : NULL;
  int local = rope && A->sliding_layers;
  m->rope_cos_l = local ? take(m, pass, T * (size_t)m->HD / 2) : NULL;
  m->rope_sin_l = local ? take(m, pass, T * (size_t)m->HD / 2) : NULL;
  if (!tr) return;
  m->dres = take(m, pass, N * C);
  m->dln = take(m, pass, N * C);
  m->dpost = A->post_norms ? take(m, pass, N * C) : NULL;
  m->datty = take(m, pass, N * QD);
  m->dq = take(m, pass, N * (QD + 2 * KD));
  if (A->fused_qkv) {
    m->dk = m->dq ? m->dq + C : NULL;
    m->dv = m->dq ? m->dq + 2 * C : NULL;
  } else {
    m->dk = m->dq ? m->dq + N * QD : NULL;
    m->dv = m->dq ? m->dq + N * (QD + KD) : NULL;
  }
  m->dqpre = A->has_qk_norm ? take(m, pass, N * QD) : NULL;
  m->dkpre = A->has_qk_norm ? take(m, pass, N * KD) : NULL;
  m->dff1 = take(m, pass, N * FF);
  m->dff2 = take(m, pass, N * FF);
  m->datt = take(m, pass, T * T);
  m->dlogits = lm ? NULL : take(m, pass, B * (size_t)m->NL);
  m->dpooled = lm ? NULL : take(m, pass, B * C);
  m->dh = m->has_lora ? take(m, pass, N * (size_t)m->lora.r) : NULL;
  m->dxd = drop ? take(m, pass, N * max_in) : NULL;
}

/* ---- lifetime ---- */

static int check_config(const ft_config *c, ft_task task, ft_method method, const ft_lora *lora,
                        int B, int T, ft_error *err) {
  const ft_arch *a = c->arch ? c->arch : arch_find(c->model_type);
  if (!a)
    return ft_error_set(err, FT_EUNSUPPORTED, "model_type", "unknown model_type '%.31s'",
                        c->model_type);
  if (c->model_type[0] && strcmp(c->model_type, a->model_type))
    return ft_error_set(err, FT_EINVALID, "model_type", "model_type '%.31s' is not its arch's %s",
                        c->model_type, a->model_type);
  if (!a->gated_mlp && a->act == FT_ACT_SILU)
    return ft_error_set(err, FT_EUNSUPPORTED, "model_type", "no MLP op for the family's activation");
  if (c->n_layer > FT_MAX_LAYERS)
    return ft_error_set(err, FT_EUNSUPPORTED, "num_hidden_layers", "more than %d layers",
                        FT_MAX_LAYERS);
  if (!(c->attn_scalar >= 0.0f))
    return ft_error_set(err, FT_EFORMAT, "query_pre_attn_scalar", "must be positive");
  if (a->sliding_layers) {
    int any = 0;
    for (int l = 0; l < c->n_layer; l++) any |= c->sliding[l];
    if (any && c->sliding_window < 1)
      return ft_error_set(err, FT_EFORMAT, "sliding_window",
                          "sliding layers need a sliding_window of at least 1");
    if (any && !(c->rope_local_theta > 0.0f))
      return ft_error_set(err, FT_EFORMAT, "rope_local_base_freq", "must be positive");
  }
  if (c->vocab_size < 1 || c->hidden_size < 1 || c->n_layer < 1 || c->n_head < 1 ||
      c->n_kv_head < 1 || c->head_dim < 1 || c->intermediate_size < 1)
    return ft_error_set(err, FT_EFORMAT, "config", "config sizes must be positive");
  if (c->n_head % c->n_kv_head)
    return ft_error_set(err, FT_EFORMAT, "num_key_value_heads",
                        "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        c->n_head, c->n_kv_head);
  if (a->fused_qkv && (c->n_head * c->head_dim != c->hidden_size || c->n_kv_head != c->n_head))
    return ft_error_set(err, FT_EFORMAT, "n_head", "fused q/k/v needs hidden = heads * head_dim");
  if (a->pos == FT_POS_ROPE) {
    const ft_rope_scaling *r = &c->rope_scaling;
    if (c->head_dim % 2)
      return ft_error_set(err, FT_EFORMAT, "head_dim", "head_dim must be even for RoPE");
    if (!(c->rope_theta > 0.0f))
      return ft_error_set(err, FT_EFORMAT, "rope_theta", "rope_theta must be positive");
    if (r->kind != FT_ROPE_DEFAULT && !(a->rope_scalings & (1u << r->kind)))
      return ft_error_set(err, FT_EUNSUPPORTED, "rope_scaling.rope_type",
                          "this rope_scaling is not supported for %s", a->model_type);
    if (r->kind != FT_ROPE_DEFAULT && !(r->factor > 0.0f))
      return ft_error_set(err, FT_EFORMAT, "rope_scaling.factor", "factor must be positive");
    if (r->kind == FT_ROPE_LLAMA3 &&
        !(r->low_freq > 0.0f && r->high_freq > r->low_freq && r->orig_max_pos > 0))
      return ft_error_set(err, FT_EFORMAT, "rope_scaling",
                          "llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and "
                          "original_max_position_embeddings > 0");
  }
  if (!(c->final_softcap >= 0.0f && c->final_softcap < INFINITY))
    return ft_error_set(err, FT_EFORMAT, "final_logit_softcapping",
                        "final_logit_softcapping must be a positive number");
  if (c->final_softcap > 0.0f && !a->logit_softcap)
    return ft_error_set(err, FT_EUNSUPPORTED, "final_logit_softcapping",
                        "final_logit_softcapping is not supported for %s", a->model_type);
  if (B < 1 || T < 1) return ft_error_set(err, FT_ESHAPE, "batch", "batch size %d x %d", B, T);
  if (a->pos == FT_POS_LEARNED && T > c->max_position)
    return ft_error_set(err, FT_ESHAPE, "n_positions", "sequence length %d exceeds n_positions %d",
                        T, c->max_position);
  if (task != FT_TASK_CAUSAL_LM && task != FT_TASK_CLASSIFY)
    return ft_error_set(err, FT_EINVALID, "task", "unknown task %d", (int)task);
  if (task == FT_TASK_CLASSIFY && (c->num_labels < 2 || c->num_labels > FT_MAX_LABELS))
    return ft_error_set(err, FT_EUNSUPPORTED, "num_labels",
                        "classification needs 2..%d labels, got %d", FT_MAX_LABELS, c->num_labels);
  if (method == FT_METHOD_HEAD && task == FT_TASK_CAUSAL_LM && c->tie_embeddings)
    return ft_error_set(err, FT_EUNSUPPORTED, "method",
                        "head-only training of a causal LM needs an untied lm_head");
  if (method == FT_METHOD_LORA) {
    if (!lora) return ft_error_set(err, FT_EMISSING, "lora", "LoRA settings missing");
    if (lora->r < 1) return ft_error_set(err, FT_ERANGE, "lora.r", "LoRA rank must be >= 1");
    if (!(lora->dropout >= 0.0f && lora->dropout < 1.0f))
      return ft_error_set(err, FT_ERANGE, "lora.dropout", "LoRA dropout must be in [0,1)");
    if (!(lora->targets & arch_lora_all(a)))
      return ft_error_set(err, FT_EINVALID, "lora.target_modules",
                          "no LoRA target module exists in this architecture");
  } else if (method != FT_METHOD_FULL && method != FT_METHOD_HEAD) {
    return ft_error_set(err, FT_EINVALID, "method", "unknown method %d", (int)method);
  }
  return 0;
}

int model_new(ft_model **out, const ft_config *cfg, ft_task task, ft_method method,
              const ft_lora *lora, int B, int T, int training, ft_error *err) {
  *out = NULL;
  int rc = check_config(cfg, task, method, lora, B, T, err);
  if (rc) return rc;
  ft_model *m = calloc(1, sizeof *m);
  if (!m) return ft_error_set(err, FT_ENOMEM, "", "out of memory");
  m->cfg = *cfg;
  m->a = m->cfg.arch = cfg->arch ? cfg->arch : arch_find(cfg->model_type);
  m->task = task;
  m->method = method;
  m->has_lora = method == FT_METHOD_LORA;
  if (m->has_lora) {
    m->lora = *lora;
    m->lscale = lora->alpha / (float)lora->r;
  }
  m->woff = m->a->norm == FT_NORM_RMS_1P ? 1.0f : 0.0f;
  /* HF: the scale is a Python float (scalar ** -0.5) applied to float32 scores;
   * families without k_attn_scalar keep 1/sqrtf(HD) */
  m->att_scale = cfg->attn_scalar > 0.0f ? (float)(1.0 / sqrt((double)cfg->attn_scalar))
                                         : 1.0f / sqrtf((float)cfg->head_dim);
  /* HF's Gemma3TextScaledWordEmbedding: sqrt(C) as a float32 tensor (the
   * weights' dtype; the engine's weights are float32) */
  m->emb_scale = m->a->embed_scale ? (float)sqrt((double)cfg->hidden_size) : 1.0f;
  m->training = training ? 1 : 0;
  m->B = B;
  m->T = T;
  m->V = cfg->vocab_size;
  m->C = cfg->hidden_size;
  m->L = cfg->n_layer;
  m->NH = cfg->n_head;
  m->NKV = cfg->n_kv_head;
  m->HD = cfg->head_dim;
  m->QD = m->NH * m->HD;
  m->KD = m->NKV * m->HD;
  m->FF = cfg->intermediate_size;
  m->NL = task == FT_TASK_CLASSIFY ? cfg->num_labels : 0;
  m->maxP = cfg->max_position;
  m->lw = calloc((size_t)m->L, sizeof *m->lw);
  m->la = calloc((size_t)m->L, sizeof *m->la);
  if (!m->lw || !m->la) goto nomem;

  build_params(m, 0);
  size_t np = m->n_params, pn = m->p_n, gn = m->g_n;
  build_acts(m, 0);
  size_t an = m->a_n, N = (size_t)B * T;
  m->params = calloc(np, sizeof *m->params);
  m->iblock = malloc(sizeof(int32_t) * (4 * N + 2 * (size_t)B));
  if (!m->params || !m->iblock) goto nomem;
  if (posix_memalign((void **)&m->pblock, 64, sizeof(float) * (pn ? pn : 1))) m->pblock = NULL;
  if (!m->pblock) goto nomem;
  memset(m->pblock, 0, sizeof(float) * pn);
  if (gn) {
    if (posix_memalign((void **)&m->gblock, 64, sizeof(float) * gn)) m->gblock = NULL;
    if (!m->gblock) goto nomem;
    memset(m->gblock, 0, sizeof(float) * gn);
  }
  if (posix_memalign((void **)&m->ablock, 64, sizeof(float) * (an ? an : 1))) m->ablock = NULL;
  if (!m->ablock) goto nomem;
  build_params(m, 1);
  build_acts(m, 1);
  m->tokens = m->iblock;
  m->targets = m->iblock + N;
  m->pos = m->iblock + 2 * N;
  m->seg = m->iblock + 3 * N;
  m->lens = m->iblock + 4 * N;
  m->labels = m->iblock + 4 * N + B;
  if (m->rope_cos)
    rope_tables(m->rope_cos, m->rope_sin, T, m->HD, cfg->rope_theta, &cfg->rope_scaling);
  if (m->rope_cos_l) /* local layers: their own base, never rope_scaling (HF's sliding_attention) */
    rope_tables(m->rope_cos_l, m->rope_sin_l, T, m->HD, cfg->rope_local_theta, NULL);

  /* how far backward has to go */
  m->emb_trainable = method == FT_METHOD_FULL;
  m->bw_stop = m->L;
  for (int l = 0; l < m->L && m->bw_stop == m->L; l++) {
    if (method == FT_METHOD_FULL) m->bw_stop = l;
    for (int i = 0; i < M_N; i++)
      if (m->lw[l].m[i].la) m->bw_stop = l;
  }
  m->below_head = m->bw_stop < m->L || method == FT_METHOD_FULL;
  *out = m;
  return 0;
nomem:
  model_free(m);
  return ft_error_set(err, FT_ENOMEM, "", "out of memory for the model");
}

void model_free(ft_model *m) {
  if (!m) return;
  free(m->pblock);
  free(m->gblock);
  free(m->ablock);
  free(m->iblock);
  free(m->params);
  free(m->lw);
  free(m->la);
  free(m);
}

const ft_config *model_config(const ft_model *m) { return &m->cfg; }

ft_param *model_params(ft_model *m, size_t *n) {
  if (n) *n = m->n_params;
  return m->params;
}

ft_param *model_param(ft_model *m, const char *name) {
  for (size_t i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i].name, name)) return &m->params[i];
  return NULL;
}

size_t model_num_trainable(const ft_model *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->n_params; i++)
    if (m->params[i].trainable) n += m->params[i].numel;
  return n;
}

size_t model_activation_bytes(const ft_model *m) { return sizeof(float) * m->a_n; }

void model_zero_grad(ft_model *m) {
  if (m->gblock) memset(m->gblock, 0, sizeof(float) * m->g_n);
}

const float *model_logits(const ft_model *m) { return m->logits; }

const float *model_target_logprobs(const ft_model *m) { return m->tlp; }

int model_lm_logits(const ft_model *m, int row0, int n, float *out) {
  int T = m->fw_T, V = m->V;
  if (m->task != FT_TASK_CAUSAL_LM || row0 < 0 || n < 0 || row0 + n > m->fw_B * T)
    return FT_EINVALID;
  for (int i = row0; i < row0 + n; i++) {
    float *o = out + (size_t)(i - row0) * V;
    if (i % T >= m->lens[i / T]) {
      memset(o, 0, sizeof(float) * V);
      continue;
    }
    linear_forward(o, m->lnf + (size_t)i * m->C, m->head.w, NULL, 1, m->C, V, 0);
    if (m->cfg.final_softcap > 0.0f) softcap_forward(o, (size_t)V, m->cfg.final_softcap);
  }
  return 0;
}

void model_last_counts(const ft_model *m, long *n_trained, long *n_correct) {
  if (n_trained) *n_trained = m->n_trained;
  if (n_correct) *n_correct = m->n_correct;
}

/* ---- initialisation ---- */

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

static void init_param(ft_model *m, ft_param *p, uint64_t seed) {
  ft_rng r;
  rng_init(&r, rng_mix(seed, rng_hash(p->name)));
  if (strstr(p->name, ".lora_A.")) { /* PEFT: kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(in) */
    float bound = 1.0f / sqrtf((float)p->shape[1]);
    for (size_t i = 0; i < p->numel; i++) p->w[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
  } else if (strstr(p->name, ".lora_B.") || ends_with(p->name, ".bias")) {
    memset(p->w, 0, sizeof(float) * p->numel);
  } else if (p->ndim == 1) { /* norm weights: 1, or 0 for x * (1 + w) (HF zeroes them) */
    for (size_t i = 0; i < p->numel; i++) p->w[i] = 1.0f - m->woff;
  } else {
    const ft_arch *a = m->a;
    float std = 0.02f;
    char out_w[FT_NAME_MAX], down_w[FT_NAME_MAX], emb_w[FT_NAME_MAX];
    join(out_w, a->mods[arch_attn_out(a)].path, ".weight");
    join(down_w, a->mods[arch_mlp_down(a)].path, ".weight");
    join(emb_w, a->embed, ".weight");
    if (a->scaled_proj_init && (ends_with(p->name, out_w) || ends_with(p->name, down_w)))
      std = 0.02f / sqrtf(2.0f * (float)m->L);
    for (size_t i = 0; i < p->numel; i++) p->w[i] = std * rng_normal(&r);
    int pad = m->cfg.pad_token_id;
    if (a->embed_pad_zero && !strcmp(p->name, emb_w) && pad >= 0 && pad < m->V)
      memset(p->w + (size_t)pad * m->C, 0, sizeof(float) * m->C);
  }
}

void model_init_random(ft_model *m, uint64_t seed) {
  for (size_t i = 0; i < m->n_params; i++)
    if (m->params[i].saved) init_param(m, &m->params[i], seed);
}

void model_init_trainable(ft_model *m, uint64_t seed) {
  for (size_t i = 0; i < m->n_params; i++) {
    ft_param *p = &m->params[i];
    if (strstr(p->name, ".lora_A.") || strstr(p->name, ".lora_B.") ||
        !strcmp(p->name, "score.weight"))
      init_param(m, p, seed);
  }
}

/* ---- the LoRA-aware linear ---- */

/* out (N,out) = inp (N,in) through module ln, plus its adapter unless merged. */
static void lin_forward(ft_model *m, float *out, lin_act *a, const float *inp, const lin *ln, int N,
                        uint64_t seed) {
  linear_forward(out, inp, ln->w, ln->b, N, ln->in, ln->out, ln->conv1d);
  if (!ln->la || m->merged) return;
  int r = m->lora.r;
  const float *xd = inp;
  if (m->fw_dropout) {
    dropout_forward(a->xd, a->mask, inp, m->lora.dropout, seed, (size_t)N * ln->in);
    xd = a->xd;
  }
  matmul(a->h, r, xd, ln->in, 0, ln->la, ln->in, 1, N, r, ln->in, 1.0f, 0.0f);  // (N,r)
  matmul(out, ln->out, a->h, r, 0, ln->lb, r, 1, N, ln->out, r, m->lscale, 1.0f);
}

/* dinp (N,in) += dout @ W (+ the adapter's path); weight grads of the module
 * and its adapter accumulate where they exist. dinp may be NULL. */
static void lin_backward(ft_model *m, float *dinp, const lin *ln, const lin_act *a,
                         const float *dout, const float *inp, int N) {
  linear_backward(dinp, ln->dw, ln->db, dout, inp, ln->w, N, ln->in, ln->out, ln->conv1d);
  if (!ln->la || m->merged) return;
  int r = m->lora.r, in = ln->in, outd = ln->out;
  const float *xd = m->fw_dropout ? a->xd : inp;
  if (ln->dlb)  // dB (out,r) += s dout^T h
    matmul(ln->dlb, r, dout, outd, 1, a->h, r, 0, outd, r, N, m->lscale, 1.0f);
  if (!ln->dla && !dinp) return;
  matmul(m->dh, r, dout, outd, 0, ln->lb, r, 0, N, r, outd, m->lscale,
         0.0f);  // dh (N,r) = s dout B
  if (ln->dla)   // dA (r,in) += dh^T xd
    matmul(ln->dla, in, m->dh, r, 1, xd, in, 0, r, in, N, 1.0f, 1.0f);
  if (!dinp) return;
  if (m->fw_dropout) {
    matmul(m->dxd, in, m->dh, r, 0, ln->la, in, 0, N, in, r, 1.0f, 0.0f);
    size_t n = (size_t)N * in;
    for (size_t i = 0; i < n; i++) dinp[i] += m->dxd[i] * a->mask[i];
  } else {
    matmul(dinp, in, m->dh, r, 0, ln->la, in, 0, N, in, r, 1.0f, 1.0f);
  }
}

/* ---- forward ---- */

/* out (N,C) = the family's norm of inp; mean unused by RMSNorm (either kind) */
static void norm_forward(const ft_model *m, float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N) {
  if (m->a->norm == FT_NORM_LAYER)
    layernorm_forward(out, mean, rstd, inp, w, b, N, m->C, m->cfg.norm_eps);
  else
    rmsnorm_forward(out, rstd, inp, w, m->woff, N, m->C, m->cfg.norm_eps);
}

static void norm_backward(const ft_model *m, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean, const float *rstd,
                          int N) {
  if (m->a->norm == FT_NORM_LAYER)
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, m->C);
  else
    rmsnorm_backward(dinp, dw, dout, inp, w, m->woff, rstd, N, m->C);
}

/* Layer l's attention pattern: a sliding layer sees the last sliding_window
 * keys and reads the local RoPE tables; the others everything, the global
 * tables. */
static int is_sliding(const ft_model *m, int l) {
  return m->a->sliding_layers && m->cfg.sliding[l];
}
static int layer_window(const ft_model *m, int l) {
  return is_sliding(m, l) ? m->cfg.sliding_window : 0;
}
static const float *layer_cos(const ft_model *m, int l) {
  return is_sliding(m, l) ? m->rope_cos_l : m->rope_cos;
}
static const float *layer_sin(const ft_model *m, int l) {
  return is_sliding(m, l) ? m->rope_sin_l : m->rope_sin;
}

static void layer_forward(ft_model *m, int l, const float *x, uint64_t seed) {
  const ft_arch *A = m->a;
  const layer_w *w = &m->lw[l];
  layer_a *a = &m->la[l];
  int B = m->fw_B, T = m->fw_T, N = B * T, C = m->C;
  size_t nC = (size_t)N * C, nF = (size_t)N * m->FF;
  const lin *M = w->m;
  lin_act *LA = a->la;
  uint64_t s = rng_mix(seed, (uint64_t)l * M_N);
  int ldq = m->QD, ldkv = m->KD;
  norm_forward(m, a->ln1, a->ln1_mean, a->ln1_rstd, x, w->n1w, w->n1b, N);
  if (A->fused_qkv) {
    lin_forward(m, a->q, &LA[M_QKV], a->ln1, &M[M_QKV], N, s + M_QKV);
    ldq = ldkv = 3 * C;
  } else if (A->has_qk_norm) { /* per-head RMSNorm: N*heads rows of HD */
    lin_forward(m, a->qpre, &LA[M_Q], a->ln1, &M[M_Q], N, s + M_Q);
    lin_forward(m, a->kpre, &LA[M_K], a->ln1, &M[M_K], N, s + M_K);
    lin_forward(m, a->v, &LA[M_V], a->ln1, &M[M_V], N, s + M_V);
    rmsnorm_forward(a->q, a->qn_rstd, a->qpre, w->qnw, m->woff, N * m->NH, m->HD, m->cfg.norm_eps);
    rmsnorm_forward(a->k, a->kn_rstd, a->kpre, w->knw, m->woff, N * m->NKV, m->HD, m->cfg.norm_eps);
  } else {
    lin_forward(m, a->q, &LA[M_Q], a->ln1, &M[M_Q], N, s + M_Q);
    lin_forward(m, a->k, &LA[M_K], a->ln1, &M[M_K], N, s + M_K);
    lin_forward(m, a->v, &LA[M_V], a->ln1, &M[M_V], N, s + M_V);
  }
  if (A->pos == FT_POS_ROPE) {
    const float *rc = layer_cos(m, l), *rs = layer_sin(m, l);
    rope_forward(a->q, rc, rs, m->fw_pos, B, T, m->NH, m->HD);
    rope_forward(a->k, rc, rs, m->fw_pos, B, T, m->NKV, m->HD);
  }
  attention_forward(a->atty, a->att, a->q, a->k, a->v, m->lens, m->fw_seg, B, T, m->NH, m->NKV,
                    m->HD, ldq, ldkv, m->att_scale, layer_window(m, l));
  int o = arch_attn_out(A), up = arch_mlp_up(A), gate = arch_mlp_gate(A), down = arch_mlp_down(A);
  if (A->post_norms) { /* res2 = x + norm(o_proj(...)) */
    lin_forward(m, a->attn_o, &LA[o], a->atty, &M[o], N, s + (uint64_t)o);
    norm_forward(m, a->res2, NULL, a->pa_rstd, a->attn_o, w->nAw, NULL, N);
  } else {
    lin_forward(m, a->res2, &LA[o], a->atty, &M[o], N, s + (uint64_t)o);
  }
  residual_add(a->res2, x, nC);
  norm_forward(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w->n2w, w->n2b, N);
  if (A->gated_mlp) {
    lin_forward(m, a->ffa, &LA[gate], a->ln2, &M[gate], N, s + (uint64_t)gate);
    lin_forward(m, a->ffb, &LA[up], a->ln2, &M[up], N, s + (uint64_t)up);
    if (A->act == FT_ACT_SILU)
      swiglu_forward(a->ffh, a->ffa, a->ffb, nF);
    else
      geglu_forward(a->ffh, a->ffa, a->ffb, nF);
  } else {
    lin_forward(m, a->ffa, &LA[up], a->ln2, &M[up], N, s + (uint64_t)up);
    gelu_forward(a->ffh, a->ffa, nF);
  }
  if (A->post_norms) { /* res3 = res2 + norm(down_proj(...)) */
    lin_forward(m, a->mlp_o, &LA[down], a->ffh, &M[down], N, s + (uint64_t)down);
    norm_forward(m, a->res3, NULL, a->pm_rstd, a->mlp_o, w->nMw, NULL, N);
  } else {
    lin_forward(m, a->res3, &LA[down], a->ffh, &M[down], N, s + (uint64_t)down);
  }
  residual_add(a->res3, a->res2, nC);
}

static int check_batch(const ft_model *m, const ft_batch *b) {
  if (b->B < 1 || b->T < 1 || b->T > m->T || (long)b->B * b->T > (long)m->B * m->T)
    return FT_ESHAPE;
  if (!b->tokens || !b->lens) return FT_EINVALID;
  for (int i = 0; i < b->B; i++) {
    if (b->lens[i] < 1 || b->lens[i] > b->T) return FT_EINVALID;
    if (m->task == FT_TASK_CLASSIFY && b->labels && (b->labels[i] < 0 || b->labels[i] >= m->NL))
      return FT_EINVALID;
  }
  for (long i = 0; i < (long)b->B * b->T; i++) {
    if (b->tokens[i] < 0 || b->tokens[i] >= m->V) return FT_EINVALID;
    if (m->task == FT_TASK_CAUSAL_LM && b->targets && b->targets[i] >= m->V) return FT_EINVALID;
  }
  /* packed rows: positions index wpe / the RoPE table (T rows); segments are
   * runs, so a segment id never comes back after another one (past lens:
   * ignored) */
  int maxp = m->a->pos == FT_POS_LEARNED ? m->maxP : m->T;
  for (int r = 0; r < b->B; r++)
    for (int t = 0; t < b->lens[r]; t++) {
      size_t i = (size_t)r * b->T + t;
      if (b->pos && (b->pos[i] < 0 || b->pos[i] >= maxp)) return FT_EINVALID;
      if (b->seg && t > 0 && b->seg[i] < b->seg[i - 1]) return FT_EINVALID;
    }
  return 0;
}

static int below_head_backward(ft_model *m);

/* The LM head over the last forward's rows (lm_head_xent): loss, counts and
 * log p(target); with grad, the head's gradients for gscale * mean loss too
 * (dln (N,C) written, the head weight's gradient accumulated). */
static double lm_head(ft_model *m, int grad, float gscale) {
  int N = m->fw_B * m->fw_T;
  ft_xent_sums sums = {0};
  ft_head_rows rows = {.lp = m->tlp};
  float *dx = grad && m->below_head ? m->dln : NULL, *dw = grad ? m->head.dw : NULL;
  long n = 0;
  for (int i = 0; i < N; i++) {
    m->tlp[i] = NAN;
    n += m->targets[i] >= 0;
  }
  if (dx) memset(dx, 0, sizeof(float) * (size_t)N * m->C);
  lm_head_xent(&sums, &rows, dx, dw, m->hscratch, m->lnf, m->targets, m->head.w, N, m->C, m->V,
               m->hR, m->cfg.final_softcap, n ? gscale / (float)n : 0.0f);
  m->n_trained = sums.n;
  m->n_correct = sums.correct;
  return sums.loss;
}

/* model_forward, and with grad also the head's part of model_backward(gscale) */
static int forward(ft_model *m, const ft_batch *b, int training, uint64_t rng_seed, float *loss,
                   int grad, float gscale) {
  if (loss) *loss = 0.0f;
  m->fw_train = 0;
  int rc = check_batch(m, b);
  if (rc) return rc;
  if (training && !m->training) return FT_EBAD_STATE;
  int B = b->B, T = b->T, N = B * T, C = m->C;
  m->fw_B = B;
  m->fw_T = T;
  m->fw_dropout = training && m->has_lora && m->lora.dropout > 0.0f;
  memcpy(m->tokens, b->tokens, sizeof(int32_t) * N);
  memcpy(m->lens, b->lens, sizeof(int32_t) * B);
  m->fw_pos = b->pos ? m->pos : NULL;
  m->fw_seg = b->seg ? m->seg : NULL;
  for (int i = 0; i < N; i++) {
    int in = i % T < m->lens[i / T];
    if (b->pos) m->pos[i] = in ? b->pos[i] : i % T;
    if (b->seg) m->seg[i] = b->seg[i];
  }
  if (m->task == FT_TASK_CAUSAL_LM) { /* no target on padding */
    for (int i = 0; i < N; i++)
      m->targets[i] = b->targets && i % T < m->lens[i / T] ? b->targets[i] : -1;
  } else {
    for (int i = 0; i < B; i++) m->labels[i] = b->labels ? b->labels[i] : -1;
  }

  /* embeddings */
  for (int i = 0; i < N; i++) {
    float *o = m->x0 + (size_t)i * C;
    const float *e = m->wte + (size_t)m->tokens[i] * C;
    if (m->wpe) {
      const float *p = m->wpe + (size_t)(m->fw_pos ? m->fw_pos[i] : i % T) * C;
      for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    } else {
      for (int c = 0; c < C; c++) o[c] = e[c] * m->emb_scale;
    }
  }
  const float *x = m->x0;
  for (int l = 0; l < m->L; l++) {
    layer_forward(m, l, x, rng_seed);
    x = m->la[l].res3;
  }
  norm_forward(m, m->lnf, m->lnf_mean, m->lnf_rstd, x, m->nfw, m->nfb, N);

  /* head and loss */
  double sum = 0.0;
  long n = 0, correct = 0;
  if (m->task == FT_TASK_CAUSAL_LM) {
    sum = lm_head(m, grad, gscale);
    n = m->n_trained;
    correct = m->n_correct;
  } else {
    int NL = m->NL;
    for (int i = 0; i < B; i++)
      memcpy(m->pooled + (size_t)i * C, m->lnf + ((size_t)i * T + m->lens[i] - 1) * C,
             sizeof(float) * C);
    linear_forward(m->logits, m->pooled, m->head.w, NULL, B, C, NL, 0);
    for (int i = 0; i < B; i++) {
      int y = m->labels[i];
      if (y < 0) continue;
      const float *row = m->logits + (size_t)i * NL;
      float lse = logsumexp(row, NL);
      m->lse[i] = lse;
      sum += (double)lse - row[y];
      n++;
      correct += argmax(row, NL) == y;
    }
  }
  m->n_trained = n;
  m->n_correct = correct;
  if (loss) *loss = n ? (float)(sum / n) : 0.0f;
  m->fw_train = training ? 1 : 0;
  return 0;
}

int model_forward(ft_model *m, const ft_batch *b, int training, uint64_t rng_seed, float *loss) {
  return forward(m, b, training, rng_seed, loss, 0, 0.0f);
}

int model_forward_backward(ft_model *m, const ft_batch *b, uint64_t rng_seed, float scale,
                           float *loss) {
  if (!m->training) {
    if (loss) *loss = 0.0f;
    return FT_EBAD_STATE;
  }
  if (m->task != FT_TASK_CAUSAL_LM) {
    int rc = model_forward(m, b, 1, rng_seed, loss);
    return rc ? rc : model_backward(m, scale);
  }
  int rc = forward(m, b, 1, rng_seed, loss, 1, scale);
  if (rc || m->n_trained == 0) return rc;
  return below_head_backward(m);
}

/* ---- backward ---- */

/* dres (N,C) holds d(layer output) on entry and d(layer input) on exit;
 * need_dx says whether the input gradient is wanted at all. */
static void layer_backward(ft_model *m, int l, const float *x, int need_dx) {
  const ft_arch *A = m->a;
  const layer_w *w = &m->lw[l];
  const layer_a *a = &m->la[l];
  int B = m->fw_B, T = m->fw_T, N = B * T, C = m->C;
  size_t nC = (size_t)N * C, nF = (size_t)N * m->FF;
  size_t nQ = (size_t)N * m->QD, nK = (size_t)N * m->KD;
  const lin *M = w->m;
  const lin_act *LA = a->la;
  int want_dln1 = need_dx || w->dn1w;
  int o = arch_attn_out(A), up = arch_mlp_up(A), gate = arch_mlp_gate(A), down = arch_mlp_down(A);
  /* MLP: the activation's output is recomputed (one buffer for all layers) */
  const float *dmlp = m->dres; /* d(down_proj's output) */
  if (A->post_norms) {
    memset(m->dpost, 0, sizeof(float) * nC);
    norm_backward(m, m->dpost, w->dnMw, NULL, m->dres, a->mlp_o, w->nMw, NULL, a->pm_rstd, N);
    dmlp = m->dpost;
  }
  memset(m->dff1, 0, sizeof(float) * nF);
  if (A->gated_mlp) {
    int silu = A->act == FT_ACT_SILU;
    if (silu)
      swiglu_forward(a->ffh, a->ffa, a->ffb, nF);
    else
      geglu_forward(a->ffh, a->ffa, a->ffb, nF);
    lin_backward(m, m->dff1, &M[down], &LA[down], dmlp, a->ffh, N);
    if (silu)
      swiglu_backward(m->dff1, m->dff2, m->dff1, a->ffa, a->ffb, nF);  // dgate, dup
    else
      geglu_backward(m->dff1, m->dff2, m->dff1, a->ffa, a->ffb, nF);
    memset(m->dln, 0, sizeof(float) * nC);
    lin_backward(m, m->dln, &M[gate], &LA[gate], m->dff1, a->ln2, N);
    lin_backward(m, m->dln, &M[up], &LA[up], m->dff2, a->ln2, N);
  } else {
    gelu_forward(a->ffh, a->ffa, nF);
    lin_backward(m, m->dff1, &M[down], &LA[down], dmlp, a->ffh, N);
    gelu_backward(m->dff1, m->dff1, a->ffa, nF);
    memset(m->dln, 0, sizeof(float) * nC);
    lin_backward(m, m->dln, &M[up], &LA[up], m->dff1, a->ln2, N);
  }
  norm_backward(m, m->dres, w->dn2w, w->dn2b, m->dln, a->res2, w->n2w, a->ln2_mean, a->ln2_rstd,
                N);
  /* attention */
  const float *dattn = m->dres; /* d(o_proj's output) */
  if (A->post_norms) {
    memset(m->dpost, 0, sizeof(float) * nC);
    norm_backward(m, m->dpost, w->dnAw, NULL, m->dres, a->attn_o, w->nAw, NULL, a->pa_rstd, N);
    dattn = m->dpost;
  }
  memset(m->datty, 0, sizeof(float) * nQ);
  lin_backward(m, m->datty, &M[o], &LA[o], dattn, a->atty, N);
  float *dln = want_dln1 ? m->dln : NULL;
  if (A->fused_qkv) {
    memset(m->dq, 0, sizeof(float) * nC * 3);
    attention_backward(m->dq, m->dk, m->dv, m->datt, m->datty, a->att, a->q, a->k, a->v, m->lens,
                       m->fw_seg, B, T, m->NH, m->NKV, m->HD, 3 * C, 3 * C, m->att_scale);
    if (dln) memset(dln, 0, sizeof(float) * nC);
    lin_backward(m, dln, &M[M_QKV], &LA[M_QKV], m->dq, a->ln1, N);
  } else {
    memset(m->dq, 0, sizeof(float) * nQ); /* three arrays, each sized for the largest batch */
    memset(m->dk, 0, sizeof(float) * nK);
    memset(m->dv, 0, sizeof(float) * nK);
    attention_backward(m->dq, m->dk, m->dv, m->datt, m->datty, a->att, a->q, a->k, a->v, m->lens,
                       m->fw_seg, B, T, m->NH, m->NKV, m->HD, m->QD, m->KD, m->att_scale);
    if (A->pos == FT_POS_ROPE) {
      const float *rc = layer_cos(m, l), *rs = layer_sin(m, l);
      rope_backward(m->dq, rc, rs, m->fw_pos, B, T, m->NH, m->HD);
      rope_backward(m->dk, rc, rs, m->fw_pos, B, T, m->NKV, m->HD);
    }
    const float *dq = m->dq, *dk = m->dk;
    if (A->has_qk_norm) {
      memset(m->dqpre, 0, sizeof(float) * nQ);
      memset(m->dkpre, 0, sizeof(float) * nK);
      rmsnorm_backward(m->dqpre, w->dqnw, m->dq, a->qpre, w->qnw, m->woff, a->qn_rstd, N * m->NH,
                       m->HD);
      rmsnorm_backward(m->dkpre, w->dknw, m->dk, a->kpre, w->knw, m->woff, a->kn_rstd, N * m->NKV,
                       m->HD);
      dq = m->dqpre;
      dk = m->dkpre;
    }
    if (dln) memset(dln, 0, sizeof(float) * nC);
    lin_backward(m, dln, &M[M_Q], &LA[M_Q], dq, a->ln1, N);
    lin_backward(m, dln, &M[M_K], &LA[M_K], dk, a->ln1, N);
    lin_backward(m, dln, &M[M_V], &LA[M_V], m->dv, a->ln1, N);
  }
  if (dln)
    norm_backward(m, need_dx ? m->dres : NULL, w->dn1w, w->dn1b, dln, x, w->n1w, a->ln1_mean,
                  a->ln1_rstd, N);
}

int model_backward(ft_model *m, float scale) {
  if (!m->fw_train || !m->training) return FT_EBAD_STATE;
  if (m->n_trained == 0) return 0;
  int B = m->fw_B, T = m->fw_T, N = B * T, C = m->C;
  float s = scale / (float)m->n_trained;
  int below = m->below_head;
  if (below) memset(m->dln, 0, sizeof(float) * (size_t)N * C);
  if (m->task == FT_TASK_CAUSAL_LM) {
    /* the head's logits again, chunk by chunk (model_forward_backward does
     * without this second pass) */
    lm_head(m, 1, scale);
  } else {
    int NL = m->NL;
    for (int i = 0; i < B; i++) {
      float *d = m->dlogits + (size_t)i * NL;
      int y = m->labels[i];
      if (y < 0) {
        memset(d, 0, sizeof(float) * NL);
        continue;
      }
      softmax_scaled(d, m->logits + (size_t)i * NL, m->lse[i], s, NL);
      d[y] -= s;
    }
    if (below) memset(m->dpooled, 0, sizeof(float) * (size_t)B * C);
    linear_backward(below ? m->dpooled : NULL, m->head.dw, NULL, m->dlogits, m->pooled, m->head.w,
                    B, C, NL, 0);
    if (below)
      for (int i = 0; i < B; i++)
        memcpy(m->dln + ((size_t)i * T + m->lens[i] - 1) * C, m->dpooled + (size_t)i * C,
               sizeof(float) * C);
  }
  return below ? below_head_backward(m) : 0;
}

/* Backward from d(final norm output) in dln down to the embeddings. */
static int below_head_backward(ft_model *m) {
  int T = m->fw_T, N = m->fw_B * T, C = m->C;
  if (!m->below_head) return 0;
  const float *xl = m->L ? m->la[m->L - 1].res3 : m->x0;
  memset(m->dres, 0, sizeof(float) * (size_t)N * C);
  norm_backward(m, m->dres, m->dnfw, m->dnfb, m->dln, xl, m->nfw, m->lnf_mean, m->lnf_rstd, N);
  for (int l = m->L - 1; l >= m->bw_stop; l--) {
    const float *x = l ? m->la[l - 1].res3 : m->x0;
    layer_backward(m, l, x, l > m->bw_stop || m->emb_trainable);
  }
  if (m->emb_trainable) {
    for (int i = 0; i < N; i++) {
      int t = i % T;
      if (t >= m->lens[i / T]) continue;
      const float *d = m->dres + (size_t)i * C;
      float *dw = m->dwte + (size_t)m->tokens[i] * C;
      for (int c = 0; c < C; c++) dw[c] += d[c] * m->emb_scale;
      if (m->dwpe) {
        float *dp = m->dwpe + (size_t)(m->fw_pos ? m->fw_pos[i] : t) * C;
        for (int c = 0; c < C; c++) dp[c] += d[c];
      }
    }
  }
  return 0;
}

void model_merge_lora(ft_model *m) {
  if (!m->has_lora || m->merged) return;
  int r = m->lora.r;
  for (int l = 0; l < m->L; l++)
    for (int i = 0; i < M_N; i++) {
      const lin *ln = &m->lw[l].m[i];
      if (!ln->la) continue;
      if (ln->conv1d)  // W (in,out) += s A^T B^T
        matmul(ln->w, ln->out, ln->la, ln->in, 1, ln->lb, r, 1, ln->in, ln->out, r, m->lscale,
               1.0f);
      else  // W (out,in) += s B A
        matmul(ln->w, ln->in, ln->lb, r, 0, ln->la, ln->in, 0, ln->out, ln->in, r, m->lscale, 1.0f);
    }
  m->merged = 1;
}
