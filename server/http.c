/* The daemon's HTTP server (see http.h): libmicrohttpd with
 * MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION. One thread
 * per connection keeps every handler straight-line and lets an SSE stream
 * block in store_events_wait until the next event, with no suspend/resume
 * bookkeeping; the workload is a handful of API clients and a few long
 * streams per job, far below where a thread per connection costs anything
 * (connections are capped at 512). Bodies never sit in memory whole except
 * JSON requests (capped at 1 MiB): uploads stream to disk chunk by chunk.
 *
 * A request goes: headers -> route lookup (404/405 at once, so MHD discards
 * the body) -> Content-Length cap (413 before reading) -> body chunks ->
 * handler -> MHD's completion callback frees the request state and runs the
 * handler's cleanup, whichever way the request ended.
 *
 * Graceful stop: http_quiesce refuses new connections and answers 503 to
 * new requests on open ones, while shutdown.c waits for http_inflight() (the
 * requests between headers and completion) to reach 0. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "obs.h"
#include "ft_log.h"
#include "ft_utf8.h"
#include "routes.h"

/* ---- the route table ----------------------------------------------------- */

typedef struct {
  const char *method, *pattern;
  http_handler handler;
  int body;
} route;

#define FT_ROUTE_ROW_(m, p, h, b) {#m, p, h, b},
static const route routes[] = {FT_ROUTES(FT_ROUTE_ROW_)};
#undef FT_ROUTE_ROW_
#define NROUTES (sizeof routes / sizeof routes[0])

/* Matches url against pattern; captures {name} segments into r (if r). */
static int path_match(const char *pattern, const char *url, http_req *r) {
  const char *p = pattern, *u = url;
  int np = 0;
  while (*p && *u) {
    if (*p != '/' || *u != '/') return 0;
    p++, u++;
    const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
    size_t pl = pe ? (size_t)(pe - p) : strlen(p), ul = ue ? (size_t)(ue - u) : strlen(u);
    if (pl > 1 && p[0] == '{' && p[pl - 1] == '}') {
      if (ul == 0 || ul >= HTTP_PARAM_MAX || np >= HTTP_MAX_PARAMS) return 0;
      if (r) {
        memcpy(r->params[np], u, ul);
        r->params[np][ul] = 0;
      }
      np++;
    } else if (pl != ul || memcmp(p, u, pl) != 0) {
      return 0;
    }
    p += pl, u += ul;
  }
  if (*p || *u) return 0;
  if (r) r->nparams = np;
  return 1;
}

/* ---- replies ------------------------------------------------------------- */

enum MHD_Result http_queue(struct MHD_Connection *conn, unsigned status,
                           struct MHD_Response *resp) {
  if (!resp) return MHD_NO;
  enum MHD_Result rc = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return rc;
}

static struct MHD_Response *json_response(json_t *obj) {
  char *text = json_dumps(obj, JSON_COMPACT);
  if (!text) return NULL;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(text);
    return NULL;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  return resp;
}

/* ---- hostile input (tests/fault/test_hostile_slow.py) -------------------- */

/* Copies src into dst (n bytes with the NUL) with every byte that is not part
 * of a valid UTF-8 sequence replaced by '?': error messages quote what the
 * client sent (ids, names, URLs) and ft_error truncates them, and jansson
 * refuses a string that is not UTF-8, which made such an error a 500. */
static void utf8_scrub(char *dst, size_t n, const char *src) {
  const char *s = src, *end = src + strlen(src);
  size_t o = 0;
  while (s < end && o + 1 < n) {
    uint32_t cp;
    int len = ft_utf8_next(s, (size_t)(end - s), &cp);
    if (len < 0) {
      dst[o++] = '?';
      s++;
      continue;
    }
    if (o + (size_t)len >= n) break;
    memcpy(dst + o, s, (size_t)len);
    o += (size_t)len;
    s += len;
  }
  dst[o] = 0;
}

/* libmicrohttpd's %-decoding of the path and query, except that "%00" stays
 * as it is: a decoded NUL cut the C string, so "/v1/files/<id>%00junk" was
 * <id> and "?filename=a%00b" was "a". */
