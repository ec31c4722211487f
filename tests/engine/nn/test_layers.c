/* Finite-difference checks of every layer's backward in engine/nn/layers.c, plus
 * the forward of each layer against a naive double-precision formula. Each
 * check perturbs inputs and weights by +-h, takes the central difference of a
 * scalar loss sum(out * R) (R random, accumulated in double) and compares it
 * with the analytic gradient. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/rng.h"
#include "test.h"

static ft_rng rng;

static float *rnd(size_t n, float lo, float hi) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * rng_uniform(&rng);
  return p;
}
static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double dotd(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* Compares the analytic gradient g of tensor x (n) with central differences
 * of loss(); returns the number of mismatching elements (prints the first). */
static int fd_check(const char *what, double (*loss)(void), float *x, const float *g, size_t n,
                    float h, double atol, double rtol) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    float save = x[i];
    x[i] = save + h;
    double lp = loss();
    x[i] = save - h;
    double lm = loss();
    x[i] = save;
    double num = (lp - lm) / (2.0 * h);
    double ana = g[i];
    if (!(fabs(num - ana) <= atol + rtol * fmax(fabs(num), fabs(ana)))) {
      if (!bad) fprintf(stderr, "  %s[%zu]: numeric %.7g analytic %.7g\n", what, i, num, ana);
      bad++;
    }
  }
  return bad;
}

/* ---- linear ---- */
static struct {
  int N, in, out, conv1d;
  float *x, *w, *b, *y, *R;
} L;
static double lin_loss(void) {
  linear_forward(L.y, L.x, L.w, L.b, L.N, L.in, L.out, L.conv1d);
  return dotd(L.y, L.R, (size_t)L.N * L.out);
}
static void check_linear(int conv1d) {
  L.N = 5, L.in = 7, L.out = 6, L.conv1d = conv1d;
  size_t nx = (size_t)L.N * L.in, nw = (size_t)L.in * L.out, ny = (size_t)L.N * L.out;
  L.x = rnd(nx, -1, 1), L.w = rnd(nw, -1, 1), L.b = rnd(L.out, -1, 1), L.y = zeros(ny);
  L.R = rnd(ny, -1, 1);
  /* forward against the formula */
  lin_loss();
  double maxe = 0;
  for (int i = 0; i < L.N; i++)
    for (int o = 0; o < L.out; o++) {
      double s = L.b[o];
      for (int k = 0; k < L.in; k++)
        s += (double)L.x[i * L.in + k] * (conv1d ? L.w[k * L.out + o] : L.w[o * L.in + k]);
      maxe = fmax(maxe, fabs(s - L.y[i * L.out + o]));
    }
  CHECK(maxe < 1e-5);
  float *dx = zeros(nx), *dw = zeros(nw), *db = zeros(L.out);
  /* accumulation: start from 1 and expect 1 + grad */
  for (size_t i = 0; i < nw; i++) dw[i] = 1.0f;
  linear_backward(dx, dw, db, L.R, L.x, L.w, L.N, L.in, L.out, conv1d);
  for (size_t i = 0; i < nw; i++) dw[i] -= 1.0f;
  CHECK(fd_check("dx", lin_loss, L.x, dx, nx, 1e-2f, 1e-3, 1e-2) == 0);
  CHECK(fd_check("dw", lin_loss, L.w, dw, nw, 1e-2f, 1e-3, 1e-2) == 0);
  CHECK(fd_check("db", lin_loss, L.b, db, L.out, 1e-2f, 1e-3, 1e-2) == 0);
  /* NULL outputs are skipped */
  float *dx2 = zeros(nx);
  linear_backward(dx2, NULL, NULL, L.R, L.x, L.w, L.N, L.in, L.out, conv1d);
  CHECK(memcmp(dx, dx2, sizeof(float) * nx) == 0);
  free(L.x), free(L.w), free(L.b), free(L.y), free(L.R), free(dx), free(dw), free(db), free(dx2);
}
static void test_linear(void) { check_linear(0); }
static void test_linear_conv1d(void) { check_linear(1); }

