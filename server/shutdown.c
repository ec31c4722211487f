/* Graceful shutdown of `finetuned serve` (see shutdown.h for the sequence).
 * Runs on main's thread, the one that took the first signal with sigwait:
 * the stop signals are still blocked everywhere, so a second one is taken
 * here too, with sigtimedwait between two looks at what is still going on.
 * Workload: a handful of jobs and requests; a look every 50 ms is plenty. */
#include "shutdown.h"

#include <errno.h>
#include <time.h>

#include "app.h"
#include "ft_log.h"
#include "http.h"
#include "pool.h"
#include "store.h"
#ifdef FT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define POLL_MS 50

static long ms_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void status(int jobs, int requests) {
#ifdef FT_HAVE_SYSTEMD
  sd_notifyf(0, "STATUS=stopping: %d job(s) pausing, %d request(s) in flight", jobs, requests);
#else
  (void)jobs, (void)requests;
#endif
}

int shutdown_drain(ft_app *app, struct MHD_Daemon *httpd, const sigset_t *signals, int timeout_ms) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  http_quiesce(httpd, app);
  /* SSE streams would never end by themselves: end them now */
  atomic_store(&app->stopping, 1);
  store_wake_all(app->store);
  if (app->pool) pool_drain_begin(app->pool);
  FT_INFO("msg=\"draining: no new connections; pausing running jobs\" timeout_ms=%d", timeout_ms);
  int last_jobs = -1, last_requests = -1;
  for (;;) {
    int started = app->pool ? pool_drain_started(app->pool) : 1, jobs = 0;
    if (app->pool) pool_counts(app->pool, NULL, &jobs);
    int requests = http_inflight();
    if (started && !jobs && !requests) {
      FT_INFO("msg=\"drained\" ms=%ld", ms_since(&t0));
      return 0;
    }
    if (jobs != last_jobs || requests != last_requests) {
      status(jobs, requests);
      last_jobs = jobs, last_requests = requests;
    }
    long left = timeout_ms - ms_since(&t0);
    if (left <= 0) {
      FT_WARN(
          "msg=\"drain timed out; stopping anyway (running jobs are queued again and resume "
          "from their last checkpoint)\" jobs=%d requests=%d timeout_ms=%d",
          jobs, requests, timeout_ms);
      if (app->pool) pool_drain_requeue_at_stop(app->pool);
      return 0;
    }
    if (left > POLL_MS) left = POLL_MS;
    struct timespec ts = {0, left * 1000000L};
    siginfo_t si;
    int sig = sigtimedwait(signals, &si, &ts);
    if (sig > 0) {
      FT_WARN(
          "msg=\"second signal: stopping at once; running jobs resume from their last "
          "checkpoint once their lease expires after the restart\" signal=%d jobs=%d "
          "requests=%d",
          sig, jobs, requests);
      return 1;
    }
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      FT_ERROR("msg=\"sigtimedwait failed\" err=%d", errno);
      return 1;
    }
  }
}
