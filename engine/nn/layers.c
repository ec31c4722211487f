/* The per-layer kernels (see layers.h). Workload: B*T of a few thousand rows,
 * C of a few hundred to a few thousand; the GEMMs (OpenBLAS, its own threads)
 * dominate, so the loops here are single-threaded, written to vectorise
 * (-O3 -march=x86-64-v3, no fast-math: reductions use explicit lanes), and
 * never allocate. Reductions over a row accumulate in double or in 16 float
 * lanes summed in double, so results stay close to PyTorch's. */
/* Comparisons must not count as trapping, or GCC will not if-convert (and so
 * not vectorise) the clamps and maxima below; no result changes. */
#pragma GCC optimize("no-trapping-math")
#include "nn/layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn/rng.h"

void matmul(float *c, int ldc, const float *a, int lda, int ta, const float *b, int ldb, int tb,
            int M, int N, int K, float alpha, float beta) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* empty product: c = beta * c */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++)
        c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
    return;
  }
  if (M == 1 && !ta) { /* one row (decoding): OpenBLAS's sgemv is 4-5x its sgemm here */
    if (tb)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, b, ldb, a, 1, beta, c, 1);
    else
      cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, b, ldb, a, 1, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- linear ---- */

void linear_forward(float *out, const float *inp, const float *w, const float *bias, int N, int in,
                    int outd, int conv1d) {
  // out (N,outd), inp (N,in), w (outd,in) or (in,outd) for conv1d, bias (outd)
  if (bias)
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * outd, bias, sizeof(float) * outd);
  if (conv1d)
    matmul(out, outd, inp, in, 0, w, outd, 0, N, outd, in, 1.0f, bias ? 1.0f : 0.0f);
  else
    matmul(out, outd, inp, in, 0, w, in, 1, N, outd, in, 1.0f, bias ? 1.0f : 0.0f);
}

void linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int in, int outd, int conv1d) {
  if (dinp) {  // (N,in) += dout (N,outd) @ W
    if (conv1d)
      matmul(dinp, in, dout, outd, 0, w, outd, 1, N, in, outd, 1.0f, 1.0f);
    else
      matmul(dinp, in, dout, outd, 0, w, in, 0, N, in, outd, 1.0f, 1.0f);
  }
  if (dw) {
    if (conv1d)  // (in,outd) += inp^T dout
      matmul(dw, outd, inp, in, 1, dout, outd, 0, in, outd, N, 1.0f, 1.0f);
    else  // (outd,in) += dout^T inp
      matmul(dw, in, dout, outd, 1, inp, in, 0, outd, in, N, 1.0f, 1.0f);
  }
  if (dbias)
    for (int i = 0; i < N; i++) {
      const float *d = dout + (size_t)i * outd;
      for (int o = 0; o < outd; o++) dbias[o] += d[o];
    }
}

/* ---- reductions ---- */

static double sum_f(const float *x, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += x[i + j];
  double s = 0.0;
  for (int j = 0; j < 16; j++) s += acc[j];
  for (; i < n; i++) s += x[i];
  return s;
}

static double dot_f(const float *x, const float *y, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += x[i + j] * y[i + j];
  double s = 0.0;
  for (int j = 0; j < 16; j++) s += acc[j];
  for (; i < n; i++) s += (double)x[i] * y[i];
  return s;
}