/* ---- norms ---- */
static struct {
  int N, C, rms; /* rms: 0 LayerNorm, 1 RMSNorm w * xhat, 2 Gemma's xhat * (1 + w) */
  float *x, *w, *b, *y, *mean, *rstd, *R;
} NM;
static double norm_loss(void) {
  if (NM.rms)
    rmsnorm_forward(NM.y, NM.rstd, NM.x, NM.w, NM.rms == 2 ? 1.0f : 0.0f, NM.N, NM.C, 1e-5f);
  else
    layernorm_forward(NM.y, NM.mean, NM.rstd, NM.x, NM.w, NM.b, NM.N, NM.C, 1e-5f);
  return dotd(NM.y, NM.R, (size_t)NM.N * NM.C);
}
static void check_norm(int rms) {
  NM.N = 4, NM.C = 37, NM.rms = rms; /* C not a multiple of 16: exercises the tails */
  size_t n = (size_t)NM.N * NM.C;
  NM.x = rnd(n, -2, 2), NM.b = rnd(NM.C, -1, 1);
  NM.w = rms == 2 ? rnd(NM.C, -0.5f, 0.5f) : rnd(NM.C, 0.5f, 1.5f); /* Gemma's sit around 0 */
  double woff = rms == 2 ? 1.0 : 0.0;
  NM.y = zeros(n), NM.mean = zeros(NM.N), NM.rstd = zeros(NM.N), NM.R = rnd(n, -1, 1);
  norm_loss();
  double maxe = 0;
  for (int i = 0; i < NM.N; i++) {
    const float *x = NM.x + i * NM.C;
    double mu = 0, v = 0;
    for (int c = 0; c < NM.C; c++) mu += x[c];
    mu /= NM.C;
    for (int c = 0; c < NM.C; c++) v += rms ? (double)x[c] * x[c] : (x[c] - mu) * (x[c] - mu);
    v /= NM.C;
    for (int c = 0; c < NM.C; c++) {
      double ref = rms ? x[c] / sqrt(v + 1e-5) * (woff + NM.w[c])
                       : (x[c] - mu) / sqrt(v + 1e-5) * NM.w[c] + NM.b[c];
      maxe = fmax(maxe, fabs(ref - NM.y[i * NM.C + c]));
    }
  }
  CHECK(maxe < 1e-5);
  float *dx = zeros(n), *dw = zeros(NM.C), *db = zeros(NM.C);
  if (rms)
    rmsnorm_backward(dx, dw, NM.R, NM.x, NM.w, (float)woff, NM.rstd, NM.N, NM.C);
  else
    layernorm_backward(dx, dw, db, NM.R, NM.x, NM.w, NM.mean, NM.rstd, NM.N, NM.C);
  CHECK(fd_check("dx", norm_loss, NM.x, dx, n, 1e-2f, 1e-3, 2e-2) == 0);
  CHECK(fd_check("dw", norm_loss, NM.w, dw, NM.C, 1e-2f, 1e-3, 1e-2) == 0);
  if (!rms) CHECK(fd_check("db", norm_loss, NM.b, db, NM.C, 1e-2f, 1e-3, 1e-2) == 0);
  free(NM.x), free(NM.w), free(NM.b), free(NM.y), free(NM.mean), free(NM.rstd), free(NM.R);
  free(dx), free(dw), free(db);
}
static void test_layernorm(void) { check_norm(0); }
static void test_rmsnorm(void) { check_norm(1); }
static void test_rmsnorm_one_plus_w(void) { check_norm(2); }

/* Qwen3's q_norm/k_norm: RMSNorm of each head (rows of HD, one weight [HD]
 * shared by the heads) followed by RoPE, as model.c composes them; the
 * gradient of x and of the shared weight through both. */
static struct {
  int N, nh, HD;
  float *x, *w, *y, *rstd, *cs, *sn, *R;
} QK;
static double qk_loss(void) {
  rmsnorm_forward(QK.y, QK.rstd, QK.x, QK.w, 0.0f, QK.N * QK.nh, QK.HD, 1e-6f);
  rope_forward(QK.y, QK.cs, QK.sn, NULL, 1, QK.N, QK.nh, QK.HD);
  return dotd(QK.y, QK.R, (size_t)QK.N * QK.nh * QK.HD);
}
static void test_qk_norm_per_head(void) {
  QK.N = 5, QK.nh = 3, QK.HD = 6;
  size_t n = (size_t)QK.N * QK.nh * QK.HD;
  QK.x = rnd(n, -2, 2), QK.w = rnd((size_t)QK.HD, 0.5f, 1.5f), QK.y = zeros(n);
  QK.rstd = zeros((size_t)QK.N * QK.nh), QK.R = rnd(n, -1, 1);
  QK.cs = zeros((size_t)QK.N * QK.HD / 2), QK.sn = zeros((size_t)QK.N * QK.HD / 2);
  rope_tables(QK.cs, QK.sn, QK.N, QK.HD, 1e6f, NULL);
  /* forward: each head normalised on its own (before RoPE) */
  rmsnorm_forward(QK.y, QK.rstd, QK.x, QK.w, 0.0f, QK.N * QK.nh, QK.HD, 1e-6f);
  double maxe = 0;
  for (size_t r = 0; r < (size_t)QK.N * QK.nh; r++) {
    const float *x = QK.x + r * QK.HD;
    double v = 0;
    for (int i = 0; i < QK.HD; i++) v += (double)x[i] * x[i];
    v /= QK.HD;
    for (int i = 0; i < QK.HD; i++)
      maxe = fmax(maxe, fabs(x[i] / sqrt(v + 1e-6) * QK.w[i] - QK.y[r * QK.HD + i]));
  }
  CHECK(maxe < 1e-5);
  /* backward: RoPE's, then the norm's, as model.c runs them */
  qk_loss();
  float *d = malloc(sizeof(float) * n), *dx = zeros(n), *dw = zeros((size_t)QK.HD);
  memcpy(d, QK.R, sizeof(float) * n);
  rope_backward(d, QK.cs, QK.sn, NULL, 1, QK.N, QK.nh, QK.HD);
  rmsnorm_backward(dx, dw, d, QK.x, QK.w, 0.0f, QK.rstd, QK.N * QK.nh, QK.HD);
  CHECK(fd_check("dx", qk_loss, QK.x, dx, n, 1e-2f, 1e-3, 2e-2) == 0);
  CHECK(fd_check("dw", qk_loss, QK.w, dw, (size_t)QK.HD, 1e-2f, 1e-3, 1e-2) == 0);
  free(QK.x), free(QK.w), free(QK.y), free(QK.rstd), free(QK.R), free(QK.cs), free(QK.sn);
  free(d), free(dx), free(dw);
}

