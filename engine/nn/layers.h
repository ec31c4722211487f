/* The per-layer kernels of the transformer models (llm.c convention, STYLE.md
 * 10): one _forward and one _backward per layer, arguments in the order
 * outputs, caches, inputs, weights, sizes. Backward functions accumulate (+=)
 * into their d-prefixed outputs unless the comment says "writes"; a NULL
 * gradient output is skipped (frozen weights, unneeded input gradients).
 * All GEMMs go through matmul(), the one caller of cblas_sgemm. N is the
 * number of token rows (B*T); every tensor is row-major. */
#ifndef FT_LAYERS_H
#define FT_LAYERS_H
#include <stddef.h>
#include <stdint.h>

#include "nn/arch.h"

/* c (M,N; ldc) = alpha * op(a) op(b) + beta * c, op(x) = x or x^T (ta, tb);
 * op(a) is (M,K), op(b) is (K,N). */
void matmul(float *c, int ldc, const float *a, int lda, int ta, const float *b, int ldb, int tb,
            int M, int N, int K, float alpha, float beta);

/* out (N,outd) = inp (N,in) @ W^T + bias, W (outd,in) as nn.Linear; or
 * inp @ W + bias with W (in,outd) as GPT-2's Conv1D (conv1d=1). bias may be NULL. */
void linear_forward(float *out, const float *inp, const float *w, const float *bias, int N, int in,
                    int outd, int conv1d);
void linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int in, int outd, int conv1d);

/* out, inp (N,C); mean, rstd (N) */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C);
/* RMSNorm: out = (woff + w) * (x * rsqrt(mean(x^2) + eps)); rstd (N). woff 0
 * is HF's LlamaRMSNorm (w * ...), woff 1 Gemma3RMSNorm (x * rsqrt(...) * (1 +
 * w), 1 + w rounded in float32 first, as HF computes it). Per-head (q_norm /
 * k_norm) is the same op over N*nh rows of C=HD. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, float woff, int N,
                     int C, float eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      float woff, const float *rstd, int N, int C);

/* GELU, tanh approximation (HF "gelu_new"). Backward writes dinp = dout *
 * gelu'(inp) and may run in place (dinp == dout). */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* out = silu(gate) * up; out may be gate (in place). Backward writes dgate
 * and dup; dgate may be dout. */
void swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n);
/* out = gelu(gate) * up with gelu_forward's GELU (Gemma's gelu_pytorch_tanh
 * gated MLP); out may be gate. Backward writes dgate and dup; dgate may be
 * dout. */
void geglu_forward(float *out, const float *gate, const float *up, size_t n);
void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                    size_t n);

/* Rotary embedding in place on x (B,T,nh*HD), HF rotate_half convention:
 * pairs (i, i+HD/2) at position p rotated by cos/sin (maxT, HD/2)[p][i], where
 * p = pos[b][t] (B,T), or t when pos is NULL; every p < maxT. (Rows at
 * positions p0.. without a pos array: pass the tables from row p0.)
 * Backward applies the inverse rotation to dx in place. The tables hold
 * HF's float32 inv_freq (theta^(-2i/HD), rescaled as rope_scaling says;
 * sc may be NULL) times the position. */
void rope_tables(float *cos_t, float *sin_t, int maxT, int HD, float theta,
                 const ft_rope_scaling *sc);
/* The tables' frequency of pair i (0..HD/2-1), float32 as HF computes it. */
float rope_inv_freq(int i, int HD, float theta, const ft_rope_scaling *sc);
void rope_forward(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int B,
                  int T, int nh, int HD);
void rope_backward(float *dx, const float *cos_t, const float *sin_t, const int32_t *pos, int B,
                   int T, int nh, int HD);

/* One causal attention block of one head: query rows i = 0..rows-1 sit at
 * key position q0 + i and see keys 0..q0+i, or with a sliding window
 * (window > 0) only the last `window` of them, q0+i-window+1..q0+i (HF's
 * sliding mask: key > query - window). P (rows, q0+rows; ld ldp) gets the
 * probabilities (zero outside each row's keys), Y (rows,HD; ld ldy) = P V.
 * Q (ld ldq), K and V (ld ldkv); scores are Q K^T * scale. Training calls it
 * with q0 = 0 per segment, inference per block of new rows over the KV
 * cache. Keys before the block's first visible key are not computed. */
void attention_block_forward(float *Y, int ldy, float *P, int ldp, const float *Q, int ldq,
                             const float *K, const float *V, int ldkv, int rows, int q0, int HD,
                             float scale, int window);

/* Causal self-attention with scores scaled by scale (1/sqrt(HD) for most
 * families, Gemma's query_pre_attn_scalar^-0.5) and window as
 * attention_block_forward's (0: none), grouped-query (query head h reads
 * kv head h / (NH/NKV)). q (B,T,ldq) holds head h at column h*HD; k, v
 * (B,T,ldkv) hold kv head g at g*HD. Row b attends within its first lens[b]
 * tokens; out (B,T,NH*HD) is zero at t >= lens[b]. seg (B,T) or NULL: packed
 * rows, where a token attends only to earlier tokens of its own segment; a
 * segment is a run of equal seg values (seg_run), so only the diagonal blocks
 * of the segments are computed. att (B,NH,T,T) caches the probabilities (the
 * diagonal segment blocks inside the lens[b] x lens[b] corner are valid). */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int32_t *lens, const int32_t *seg, int B, int T, int NH, int NKV,
                       int HD, int ldq, int ldkv, float scale, int window);
