/* AdamW, clipping and LR schedules against values computed by hand and by
 * torch 1.13 (torch.optim.AdamW with a decayed 2-D and an undecayed 1-D
 * group, clip_grad_norm_ at step 2) and against the formulas of
 * transformers' get_*_schedule_with_warmup. */
#include <math.h>
#include <stdlib.h>

#include "train/optim.h"
#include "test.h"

static float W[6], bvec[3], gW[6], gb[3];

static void make_params(ft_param p[3]) {
  static const float W0[6] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f, -0.75f};
  static const float b0[3] = {0.1f, -0.2f, 0.3f};
  memcpy(W, W0, sizeof W);
  memcpy(bvec, b0, sizeof bvec);
  memset(p, 0, 3 * sizeof *p);
  snprintf(p[0].name, sizeof p[0].name, "w");
  p[0].ndim = 2, p[0].shape[0] = 2, p[0].shape[1] = 3, p[0].numel = 6;
  p[0].w = W, p[0].g = gW, p[0].trainable = 1;
  snprintf(p[1].name, sizeof p[1].name, "b");
  p[1].ndim = 1, p[1].shape[0] = 3, p[1].numel = 3;
  p[1].w = bvec, p[1].g = gb, p[1].trainable = 1;
  /* A tied alias of w (like lm_head): must be optimized once, not twice. */
  p[2] = p[0];
  snprintf(p[2].name, sizeof p[2].name, "alias");
}

static void test_adamw_first_step_by_hand(void) {
  ft_param p[3];
  make_params(p);
  optim *o;
  CHECK_EQ_INT(optim_new_params(&o, p, 3, 0.1f, NULL), 0);
  CHECK_EQ_INT(optim_numel(o), 9);
  CHECK_EQ_INT(optim_count(o), 2);
  static const float g0[6] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f};
  memcpy(gW, g0, sizeof gW);
  gb[0] = 1.0f, gb[1] = -1.0f, gb[2] = 0.5f;
  optim_step(o, 1e-2f);
  /* Step 1: mhat = g, vhat = g^2, so p = p (1 - lr wd) - lr sign(g) (up to eps). */
  CHECK_NEAR(W[0], 0.5 * (1 - 1e-3) - 0.01, 1e-7);
  CHECK_NEAR(W[1], -1.0 * (1 - 1e-3) + 0.01, 1e-7);
  CHECK_NEAR(W[4], 0.0 + 0.01, 1e-7);
  CHECK_NEAR(bvec[0], 0.1 - 0.01, 1e-7); /* 1-D: no weight decay */
  CHECK_NEAR(bvec[1], -0.2 + 0.01, 1e-7);
  CHECK_EQ_INT(optim_step_count(o), 1);
  /* moments: m = 0.1 g, v = 0.001 g^2 */
  CHECK_NEAR(optim_moments(o)[0], 0.01, 1e-8);
  CHECK_NEAR(optim_moments(o)[9 + 0], 1e-5, 1e-9);
  CHECK_NEAR(optim_moments(o)[6], 0.1, 1e-7); /* b's m follows W's */
  optim_free(o);
}

static void test_adamw_three_steps_torch(void) {
  ft_param p[3];
  make_params(p);
  optim *o;
  CHECK_EQ_INT(optim_new_params(&o, p, 3, 0.1f, NULL), 0);
  static const float gws[3][6] = {{0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f},
                                  {-0.3f, 0.1f, 0.0f, 1.5f, -2.0f, 0.25f},
                                  {0.05f, 0.05f, -0.05f, 0.0f, 1.0f, -1.0f}};
  static const float gbs[3][3] = {{1.0f, -1.0f, 0.5f}, {0.2f, 0.3f, -0.4f}, {-0.6f, 0.0f, 2.0f}};
  static const float lrs[3] = {1e-2f, 5e-3f, 2.5e-3f};
  /* torch 1.13 after each step */
  static const double wref[3][6] = {{0.4895000159740448, -0.9890000224113464, 0.2397499978542328,
                                     1.9880000352859497, 0.009999999776482582, -0.7592499852180481},
                                    {0.4898844361305237, -0.9859219193458557, 0.23627983033657074,
                                     1.9820407629013062, 0.01493874005973339, -0.7627695202827454},
                                    {0.4894968867301941, -0.9850867986679077, 0.23520633578300476,
                                     1.9796262979507446, 0.015052876435220242, -0.761995792388916}};
  static const double bref[3][3] = {
      {0.09000000357627869, -0.1899999976158142, 0.2900000214576721},
      {0.08637295663356781, -0.18710048496723175, 0.2878981828689575},
      {0.08599071949720383, -0.18597982823848724, 0.2861476242542267}};
  for (int s = 0; s < 3; s++) {
    memcpy(gW, gws[s], sizeof gW);
    memcpy(gb, gbs[s], sizeof gb);
    if (s == 1) {
      float norm = optim_clip_grad_norm(o, 1.0f);
      CHECK_NEAR(norm, 2.588918685913086, 1e-6);
      /* clipped to norm 1 (coef = 1 / (norm + 1e-6)) */
      CHECK_NEAR(optim_clip_grad_norm(o, 0.0f), 2.588918685913086 / (2.588918685913086 + 1e-6),
                 1e-6);
    }
    optim_step(o, lrs[s]);
    for (int i = 0; i < 6; i++) CHECK_NEAR(W[i], wref[s][i], 2e-7);
    for (int i = 0; i < 3; i++) CHECK_NEAR(bvec[i], bref[s][i], 2e-7);
  }
  optim_free(o);
}

