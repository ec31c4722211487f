/* The training loop: loads a base model directory and a dataset, trains it
 * as an ft_spec says, reports every step through hooks, writes checkpoints,
 * and writes the result as a Hugging Face directory (full) or a PEFT adapter
 * plus merged model (LoRA). Used by the worker for daemon jobs and by
 * `finetuned-worker train` on the command line: one code path. Runs on the
 * calling thread; it never prints and never exits. */
#ifndef FT_TRAIN_H
#define FT_TRAIN_H
#include <jansson.h>
#include <stdint.h>

#include "tok/chat.h"
#include "data/data.h"
#include "ft_err.h"
#include "train/spec.h"

typedef struct {
  const ft_spec *spec;
  const char *model_dir;   /* base model: HF directory */
  const char *train_path;  /* JSONL (or CSV for classification) */
  const char *valid_path;  /* or NULL */
  const char *out_dir;     /* final model; created; must not exist yet or be empty */
  const char *ckpt_dir;    /* where ckpt-<step>/ go; created */
  const char *resume_from; /* a ckpt-<step> directory to resume from, or NULL */
  long max_steps;          /* stop (as if paused) after this many steps; 0 = no limit (test hook) */
  const char *test_path;   /* held-out test data, evaluated once at the end; or NULL */
  const char *metrics_csv; /* the per-step metrics CSV to write, or NULL; on resume its rows
                              after the checkpoint's step are dropped and rewritten */
  /* Test hook (the worker sets it from FT_TEST_INJECT_NAN="FROM[:COUNT]"):
   * steps FROM .. FROM+COUNT-1 (1-based; COUNT 0 = all after FROM) get a
   * non-finite loss, as a diverging run would. 0 = off. */
  long nan_from, nan_count;
} ft_train_opts;

typedef struct {
  long step, total_steps; /* optimizer steps done (1-based after the first) and planned */
  int epoch;              /* 0-based epoch of this step */
  float train_loss;       /* mean loss over the step's tokens */
  float train_mean_token_accuracy;
  float learning_rate;
  float grad_norm;         /* before clipping */
  float tokens_per_second; /* trained (non-padding) tokens of this step / its wall time */
  long trained_tokens;     /* cumulative */
  int epochs_completed;    /* whole epochs done after this step */
  int lm;                  /* causal LM (perplexities are reported) */
  int has_valid;           /* a periodic evaluation (eval_samples examples) ran at this step */
  float valid_loss, valid_mean_token_accuracy, valid_perplexity;
  int has_full_valid; /* the whole validation set was evaluated (epoch end) */
  float full_valid_loss, full_valid_mean_token_accuracy, full_valid_perplexity;
  int has_cls; /* classification metrics of the periodic evaluation */
  float valid_accuracy, valid_precision_macro, valid_recall_macro, valid_f1_macro,
      valid_f1_weighted;
} ft_step_metrics;

/* What a checkpoint hook is told. */
typedef struct {
  long step;
  const char *path;         /* the complete ckpt-<step> directory */
  const ft_step_metrics *m; /* the metrics of that step */
  const long *kept;         /* steps of the checkpoints on disk after pruning, newest first */
  size_t n_kept;
  int best; /* this is the best checkpoint so far (early stopping metric) */
} ft_ckpt_info;

typedef struct {
  void *ud;
  /* After every optimizer step. Return 0 to go on, FT_ECANCELLED to stop at
   * once (no checkpoint), FT_EPAUSED to write a checkpoint and stop. */
  int (*on_step)(void *ud, const ft_step_metrics *m);
  /* Human events: "started", "epoch 1 done", ...; data_json may be NULL. */
  void (*on_event)(void *ud, const char *level, const char *message, const char *data_json);
  /* After a checkpoint directory is complete on disk (atomically renamed). */
  void (*on_checkpoint)(void *ud, const ft_ckpt_info *ci);
} ft_train_hooks;

typedef struct {
  long steps; /* optimizer steps done in total (across resumes) */
  long trained_tokens;
  float final_train_loss;
  float final_valid_loss; /* NaN when no validation; of the output model (the best one
                             when early stopping promoted it) */
  int stopped;            /* 0 finished, FT_ECANCELLED or FT_EPAUSED */
  int epochs_completed;
  long skipped_steps;        /* steps skipped for a non-finite loss or gradient */
  int early_stopped;         /* 1: early stopping ended the run */
  long best_step;            /* step of the best evaluation, 0 when none */
  double best_metric;        /* its value, NaN when none */
  char best_metric_name[32]; /* the spec's early_stopping metric */
  /* The final model on the test set: {"test_loss", "test_mean_token_accuracy",
   * "test_perplexity"} or for classification {"test_loss", "test_accuracy",
   * "test_precision_macro", ..., "per_class", "confusion_matrix", "labels"};
   * NULL without test data. New reference: the caller json_decref's it. */
  json_t *test_metrics;
  int promoted; /* the best checkpoint's weights became the output model */
} ft_train_result;

int train_run(const ft_train_opts *o, const ft_train_hooks *h, ft_train_result *res, ft_error *err);

/* The data job of a spec (contract: the daemon's validating_files phase and
 * train_run prepare the data through exactly this). cfg is the base model's
 * config (max_seq_len is capped at its max_position); valid_path/test_path
 * NULL mean the spec's split of the training file. */
void train_data_job(ft_data_job *j, const ft_spec *s, const ft_config *cfg, ft_chat_family chat,
                    const char *train_path, const char *valid_path, const char *test_path);

/* Writes out_dir as a Hugging Face model directory (config.json, with the
 * labels for classification, model.safetensors, tokenizer files): the base
 * model of base_model_dir with the trained tensors of checkpoint ckpt_path
 * applied (LoRA merged), so a checkpoint can be used as a model. spec is the
 * job's spec (task, method, LoRA shape). */
int train_export_checkpoint(const ft_spec *spec, const char *base_model_dir, const char *ckpt_path,
                            const char *out_dir, ft_error *err);
#endif
