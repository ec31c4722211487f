/* AdamW, gradient clipping and LR schedules (see optim.h). The update mirrors
 * PyTorch 1.13's _single_tensor_adamw operation by operation in float32 (the
 * scalars computed in double as Python does, then rounded to float as the
 * CPU kernels do), so a few steps match torch to the last bit or close to it.
 * Workload: one pass over all trainable elements per step, memory bound;
 * the loops are plain and let the compiler vectorise them. */
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct optim {
  ft_param **p; /* (np) the optimized tensors, table order, aliases dropped */
  size_t np;
  size_t numel; /* total elements */
  size_t *off;  /* (np) element offset of each tensor in a moment */
  float *mom;   /* (2 * numel): m then v; one allocation */
  float wd;
  long t; /* steps done */
};

int optim_new(optim **o, ft_model *m, float weight_decay, ft_error *err) {
  size_t n = 0;
  ft_param *ps = model_params(m, &n);
  return optim_new_params(o, ps, n, weight_decay, err);
}

int optim_new_params(optim **out, ft_param *params, size_t n, float weight_decay, ft_error *err) {
  *out = NULL;
  optim *o = calloc(1, sizeof *o);
  if (!o) return ft_error_set(err, FT_ENOMEM, NULL, "optimizer: out of memory");
  o->p = calloc(n ? n : 1, sizeof *o->p);
  o->off = calloc(n ? n : 1, sizeof *o->off);
  if (!o->p || !o->off) goto nomem;
  for (size_t i = 0; i < n; i++) {
    ft_param *p = &params[i];
    if (!p->trainable || !p->g || !p->w) continue;
    int alias = 0;
    for (size_t j = 0; j < o->np; j++)
      if (o->p[j]->w == p->w) alias = 1;
    if (alias) continue;
    o->off[o->np] = o->numel;
    o->p[o->np++] = p;
    o->numel += p->numel;
  }
  o->mom = calloc(o->numel ? 2 * o->numel : 1, sizeof *o->mom);
  if (!o->mom) goto nomem;
  o->wd = weight_decay;
  *out = o;
  return 0;
nomem:
  optim_free(o);
  return ft_error_set(err, FT_ENOMEM, NULL, "optimizer: out of memory");
}

void optim_free(optim *o) {
  if (!o) return;
  free(o->p);
  free(o->off);
  free(o->mom);
  free(o);
}

float optim_clip_grad_norm(optim *o, float max_norm) {
  double ss = 0.0;
  for (size_t i = 0; i < o->np; i++) {
    const float *g = o->p[i]->g;
    size_t n = o->p[i]->numel;
    double s = 0.0;
    for (size_t k = 0; k < n; k++) s += (double)g[k] * (double)g[k];
    ss += s;
  }
  float norm = (float)sqrt(ss);
  if (max_norm > 0.0f && isfinite(norm)) {
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f) {
      for (size_t i = 0; i < o->np; i++) {
        float *g = o->p[i]->g;
        size_t n = o->p[i]->numel;
        for (size_t k = 0; k < n; k++) g[k] *= coef;
      }
    }
  }
  return norm;
}

void optim_step(optim *o, float lr) {
  o->t++;
  const double b1 = OPTIM_BETA1, b2 = OPTIM_BETA2; /* as Python floats */
  const double bc1 = 1.0 - pow(b1, (double)o->t);
  const double bc2 = 1.0 - pow(b2, (double)o->t);
  const float step_size_neg = (float)(-((double)lr / bc1));
  const float bc2_sqrt = (float)sqrt(bc2);
  const float beta1 = (float)b1, beta2 = (float)b2;
  const float one_m_b1 = (float)(1.0 - b1), one_m_b2 = (float)(1.0 - b2);
  const float eps = OPTIM_EPS;
  for (size_t i = 0; i < o->np; i++) {
    ft_param *p = o->p[i];
    float *w = p->w;
    const float *g = p->g;
    float *m = o->mom + o->off[i];            /* (numel) */
    float *v = o->mom + o->numel + o->off[i]; /* (numel) */
    size_t n = p->numel;
    /* No decay for biases and norm weights (1-D), as HF Trainer groups them. */
    if (o->wd != 0.0f && p->ndim > 1) {
      const float decay = (float)(1.0 - (double)lr * (double)o->wd);
      for (size_t k = 0; k < n; k++) w[k] *= decay;
    }
    for (size_t k = 0; k < n; k++) {
      m[k] = m[k] * beta1 + one_m_b1 * g[k];        /* mul_(b1).add_(g, alpha=1-b1) */
      v[k] = v[k] * beta2 + one_m_b2 * g[k] * g[k]; /* mul_(b2).addcmul_(g, g, 1-b2) */
      float denom = sqrtf(v[k]) / bc2_sqrt + eps;   /* (v.sqrt() / bc2_sqrt).add_(eps) */
      w[k] = w[k] + step_size_neg * m[k] / denom;   /* addcdiv_(m, denom, -step_size) */
    }
  }
}

size_t optim_numel(const optim *o) { return o->numel; }
long optim_step_count(const optim *o) { return o->t; }
const float *optim_moments(const optim *o) { return o->mom; }
float *optim_moments_rw(optim *o) { return o->mom; }
void optim_set_step_count(optim *o, long t) { o->t = t; }
size_t optim_count(const optim *o) { return o->np; }
const ft_param *optim_param(const optim *o, size_t i) { return i < o->np ? o->p[i] : NULL; }

int optim_set_state(optim *o, long t, const float *moments, size_t n, ft_error *err) {
  if (n != 2 * o->numel)
    return ft_error_set(err, FT_ESHAPE, NULL, "optimizer state has %zu values, the model needs %zu",
                        n, 2 * o->numel);
  if (t < 0) return ft_error_set(err, FT_EFORMAT, NULL, "optimizer step count %ld < 0", t);
  if (n) memcpy(o->mom, moments, n * sizeof *o->mom);
  o->t = t;
  return 0;
}

/* The LambdaLR multipliers of transformers.optimization. */
float sched_lr(ft_sched s, float base_lr, long step, long total, long warmup) {
  double f;
  if (step < warmup) {
    f = (double)step / (double)(warmup > 1 ? warmup : 1);
  } else if (s == FT_SCHED_LINEAR) {
    double d = (double)(total - warmup > 1 ? total - warmup : 1);
    f = (double)(total - step) / d;
    if (f < 0.0) f = 0.0;
  } else if (s == FT_SCHED_COSINE) {
    double d = (double)(total - warmup > 1 ? total - warmup : 1);
    double progress = (double)(step - warmup) / d;
    f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress)); /* num_cycles = 0.5 */
    if (f < 0.0) f = 0.0;
  } else {
    f = 1.0;
  }
  return (float)((double)base_lr * f);
}

long sched_warmup_steps(float warmup_ratio, long total) {
  /* The ratio arrives as float32 (0.05f is 0.0500000007); HF computes with
   * the Python float the user wrote, so recover the short decimal first:
   * ceil(0.05f * 100) would be 6, HF's is 5. */
  char buf[32];
  snprintf(buf, sizeof buf, "%.6g", (double)warmup_ratio);
  double r = strtod(buf, NULL);
  if (!(r > 0.0)) return 0;
  return (long)ceil(r * (double)total);
}
