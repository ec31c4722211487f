/* The inference pool (infer_pool.h): a mutex-guarded list of loaded models
 * and a counting gate with a bounded wait queue. Workload: a few models of a
 * few hundred MB at most, a handful of requests at once, each holding its
 * instance for a whole generation (seconds): a linked list and linear scans
 * are plenty. Loading (seconds, disk-bound) and freeing happen outside the
 * lock, so a request for a cached model never waits on another's load. */
#include "infer_pool.h"

/* KV cache length of a served model (its max_position when smaller): a
 * 128k-context model would otherwise reserve gigabytes per copy. */
#define INFER_POOL_MAX_CTX 4096

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ft_log.h"
#include "ft_sync.h"
#include "infer/infer.h"

typedef struct entry {
  struct entry *next;
  char dir[PATH_MAX];
  long long mtime_ns, size; /* of its files when loaded (weights_stamp) */
  ft_infer *m;
  size_t bytes;
  int in_use;
  int forget;                   /* its model was deleted: free it when released */
  unsigned long long last_used; /* pool tick */
} entry;

struct infer_pool {
  pthread_mutex_t mu;
  pthread_cond_t slot_free;
  infer_pool_opts o;
  entry *list;
  size_t cached_bytes; /* all entries, in use or not */
  int running, waiting;
  unsigned long long tick;
};

size_t infer_pool_default_cache_bytes(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  size_t total = pages > 0 && psize > 0 ? (size_t)pages * (size_t)psize : 0;
  size_t b = total / 4;
  return b < (256u << 20) ? (256u << 20) : b;
}

int infer_pool_new(infer_pool **out, const infer_pool_opts *o, ft_error *err) {
  *out = NULL;
  if (o->concurrency < 1 || o->queue < 0 || o->wait_ms < 0)
    return ft_error_set(err, FT_EINVALID, "infer-concurrency",
                        "inference concurrency must be >= 1 and the queue >= 0");
  infer_pool *p = calloc(1, sizeof *p);
  if (!p) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  p->o = *o;
  pthread_mutex_init(&p->mu, NULL);
  ft_cond_init_monotonic(&p->slot_free);
  *out = p;
  return 0;
}