static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = (char)(c | 32);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static size_t unescape_keep_nul(void *cls, struct MHD_Connection *c, char *s) {
  char *w = s;
  for (const char *r = s; *r;) {
    int hi = r[0] == '%' ? hex_digit(r[1]) : -1, lo = hi >= 0 ? hex_digit(r[2]) : -1;
    if (lo >= 0 && (hi || lo)) {
      *w++ = (char)(hi << 4 | lo);
      r += 3;
    } else {
      *w++ = *r++;
    }
  }
  *w = 0;
  return (size_t)(w - s);
}
/* ---- end hostile input ---------------------------------------------------- */

json_t *http_error_json(const ft_error *e) {
  const char *msg = e->message[0] ? e->message : ft_err_message(e->code);
  char m[sizeof e->message], pm[sizeof e->param]; /* (hostile input: see utf8_scrub) */
  utf8_scrub(m, sizeof m, msg);
  utf8_scrub(pm, sizeof pm, e->param);
  return json_pack("{s:{s:s, s:s, s:s?, s:s}}", "error", "message", m, "type", ft_err_type(e->code),
                   "param", pm[0] ? pm : NULL, "code", ft_err_code(e->code));
}

/* http_reply_error without the log line. */
static enum MHD_Result queue_error(struct MHD_Connection *conn, const ft_error *e,
                                   const char *const *headers) {
  unsigned status = (unsigned)ft_err_status(e->code);
  json_t *obj = http_error_json(e);
  struct MHD_Response *resp = obj ? json_response(obj) : NULL;
  json_decref(obj);
  if (!resp) {
    static const char fallback[] =
        "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
        "\"code\":\"out_of_memory\"}}";
    resp = MHD_create_response_from_buffer(sizeof fallback - 1, (void *)fallback,
                                           MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return http_queue(conn, 500, resp);
  }
  for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
    MHD_add_response_header(resp, headers[i], headers[i + 1]);
  return http_queue(conn, status, resp);
}

enum MHD_Result http_reply_error(struct MHD_Connection *conn, const ft_error *e,
                                 const char *const *headers) {
  if (ft_err_status(e->code) >= 500)
    FT_WARN("msg=\"request failed\" code=%s detail=\"%s\"", ft_err_code(e->code), e->message);
  return queue_error(conn, e, headers);
}

enum MHD_Result http_fail_hdrs(http_req *r, const ft_error *e, const char *const *headers) {
  r->replied = 1;
  return http_reply_error(r->conn, e, headers);
}

enum MHD_Result http_fail_err(http_req *r, const ft_error *e) { return http_fail_hdrs(r, e, NULL); }

enum MHD_Result http_fail_later(http_req *r, const ft_error *e) {
  if (!r->pending.code) r->pending = *e;
  return MHD_YES;
}

enum MHD_Result http_fail(http_req *r, int code, const char *param, const char *fmt, ...) {
  ft_error e = {.code = code};
  snprintf(e.param, sizeof e.param, "%s", param ? param : "");
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
  } else {
    snprintf(e.message, sizeof e.message, "%s", ft_err_message(code));
  }
  return http_fail_err(r, &e);
}

enum MHD_Result http_reply_json(http_req *r, unsigned status, json_t *obj) {
  if (!obj) return http_fail(r, FT_ENOMEM, NULL, NULL);
  struct MHD_Response *resp = json_response(obj);
  json_decref(obj);
  if (!resp) return http_fail(r, FT_ENOMEM, NULL, NULL);
  r->replied = 1;
  return http_queue(r->conn, status, resp);
}

enum MHD_Result http_reply_text(http_req *r, unsigned status, const char *content_type,
                                const char *text) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
  if (!resp) return http_fail(r, FT_ENOMEM, NULL, NULL);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  r->replied = 1;
  return http_queue(r->conn, status, resp);
}

/* ---- request helpers ----------------------------------------------------- */