static float max_f(const float *x, int n) {
  float acc[16];
  int i = 0;
  float m = -INFINITY;
  if (n >= 16) {
    for (int j = 0; j < 16; j++) acc[j] = x[j];
    for (i = 16; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    for (int j = 0; j < 16; j++) m = acc[j] > m ? acc[j] : m;
  }
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

float logsumexp(const float *x, int n) {
  float m = max_f(x, n);
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += ft_expf(x[i + j] - m);
  double s = 0.0;
  for (int j = 0; j < 16; j++) s += acc[j];
  for (; i < n; i++) s += ft_expf(x[i] - m);
  return m + (float)log(s);
}

int argmax(const float *x, int n) {
  float m = max_f(x, n);
  for (int i = 0; i < n; i++)
    if (x[i] == m) return i;
  return 0; /* NaNs only */
}

void softmax_scaled(float *d, const float *x, float lse, float scale, int n) {
  for (int i = 0; i < n; i++) d[i] = scale * ft_expf(x[i] - lse);
}

/* ---- final logit soft-capping ---- */

/* tanh(a) = sign(a) (1 - e) / (1 + e), e = exp(-2|a|): vectorisable, and
 * within a few ulp of tanhf away from 0 (near 0 the difference of 1 - e
 * costs relative precision, not absolute: |error| < 1e-7). */
void softcap_forward(float *x, size_t n, float cap) {
  float inv = 1.0f / cap;
  for (size_t i = 0; i < n; i++) {
    float a = x[i] * inv, e = ft_expf(-2.0f * fabsf(a));
    float t = (1.0f - e) / (1.0f + e);
    x[i] = cap * (a < 0.0f ? -t : t);
  }
}

int topk(const float *x, int n, int k, int32_t *ids) {
  int have = 0;
  if (k > FT_TOPK_MAX) k = FT_TOPK_MAX;
  if (k <= 0) return 0;
  for (int i = 0; i < n; i++) {
    if (have == k && !(x[i] > x[ids[k - 1]])) continue;
    int j = have < k ? have++ : k - 1;
    while (j > 0 && x[i] > x[ids[j - 1]]) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = i;
  }
  return have;
}

/* ---- LM head with cross-entropy ---- */

/* the chunk's logits (R,V), packed input rows (R,C), their input gradient (R,C) */
size_t lm_head_scratch(int R, int C, int V) { return (size_t)R * V + 2 * (size_t)R * C; }

int lm_head_rows(int N, int V) {
  long r = FT_HEAD_FLOATS / (V > 0 ? V : 1);
  r = r < 64 ? 64 : r > FT_HEAD_ROWS_MAX ? FT_HEAD_ROWS_MAX : r;
  return (int)(r < N ? r : N);
}

void lm_head_xent(ft_xent_sums *sums, const ft_head_rows *rows, float *dx, float *dw,
                  float *scratch, const float *x, const int32_t *tgt, const float *w, int N, int C,
                  int V, int R, float cap, float scale) {
  float *z = scratch, *xp = scratch + (size_t)R * V, *dxp = xp + (size_t)R * C;
  int idx[FT_HEAD_ROWS_MAX];
  if (R > FT_HEAD_ROWS_MAX) R = FT_HEAD_ROWS_MAX;
  int grad = dx || dw;
  for (int i0 = 0; i0 < N;) {
    int r = 0; /* gather up to R rows with a target */
    for (; i0 < N && r < R; i0++)
      if (tgt[i0] >= 0) {
        memcpy(xp + (size_t)r * C, x + (size_t)i0 * C, sizeof(float) * C);
        idx[r++] = i0;
      }
    if (!r) break;
    matmul(z, V, xp, C, 0, w, C, 1, r, V, C, 1.0f, 0.0f);  // z (r,V) = xp W^T
    if (cap > 0.0f) softcap_forward(z, (size_t)r * V, cap);
    for (int j = 0; j < r; j++) {
      float *zr = z + (size_t)j * V;
      int i = idx[j], t = tgt[i];
      float lse = logsumexp(zr, V);
      sums->loss += (double)lse - zr[t];
      sums->n++;
      sums->correct += argmax(zr, V) == t;
      if (rows && rows->lp) rows->lp[i] = zr[t] - lse;
      if (rows && rows->k > 0) {
        int k = rows->k;
        int32_t *ids = rows->top_id + (size_t)i * k;
        int got = topk(zr, V, k, ids);
        for (int q = 0; q < got; q++) rows->top_lp[(size_t)i * k + q] = zr[ids[q]] - lse;
      }
      if (!grad) continue;
      if (cap > 0.0f) { /* d/dy of cap tanh(y / cap) = 1 - (z / cap)^2 */
        float inv = 1.0f / cap, zt = zr[t];
        for (int v = 0; v < V; v++) {
          float c = zr[v] * inv;
          zr[v] = scale * ft_expf(zr[v] - lse) * (1.0f - c * c);
        }
        zr[t] -= scale * (1.0f - (zt * inv) * (zt * inv));
      } else {
        softmax_scaled(zr, zr, lse, scale, V);
        zr[t] -= scale;
      }
    }
    if (dw)  // dW (V,C) += dz^T xp
      matmul(dw, C, z, V, 1, xp, C, 0, V, C, r, 1.0f, 1.0f);
    if (dx) {
      matmul(dxp, C, z, V, 0, w, C, 0, r, C, V, 1.0f, 0.0f);  // dxp (r,C) = dz W
      for (int j = 0; j < r; j++) {
        float *d = dx + (size_t)idx[j] * C;
        const float *s = dxp + (size_t)j * C;
        for (int c = 0; c < C; c++) d[c] += s[c];
      }
    }
  }
}

/* ---- norms ---- */

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *o = out + (size_t)i * C;
    float m = (float)(sum_f(x, C) / C);
    float acc[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16)
      for (int j = 0; j < 16; j++) acc[j] += (x[c + j] - m) * (x[c + j] - m);
    double v = 0.0;
    for (int j = 0; j < 16; j++) v += acc[j];
    for (; c < C; c++) v += (double)(x[c] - m) * (x[c] - m);
    float s = (float)(1.0 / sqrt(v / C + eps));
    for (c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
    mean[i] = m;
    rstd[i] = s;
  }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *dy = dout + (size_t)i * C, *x = inp + (size_t)i * C;
    float m = mean[i], s = rstd[i];
    if (dinp) {
      float a1[16] = {0}, a2[16] = {0};
      int c = 0;
      for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) {
          float g = dy[c + j] * w[c + j];
          a1[j] += g;
          a2[j] += g * (x[c + j] - m);
        }
      double s1 = 0.0, s2 = 0.0;
      for (int j = 0; j < 16; j++) s1 += a1[j], s2 += a2[j];
      for (; c < C; c++) {
        float g = dy[c] * w[c];
        s1 += g;
        s2 += (double)g * (x[c] - m);
      }
      float gm = (float)(s1 / C), gnm = (float)(s2 / C) * s; /* mean(g), mean(g * xhat) */
      float *dx = dinp + (size_t)i * C;
      for (c = 0; c < C; c++) dx[c] += (dy[c] * w[c] - gm - (x[c] - m) * s * gnm) * s;
    }
    if (dw)
      for (int c = 0; c < C; c++) dw[c] += dy[c] * (x[c] - m) * s;
    if (db)
      for (int c = 0; c < C; c++) db[c] += dy[c];
  }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, float woff, int N,
                     int C, float eps) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *o = out + (size_t)i * C;
    float s = (float)(1.0 / sqrt((float)(dot_f(x, x, C) / C) + (double)eps));
    for (int c = 0; c < C; c++) o[c] = (woff + w[c]) * (x[c] * s);
    rstd[i] = s;
  }
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      float woff, const float *rstd, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *dy = dout + (size_t)i * C, *x = inp + (size_t)i * C;
    float s = rstd[i];
    if (dinp) {
      float acc[16] = {0};
      int c = 0;
      for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 16; j++) acc[j] += dy[c + j] * (woff + w[c + j]) * x[c + j];
      double t = 0.0;
      for (int j = 0; j < 16; j++) t += acc[j];
      for (; c < C; c++) t += (double)dy[c] * (woff + w[c]) * x[c];
      float k = (float)(t / C) * s * s * s; /* mean(g x) * rstd^3 */
      float *dx = dinp + (size_t)i * C;
      for (c = 0; c < C; c++) dx[c] += dy[c] * (woff + w[c]) * s - x[c] * k;
    }
    if (dw)
      for (int c = 0; c < C; c++) dw[c] += dy[c] * (x[c] * s);
  }
}