/* ---- activations ---- */
static struct {
  size_t n;
  float *x, *u, *y, *R;
  int swiglu; /* 0 GELU, 1 SwiGLU, 2 GeGLU (Gemma's gated GELU) */
} AC;
static double act_loss(void) {
  if (AC.swiglu == 1)
    swiglu_forward(AC.y, AC.x, AC.u, AC.n);
  else if (AC.swiglu == 2)
    geglu_forward(AC.y, AC.x, AC.u, AC.n);
  else
    gelu_forward(AC.y, AC.x, AC.n);
  return dotd(AC.y, AC.R, AC.n);
}
static void check_act(int swiglu) {
  AC.n = 45, AC.swiglu = swiglu;
  AC.x = rnd(AC.n, -4, 4), AC.u = rnd(AC.n, -2, 2), AC.y = zeros(AC.n), AC.R = rnd(AC.n, -1, 1);
  act_loss();
  double maxe = 0;
  for (size_t i = 0; i < AC.n; i++) {
    double x = AC.x[i], ref;
    double gelu = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    if (swiglu == 1)
      ref = x / (1.0 + exp(-x)) * AC.u[i];
    else if (swiglu == 2)
      ref = gelu * AC.u[i];
    else
      ref = gelu;
    maxe = fmax(maxe, fabs(ref - AC.y[i]) / fmax(1.0, fabs(ref)));
  }
  CHECK(maxe < 2e-6);
  float *dx = zeros(AC.n), *du = zeros(AC.n);
  if (swiglu == 1)
    swiglu_backward(dx, du, AC.R, AC.x, AC.u, AC.n);
  else if (swiglu == 2)
    geglu_backward(dx, du, AC.R, AC.x, AC.u, AC.n);
  else
    gelu_backward(dx, AC.R, AC.x, AC.n);
  CHECK(fd_check("dx", act_loss, AC.x, dx, AC.n, 1e-3f, 1e-3, 1e-2) == 0);
  if (swiglu) CHECK(fd_check("du", act_loss, AC.u, du, AC.n, 1e-3f, 1e-3, 1e-2) == 0);
  /* in place: dinp == dout */
  float *d = malloc(sizeof(float) * AC.n), *d2 = zeros(AC.n);
  memcpy(d, AC.R, sizeof(float) * AC.n);
  if (swiglu == 1)
    swiglu_backward(d, d2, d, AC.x, AC.u, AC.n);
  else if (swiglu == 2)
    geglu_backward(d, d2, d, AC.x, AC.u, AC.n);
  else
    gelu_backward(d, d, AC.x, AC.n);
  CHECK(memcmp(d, dx, sizeof(float) * AC.n) == 0);
  free(AC.x), free(AC.u), free(AC.y), free(AC.R), free(dx), free(du), free(d), free(d2);
}
static void test_gelu(void) { check_act(0); }
static void test_swiglu(void) { check_act(1); }
static void test_geglu(void) { check_act(2); }

static void test_expf(void) {
  double maxrel = 0;
  for (float x = -80.0f; x < 80.0f; x += 0.0137f) {
    double ref = exp((double)x);
    maxrel = fmax(maxrel, fabs(ft_expf(x) - ref) / ref);
  }
  CHECK(maxrel < 3e-7);
  CHECK(ft_expf(-1000.0f) >= 0.0f && ft_expf(-1000.0f) < 1e-37f);
  CHECK(isfinite(ft_expf(1000.0f)));
}

/* ---- rope ---- */
/* rope_scaling: the tables against HF's formulas (modeling_rope_utils) in
 * double: linear divides inv_freq by factor; llama3 keeps short
 * wavelengths, divides long ones by factor and interpolates between. */