const char *http_query(http_req *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(http_req *r, const char *key) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

int http_page_or_reply(http_req *r, const char **after, int *limit) {
  *after = http_query(r, "after");
  *limit = 20;
  if (*after && (!**after || strlen(*after) > 128)) {
    http_fail(r, FT_ERANGE, "after", "after must be the id of an object of the previous page");
    return -1;
  }
  const char *l = http_query(r, "limit");
  if (l) {
    char *end;
    errno = 0;
    long v = strtol(l, &end, 10);
    if (!*l || *end || errno || v < 1 || v > 100) {
      http_fail(r, FT_ERANGE, "limit", "limit must be an integer from 1 to 100");
      return -1;
    }
    *limit = (int)v;
  }
  return 0;
}

int http_json_body_or_reply(http_req *r, json_t **out) {
  *out = NULL;
  if (!r->body || r->body_n == 0) {
    obs_reject(OBS_REJECT_BAD_JSON);
    http_fail(r, FT_EJSON, NULL, "request body is empty; a JSON object is required");
    return -1;
  }
  if (!http_json_depth_ok(r->body, r->body_n, HTTP_JSON_MAX_DEPTH)) {
    obs_reject(OBS_REJECT_BAD_JSON);
    http_fail(r, FT_EJSON, NULL, "request body nests arrays and objects deeper than %d",
              HTTP_JSON_MAX_DEPTH);
    return -1;
  }
  json_error_t je;
  json_t *v = json_loadb(r->body, r->body_n, JSON_REJECT_DUPLICATES, &je);
  if (!v && json_error_code(&je) == json_error_invalid_utf8) {
    obs_reject(OBS_REJECT_BAD_JSON);
    http_fail(r, FT_EUTF8, NULL, "request body is not valid UTF-8 (line %d, column %d)", je.line,
              je.column);
    return -1;
  }
  if (!v) {
    obs_reject(OBS_REJECT_BAD_JSON);
    http_fail(r, FT_EJSON, NULL, "request body is not valid JSON: %s (line %d, column %d)", je.text,
              je.line, je.column);
    return -1;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    obs_reject(OBS_REJECT_BAD_JSON);
    http_fail(r, FT_ETYPE, NULL, "request body must be a JSON object");
    return -1;
  }
  *out = v;
  return 0;
}

int http_json_depth_ok(const char *s, size_t n, int max) {
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '{' || c == '[') {
      if (++depth > max) return 0;
    } else if ((c == '}' || c == ']') && depth > 0) {
      depth--;
    }
  }
  return 1;
}

/* ---- graceful stop (see http.h, shutdown.c) ------------------------------- */

static atomic_int inflight;                         /* requests between headers and completion */
static MHD_socket quiesced_fd = MHD_INVALID_SOCKET; /* the listening socket after quiesce */

int http_inflight(void) { return atomic_load(&inflight); }

void http_quiesce(struct MHD_Daemon *d, ft_app *app) {
  atomic_store(&app->draining, 1);
  if (!d || quiesced_fd != MHD_INVALID_SOCKET) return;
  /* MHD stops polling the socket but leaves it open (queued connections
   * would wait there); shutting it down makes the kernel refuse new ones at
   * once. It is closed after MHD_stop_daemon, when no thread can use it. */
  quiesced_fd = MHD_quiesce_daemon(d);
  if (quiesced_fd != MHD_INVALID_SOCKET && shutdown(quiesced_fd, SHUT_RDWR))
    FT_WARN("msg=\"cannot shut the listening socket down\" err=\"%s\"", strerror(errno));
}

/* A request that arrived after the drain began: 503, and the connection is
 * closed after the reply. */
static enum MHD_Result reply_draining(http_req *r) {
  ft_error e;
  ft_error_set(&e, FT_EUNAVAILABLE, NULL, "the server is shutting down; retry after it restarts");
  static const char *const headers[] = {MHD_HTTP_HEADER_CONNECTION, "close",
                                        MHD_HTTP_HEADER_RETRY_AFTER, "5", NULL};
  r->replied = 1;
  return queue_error(r->conn, &e, headers); /* (not logged: every request of a drain gets it) */
}

/* ---- the MHD callbacks --------------------------------------------------- */

static enum MHD_Result reply_no_route(http_req *r, const char *method, const char *url) {
  char allow[128] = "";
  size_t n = 0;
  for (size_t i = 0; i < NROUTES; i++) {
    if (!path_match(routes[i].pattern, url, NULL) || strstr(allow, routes[i].method)) continue;
    n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", routes[i].method);
    if (!strcmp(routes[i].method, "GET") && n < sizeof allow)
      n += (size_t)snprintf(allow + n, sizeof allow - n, ", HEAD");
  }
  if (!n) {
    obs_reject(OBS_REJECT_NO_ROUTE);
    return http_fail(r, FT_ENO_ROUTE, NULL, "unknown URL: %s %s", method, url);
  }
  ft_error e;
  ft_error_set(&e, FT_EMETHOD, NULL, "method %s is not allowed for %s; allowed: %s", method, url,
               allow);
  const char *const headers[] = {MHD_HTTP_HEADER_ALLOW, allow, NULL};
  return http_fail_hdrs(r, &e, headers);
}

