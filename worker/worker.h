/* finetuned-worker: the process that runs jobs. worker_run connects to the
 * daemon (Unix socket or TCP), claims jobs one at a time and runs each with
 * train_run on a second thread while the libuv loop on the calling thread
 * keeps the connection: heartbeats, relayed metrics/events/checkpoints, and
 * cancel/pause/lease_lost from the daemon. worker_train_cli is the offline
 * `finetuned-worker train` command: the same train_run, JSON lines on stdout.
 * Both return the process exit status; only main exits. */
#ifndef FT_WORKER_H
#define FT_WORKER_H
#include <jansson.h>

#include "train/train.h"

typedef struct {
  const char *connect; /* "unix:PATH" or "tcp:HOST:PORT" */
  const char *token;   /* worker token (required by the daemon on TCP) or NULL */
  const char *id;      /* worker id; NULL = "<hostname>-<pid>" */
  int once;            /* exit (0) after the first job has ended */
} worker_opts;

/* Runs until the daemon connection ends (exit status 1), a signal asks it to
 * stop (0), or after one job with once (0). */
int worker_run(const worker_opts *o);

/* `finetuned-worker train ...` (argv[0] is "train"); prints its own usage. */
int worker_train_cli(int argc, char **argv);

/* One step's metrics as the wire and the CLI carry them: step, total_steps,
 * epoch, epochs_completed, train_loss, train_mean_token_accuracy,
 * learning_rate, grad_norm, tokens_per_second, trained_tokens;
 * valid_loss, valid_mean_token_accuracy (+ valid_perplexity for LM) when a
 * periodic evaluation ran; full_valid_loss, full_valid_mean_token_accuracy
 * (+ full_valid_perplexity) at an epoch end; valid_accuracy,
 * valid_precision_macro, valid_recall_macro, valid_f1_macro,
 * valid_f1_weighted for classification evaluations. Non-finite numbers are
 * null. New reference. */
json_t *worker_metrics_json(const ft_step_metrics *m);
/* The "done" result: steps, trained_tokens, epochs_completed,
 * final_train_loss, final_valid_loss, skipped_steps, early_stopped,
 * best_step (null when none), best_metric, best_metric_name, test_metrics
 * (object or null), result_csv (csv or null). New reference. */
json_t *worker_result_json(const ft_train_result *r, const char *csv);
/* The test hook FT_TEST_INJECT_NAN="FROM[:COUNT]" (tests only): steps
 * FROM..FROM+COUNT-1 get a non-finite loss (COUNT absent: every step from
 * FROM). Sets o->nan_from/nan_count; unset or malformed leaves them 0. */
void worker_test_hooks(ft_train_opts *o);
/* A float as JSON: null when not finite. New reference. */
json_t *worker_real(double x);
#endif