static void test_rope_scaling(void) {
  int T = 7, HD = 64, h = HD / 2;
  float *cs = zeros((size_t)T * h), *sn = zeros((size_t)T * h);
  ft_rope_scaling lin = {FT_ROPE_LINEAR, 4.0f, 0, 0, 0};
  ft_rope_scaling l3 = {FT_ROPE_LLAMA3, 32.0f, 1.0f, 4.0f, 64}; /* short context: every band */
  int n_low = 0, n_mid = 0, n_high = 0;
  for (int k = 0; k < 2; k++) {
    const ft_rope_scaling *sc = k ? &l3 : &lin;
    rope_tables(cs, sn, T, HD, 500000.0f, sc);
    double maxe = 0;
    for (int i = 0; i < h; i++) {
      double inv = pow(500000.0, -2.0 * i / HD), want = inv / sc->factor;
      if (sc->kind == FT_ROPE_LLAMA3) {
        double wl = 2 * M_PI / inv, low_wl = sc->orig_max_pos / sc->low_freq;
        double high_wl = sc->orig_max_pos / sc->high_freq;
        if (wl < high_wl) {
          want = inv, n_high++;
        } else if (wl > low_wl) {
          want = inv / sc->factor, n_low++;
        } else {
          double s = (sc->orig_max_pos / wl - sc->low_freq) / (sc->high_freq - sc->low_freq);
          want = (1 - s) * inv / sc->factor + s * inv, n_mid++;
        }
      }
      for (int t = 0; t < T; t++) {
        maxe = fmax(maxe, fabs(cs[t * h + i] - cos(t * want)));
        maxe = fmax(maxe, fabs(sn[t * h + i] - sin(t * want)));
      }
    }
    CHECK(maxe < 2e-5);
  }
  CHECK(n_low > 0 && n_mid > 0 && n_high > 0); /* the test reaches all three bands */
  free(cs), free(sn);
}

/* An attention block over keys from position q0 (inference over its KV
 * cache) gives the rows of the whole causal block (training). */
static void test_attention_block_offset(void) {
  int n = 9, HD = 5, q0 = 6, rows = n - q0;
  float *Q = rnd((size_t)n * HD, -1, 1), *K = rnd((size_t)n * HD, -1, 1);
  float *V = rnd((size_t)n * HD, -1, 1);
  float *P = zeros((size_t)n * n), *Y = zeros((size_t)n * HD);
  float *P2 = zeros((size_t)rows * n), *Y2 = zeros((size_t)rows * HD);
  for (int window = 0; window <= 4; window += 4) { /* and with a sliding window */
    attention_block_forward(Y, HD, P, n, Q, HD, K, V, HD, n, 0, HD, 0.4f, window);
    attention_block_forward(Y2, HD, P2, n, Q + (size_t)q0 * HD, HD, K, V, HD, rows, q0, HD, 0.4f,
                            window);
    double maxe = 0;
    for (int i = 0; i < rows * HD; i++) maxe = fmax(maxe, fabs(Y2[i] - Y[(size_t)q0 * HD + i]));
    for (int i = 0; i < rows * n; i++) maxe = fmax(maxe, fabs(P2[i] - P[(size_t)q0 * n + i]));
    CHECK(maxe < 1e-6);
    /* a windowed row's probabilities sit on its last `window` keys only */
    int outside = 0;
    for (int i = 0; window && i < n; i++)
      for (int j = 0; j < n; j++)
        if ((j > i || j <= i - window) && P[(size_t)i * n + j] != 0.0f) outside++;
    CHECK_EQ_INT(outside, 0);
  }
  free(Q), free(K), free(V), free(P), free(Y), free(P2), free(Y2);
}

static void test_rope(void) {
  int B = 2, T = 5, nh = 3, HD = 8, h = HD / 2;
  size_t n = (size_t)B * T * nh * HD;
  float *cs = zeros((size_t)T * h), *sn = zeros((size_t)T * h);
  rope_tables(cs, sn, T, HD, 10000.0f, NULL);
  float *x = rnd(n, -1, 1), *y = malloc(sizeof(float) * n);
  memcpy(y, x, sizeof(float) * n);
  rope_forward(y, cs, sn, NULL, B, T, nh, HD);
  /* HF: q*cos + rotate_half(q)*sin, cos = cat(freqs, freqs) */
  double maxe = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int k = 0; k < nh; k++)
        for (int i = 0; i < HD; i++) {
          size_t o = (((size_t)b * T + t) * nh + k) * HD;
          int j = i % h;
          double ang = t * pow(10000.0, -2.0 * j / HD);
          double rot = i < h ? -x[o + i + h] : x[o + i - h];
          double ref = x[o + i] * cos(ang) + rot * sin(ang);
          maxe = fmax(maxe, fabs(ref - y[o + i]));
        }
  CHECK(maxe < 1e-5);
  /* rotation: backward of a linear map is its transpose; check <R, rope(x)> = <rope^T(R), x> */
  float *R = rnd(n, -1, 1), *dR = malloc(sizeof(float) * n);
  memcpy(dR, R, sizeof(float) * n);
  rope_backward(dR, cs, sn, NULL, B, T, nh, HD);
  CHECK_NEAR(dotd(R, y, n), dotd(dR, x, n), 1e-4);
  /* and the inverse: backward(forward(x)) = x */
  rope_backward(y, cs, sn, NULL, B, T, nh, HD);
  maxe = 0;
  for (size_t i = 0; i < n; i++) maxe = fmax(maxe, fabs(y[i] - x[i]));
  CHECK(maxe < 1e-5);
  /* explicit positions (packed rows): token t of row b at angle pos[b][t] */
  int32_t pos[2 * 5] = {0, 1, 0, 1, 2, 3, 4, 0, 2, 1};
  memcpy(y, x, sizeof(float) * n);
  rope_forward(y, cs, sn, pos, B, T, nh, HD);
  maxe = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int k = 0; k < nh; k++)
        for (int i = 0; i < HD; i++) {
          size_t o = (((size_t)b * T + t) * nh + k) * HD;
          int j = i % h;
          double ang = pos[b * T + t] * pow(10000.0, -2.0 * j / HD);
          double rot = i < h ? -x[o + i + h] : x[o + i - h];
          maxe = fmax(maxe, fabs(x[o + i] * cos(ang) + rot * sin(ang) - y[o + i]));
        }
  CHECK(maxe < 1e-5);
  memcpy(dR, R, sizeof(float) * n);
  rope_backward(dR, cs, sn, pos, B, T, nh, HD);
  CHECK_NEAR(dotd(R, y, n), dotd(dR, x, n), 1e-4);
  free(cs), free(sn), free(x), free(y), free(R), free(dR);
}

