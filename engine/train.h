/* The training loop: loads a base model directory and a dataset, trains it
 * as an ft_spec says, reports every step through hooks, writes checkpoints,
 * and writes the result as a Hugging Face directory (full) or a PEFT adapter
 * plus merged model (LoRA). Used by the worker for daemon jobs and by
 * `finetuned-worker train` on the command line: one code path. Runs on the
 * calling thread; it never prints and never exits. */
#ifndef FT_TRAIN_H
#define FT_TRAIN_H
#include <stdint.h>

#include "ft_err.h"
#include "spec.h"

typedef struct {
  const ft_spec *spec;
  const char *model_dir;   /* base model: HF directory */
  const char *train_path;  /* JSONL (or CSV for classification) */
  const char *valid_path;  /* or NULL */
  const char *out_dir;     /* final model; created; must not exist yet or be empty */
  const char *ckpt_dir;    /* where ckpt-<step>/ go; created */
  const char *resume_from; /* a ckpt-<step> directory to resume from, or NULL */
  long max_steps;          /* stop (as if paused) after this many steps; 0 = no limit (test hook) */
} ft_train_opts;

typedef struct {
  long step, total_steps;   /* optimizer steps done (1-based after the first) and planned */
  int epoch;                /* 0-based epoch of this step */
  float train_loss;         /* mean loss over the step's tokens */
  float train_mean_token_accuracy;
  float learning_rate;
  float grad_norm;          /* before clipping */
  float tokens_per_second;  /* trained (non-padding) tokens of this step / its wall time */
  long trained_tokens;      /* cumulative */
  int has_valid;            /* valid_loss/valid_mean_token_accuracy set at this step */
  float valid_loss, valid_mean_token_accuracy;
} ft_step_metrics;

typedef struct {
  void *ud;
  /* After every optimizer step. Return 0 to go on, FT_ECANCELLED to stop at
   * once (no checkpoint), FT_EPAUSED to write a checkpoint and stop. */
  int (*on_step)(void *ud, const ft_step_metrics *m);
  /* Human events: "started", "epoch 1 done", ...; data_json may be NULL. */
  void (*on_event)(void *ud, const char *level, const char *message, const char *data_json);
  /* After a checkpoint directory is complete on disk (atomically renamed). */
  void (*on_checkpoint)(void *ud, long step, const char *path, const ft_step_metrics *m);
} ft_train_hooks;

typedef struct {
  long steps;              /* optimizer steps done in total (across resumes) */
  long trained_tokens;
  float final_train_loss;
  float final_valid_loss;  /* NaN when no validation */
  int stopped;             /* 0 finished, FT_ECANCELLED or FT_EPAUSED */
} ft_train_result;

int train_run(const ft_train_opts *o, const ft_train_hooks *h, ft_train_result *res, ft_error *err);
#endif