/* ---- activations ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static inline float tanh_fast(float u) { return 1.0f - 2.0f / (ft_expf(2.0f * u) + 1.0f); }

/* The one home of the GELU formula: gelu(x), and its derivative */
static inline float gelu1(float x) {
  float t = tanh_fast(GELU_K * (x + 0.044715f * (x * x * x)));
  return 0.5f * x * (1.0f + t);
}

static inline float gelu1_grad(float x) {
  float t = tanh_fast(GELU_K * (x + 0.044715f * (x * x * x)));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

void gelu_forward(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = gelu1(inp[i]);
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu1_grad(inp[i]);
}

void geglu_forward(float *out, const float *gate, const float *up, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = gelu1(gate[i]) * up[i];
}

void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                    size_t n) {
  for (size_t i = 0; i < n; i++) {
    float g = gate[i], d = dout[i];
    dup[i] = d * gelu1(g);
    dgate[i] = d * up[i] * gelu1_grad(g);
  }
}

/* The sigmoid first into a small block, then the products: one loop
 * computing g / (1 + e^-g) * up runs ~8x slower on this machine (12 vs 1.4
 * ns an element, a tenth of a SmolLM-135M prefill). */
void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
  float sg[256];
  for (size_t i0 = 0; i0 < n; i0 += 256) {
    size_t nb = n - i0 < 256 ? n - i0 : 256;
    const float *g = gate + i0;
    for (size_t i = 0; i < nb; i++) sg[i] = 1.0f / (1.0f + ft_expf(-g[i]));
    for (size_t i = 0; i < nb; i++) out[i0 + i] = g[i] * sg[i] * up[i0 + i];
  }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float g = gate[i], d = dout[i];
    float sg = 1.0f / (1.0f + ft_expf(-g));
    float silu = g * sg;
    dup[i] = d * silu;
    dgate[i] = d * up[i] * sg * (1.0f + g * (1.0f - sg));
  }
}