/* ---- attention ---- */
static struct {
  int B, T, NH, NKV, HD, ldq, ldkv, window;
  float scale; /* 0: 1/sqrt(HD) */
  int32_t lens[3];
  const int32_t *seg; /* (B,T) or NULL */
  float *q, *k, *v, *out, *att, *R;
} AT;
static double att_loss(void) {
  attention_forward(AT.out, AT.att, AT.q, AT.k, AT.v, AT.lens, AT.seg, AT.B, AT.T, AT.NH, AT.NKV,
                    AT.HD, AT.ldq, AT.ldkv, AT.scale, AT.window);
  return dotd(AT.out, AT.R, (size_t)AT.B * AT.T * AT.NH * AT.HD);
}
/* Packed rows for the segment tests (B=3, T=6, lens 6/4/1): row 0 holds
 * three examples, row 1 two (its ids need not start at 0; past lens junk),
 * row 2 one. */
static const int32_t segs3[3 * 6] = {0, 0, 0, 1, 1, 2, 4, 5, 5, 5, 0, 0, 7, 1, 0, 9, 9, 9};
static void check_attention_w(int NH, int NKV, int packed, const int32_t *seg, float scale,
                              int window) {
  AT.B = 3, AT.T = 6, AT.NH = NH, AT.NKV = NKV, AT.HD = 4, AT.seg = seg;
  AT.scale = scale ? scale : 1.0f / sqrtf(4.0f), AT.window = window;
  AT.lens[0] = 6, AT.lens[1] = 4, AT.lens[2] = 1;
  int QD = NH * AT.HD, KD = NKV * AT.HD;
  size_t N = (size_t)AT.B * AT.T;
  float *qkv = NULL;
  if (packed) { /* GPT-2 layout: one (N, QD+2KD) block */
    AT.ldq = AT.ldkv = QD + 2 * KD;
    qkv = rnd(N * AT.ldq, -1.5f, 1.5f);
    AT.q = qkv, AT.k = qkv + QD, AT.v = qkv + QD + KD;
  } else {
    AT.ldq = QD, AT.ldkv = KD;
    AT.q = rnd(N * QD, -1.5f, 1.5f), AT.k = rnd(N * KD, -1.5f, 1.5f), AT.v = rnd(N * KD, -1, 1);
  }
  AT.out = zeros(N * QD), AT.att = zeros((size_t)AT.B * NH * AT.T * AT.T),
  AT.R = rnd(N * QD, -1, 1);
  att_loss();
  /* naive reference */
  double maxe = 0;
  int grp = NH / NKV;
  for (int b = 0; b < AT.B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < AT.T; i++) {
        const float *qi = AT.q + ((size_t)b * AT.T + i) * AT.ldq + h * AT.HD;
        double y[16] = {0};
        if (i < AT.lens[b]) {
          double s[16], m = -1e30, z = 0;
          for (int j = 0; j <= i; j++) {
            const float *kj = AT.k + ((size_t)b * AT.T + j) * AT.ldkv + (h / grp) * AT.HD;
            s[j] = -1e300; /* another segment, or out of the window: masked */
            if (seg && seg[b * AT.T + j] != seg[b * AT.T + i]) continue;
            if (window && j <= i - window) continue; /* HF: key > query - window */
            s[j] = 0;
            for (int d = 0; d < AT.HD; d++) s[j] += (double)qi[d] * kj[d];
            s[j] *= AT.scale;
            m = fmax(m, s[j]);
          }
          for (int j = 0; j <= i; j++) z += (s[j] = exp(s[j] - m));
          for (int j = 0; j <= i; j++) {
            const float *vj = AT.v + ((size_t)b * AT.T + j) * AT.ldkv + (h / grp) * AT.HD;
            for (int d = 0; d < AT.HD; d++) y[d] += s[j] / z * vj[d];
          }
        }
        for (int d = 0; d < AT.HD; d++)
          maxe = fmax(maxe, fabs(y[d] - AT.out[((size_t)b * AT.T + i) * QD + h * AT.HD + d]));
      }
  CHECK(maxe < 1e-5);
  float *dq, *dk, *dv, *dqkv = NULL;
  if (packed) {
    dqkv = zeros(N * AT.ldq);
    dq = dqkv, dk = dqkv + QD, dv = dqkv + QD + KD;
  } else {
    dq = zeros(N * QD), dk = zeros(N * KD), dv = zeros(N * KD);
  }
  float *scratch = zeros((size_t)AT.T * AT.T);
  attention_backward(dq, dk, dv, scratch, AT.R, AT.att, AT.q, AT.k, AT.v, AT.lens, AT.seg, AT.B,
                     AT.T, NH, NKV, AT.HD, AT.ldq, AT.ldkv, AT.scale);
  if (packed) {
    CHECK(fd_check("dqkv", att_loss, qkv, dqkv, N * AT.ldq, 1e-2f, 1e-3, 2e-2) == 0);
  } else {
    CHECK(fd_check("dq", att_loss, AT.q, dq, N * QD, 1e-2f, 1e-3, 2e-2) == 0);
    CHECK(fd_check("dk", att_loss, AT.k, dk, N * KD, 1e-2f, 1e-3, 2e-2) == 0);
    CHECK(fd_check("dv", att_loss, AT.v, dv, N * KD, 1e-2f, 1e-3, 2e-2) == 0);
  }
  /* padded positions stay out: their outputs are zero */
  CHECK(AT.out[((size_t)2 * AT.T + 3) * QD] == 0.0f);
  if (packed) {
    free(qkv), free(dqkv);
  } else {
    free(AT.q), free(AT.k), free(AT.v), free(dq), free(dk), free(dv);
  }
  free(AT.out), free(AT.att), free(AT.R), free(scratch);
}
static void check_attention(int NH, int NKV, int packed, const int32_t *seg) {
  check_attention_w(NH, NKV, packed, seg, 0.0f, 0);
}
static void test_attention_mha_packed(void) { check_attention(2, 2, 1, NULL); }
/* Gemma: scores scaled by query_pre_attn_scalar^-0.5, a window of 2 and 3
 * keys (row 0 crosses it), with segments too */
