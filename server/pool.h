/* The daemon's libuv side: one loop thread that accepts worker connections
 * (a Unix socket in the data dir, and TCP when --worker-listen is given,
 * authenticated by the shared worker token), hands queued jobs to idle
 * workers, renews and expires leases, relays cancel/pause, records metrics,
 * events, checkpoints and results in the store, moves a finished job's output
 * into models/, and spawns and supervises local workers (uv_spawn, restarted
 * with back-off). MHD threads reach it only through pool_notify/pool_control,
 * which are uv_async_send underneath (sends coalesce; the callback drains). */
#ifndef FT_POOL_H
#define FT_POOL_H
#include "ft_err.h"
#include "store.h"

typedef struct {
  const char *data_dir;      /* absolute */
  const char *worker_exe;    /* path of finetuned-worker for local workers */
  int n_workers;             /* local workers to spawn and supervise (0 = none) */
  const char *worker_listen; /* "HOST:PORT" for remote workers, or NULL */
  const char *worker_token;  /* shared secret; required for TCP, optional on the socket */
  int lease_ms;              /* default 30000 */
  int heartbeat_ms;          /* told to workers; default 2000 */
  int max_attempts;          /* default 3 */
} pool_opts;

typedef struct pool pool;

/* Starts the loop thread; returns once the sockets listen. */
int pool_start(pool **out, store *s, const pool_opts *o, ft_error *err);
/* A job was queued or resumed: try to dispatch (thread-safe). */
void pool_notify(pool *p);
/* A job was cancelled or set to pausing in the store: tell its worker (thread-safe). */
void pool_control(pool *p, const char *job_id);
/* Counts for /metrics and /readyz (thread-safe snapshot). */
void pool_counts(pool *p, int *connected, int *busy);
/* Stops the loop, tells workers to stop, waits for local workers, frees. */
void pool_stop(pool *p);

/* ---- graceful shutdown (shutdown.h has the sequence); thread-safe ---- */
/* Stops dispatching and tells each busy worker to pause for the restart. */
void pool_drain_begin(pool *p);
/* Whether the loop thread has entered the drain (no job is handed out any
 * more, so pool_counts' busy only goes down from then on). */
int pool_drain_started(pool *p);
/* At pool_stop, put the jobs still held back to queued (not counted as lost)
 * instead of leaving their leases to expire: the drain timed out. */
void pool_drain_requeue_at_stop(pool *p);
#endif
