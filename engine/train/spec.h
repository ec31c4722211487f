/* A fine-tuning job's spec (DESIGN.md 4): the one parser and validator, used
 * by the daemon at job creation (so nothing invalid is queued) and by the
 * worker and `finetuned-worker train` when they run it. Parsing is strict:
 * unknown fields, wrong types and out-of-range values are errors naming the
 * field by its dotted path ("method.supervised.hyperparameters.n_epochs").
 * "auto" values are resolved here, and spec_to_json writes the resolved form. */
#ifndef FT_SPEC_H
#define FT_SPEC_H
#include <jansson.h>
#include <stdint.h>

#include "ft_err.h"
#include "nn/model.h"

typedef enum { FT_SCHED_CONSTANT = 0, FT_SCHED_LINEAR = 1, FT_SCHED_COSINE = 2 } ft_sched;

typedef struct {
  /* top level */
  char model[256];           /* base model id */
  char training_file[64];    /* file id */
  char validation_file[64];  /* file id or "" */
  char test_file[64];        /* file id or "": held out, evaluated once at the end */
  char suffix[64];           /* or "" */
  uint64_t seed;
  ft_task task;              /* method.type: supervised -> CAUSAL_LM, classification -> CLASSIFY */
  /* method.<type>.hyperparameters */
  int n_epochs;              /* 1..1000, auto = 3 */
  int batch_size;            /* 1..1024, auto = 8 */
  float learning_rate;       /* (0, 1], auto: 1e-4 LoRA, 2e-5 full, 1e-3 head */
  ft_sched lr_scheduler;     /* auto = cosine */
  float warmup_ratio;        /* [0, 1), default 0.05 */
  float weight_decay;        /* [0, 1], default 0 */
  float max_grad_norm;       /* >= 0 (0 = no clipping), default 1 */
  int grad_accum;            /* gradient_accumulation_steps 1..1024, default 1 */
  int max_seq_len;           /* 8..32768, default 512 (capped at the model's max later) */
  int train_on_inputs;       /* prompt/completion: loss on the prompt too; default 0 */
  long long token_budget;    /* token_budget 1..1e12: train until this many tokens are trained
                                (the data repeats as needed); 0 = off (n_epochs). With it,
                                n_epochs must be absent or "auto" */
  /* adapter */
  ft_method method;          /* adapter.type: full, lora, head; default lora */
  ft_lora lora;              /* r 1..256 (8), alpha >0 (16), dropout [0,1) (0), target_modules */
  char lora_targets[256];    /* target_modules as given, comma-joined, for reporting */
  /* data: {"validation_split", "test_split", "truncation", "clean", "packing"} */
  float validation_split;    /* [0, 0.5]; default 0.1 without validation_file, else 0 */
  float test_split;          /* [0, 0.5]; default 0; must be 0 with test_file */
  int drop_long;             /* truncation: "truncate" (0, default) | "drop" (1) */
  int clean;                 /* default 1: drop duplicates/empty, normalise whitespace */
  int packing;               /* causal LM: pack short examples into rows; default 1 */
  /* evaluation */
  int eval_every_steps;      /* 0 = off; default 0 */
  int eval_samples;          /* validation examples in a periodic eval, 1..100000, default 64 */
  char es_metric[32];        /* early_stopping.metric: valid_loss (default), valid_mean_token_accuracy,
                                valid_accuracy, valid_f1_macro (classification) */
  int es_patience;           /* early_stopping.patience, 0 = off */
  float es_min_delta;
  /* checkpoints */
  int ckpt_every_steps;      /* default 0 = only at epoch ends */
  int ckpt_keep;             /* 1..100, default 3 */
} ft_spec;

/* Parses and validates a job-creation request body (the JSON object of
 * POST /v1/fine_tuning/jobs, also accepted back from spec_to_json). Fields
 * that are not part of the spec (none today) are refused. On error err names
 * the field. The arch is not known yet, so LoRA targets are checked against
 * both families' module names; spec_check_arch checks them for the model. */
int spec_parse(const json_t *body, ft_spec *out, ft_error *err);
/* Checks the parts that depend on the model (LoRA targets, max_seq_len
 * clamped to max_position). */
int spec_check_model(ft_spec *s, const ft_config *cfg, ft_error *err);
/* The resolved spec, in the request's shape; new reference. */
json_t *spec_to_json(const ft_spec *s);
#endif