static void test_attention_window_gqa(void) { check_attention_w(4, 2, 0, NULL, 0.3f, 2); }
static void test_attention_window_segments(void) { check_attention_w(4, 1, 0, segs3, 0.7f, 3); }
static void test_attention_gqa(void) { check_attention(4, 2, 0, NULL); }
static void test_attention_mqa(void) { check_attention(3, 1, 0, NULL); }
static void test_attention_segments_mha_packed(void) { check_attention(2, 2, 1, segs3); }
static void test_attention_segments_gqa(void) { check_attention(4, 2, 0, segs3); }

/* A token of a later segment does not see earlier segments: its output is
 * the same as attention over its own segment alone, run as a row of its own. */
static void test_attention_segment_isolation(void) {
  enum { T = 7, NH = 2, HD = 4, C = NH * HD };
  int32_t lens1[1] = {T}, seg[T] = {0, 0, 0, 1, 1, 1, 1}, lens2[1] = {4};
  float *q = rnd(T * C, -1.5f, 1.5f), *k = rnd(T * C, -1.5f, 1.5f), *v = rnd(T * C, -1, 1);
  float *out = zeros(T * C), *att = zeros((size_t)NH * T * T);
  float *out2 = zeros(T * C), *att2 = zeros((size_t)NH * T * T);
  float sc = 1.0f / sqrtf((float)HD);
  attention_forward(out, att, q, k, v, lens1, seg, 1, T, NH, NH, HD, C, C, sc, 0);
  attention_forward(out2, att2, q + 3 * C, k + 3 * C, v + 3 * C, lens2, NULL, 1, T, NH, NH, HD, C,
                    C, sc, 0);
  double e = 0;
  for (int i = 0; i < 4 * C; i++) e = fmax(e, fabs(out[3 * C + i] - out2[i]));
  CHECK(e < 1e-6);
  /* and without segments the outputs differ (the test can fail) */
  attention_forward(out2, att2, q, k, v, lens1, NULL, 1, T, NH, NH, HD, C, C, sc, 0);
  e = 0;
  for (int i = 3 * C; i < T * C; i++) e = fmax(e, fabs(out[i] - out2[i]));
  CHECK(e > 1e-3);
  free(q), free(k), free(v), free(out), free(att), free(out2), free(att2);
}

/* ---- cross-entropy helpers ---- */
static struct {
  int n, y;
  float *x, *d;
} CE;
static double ce_loss(void) { return (double)logsumexp(CE.x, CE.n) - CE.x[CE.y]; }
static void test_cross_entropy(void) {
  CE.n = 53, CE.y = 17;
  CE.x = rnd(CE.n, -5, 5), CE.d = zeros(CE.n);
  double m = -1e30, z = 0;
  for (int i = 0; i < CE.n; i++) m = fmax(m, CE.x[i]);
  for (int i = 0; i < CE.n; i++) z += exp(CE.x[i] - m);
  CHECK_NEAR(logsumexp(CE.x, CE.n), m + log(z), 1e-5);
  CE.x[40] = 9.0f;
  CHECK_EQ_INT(argmax(CE.x, CE.n), 40);
  float lse = logsumexp(CE.x, CE.n);
  softmax_scaled(CE.d, CE.x, lse, 1.0f, CE.n);
  CE.d[CE.y] -= 1.0f;
  CHECK(fd_check("dlogits", ce_loss, CE.x, CE.d, CE.n, 1e-2f, 1e-4, 1e-2) == 0);
  free(CE.x), free(CE.d);
}