/* Buffers (JSON) or discards (NONE) a body chunk, capped; on the final
 * call runs the handler. */
static enum MHD_Result on_body(http_req *r, const route *rt, const char *data, size_t *n) {
  if (*n) {
    size_t k = *n;
    *n = 0;
    if (r->seen + k > HTTP_JSON_BODY_MAX) {
      ft_error e;
      ft_error_set(&e, FT_ETOO_LARGE, NULL, "request body over %u bytes", HTTP_JSON_BODY_MAX);
      free(r->body);
      r->body = NULL;
      r->body_n = r->body_cap = 0;
      r->discarded = k;
      return http_fail_later(r, &e);
    }
    if (rt->body == HTTP_BODY_JSON) {
      if (r->body_n + k + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_n + k + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) return http_fail(r, FT_ENOMEM, NULL, NULL);
        r->body = nb;
        r->body_cap = cap;
      }
      memcpy(r->body + r->body_n, data, k);
      r->body_n += k;
      r->body[r->body_n] = 0;
    }
    r->seen += k; /* counted even when discarded, for the cap */
    return MHD_YES;
  }
  r->phase = HTTP_PHASE_LAST;
  enum MHD_Result res = rt->handler(r);
  if (!r->replied && res == MHD_YES)
    return http_fail(r, FT_EINTERNAL, NULL, "handler did not reply");
  return res;
}

/* First call of a request: the headers are in. Route it, check the
 * announced length, and give a streaming handler its first call. */
