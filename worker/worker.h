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

#include "train.h"

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
 * epoch, train_loss, train_mean_token_accuracy, learning_rate, grad_norm,
 * tokens_per_second, trained_tokens, and valid_loss/valid_mean_token_accuracy
 * when the step was evaluated; non-finite numbers are null. New reference. */
json_t *worker_metrics_json(const ft_step_metrics *m);
/* A float as JSON: null when not finite. New reference. */
json_t *worker_real(double x);
#endif