/* ---- LM head with cross-entropy (fused, chunked) ---- */
static struct {
  int N, C, V, R;
  float cap;
  float *x, *w, *scratch;
  int32_t *tgt;
} HX;
static double hx_loss(void) {
  ft_xent_sums s = {0};
  lm_head_xent(&s, NULL, NULL, NULL, HX.scratch, HX.x, HX.tgt, HX.w, HX.N, HX.C, HX.V, HX.R, HX.cap,
               0.0f);
  return s.loss;
}
/* The same numbers from the full logits in double: z = x W^T, capped. */
static double hx_ref(const float *x, int i, int v) {
  double z = 0;
  for (int c = 0; c < HX.C; c++) z += (double)x[(size_t)i * HX.C + c] * HX.w[(size_t)v * HX.C + c];
  return HX.cap > 0 ? HX.cap * tanh(z / HX.cap) : z;
}
static void check_lm_head(float cap, int R) {
  HX.N = 11, HX.C = 6, HX.V = 37, HX.R = R, HX.cap = cap;
  size_t nx = (size_t)HX.N * HX.C, nw = (size_t)HX.V * HX.C;
  HX.x = rnd(nx, -1, 1), HX.w = rnd(nw, -1.5, 1.5);
  HX.scratch = zeros(lm_head_scratch(R, HX.C, HX.V));
  HX.tgt = malloc(sizeof(int32_t) * HX.N);
  for (int i = 0; i < HX.N; i++) HX.tgt[i] = i % 4 == 2 ? -1 : (int32_t)((i * 7) % HX.V);
  /* forward against the formula: loss, counts, log p(target), top-k */
  float lp[11];
  int32_t top[11 * 3];
  float toplp[11 * 3];
  for (int i = 0; i < HX.N; i++) lp[i] = 123.0f;
  ft_head_rows rows = {.lp = lp, .k = 3, .top_id = top, .top_lp = toplp};
  ft_xent_sums s = {0};
  lm_head_xent(&s, &rows, NULL, NULL, HX.scratch, HX.x, HX.tgt, HX.w, HX.N, HX.C, HX.V, R, cap,
               0.0f);
  double loss = 0, e = 0;
  long n = 0, right = 0;
  for (int i = 0; i < HX.N; i++) {
    if (HX.tgt[i] < 0) {
      CHECK(lp[i] == 123.0f); /* untouched */
      continue;
    }
    double mx = -1e30, z = 0, zt = hx_ref(HX.x, i, HX.tgt[i]);
    int am = 0;
    for (int v = 0; v < HX.V; v++) {
      double zv = hx_ref(HX.x, i, v);
      if (zv > mx) mx = zv, am = v;
    }
    for (int v = 0; v < HX.V; v++) z += exp(hx_ref(HX.x, i, v) - mx);
    double lse = mx + log(z);
    loss += lse - zt;
    n++;
    right += am == HX.tgt[i];
    e = fmax(e, fabs(lp[i] - (zt - lse)));
    e = fmax(e, fabs(toplp[i * 3] - (mx - lse)));
    CHECK_EQ_INT(top[i * 3], am);
    CHECK(toplp[i * 3] >= toplp[i * 3 + 1] && toplp[i * 3 + 1] >= toplp[i * 3 + 2]);
  }
  CHECK(e < 1e-5);
  CHECK_NEAR(s.loss, loss, 1e-4);
  CHECK_EQ_INT(s.n, n);
  CHECK_EQ_INT(s.correct, right);
  /* backward: d(scale * loss), dw accumulated (+=), dx only on rows with a target */
  float *dx = zeros(nx), *dw = zeros(nw);
  for (size_t i = 0; i < nw; i++) dw[i] = 1.0f;
  for (size_t i = 0; i < nx; i++) dx[i] = 2.0f;
  ft_xent_sums s2 = {0};
  lm_head_xent(&s2, NULL, dx, dw, HX.scratch, HX.x, HX.tgt, HX.w, HX.N, HX.C, HX.V, R, cap, 1.0f);
  CHECK(s2.loss == s.loss);
  for (size_t i = 0; i < nw; i++) dw[i] -= 1.0f;
  for (size_t i = 0; i < nx; i++) dx[i] -= 2.0f;
  int untouched = 1;
  for (int i = 0; i < HX.N; i++)
    for (int c = 0; c < HX.C && HX.tgt[i] < 0; c++) untouched &= dx[(size_t)i * HX.C + c] == 0.0f;
  CHECK(untouched);
  CHECK(fd_check("dx", hx_loss, HX.x, dx, nx, 1e-2f, 1e-3, 1e-2) == 0);
  CHECK(fd_check("dw", hx_loss, HX.w, dw, nw, 1e-2f, 1e-3, 1e-2) == 0);
  /* the scale multiplies the gradient */
  float *dx2 = zeros(nx);
  ft_xent_sums s3 = {0};
  lm_head_xent(&s3, NULL, dx2, NULL, HX.scratch, HX.x, HX.tgt, HX.w, HX.N, HX.C, HX.V, R, cap,
               0.25f);
  double se = 0;
  for (size_t i = 0; i < nx; i++) se = fmax(se, fabs(dx2[i] - 0.25 * dx[i]));
  CHECK(se < 1e-6);
  free(HX.x), free(HX.w), free(HX.scratch), free(HX.tgt), free(dx), free(dw), free(dx2);
}
/* chunks of 4 rows (several chunks, a partial last one), and one chunk */
static void test_lm_head_xent(void) {
  check_lm_head(0.0f, 4);
  check_lm_head(0.0f, 16);
}
static void test_lm_head_xent_softcap(void) {
  check_lm_head(1.5f, 4);
  check_lm_head(1.5f, 1);
}

