/* obs: the daemon's counters for GET /metrics, its per-request and per-job
 * transition log lines, and the systemd watchdog ping (see obs.h). Everything is a fixed table:
 * HTTP requests by (route, status) and rejections by reason are lock-free atomic counters indexed
 * by position, so MHD's many threads never contend; the throughput of running jobs (a handful, one
 * per busy worker) is a small table under a mutex. Label values come only from fixed sets (route
 * patterns, listed statuses, reason names), never from a raw URL, so a scrape
 * stays small whatever clients send. */
#include "obs.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ft_log.h"
#include "routes.h"
#include "store.h"
#ifdef FT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* ---- the fixed label sets -------------------------------------------------- */

typedef struct {
  const char *method, *pattern;
} obs_route;

#define OBS_ROUTE_ROW_(m, p, h, b) {#m, p},
static const obs_route routes[] = {FT_ROUTES(OBS_ROUTE_ROW_)};
#undef OBS_ROUTE_ROW_
#define NROUTES (sizeof routes / sizeof routes[0])

/* Statuses with their own label; anything else is "other", 0 is "none". */
static const unsigned statuses[] = {0,   200, 201, 204, 206, 304, 400, 401, 403,
                                    404, 405, 409, 413, 415, 422, 429, 500, 503};
#define NSTATUS (sizeof statuses / sizeof statuses[0])

static const char *const reasons[] = {
    OBS_REJECT_UNAUTHORIZED, OBS_REJECT_FORBIDDEN,  OBS_REJECT_RATE_LIMITED, OBS_REJECT_QUOTA,
    OBS_REJECT_TOO_LARGE,    OBS_REJECT_DRAINING,   OBS_REJECT_BAD_JSON,     OBS_REJECT_NO_ROUTE,
    OBS_REJECT_METHOD,       OBS_REJECT_MEDIA_TYPE, OBS_REJECT_WORKER_AUTH,  OBS_REJECT_CLIENT_GONE,
    OBS_REJECT_OTHER};
#define NREASONS (sizeof reasons / sizeof reasons[0])

/* ---- the counters ------------------------------------------------------------ */

/* [route + 1][status index]: row 0 is "no route matched"; the last column is
 * "other". */
static atomic_ulong http_count[NROUTES + 1][NSTATUS + 1];
static atomic_ulong reject_count[NREASONS];
static atomic_ullong upload_bytes, trained_tokens;
static atomic_llong start_unix_ns, start_mono_ns;

static int64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void obs_init(void) {
  long long zero = 0;
  if (atomic_compare_exchange_strong(&start_mono_ns, &zero, clock_ns(CLOCK_MONOTONIC)))
    atomic_store(&start_unix_ns, clock_ns(CLOCK_REALTIME));
}

/* The process's start is when the daemon's code first runs. */
__attribute__((constructor)) static void obs_ctor(void) { obs_init(); }

void obs_reject(const char *reason) {
  size_t i = 0;
  while (i < NREASONS - 1 && (!reason || strcmp(reasons[i], reason))) i++;
  atomic_fetch_add(&reject_count[i], 1);
}

void obs_upload_bytes(uint64_t n) { atomic_fetch_add(&upload_bytes, n); }

