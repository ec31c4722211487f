/* The optimizer of the training loop: AdamW exactly as torch.optim.AdamW
 * (PyTorch's single-tensor path: decoupled weight decay p *= 1 - lr*wd first,
 * then Adam with bias correction, eps added after the square root of the
 * bias-corrected second moment), global-norm gradient clipping as
 * torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of Hugging
 * Face transformers (constant/linear/cosine, each with linear warmup).
 *
 * Moments live in one allocation over all trainable tensors in table order
 * (STYLE.md 11): m of every tensor, then v of every tensor. Weight decay is
 * not applied to 1-D tensors (biases and norm weights), as HF Trainer does.
 * Tensors that alias an earlier one (same weight pointer, e.g. a tied lm_head)
 * are optimized once. */
#ifndef FT_OPTIM_H
#define FT_OPTIM_H
#include <stddef.h>

#include "ft_err.h"
#include "nn/model.h"
#include "train/spec.h"

#define OPTIM_BETA1 0.9f
#define OPTIM_BETA2 0.999f
#define OPTIM_EPS 1e-8f

typedef struct optim optim;

/* An optimizer over the trainable tensors (trainable && g != NULL) of m.
 * Moments start at zero. Caller frees with optim_free. */
int optim_new(optim **o, ft_model *m, float weight_decay, ft_error *err);
/* The same over an explicit parameter table (tests, and anything that is not
 * an ft_model); params must outlive the optimizer. */
int optim_new_params(optim **o, ft_param *params, size_t n, float weight_decay, ft_error *err);
void optim_free(optim *o);

/* The L2 norm over all optimized gradients (computed in double, returned as
 * float), as clip_grad_norm_: if max_norm > 0 and max_norm / (norm + 1e-6) < 1,
 * every gradient is multiplied by that coefficient. max_norm <= 0 only
 * measures. A non-finite norm is returned as is and nothing is scaled. */
float optim_clip_grad_norm(optim *o, float max_norm);
/* One AdamW update of every optimized tensor with learning rate lr
 * (gradients are read, not cleared). */
void optim_step(optim *o, float lr);

/* Optimizer state, for checkpoints: the step count t and the moment block of
 * 2 * optim_numel() floats (m of every tensor, then v, in table order). */
size_t optim_numel(const optim *o); /* elements optimized */
long optim_step_count(const optim *o);
const float *optim_moments(const optim *o); /* (2 * numel) */
/* The moment block to fill in place when loading a checkpoint, and the step
 * count to set with it. */
float *optim_moments_rw(optim *o);
void optim_set_step_count(optim *o, long t);
/* Replaces the state; FT_ESHAPE if n != 2 * optim_numel(). */
int optim_set_state(optim *o, long t, const float *moments, size_t n, ft_error *err);
/* The i-th optimized tensor (0 <= i < optim_count), for naming state. */
size_t optim_count(const optim *o);
const ft_param *optim_param(const optim *o, size_t i);

/* Learning rate of the update of step `step` (0-based) out of `total`, with
 * `warmup` linear warmup steps: HF get_{constant,linear,cosine}_schedule_with_warmup
 * (LambdaLR multiplier) times base_lr. */
float sched_lr(ft_sched s, float base_lr, long step, long total, long warmup);
/* ceil(warmup_ratio * total), as HF TrainingArguments.get_warmup_steps. */
long sched_warmup_steps(float warmup_ratio, long total);
#endif