static void test_softcap(void) {
  float x[2001];
  for (int i = 0; i < 2001; i++) x[i] = (float)(i - 1000) * 0.05f; /* -50 .. 50 */
  softcap_forward(x, 2001, 30.0f);
  double e = 0;
  for (int i = 0; i < 2001; i++) {
    double want = 30.0 * tanh((double)(i - 1000) * 0.05 / 30.0);
    e = fmax(e, fabs(x[i] - want));
  }
  CHECK(e < 1e-5);
  int32_t ids[5];
  float y[6] = {1, 3, 3, -1, 2, 3};
  CHECK_EQ_INT(topk(y, 6, 5, ids), 5);
  CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 5 && ids[3] == 4 && ids[4] == 0);
  CHECK_EQ_INT(topk(y, 2, 5, ids), 2);
}

static void test_dropout(void) {
  size_t n = 20000;
  float *x = rnd(n, 1, 2), *y = zeros(n), *mask = zeros(n), *y2 = zeros(n), *m2 = zeros(n);
  dropout_forward(y, mask, x, 0.25f, 42, n);
  size_t dropped = 0;
  int ok = 1;
  for (size_t i = 0; i < n; i++) {
    if (mask[i] == 0.0f)
      dropped++;
    else if (fabsf(mask[i] - 1.0f / 0.75f) > 1e-6f)
      ok = 0;
    if (y[i] != x[i] * mask[i]) ok = 0;
  }
  CHECK(ok);
  CHECK(dropped > n * 0.23 && dropped < n * 0.27);
  dropout_forward(y2, m2, x, 0.25f, 42, n); /* deterministic from the seed */
  CHECK(memcmp(mask, m2, sizeof(float) * n) == 0);
  dropout_forward(y2, m2, x, 0.25f, 43, n);
  CHECK(memcmp(mask, m2, sizeof(float) * n) != 0);
  free(x), free(y), free(mask), free(y2), free(m2);
}

static void test_matmul_transposes(void) {
  int M = 3, N = 4, K = 5;
  float *a = rnd((size_t)M * K, -1, 1), *b = rnd((size_t)K * N, -1, 1);
  float *at = zeros((size_t)M * K), *bt = zeros((size_t)K * N);
  for (int i = 0; i < M; i++)
    for (int k = 0; k < K; k++) at[k * M + i] = a[i * K + k];
  for (int k = 0; k < K; k++)
    for (int j = 0; j < N; j++) bt[j * K + k] = b[k * N + j];
  float c[4][12];
  for (int v = 0; v < 4; v++) {
    for (int i = 0; i < 12; i++) c[v][i] = 1.0f;
    matmul(c[v], N, (v & 1) ? at : a, (v & 1) ? M : K, v & 1, (v & 2) ? bt : b, (v & 2) ? K : N,
           (v & 2) >> 1, M, N, K, 2.0f, 0.5f);
  }
  double maxe = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += (double)a[i * K + k] * b[k * N + j];
      for (int v = 0; v < 4; v++) maxe = fmax(maxe, fabs(2 * s + 0.5 - c[v][i * N + j]));
    }
  CHECK(maxe < 1e-5);
  free(a), free(b), free(at), free(bt);
}

int main(void) {
  rng_init(&rng, 1234);
  RUN(test_matmul_transposes);
  RUN(test_softcap);
  RUN(test_lm_head_xent);
  RUN(test_lm_head_xent_softcap);
  RUN(test_linear);
  RUN(test_linear_conv1d);
  RUN(test_layernorm);
  RUN(test_rmsnorm);
  RUN(test_rmsnorm_one_plus_w);
  RUN(test_qk_norm_per_head);
  RUN(test_gelu);
  RUN(test_swiglu);
  RUN(test_geglu);
  RUN(test_expf);
  RUN(test_rope);
  RUN(test_rope_scaling);
  RUN(test_attention_block_offset);
  RUN(test_attention_mha_packed);
  RUN(test_attention_gqa);
  RUN(test_attention_mqa);
  RUN(test_attention_segments_mha_packed);
  RUN(test_attention_segments_gqa);
  RUN(test_attention_segment_isolation);
  RUN(test_attention_window_gqa);
  RUN(test_attention_window_segments);
  RUN(test_cross_entropy);
  RUN(test_dropout);
  return test_report();
}