/* ---- rotary embedding ---- */

float rope_inv_freq(int i, int HD, float theta, const ft_rope_scaling *sc) {
  /* as HF: inv_freq = 1 / theta ** (arange(0, HD, 2) / HD), in float32 */
  float inv = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
  if (sc && sc->kind == FT_ROPE_LINEAR) return inv / sc->factor;
  if (!sc || sc->kind != FT_ROPE_LLAMA3) return inv;
  /* HF _compute_llama3_parameters, in float32: long wavelengths are divided
   * by factor, short ones kept, the band between interpolated */
  float old = (float)sc->orig_max_pos;
  float low_wl = old / sc->low_freq, high_wl = old / sc->high_freq;
  float wl = 2.0f * (float)M_PI / inv;
  float scaled = wl > low_wl ? inv / sc->factor : inv;
  if (!(wl < high_wl) && !(wl > low_wl)) {
    float smooth = (old / wl - sc->low_freq) / (sc->high_freq - sc->low_freq);
    scaled = (1.0f - smooth) * scaled / sc->factor + smooth * scaled;
  }
  return scaled;
}

void rope_tables(float *cos_t, float *sin_t, int maxT, int HD, float theta,
                 const ft_rope_scaling *sc) {
  int h = HD / 2;
  for (int i = 0; i < h; i++) {
    float inv = rope_inv_freq(i, HD, theta, sc);
    for (int t = 0; t < maxT; t++) {
      float a = (float)t * inv;
      cos_t[(size_t)t * h + i] = cosf(a);
      sin_t[(size_t)t * h + i] = sinf(a);
    }
  }
}

static void rope_apply(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int B,
                       int T, int nh, int HD, float sgn) {
  int h = HD / 2;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      size_t p0 = pos ? (size_t)pos[(size_t)b * T + t] : (size_t)t;
      const float *cs = cos_t + p0 * h, *sn = sin_t + p0 * h;
      for (int hd = 0; hd < nh; hd++) {
        float *p = x + ((size_t)b * T + t) * nh * HD + (size_t)hd * HD;
        for (int i = 0; i < h; i++) {
          float x1 = p[i], x2 = p[i + h], s = sgn * sn[i];
          p[i] = x1 * cs[i] - x2 * s;
          p[i + h] = x2 * cs[i] + x1 * s;
        }
      }
    }
}

void rope_forward(float *x, const float *cos_t, const float *sin_t, const int32_t *pos, int B,
                  int T, int nh, int HD) {
  rope_apply(x, cos_t, sin_t, pos, B, T, nh, HD, 1.0f);
}

void rope_backward(float *dx, const float *cos_t, const float *sin_t, const int32_t *pos, int B,
                   int T, int nh, int HD) {
  rope_apply(dx, cos_t, sin_t, pos, B, T, nh, HD, -1.0f);
}

/* ---- attention ---- */