/* dq/dk/dv share the layouts of q/k/v and are accumulated; scratch (T,T).
 * The window needs no argument here: its masked probabilities are zero. */
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *att, const float *q, const float *k, const float *v,
                        const int32_t *lens, const int32_t *seg, int B, int T, int NH, int NKV,
                        int HD, int ldq, int ldkv, float scale);
/* End of the segment that starts at t0 in a row of segment ids seg (L tokens;
 * NULL: one segment): the first t > t0 with seg[t] != seg[t0], or L. */
static inline int seg_run(const int32_t *seg, int t0, int L) {
  if (!seg) return L;
  int t = t0 + 1;
  while (t < L && seg[t] == seg[t0]) t++;
  return t;
}

/* out += inp */
void residual_add(float *out, const float *inp, size_t n);
/* Inverted dropout: mask[i] = 0 with probability p else 1/(1-p), out = inp * mask.
 * The mask is a function of (seed, i) only. */
void dropout_forward(float *out, float *mask, const float *inp, float p, uint64_t seed, size_t n);

/* Row softmax helpers for the loss: logsumexp of x (n), and the argmax. */
float logsumexp(const float *x, int n);
int argmax(const float *x, int n);
/* d (n) = scale * exp(x - lse) */
void softmax_scaled(float *d, const float *x, float lse, float scale, int n);

/* Final logit soft-capping (Gemma 2): z = cap * tanh(z / cap) in place on
 * x (n); cap > 0. */
void softcap_forward(float *x, size_t n, float cap);

/* The k largest of x (n), k <= FT_TOPK_MAX: ids in descending order of x,
 * ties by lower id; returns how many (min(k, n)). */
#define FT_TOPK_MAX 5
int topk(const float *x, int n, int k, int32_t *ids);

/* ---- LM head with cross-entropy, fused, in chunks of rows ----
 * The rows i (0..N) with a target tgt[i] >= 0 are taken R at a time (other
 * rows cost nothing): z = x_i W^T (W (V,C): lm_head, or the tied token
 * embedding) through matmul, z = cap tanh(z / cap) when cap > 0,
 * lse = logsumexp(z); sums->loss += lse - z[t], sums->n++, sums->correct +=
 * argmax(z) == t. So no more than R x V logits ever exist (a 262k vocabulary
 * at B x T = 1024 would be 1 GiB, its gradient another).
 * Per row, optional (rows, may be NULL): lp[i] = z[t] - lse, and the k most
 * likely tokens with their log-probabilities.
 * With dx or dw (either may be NULL), the gradient of scale * sum of the
 * losses, computed in place of the chunk's logits: dz = scale (softmax(z) -
 * onehot(t)), times 1 - (z / cap)^2 under the cap; dx (N,C) += dz W on the
 * rows with a target, dw (V,C) += dz^T x (for a tied head the embedding's
 * gradient). scratch holds lm_head_scratch(R, C, V) floats; R <=
 * FT_HEAD_ROWS_MAX. */
typedef struct {
  double loss; /* sum over the rows of lse - z[t] */
  long n, correct;
} ft_xent_sums;
typedef struct {
  float *lp;       /* (N) log p(tgt[i]); rows without a target untouched */
  int k;           /* 0..FT_TOPK_MAX alternatives per row */
  int32_t *top_id; /* (N,k) most likely first, ties by lower id */
  float *top_lp;   /* (N,k) their log-probabilities */
} ft_head_rows;
/* R for N rows of a V-token head: as many rows as FT_HEAD_FLOATS logits
 * hold (64 MiB), at least 64 (so W, read once per chunk, stays cheap: a
 * 262k vocabulary gets 64 rows) and at most FT_HEAD_ROWS_MAX; never more
 * than N. Each chunk also reads and writes all of dW, so fewer, larger chunks
 * are faster: measured in docs/architecture.md. */
#ifndef FT_HEAD_FLOATS
#define FT_HEAD_FLOATS (1 << 24)
#endif
#define FT_HEAD_ROWS_MAX 1024
int lm_head_rows(int N, int V);
size_t lm_head_scratch(int R, int C, int V);
void lm_head_xent(ft_xent_sums *sums, const ft_head_rows *rows, float *dx, float *dw,
                  float *scratch, const float *x, const int32_t *tgt, const float *w, int N, int C,
                  int V, int R, float cap, float scale);

/* exp accurate to ~2 ulp that the compiler can vectorise (no libm call). */
static inline float ft_expf(float x) {
  union {
    float f;
    int32_t i;
  } u;
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  u.i = ((int32_t)n + 127) << 23;
  return y * u.f;
}
#endif