char *obs_escape(char *out, size_t n, const char *s) {
  size_t o = 0;
  for (; s && *s && o + 3 < n; s++) {
    if (*s == '\\' || *s == '"') {
      out[o++] = '\\';
      out[o++] = *s;
    } else if (*s == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else {
      out[o++] = *s;
    }
  }
  if (n) out[o < n ? o : n - 1] = 0;
  return out;
}

/* ---- requests -------------------------------------------------------------- */

int64_t obs_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* The client's address as text ("" if unknown). */
static void remote_addr(struct MHD_Connection *conn, char *out, size_t n) {
  out[0] = 0;
  const union MHD_ConnectionInfo *ci =
      conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
  if (!ci || !ci->client_addr) return;
  const struct sockaddr *sa = ci->client_addr;
  socklen_t len =
      sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return;
  char host[INET6_ADDRSTRLEN + 1], port[16];
  if (getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV))
    return;
  snprintf(out, n, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

void obs_request_end(struct MHD_Connection *conn, const char *method, int route_ix,
                     uint64_t bytes_in, int64_t t0_ns) {
  unsigned status = 0;
  const union MHD_ConnectionInfo *ci =
      conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS) : NULL;
  if (ci) status = ci->http_status;
  switch (status) { /* the rejections a status names alone */
    case 401:
      obs_reject(OBS_REJECT_UNAUTHORIZED);
      break;
    case 403:
      obs_reject(OBS_REJECT_FORBIDDEN);
      break;
    case 405:
      obs_reject(OBS_REJECT_METHOD);
      break;
    case 413:
      obs_reject(OBS_REJECT_TOO_LARGE);
      break;
    case 415:
      obs_reject(OBS_REJECT_MEDIA_TYPE);
      break;
    default:
      break;
  }
  size_t row = route_ix >= 0 && (size_t)route_ix < NROUTES ? (size_t)route_ix + 1 : 0, col = 0;
  while (col < NSTATUS && statuses[col] != status) col++;
  atomic_fetch_add(&http_count[row][col], 1);
  const char *route = row ? routes[row - 1].pattern : "unmatched";
  /* probes and scrapes: only at debug level when they succeed */
  int probe =
      row && status == 200 &&
      (!strcmp(route, "/healthz") || !strcmp(route, "/readyz") || !strcmp(route, "/metrics"));
  char m[40], rem[80], addr[80];
  remote_addr(conn, addr, sizeof addr);
  double ms = t0_ns ? (double)(obs_now_ns() - t0_ns) / 1e6 : 0;
  ft_log(probe ? FT_LOG_DEBUG : FT_LOG_INFO,
         "msg=\"request\" method=\"%s\" route=\"%s\" status=%u bytes_in=%llu duration_ms=%.1f "
         "remote=\"%s\"",
         ft_log_esc(m, sizeof m, method ? method : ""), route, status, (unsigned long long)bytes_in,
         ms, ft_log_esc(rem, sizeof rem, addr));
}

/* ---- jobs --------------------------------------------------------------------- */

#define JOB_SLOTS 64
typedef struct {
  char id[64];
  int used, running;
  int64_t tokens; /* the last cumulative count seen */
  double tps;     /* the last step's tokens per second */
} job_slot;

static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static job_slot jobs[JOB_SLOTS];

/* The slot of id, or a free one (made id's), or NULL; under jobs_mu. With
 * every slot used, one of a job that is not running is taken over. */
static job_slot *job_find(const char *id, int create) {
  job_slot *spare = NULL;
  for (int i = 0; i < JOB_SLOTS; i++) {
    if (jobs[i].used && !strcmp(jobs[i].id, id)) return &jobs[i];
    if (!spare && !jobs[i].used) spare = &jobs[i];
  }
  if (!create) return NULL;
  for (int i = 0; i < JOB_SLOTS && !spare; i++)
    if (!jobs[i].running) spare = &jobs[i];
  if (!spare) return NULL;
  memset(spare, 0, sizeof *spare);
  snprintf(spare->id, sizeof spare->id, "%s", id);
  spare->used = 1;
  spare->tokens = -1;
  return spare;
}

void obs_job_progress(const char *job_id, long step, int64_t tokens, double tps) {
  if (!job_id) return;
  pthread_mutex_lock(&jobs_mu);
  job_slot *j = job_find(job_id, 1);
  if (j) {
    if (j->tokens < 0 && step <= 1) j->tokens = 0; /* the job's start: count from 0 */
    if (j->tokens >= 0 && tokens > j->tokens)
      atomic_fetch_add(&trained_tokens, (unsigned long long)(tokens - j->tokens));
    if (tokens > j->tokens) j->tokens = tokens;
    j->running = 1;
    j->tps = tps > 0 && tps < 1e12 ? tps : 0;
  }
  pthread_mutex_unlock(&jobs_mu);
}

void obs_job_transition(const char *job_id, const char *from, const char *to, const char *reason) {
  if (!job_id || !to) return;
  char why[300];
  FT_INFO("msg=\"job transition\" job=%s from=%s to=%s reason=\"%s\"", job_id,
          from && *from ? from : "none", to, ft_log_esc(why, sizeof why, reason ? reason : ""));
  if (!strcmp(to, "running")) return;
  int terminal = !strcmp(to, "succeeded") || !strcmp(to, "failed") || !strcmp(to, "cancelled");
  pthread_mutex_lock(&jobs_mu);
  job_slot *j = job_find(job_id, 0);
  if (j) {
    j->running = 0;
    j->tps = 0;
    if (terminal) j->used = 0;
  }
  pthread_mutex_unlock(&jobs_mu);
}

/* ---- rendering ---------------------------------------------------------------- */

void obs_render(ft_buf *page) {
  int64_t up_ns = clock_ns(CLOCK_MONOTONIC) - atomic_load(&start_mono_ns);
  ft_buf_printf(page,
                "# HELP process_start_time_seconds Start time of the process since the Unix "
                "epoch in seconds.\n"
                "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n"
                "# HELP finetuned_uptime_seconds Seconds since the daemon started.\n"
                "# TYPE finetuned_uptime_seconds gauge\nfinetuned_uptime_seconds %.3f\n",
                (double)atomic_load(&start_unix_ns) / 1e9, (double)up_ns / 1e9);

  ft_buf_printf(page,
                "# HELP finetuned_http_requests_total HTTP requests answered, by route pattern "
                "and status (status \"none\": no response was sent).\n"
                "# TYPE finetuned_http_requests_total counter\n");
  for (size_t r = 0; r <= NROUTES; r++)
    for (size_t s = 0; s <= NSTATUS; s++) {
      unsigned long n = atomic_load(&http_count[r][s]);
      if (!n) continue;
      char route[256], status[16]; /* (the longest pattern is under 100 bytes) */
      obs_escape(route, sizeof route, r ? routes[r - 1].pattern : "unmatched");
      if (s == NSTATUS)
        snprintf(status, sizeof status, "other");
      else if (statuses[s] == 0)
        snprintf(status, sizeof status, "none");
      else
        snprintf(status, sizeof status, "%u", statuses[s]);
      ft_buf_printf(page,
                    "finetuned_http_requests_total{method=\"%s\",route=\"%s\",status=\"%s\"} "
                    "%lu\n",
                    r ? routes[r - 1].method : "other", route, status, n);
    }

  ft_buf_printf(page,
                "# HELP finetuned_rejected_requests_total Requests refused before their "
                "handler acted, by reason.\n"
                "# TYPE finetuned_rejected_requests_total counter\n");
  for (size_t i = 0; i < NREASONS; i++)
    ft_buf_printf(page, "finetuned_rejected_requests_total{reason=\"%s\"} %lu\n", reasons[i],
                  atomic_load(&reject_count[i]));

  double tps = 0;
  int running = 0;
  pthread_mutex_lock(&jobs_mu);
  for (int i = 0; i < JOB_SLOTS; i++)
    if (jobs[i].used && jobs[i].running) tps += jobs[i].tps, running++;
  pthread_mutex_unlock(&jobs_mu);
  ft_buf_printf(page,
                "# HELP finetuned_upload_bytes_total Request body bytes received by POST "
                "/v1/files.\n"
                "# TYPE finetuned_upload_bytes_total counter\nfinetuned_upload_bytes_total %llu\n"
                "# HELP finetuned_trained_tokens_total Tokens trained by the jobs since the "
                "daemon started.\n"
                "# TYPE finetuned_trained_tokens_total counter\n"
                "finetuned_trained_tokens_total %llu\n"
                "# HELP finetuned_training_tokens_per_second Sum over running jobs of their "
                "latest step's tokens per second.\n"
                "# TYPE finetuned_training_tokens_per_second gauge\n"
                "finetuned_training_tokens_per_second %.3f\n"
                "# HELP finetuned_training_jobs_reporting Running jobs that reported a step.\n"
                "# TYPE finetuned_training_jobs_reporting gauge\n"
                "finetuned_training_jobs_reporting %d\n",
                atomic_load(&upload_bytes), atomic_load(&trained_tokens), tps, running);
}

/* ---- the systemd watchdog -------------------------------------------------- */

void obs_watchdog_tick(store *s) {
#ifdef FT_HAVE_SYSTEMD
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return;
  if (store_ping(s)) {
    FT_WARN("msg=\"database does not answer; watchdog not pinged\"");
    return;
  }
  sd_notify(0, "WATCHDOG=1");
#else
  (void)s;
#endif
}