void infer_pool_free(infer_pool *p) {
  if (!p) return;
  for (entry *e = p->list, *next; e; e = next) {
    next = e->next;
    infer_free(e->m);
    free(e);
  }
  pthread_cond_destroy(&p->slot_free);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

/* ---- the gate ------------------------------------------------------------ */

int infer_pool_enter(infer_pool *p, int *retry_after_s, ft_error *err) {
  *retry_after_s = 1;
  pthread_mutex_lock(&p->mu);
  if (p->running < p->o.concurrency) {
    p->running++;
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  if (p->waiting >= p->o.queue) {
    int running = p->running, waiting = p->waiting;
    pthread_mutex_unlock(&p->mu);
    *retry_after_s = 1 + waiting;
    return ft_error_set(err, FT_ERATE, NULL,
                        "inference is busy: %d request(s) running and %d waiting (the limits); "
                        "retry later",
                        running, waiting);
  }
  struct timespec until;
  ft_deadline_ms(&until, p->o.wait_ms);
  p->waiting++;
  int rc = 0;
  while (p->running >= p->o.concurrency && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&p->slot_free, &p->mu, &until);
  p->waiting--;
  if (p->running < p->o.concurrency) {
    p->running++;
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  pthread_mutex_unlock(&p->mu);
  *retry_after_s = 1 + p->o.wait_ms / 1000;
  return ft_error_set(err, FT_ERATE, NULL,
                      "inference is busy: no slot became free within %d ms; retry later",
                      p->o.wait_ms);
}

void infer_pool_leave(infer_pool *p) {
  pthread_mutex_lock(&p->mu);
  if (p->running > 0) p->running--;
  pthread_cond_signal(&p->slot_free);
  pthread_mutex_unlock(&p->mu);
}

/* ---- the cache ----------------------------------------------------------- */

/* What a model directory looks like to the cache: the latest mtime and the
 * total size of the files a load reads (the config, the weights, single or
 * sharded (their index), an adapter, the tokenizer), so that a model
 * re-imported or re-exported in place under the same id is loaded afresh. */
static void weights_stamp(const char *dir, long long *mtime_ns, long long *size) {
  static const char *const files[] = {"config.json",
                                      "model.safetensors",
                                      "model.safetensors.index.json",
                                      "adapter_config.json",
                                      "adapter_model.safetensors",
                                      "tokenizer.json",
                                      "tokenizer_config.json"};
  *mtime_ns = *size = -1;
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char path[PATH_MAX + 32];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    if (stat(path, &sb)) continue;
    long long mt = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    if (mt > *mtime_ns) *mtime_ns = mt;
    *size = (*size < 0 ? 0 : *size) + (long long)sb.st_size;
  }
}

/* Unlinks idle entries, least recently used first, while the cache is over
 * budget (or stale ones for dir); returns them as a list to free unlocked. */
static entry *evict_locked(infer_pool *p) {
  entry *gone = NULL;
  while (p->cached_bytes > p->o.cache_bytes) {
    entry **victim = NULL;
    for (entry **pe = &p->list; *pe; pe = &(*pe)->next)
      if (!(*pe)->in_use && (!victim || (*pe)->last_used < (*victim)->last_used)) victim = pe;
    if (!victim) break;
    entry *e = *victim;
    *victim = e->next;
    p->cached_bytes -= e->bytes;
    e->next = gone;
    gone = e;
  }
  return gone;
}

static void free_entries(entry *e) {
  while (e) {
    entry *next = e->next;
    FT_INFO("msg=\"inference model evicted\" dir=\"%s\" bytes=%zu", e->dir, e->bytes);
    infer_free(e->m);
    free(e);
    e = next;
  }
}

int infer_pool_acquire(infer_pool *p, const char *model_dir, ft_infer **out, ft_error *err) {
  *out = NULL;
  long long mt, sz;
  weights_stamp(model_dir, &mt, &sz);
  entry *stale = NULL;
  pthread_mutex_lock(&p->mu);
  for (entry **pe = &p->list; *pe;) {
    entry *e = *pe;
    if (strcmp(e->dir, model_dir)) {
      pe = &e->next;
      continue;
    }
    if (e->mtime_ns != mt || e->size != sz) { /* the directory changed: drop idle copies */
      if (!e->in_use) {
        *pe = e->next;
        p->cached_bytes -= e->bytes;
        e->next = stale;
        stale = e;
        continue;
      }
    } else if (!e->in_use) {
      e->in_use = 1;
      e->last_used = ++p->tick;
      *out = e->m;
      break;
    }
    pe = &e->next;
  }
  pthread_mutex_unlock(&p->mu);
  free_entries(stale);
  if (*out) return 0;

  entry *e = calloc(1, sizeof *e);
  if (!e) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  snprintf(e->dir, sizeof e->dir, "%s", model_dir);
  e->mtime_ns = mt;
  e->size = sz;
  int rc = infer_load(&e->m, model_dir, INFER_POOL_MAX_CTX, err);
  if (rc) {
    free(e);
    return rc;
  }
  e->bytes = infer_bytes(e->m);
  e->in_use = 1;
  FT_INFO("msg=\"inference model loaded\" dir=\"%s\" bytes=%zu", model_dir, e->bytes);
  pthread_mutex_lock(&p->mu);
  e->last_used = ++p->tick;
  e->next = p->list;
  p->list = e;
  p->cached_bytes += e->bytes;
  entry *gone = evict_locked(p);
  pthread_mutex_unlock(&p->mu);
  free_entries(gone);
  *out = e->m;
  return 0;
}

/* Unlinks *pe from the list onto *gone. */
static void unlink_locked(infer_pool *p, entry **pe, entry **gone) {
  entry *e = *pe;
  *pe = e->next;
  p->cached_bytes -= e->bytes;
  e->next = *gone;
  *gone = e;
}

void infer_pool_release(infer_pool *p, ft_infer *m) {
  if (!m) return;
  entry *gone = NULL;
  pthread_mutex_lock(&p->mu);
  for (entry **pe = &p->list; *pe; pe = &(*pe)->next)
    if ((*pe)->m == m) {
      (*pe)->in_use = 0;
      (*pe)->last_used = ++p->tick;
      if ((*pe)->forget) unlink_locked(p, pe, &gone);
      break;
    }
  entry *lru = evict_locked(p);
  pthread_mutex_unlock(&p->mu);
  free_entries(gone);
  free_entries(lru);
}

int infer_pool_forget(infer_pool *p, const char *model_dir) {
  entry *gone = NULL;
  int n = 0;
  pthread_mutex_lock(&p->mu);
  for (entry **pe = &p->list; *pe;) {
    if (strcmp((*pe)->dir, model_dir)) {
      pe = &(*pe)->next;
      continue;
    }
    n++;
    if ((*pe)->in_use) {
      (*pe)->forget = 1;
      pe = &(*pe)->next;
    } else {
      unlink_locked(p, pe, &gone);
    }
  }
  pthread_mutex_unlock(&p->mu);
  free_entries(gone);
  return n;
}

void infer_pool_stats(infer_pool *p, int *models, size_t *bytes, int *running, int *waiting) {
  pthread_mutex_lock(&p->mu);
  int n = 0;
  for (entry *e = p->list; e; e = e->next) n++;
  *models = n;
  *bytes = p->cached_bytes;
  *running = p->running;
  *waiting = p->waiting;
  pthread_mutex_unlock(&p->mu);
}