static enum MHD_Result on_headers(ft_app *app, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **con_cls) {
  http_req *r = calloc(1, sizeof *r);
  if (!r) return MHD_NO;
  r->app = app;
  r->conn = conn;
  r->route_ix = -1;        /* (obs.c: "unmatched" until a route matches) */
  r->t0_ns = obs_now_ns(); /* (obs.c: the duration) */
  r->method = method;
  r->url = url;
  *con_cls = r;
  atomic_fetch_add(&inflight, 1); /* (on_completed takes it off) */
  if (atomic_load(&app->draining)) {
    obs_reject(OBS_REJECT_DRAINING);
    return reply_draining(r);
  }
  const char *m = strcmp(method, "HEAD") ? method : "GET";
  const route *rt = NULL;
  for (size_t i = 0; i < NROUTES && !rt; i++)
    if (!strcmp(routes[i].method, m) && path_match(routes[i].pattern, url, r)) rt = &routes[i];
  if (rt) r->route_ix = (int)(rt - routes); /* (obs.c: a refused request has its route) */
  /* the gate (keys): before the body, and before telling what URLs exist */
  if (app->gate && app->gate(r, rt ? rt->pattern : NULL)) return MHD_YES;
  if (!rt) return reply_no_route(r, method, url);
  r->route_ix = (int)(rt - routes);
  r->body_kind = rt->body;
  /* hostile input: microhttpd reads a body of any other transfer coding
   * ("gzip", "gzip, chunked") until the client closes */
  const char *te = http_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  if (te && strcasecmp(te, "chunked"))
    return http_fail(r, FT_EINVALID, NULL, "Transfer-Encoding \"%.40s\" is not supported",
                     te);
  const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl && rt->body != HTTP_BODY_STREAM && strtoull(cl, NULL, 10) > HTTP_JSON_BODY_MAX)
    return http_fail(r, FT_ETOO_LARGE, NULL, "request body over %u bytes", HTTP_JSON_BODY_MAX);
  if (rt->body != HTTP_BODY_STREAM) return MHD_YES;
  r->phase = HTTP_PHASE_FIRST;
  return rt->handler(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  http_req *r = *con_cls;
  if (!r) return on_headers(cls, conn, url, method, con_cls);
  if (r->replied) { /* an early error: drop whatever still comes */
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (r->pending.code) { /* a mid-body error: drop the rest, then answer */
    if (!*upload_data_size) return http_fail_err(r, &r->pending);
    r->discarded += *upload_data_size;
    *upload_data_size = 0;
    return r->discarded > HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
  }
  const route *rt = &routes[r->route_ix];
  if (rt->body != HTTP_BODY_STREAM) return on_body(r, rt, upload_data, upload_data_size);
  r->phase = *upload_data_size ? HTTP_PHASE_DATA : HTTP_PHASE_LAST;
  r->upload = upload_data;
  r->upload_n = *upload_data_size;
  r->seen += *upload_data_size;
  obs_upload_bytes(*upload_data_size);
  enum MHD_Result res = rt->handler(r);
  *upload_data_size = 0;
  if (r->phase == HTTP_PHASE_LAST && !r->replied && res == MHD_YES)
    return http_fail(r, FT_EINTERNAL, NULL, "handler did not reply");
  return res;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  http_req *r = *con_cls;
  if (!r) return;
  if (r->ctx_free) r->ctx_free(r->ctx, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
  obs_request_end(conn, r->method, r->route_ix, r->seen + r->discarded, r->t0_ns);
  free(r->body);
  free(r);
  *con_cls = NULL;
  atomic_fetch_sub(&inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
  FT_DEBUG("msg=\"microhttpd\" detail=\"%s\"", msg);
}

/* ---- start and stop ------------------------------------------------------ */

int http_start(struct MHD_Daemon **out, ft_app *app, const char *listen, int *port, ft_error *err) {
  *out = NULL;
  char host[256];
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
    return ft_error_set(err, FT_EINVALID, "listen", "--listen wants HOST:PORT, got \"%s\"", listen);
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = 0;
  if (host[0] == '[') { /* [::1]:8080 */
    size_t hl = strlen(host);
    if (hl < 3 || host[hl - 1] != ']')
      return ft_error_set(err, FT_EINVALID, "listen", "bad IPv6 address in \"%s\"", listen);
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 0 || p > 65535)
    return ft_error_set(err, FT_EINVALID, "listen", "bad port in \"%s\"", listen);
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE},
                  *ai = NULL;
  int gai = getaddrinfo(host, colon + 1, &hints, &ai);
  if (gai || !ai)
    return ft_error_set(err, FT_EINVALID, "listen", "cannot resolve \"%s\": %s", host,
                        gai_strerror(gai));
  struct sockaddr_storage addr;
  memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
  int v6 = ai->ai_family == AF_INET6;
  freeaddrinfo(ai);
  /* (MHD_USE_ITC: MHD_quiesce_daemon needs it in this threading mode) */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                   MHD_USE_ERROR_LOG | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
  /* TLS: HTTPS with the PEM certificate and key main read */
  struct MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)app->tls_cert_pem},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)app->tls_key_pem},
      {MHD_OPTION_END, 0, NULL}};
  if (app->tls_cert_pem && app->tls_key_pem)
    flags |= MHD_USE_TLS;
  else
    tls_opts[0].option = MHD_OPTION_END;
  struct MHD_Daemon *d =
      MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, on_request, app, MHD_OPTION_SOCK_ADDR,
                       (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, app,
                       MHD_OPTION_CONNECTION_TIMEOUT,
                       app->conn_timeout_s ? app->conn_timeout_s : (unsigned)120,
                       MHD_OPTION_CONNECTION_LIMIT,
                       app->max_connections ? app->max_connections : (unsigned)512,
                       MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                       app->max_per_ip ? app->max_per_ip : (unsigned)128,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                       app->conn_memory ? app->conn_memory : (size_t)(64u << 10),
                       MHD_OPTION_UNESCAPE_CALLBACK, unescape_keep_nul, NULL, /* (hostile) */
                       MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_ARRAY, tls_opts,
                       MHD_OPTION_END);
  if (!d)
    return ft_error_set(err, FT_EIO, "listen", "cannot listen on %s: %s", listen,
                        errno ? strerror(errno) : "microhttpd failed to start");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *port = info ? info->port : (int)p;
  *out = d;
  return 0;
}

void http_stop(struct MHD_Daemon *d) {
  if (d) MHD_stop_daemon(d);
  if (d && quiesced_fd != MHD_INVALID_SOCKET) {
    close(quiesced_fd);
    quiesced_fd = MHD_INVALID_SOCKET;
  }
}
