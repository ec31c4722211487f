/* The daemon's inference pool: loaded models (ft_infer, engine/infer/infer.h)
 * cached by model directory, and the bound on how many inference requests
 * run at once. An ft_infer serves one request at a time, so a model asked
 * for by two requests at once is loaded twice; idle instances stay cached,
 * least recently used evicted first, while the cache's memory (infer_bytes)
 * is over its budget. A request takes a slot (infer_pool_enter) before it
 * loads anything; when every slot is busy it waits in a short queue, and
 * beyond the queue (or after the wait) it is refused: the caller answers
 * 429 with Retry-After. No lock is held while a model loads or generates:
 * the pool's mutex only guards its lists. */
#ifndef FT_INFER_POOL_H
#define FT_INFER_POOL_H
#include <stddef.h>

#include "ft_err.h"

typedef struct ft_infer ft_infer; /* engine/infer/infer.h */

typedef struct infer_pool infer_pool;

typedef struct {
  size_t cache_bytes; /* memory budget of the idle cache */
  int concurrency;    /* requests running inference at once (>= 1) */
  int queue;          /* requests that may wait for a slot (>= 0) */
  int wait_ms;        /* how long one waits before it is refused */
} infer_pool_opts;

#define INFER_POOL_DEFAULT_CONCURRENCY 2
#define INFER_POOL_DEFAULT_QUEUE 4
#define INFER_POOL_DEFAULT_WAIT_MS 10000

/* The default cache budget: a quarter of physical memory, at least 256 MiB. */
size_t infer_pool_default_cache_bytes(void);

/* Caller frees with infer_pool_free (after the last request left). */
int infer_pool_new(infer_pool **out, const infer_pool_opts *o, ft_error *err);
void infer_pool_free(infer_pool *p);

/* Takes a slot: 0, or FT_ERATE (err says so, *retry_after_s a hint) when all
 * slots are busy and the queue is full or the wait ran out. Every 0 is
 * matched by one infer_pool_leave. */
int infer_pool_enter(infer_pool *p, int *retry_after_s, ft_error *err);
void infer_pool_leave(infer_pool *p);

/* A loaded instance of the model in model_dir for the caller alone (a cached
 * idle one, or loaded now, outside the pool's lock); hand it back with
 * infer_pool_release. A model directory whose files changed (the newest
 * mtime or the total size of its config, weights, adapter and tokenizer) is
 * loaded afresh. */
int infer_pool_acquire(infer_pool *p, const char *model_dir, ft_infer **out, ft_error *err);
void infer_pool_release(infer_pool *p, ft_infer *m);

/* Drops the cached instances of model_dir (its model was deleted): idle ones
 * now, those in use when they are released. Returns how many there were. */
int infer_pool_forget(infer_pool *p, const char *model_dir);

/* For /metrics and tests: models cached, their bytes, requests running and waiting. */
void infer_pool_stats(infer_pool *p, int *models, size_t *bytes, int *running, int *waiting);
#endif