static void test_clip_small_norm_untouched(void) {
  ft_param p[3];
  make_params(p);
  optim *o;
  CHECK_EQ_INT(optim_new_params(&o, p, 2, 0.0f, NULL), 0);
  memset(gW, 0, sizeof gW);
  memset(gb, 0, sizeof gb);
  gW[0] = 0.3f, gb[2] = 0.4f;
  CHECK_NEAR(optim_clip_grad_norm(o, 1.0f), 0.5, 1e-7);
  CHECK(gW[0] == 0.3f && gb[2] == 0.4f);
  CHECK_NEAR(optim_clip_grad_norm(o, 0.25f), 0.5, 1e-7);
  CHECK_NEAR(gW[0], 0.3 * 0.25 / (0.5 + 1e-6), 1e-7);
  gW[1] = NAN;
  CHECK(isnan(optim_clip_grad_norm(o, 1.0f)));
  optim_free(o);
}

static void test_state_roundtrip(void) {
  ft_param p[3];
  make_params(p);
  optim *o;
  CHECK_EQ_INT(optim_new_params(&o, p, 2, 0.0f, NULL), 0);
  float mv[18];
  for (int i = 0; i < 18; i++) mv[i] = (float)i;
  ft_error e = {0};
  CHECK_EQ_INT(optim_set_state(o, 7, mv, 17, &e), FT_ESHAPE);
  CHECK_EQ_INT(optim_set_state(o, 7, mv, 18, &e), 0);
  CHECK_EQ_INT(optim_step_count(o), 7);
  CHECK(memcmp(optim_moments(o), mv, sizeof mv) == 0);
  optim_free(o);
}

static void test_schedules(void) {
  /* total 10, warmup 2 */
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 0, 10, 2), 0.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 1, 10, 2), 0.5, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 2, 10, 2), 1.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 5, 10, 2), 0.625, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 9, 10, 2), 0.125, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 10, 10, 2), 0.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 12, 10, 2), 0.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 2e-4f, 1, 10, 2), 1e-4, 1e-10);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 1.0f, 2, 10, 2), 1.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 1.0f, 4, 10, 2), 0.5 * (1 + cos(M_PI / 4)), 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 1.0f, 6, 10, 2), 0.5, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 1.0f, 10, 10, 2), 0.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_CONSTANT, 3.0f, 0, 10, 2), 0.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_CONSTANT, 3.0f, 1, 10, 2), 1.5, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_CONSTANT, 3.0f, 9, 10, 2), 3.0, 1e-7);
  /* no warmup: the first step runs at the full rate */
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 0, 4, 0), 1.0, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_LINEAR, 1.0f, 3, 4, 0), 0.25, 1e-7);
  CHECK_NEAR(sched_lr(FT_SCHED_COSINE, 1.0f, 0, 4, 0), 1.0, 1e-7);
  /* HF: math.ceil(total * ratio) with the Python float the user wrote */
  CHECK_EQ_INT(sched_warmup_steps(0.05f, 100), 5);
  CHECK_EQ_INT(sched_warmup_steps(0.1f, 7), 1);
  CHECK_EQ_INT(sched_warmup_steps(0.3f, 10), 3);
  CHECK_EQ_INT(sched_warmup_steps(0.07f, 100), 8); /* 100 * 0.07 = 7.000000000000001 in Python */
  CHECK_EQ_INT(sched_warmup_steps(0.0f, 100), 0);
  CHECK_EQ_INT(sched_warmup_steps(0.5f, 3), 2);
}

int main(void) {
  RUN(test_adamw_first_step_by_hand);
  RUN(test_adamw_three_steps_torch);
  RUN(test_clip_small_norm_untouched);
  RUN(test_state_roundtrip);
  RUN(test_schedules);
  return test_report();
}
