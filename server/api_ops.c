/* Operations endpoints: liveness (/healthz: the process answers), readiness
 * (/readyz: the database answers and the daemon is not draining; worker
 * counts for the curious) and Prometheus metrics (/metrics: jobs by status,
 * queue depth, workers, and metrics.c's counters: requests by route and
 * status, rejections, uploads, training throughput, uptime). Cheap enough to
 * be scraped every few seconds: one grouped COUNT over jobs and atomic reads. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "ft_buf.h"
#include "http.h"
#include "obs.h"
#include "pool.h"
#include "store.h"

enum MHD_Result api_healthz(http_req *r) {
  return http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result api_readyz(http_req *r) {
  if (atomic_load(&r->app->draining))
    return http_fail(r, FT_EUNAVAILABLE, NULL, "the server is shutting down");
  if (store_ping(r->app->store))
    return http_fail(r, FT_EUNAVAILABLE, NULL, "the database does not answer");
  int connected = 0, busy = 0;
  if (r->app->pool) pool_counts(r->app->pool, &connected, &busy);
  json_t *counts = NULL;
  if (store_job_counts(r->app->store, &counts)) {
    json_decref(counts);
    return http_fail(r, FT_EUNAVAILABLE, NULL, "the database does not answer");
  }
  return http_reply_json(
      r, 200,
      json_pack("{s:s, s:s, s:{s:i, s:i}, s:o}", "status", "ready", "database", "ok", "workers",
                "connected", connected, "busy", busy, "jobs", counts));
}

enum MHD_Result api_metrics(http_req *r) {
  ft_buf page = {0};
  json_t *counts = NULL;
  int db_ok = store_job_counts(r->app->store, &counts) == 0;
  ft_buf_printf(&page,
                "# HELP finetuned_up Whether the database answers (1) or not (0).\n"
                "# TYPE finetuned_up gauge\nfinetuned_up %d\n"
                "# HELP finetuned_draining Whether a graceful stop is under way (1) or not (0).\n"
                "# TYPE finetuned_draining gauge\nfinetuned_draining %d\n",
                db_ok, atomic_load(&r->app->draining) ? 1 : 0);
  ft_buf_printf(&page,
                "# HELP finetuned_jobs Fine-tuning jobs by status.\n"
                "# TYPE finetuned_jobs gauge\n");
  const char *status;
  json_t *n;
  long long depth = 0;
  json_object_foreach(counts, status, n) {
    char esc[64];
    ft_buf_printf(&page, "finetuned_jobs{status=\"%s\"} %lld\n",
                  obs_escape(esc, sizeof esc, status), (long long)json_integer_value(n));
    if (!strcmp(status, "queued") || !strcmp(status, "validating_files"))
      depth += json_integer_value(n);
  }
  json_decref(counts);
  if (db_ok)
    ft_buf_printf(&page,
                  "# HELP finetuned_queue_depth Jobs waiting to run (queued and "
                  "validating_files).\n"
                  "# TYPE finetuned_queue_depth gauge\nfinetuned_queue_depth %lld\n",
                  depth);
  int connected = 0, busy = 0;
  if (r->app->pool) pool_counts(r->app->pool, &connected, &busy);
  ft_buf_printf(&page,
                "# HELP finetuned_workers_connected Workers connected to the daemon.\n"
                "# TYPE finetuned_workers_connected gauge\nfinetuned_workers_connected %d\n"
                "# HELP finetuned_workers_busy Workers running a job.\n"
                "# TYPE finetuned_workers_busy gauge\nfinetuned_workers_busy %d\n",
                connected, busy);
  obs_render(&page);
  if (!page.data) return http_fail(r, FT_ENOMEM, NULL, NULL);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(page.len, page.data, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    ft_buf_free(&page);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; version=0.0.4; charset=utf-8");
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}
