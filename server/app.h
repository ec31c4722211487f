/* What the HTTP handlers share: the daemon's open store, worker pool and
 * serving pool, its data directory and the limits `finetuned serve` was
 * given. main fills one ft_app before the HTTP server starts and frees what
 * it holds after the server stops; a handler reaches it as r->app. Only
 * pointers to the other modules' types are here, so including it pulls in
 * none of them: a handler includes the headers of what it calls. */
#ifndef FT_APP_H
#define FT_APP_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct pool;
struct auth_limiter;
struct infer_pool;
struct http_req;

typedef struct ft_app {
  struct store *store;
  struct pool *pool;         /* NULL in tests without workers */
  const char *data_dir;      /* absolute */
  uint64_t max_upload_bytes; /* POST /v1/files cap */
  atomic_int stopping;       /* set at shutdown: SSE streams end */
  atomic_int draining;       /* graceful stop under way: new requests get 503 */
  /* ---- keys, tenants and limits (auth.c) ---- */
  /* Called by http.c on each request's headers, before any body is read and
   * before an unknown URL is answered (route: the matched pattern, or NULL):
   * 0 lets the request go on, -1 means it replied (main sets auth_request).
   * NULL: every request goes on. */
  int (*gate)(struct http_req *r, const char *route);
  int auth_open_allowed;        /* loopback listener: open while no key was ever made */
  struct auth_limiter *limiter; /* per-key token buckets, NULL: no rate limit */
  int max_waiting_jobs;         /* per tenant (validating_files + queued); 0: no cap */
  unsigned max_connections;     /* MHD_OPTION_CONNECTION_LIMIT; 0: 512 */
  unsigned max_per_ip;          /* MHD_OPTION_PER_IP_CONNECTION_LIMIT; 0: 128 */
  unsigned conn_timeout_s;      /* MHD_OPTION_CONNECTION_TIMEOUT; 0: 120 */
  size_t conn_memory;           /* MHD_OPTION_CONNECTION_MEMORY_LIMIT (headers); 0: 64 KiB */
  /* ---- serving (api_infer.c) ---- */
  struct infer_pool *infer; /* loaded models and the inference slots; NULL: serving is off (503) */
  /* ---- TLS (http.c) ---- */
  const char *tls_cert_pem; /* PEM certificate chain: serve HTTPS; NULL: plain HTTP */
  const char *tls_key_pem;  /* its PEM private key */
} ft_app;
#endif
