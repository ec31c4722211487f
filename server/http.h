/* The daemon's HTTP layer on libmicrohttpd: the daemon itself, routing by
 * the one table of routes.h, per-request state, body handling, and the
 * reply helpers every handler uses (one JSON error envelope for every error,
 * through http_reply_error). Handlers live in api_*.c and read top to
 * bottom: parse, validate, act, reply (STYLE.md 3). */
#ifndef FT_HTTP_H
#define FT_HTTP_H
#include <jansson.h>
#include <microhttpd.h>
#include <stdint.h>

#include "app.h"
#include "ft_err.h"

#define HTTP_JSON_BODY_MAX (1u << 20) /* job creation and other JSON bodies */
#define HTTP_DEFAULT_UPLOAD_MAX (512ull << 20)

enum { HTTP_BODY_NONE, HTTP_BODY_JSON, HTTP_BODY_STREAM };
enum { HTTP_PHASE_FIRST, HTTP_PHASE_DATA, HTTP_PHASE_LAST };

#define HTTP_MAX_PARAMS 4
#define HTTP_PARAM_MAX 256

typedef struct http_req http_req;
typedef enum MHD_Result (*http_handler)(http_req *r);

/* One request, from its headers to MHD's completion callback, which frees it
 * (and calls ctx_free, so a handler's state such as an upload's temp file is
 * cleaned up whatever way the request ends). */
struct http_req {
  ft_app *app;
  struct MHD_Connection *conn;
  const char *method, *url;
  char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX]; /* the {name} captures */
  int nparams;
  int route_ix; /* index in the route table */
  int body_kind;
  /* HTTP_BODY_STREAM: which call this is, and the chunk; the handler sets
   * *upload_n to 0 once consumed (http.c does it otherwise). */
  int phase;
  const char *upload;
  size_t upload_n;
  /* HTTP_BODY_JSON: the whole body (NUL-terminated), once PHASE_LAST */
  char *body;
  size_t body_n, body_cap;
  uint64_t seen;    /* body bytes received so far */
  int replied;      /* a response is queued */
  ft_error pending; /* an error found mid-body, answered after the body */
  uint64_t discarded;
  void *ctx; /* handler state */
  void (*ctx_free)(void *ctx, int completed_ok);
  /* ---- the caller (auth.c, set before any handler runs) ---- */
  char tenant[64]; /* the key's tenant, or "default" in open mode */
  char key_id[40]; /* "key-…", or "" in open mode */
  int admin;       /* an admin key: sees every tenant */
  /* ---- observability (obs.c) ---- */
  int64_t t0_ns; /* CLOCK_MONOTONIC at the headers: the request's duration */
};

int http_start(struct MHD_Daemon **out, ft_app *app, const char *listen, int *port, ft_error *err);
void http_stop(struct MHD_Daemon *d);
/* Graceful stop (shutdown.c), step one: the listening socket stops taking
 * connections (new ones are refused), and requests arriving on connections
 * already open are answered 503 with "Connection: close"; requests in flight
 * go on. http_stop later closes what is left. */
void http_quiesce(struct MHD_Daemon *d, ft_app *app);
/* Requests from their headers to their completion (idle keep-alive
 * connections do not count). */
int http_inflight(void);

/* Queues resp with status and releases it (every reply goes through here). */
enum MHD_Result http_queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp);
/* The one error envelope {"error":{message,type,param,code}} with the status
 * of ft_err_status(e->code); message and param, which often quote what the
 * client sent, have every byte that is not UTF-8 replaced by '?'. headers:
 * NULL, or extra response headers as name, value, …, NULL (Retry-After,
 * WWW-Authenticate). A 5xx is logged. */
enum MHD_Result http_reply_error(struct MHD_Connection *conn, const ft_error *e,
                                 const char *const *headers);
/* The same envelope as a JSON object (new reference; NULL on no memory), for
 * an error that ends a stream already under way. */
json_t *http_error_json(const ft_error *e);
/* Shorthand: builds the ft_error and replies; marks r replied. */
enum MHD_Result http_fail(http_req *r, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
enum MHD_Result http_fail_err(http_req *r, const ft_error *e);
/* http_fail_err with extra headers (as http_reply_error). */
enum MHD_Result http_fail_hdrs(http_req *r, const ft_error *e, const char *const *headers);
/* For an error found while the body is still arriving (MHD 0.9.x cannot
 * queue a response then): the rest of the body is read and dropped, up to
 * HTTP_DISCARD_MAX more bytes (beyond that the connection is closed), and
 * the error is the reply. */
enum MHD_Result http_fail_later(http_req *r, const ft_error *e);
#define HTTP_DISCARD_MAX (16u << 20)
/* Replies with obj as JSON (steals the reference); NULL obj is a 500. */
enum MHD_Result http_reply_json(http_req *r, unsigned status, json_t *obj);
enum MHD_Result http_reply_text(http_req *r, unsigned status, const char *content_type,
                                const char *text);

const char *http_query(http_req *r, const char *key);
const char *http_header(http_req *r, const char *key);
/* ?after= and ?limit= (1..100, default 20); on a bad value replies 400 and
 * returns -1. */
int http_page_or_reply(http_req *r, const char **after, int *limit);
/* Parses r->body as a JSON object (duplicates rejected, nesting at most
 * HTTP_JSON_MAX_DEPTH deep); on failure replies 400 and returns -1. */
int http_json_body_or_reply(http_req *r, json_t **out);
/* Whether JSON text nests arrays/objects at most max deep (strings skipped;
 * the text need not be valid JSON: the parser judges that). jansson has no
 * cap of its own, and recurses once per level. */
int http_json_depth_ok(const char *s, size_t n, int max);
#define HTTP_JSON_MAX_DEPTH 32

/* Handlers, from routes.h. */
#define FT_ROUTE_DECL_(method, pattern, handler, body) enum MHD_Result handler(http_req *r);
#include "routes.h"
FT_ROUTES(FT_ROUTE_DECL_)
#undef FT_ROUTE_DECL_
#endif
