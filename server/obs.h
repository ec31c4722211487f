/* obs: the daemon's observability. Counters for GET /metrics (Prometheus text format, rendered by
 * api_ops.c): HTTP requests by route pattern and status, upload bytes,
 * rejected requests by reason, trained tokens and the training throughput of
 * the running jobs, and the process start time for the uptime. Every
 * function here is safe from any thread (MHD threads, the libuv loop):
 * counters are lock-free atomics in fixed tables, the per-job throughput is
 * a small mutex-guarded table. No allocation, nothing to free.
 *
 * Rejections (finetuned_rejected_requests_total{reason}): a status that names
 * its reason alone is counted when the request ends, with no call needed:
 * 401 unauthorized, 403 forbidden, 405 method, 413 too_large, 415
 * media_type. Every other refusal is counted where it is decided, by one call
 *   obs_reject(OBS_REJECT_RATE_LIMITED);
 * just before replying: 429 rate_limited or quota (two reasons, one status),
 * 503 draining, 400 bad_json, 404 no_route (an unknown URL, not an unknown
 * id), worker_auth. It only counts; it never replies or logs. A reason is one
 * of the OBS_REJECT_* labels below (a fixed set, so a scrape never grows
 * without bound); an unknown string counts as "other". Ordinary validation
 * errors of a handler (400 invalid_value ...) are not rejections: they show
 * in finetuned_http_requests_total by status.
 * (The module is "obs", not "metrics": engine/train/metrics.h is the training's
 * classification metrics, and both headers are on the include path.) */
#ifndef FT_OBS_H
#define FT_OBS_H
#include <stddef.h>
#include <stdint.h>

#include "ft_buf.h"

/* Rejection reasons: the value of the `reason` label. */
#define OBS_REJECT_UNAUTHORIZED "unauthorized" /* 401: missing or bad API key */
#define OBS_REJECT_FORBIDDEN "forbidden"       /* 403: key not allowed */
#define OBS_REJECT_RATE_LIMITED "rate_limited" /* 429: a key's token bucket is empty */
#define OBS_REJECT_QUOTA "quota"               /* 429: tenant's waiting-jobs cap */
#define OBS_REJECT_TOO_LARGE "too_large"       /* 413: body over a cap */
#define OBS_REJECT_DRAINING "draining"         /* 503: graceful stop under way */
#define OBS_REJECT_BAD_JSON "bad_json"         /* 400: body is not a JSON object */
#define OBS_REJECT_NO_ROUTE "no_route"         /* 404: unknown URL */
#define OBS_REJECT_METHOD "method"             /* 405: method not allowed */
#define OBS_REJECT_MEDIA_TYPE "media_type"     /* 415: unsupported Content-Type */
#define OBS_REJECT_WORKER_AUTH "worker_auth"   /* a worker connection with a bad token */
#define OBS_REJECT_CLIENT_GONE "client_gone"   /* a generation stopped: its client left */
#define OBS_REJECT_OTHER "other"

/* Records the process start (uptime); main calls it first. Idempotent. */
void obs_init(void);

/* Counts one refused request (see above). */
void obs_reject(const char *reason);

/* CLOCK_MONOTONIC in nanoseconds (http.c stamps r->t0_ns with it). */
int64_t obs_now_ns(void);

/* One HTTP request ended (http.c, MHD's completion callback): counts it by
 * route pattern and status, counts the rejections a status alone names (see
 * above), and logs one line "request" method=… route=… status=… bytes_in=…
 * duration_ms=… remote=… (info; debug for successful GET /healthz, /readyz
 * and /metrics, which probes call every few seconds). The route is the
 * pattern of routes.h (route_ix is its index in the table, -1 when none
 * matched: "unmatched"); status 0 ("none"): no response was sent (the client
 * went away). bytes_in: body bytes received (kept or dropped); t0_ns:
 * obs_now_ns() when the headers arrived (0: unknown). */
struct MHD_Connection;
void obs_request_end(struct MHD_Connection *conn, const char *method, int route_ix,
                     uint64_t bytes_in, int64_t t0_ns);

/* Request body bytes received by POST /v1/files. */
void obs_upload_bytes(uint64_t n);

/* A step's metrics of a running job (pool.c, from a worker's "metrics"
 * message): trained_tokens is the job's cumulative count (its growth since
 * the last report is added to the trained-tokens counter; a job first seen
 * past step 1, e.g. resumed after a restart, only sets the baseline), tps the
 * step's tokens per second (the throughput gauge sums it over running jobs). */
void obs_job_progress(const char *job_id, long step, int64_t trained_tokens, double tps);

/* A job changed status (main sets it as the store's transition hook, called
 * where every transition appends its status event): logs one line "job
 * transition" job=… from=… to=… reason="…" and, when the job leaves running,
 * drops its throughput. from is "" for a new job; reason is the status
 * event's message. */
void obs_job_transition(const char *job_id, const char *from, const char *to, const char *reason);

/* Appends every counter of this module in Prometheus text format (with HELP
 * and TYPE lines) to page. */
void obs_render(ft_buf *page);

/* The systemd watchdog (WatchdogSec= in the unit): pool.c's once-a-second
 * timer on the libuv loop calls this; it sends WATCHDOG=1 only when
 * store_ping(s) answers, so a stuck loop (no tick) or a stuck database (the
 * ping blocks or fails) lets systemd restart the daemon. Does nothing when
 * the watchdog is off or without libsystemd. */
struct store;
void obs_watchdog_tick(struct store *s);

/* Prometheus label-value escaping (\\, \", \n) of s into out (NUL-terminated,
 * truncated to fit); returns out. */
char *obs_escape(char *out, size_t n, const char *s);
#endif