void attention_block_forward(float *Y, int ldy, float *P, int ldp, const float *Q, int ldq,
                             const float *K, const float *V, int ldkv, int rows, int q0, int HD,
                             float scale, int window) {
  int n = q0 + rows; /* keys */
  /* the first key any row sees: row 0's window start (0 without a window) */
  int k0 = window > 0 && q0 - window + 1 > 0 ? q0 - window + 1 : 0;
  size_t ko = (size_t)k0 * ldkv;
  matmul(P + k0, ldp, Q, ldq, 0, K + ko, ldkv, 1, rows, n - k0, HD, scale, 0.0f);
  for (int i = 0; i < rows; i++) {
    float *p = P + (size_t)i * ldp;
    int last = q0 + i + 1; /* one past the row's last key */
    int lo = window > 0 && last - window > 0 ? last - window : 0;
    float *pv = p + lo;
    int valid = last - lo;
    float m = max_f(pv, valid);
    float acc[16] = {0};
    int j = 0;
    for (; j + 16 <= valid; j += 16)
      for (int u = 0; u < 16; u++) {
        float e = ft_expf(pv[j + u] - m);
        pv[j + u] = e;
        acc[u] += e;
      }
    double s = 0.0;
    for (int u = 0; u < 16; u++) s += acc[u];
    for (; j < valid; j++) {
      pv[j] = ft_expf(pv[j] - m);
      s += pv[j];
    }
    float inv = (float)(1.0 / s);
    for (j = 0; j < valid; j++) pv[j] *= inv;
    for (j = 0; j < lo; j++) p[j] = 0.0f;
    for (j = last; j < n; j++) p[j] = 0.0f;
  }
  matmul(Y, ldy, P + k0, ldp, 0, V + ko, ldkv, 0, rows, HD, n - k0, 1.0f, 0.0f);
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int32_t *lens, const int32_t *seg, int B, int T, int NH, int NKV,
                       int HD, int ldq, int ldkv, float scale, int window) {
  int C = NH * HD, grp = NH / NKV;
  for (int b = 0; b < B; b++) {
    int L = lens[b];
    const int32_t *sg = seg ? seg + (size_t)b * T : NULL;
    for (int h = 0; h < NH; h++) {
      float *P = att + ((size_t)b * NH + h) * T * T;  // (L,L) ld T
      const float *Q = q + (size_t)b * T * ldq + (size_t)h * HD;
      const float *K = k + (size_t)b * T * ldkv + (size_t)(h / grp) * HD;
      const float *V = v + (size_t)b * T * ldkv + (size_t)(h / grp) * HD;
      float *Y = out + (size_t)b * T * C + (size_t)h * HD;
      for (int t0 = 0, t1; t0 < L; t0 = t1) {
        t1 = seg_run(sg, t0, L);
        size_t o = (size_t)t0;
        attention_block_forward(Y + o * C, C, P + o * T + o, T, Q + o * ldq, ldq, K + o * ldkv,
                                V + o * ldkv, ldkv, t1 - t0, 0, HD, scale, window);
      }
    }
    if (L < T) memset(out + ((size_t)b * T + L) * C, 0, sizeof(float) * (size_t)(T - L) * C);
  }
}

void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *att, const float *q, const float *k, const float *v,
                        const int32_t *lens, const int32_t *seg, int B, int T, int NH, int NKV,
                        int HD, int ldq, int ldkv, float scale) {
  int C = NH * HD, grp = NH / NKV;
  for (int b = 0; b < B; b++) {
    int L = lens[b];
    const int32_t *sg = seg ? seg + (size_t)b * T : NULL;
    for (int h = 0; h < NH; h++) {
      for (int t0 = 0, t1; t0 < L; t0 = t1) {
        t1 = seg_run(sg, t0, L);
        int n = t1 - t0;
        const float *P = att + (((size_t)b * NH + h) * T + t0) * T + t0;
        size_t qo = ((size_t)b * T + t0) * ldq + (size_t)h * HD;
        size_t ko = ((size_t)b * T + t0) * ldkv + (size_t)(h / grp) * HD;
        const float *dY = dout + ((size_t)b * T + t0) * C + (size_t)h * HD;
        float *dP = scratch;  // (n,n) ld T
        matmul(dP, T, dY, C, 0, v + ko, ldkv, 1, n, n, HD, 1.0f, 0.0f);
        matmul(dv + ko, ldkv, P, T, 1, dY, C, 0, n, HD, n, 1.0f, 1.0f);
        for (int i = 0; i < n; i++) {
          const float *p = P + (size_t)i * T;
          float *d = dP + (size_t)i * T;
          float s = (float)dot_f(p, d, i + 1);
          for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - s);
          for (int j = i + 1; j < n; j++) d[j] = 0.0f;
        }
        matmul(dq + qo, ldq, dP, T, 0, k + ko, ldkv, 0, n, HD, n, scale, 1.0f);
        matmul(dk + ko, ldkv, dP, T, 1, q + qo, ldq, 0, n, HD, n, scale, 1.0f);
      }
    }
  }
}

/* ---- misc ---- */

void residual_add(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] += inp[i];
}

void dropout_forward(float *out, float *mask, const float *inp, float p, uint64_t seed, size_t n) {
  ft_rng r;
  rng_init(&r, seed);
  float keep = 1.0f / (1.0f - p);
  /* 24-bit threshold: element dropped when its uniform draw < p */
  uint32_t thr = (uint32_t)((double)p * 16777216.0);
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    uint64_t x = rng_u64(&r);
    mask[i] = (uint32_t)(x >> 40) < thr ? 0.0f : keep;
    mask[i + 1] = (uint32_t)((x >> 8) & 0xffffff) < thr ? 0.0f : keep;
  }
  for (; i < n; i++) mask[i] = (uint32_t)(rng_u64(&r) >> 40) < thr ? 0.0f : keep;
  for (i = 0; i < n; i++) out[i] = inp[i] * mask[i];
}
