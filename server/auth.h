/* API keys, tenants and request limits.
 *
 * Keys: "ftk-" + 40 base62 characters from getrandom(2) (238 bits), printed
 * once by `finetuned keys create`; the store keeps only the hex SHA-256 of
 * the whole key. Requests carry "Authorization: Bearer KEY"; http.c calls
 * auth_request (the app's gate) on the first call of a request, before any
 * body is read.
 *
 * Tenants: every file and job has one; events and checkpoints are their
 * job's, fine-tuned models ("ft:…" and checkpoint ids) their job's. Base
 * models are shared. Another tenant's object is answered exactly like an
 * unknown id (404). An admin key sees every tenant.
 *
 * What a handler does with an id from the URL (the one rule for new routes):
 *   file:  if (auth_file_or_reply(r, id, "file_id")) return MHD_YES;
 *   job:   if (auth_job_or_reply(r, id, "fine_tuning_job_id")) return MHD_YES;
 *   model: if (auth_model_or_reply(r, id, "model")) return MHD_YES;
 * and lists pass auth_tenant(r) (NULL: every tenant) to the store's
 * *_tenant functions; objects it creates get r->tenant. */
#ifndef FT_AUTH_H
#define FT_AUTH_H
#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define AUTH_KEY_PREFIX "ftk-"
#define AUTH_KEY_BODY 40                                          /* base62 characters */
#define AUTH_KEY_LEN (sizeof AUTH_KEY_PREFIX - 1 + AUTH_KEY_BODY) /* 44 */

/* ---- hashing and key format ------------------------------------------------ */

/* FIPS 180-4 SHA-256. */
void auth_sha256(const void *data, size_t n, uint8_t out[32]);
/* Lowercase hex SHA-256 of a string into out (65 bytes). */
void auth_sha256_hex(const char *s, char out[65]);
/* A new key into out (>= AUTH_KEY_LEN + 1 bytes); 0, or FT_EIO when the OS
 * has no randomness to give. */
int auth_key_generate(char *out, size_t n);
/* Whether s has the shape of a key (prefix, length, base62 body). */
int auth_key_format_ok(const char *s);
/* A key or tenant name: 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
int auth_name_ok(const char *s);

/* ---- rate limiting: one token bucket per key --------------------------------- */

typedef struct auth_limiter auth_limiter;
/* rate tokens per second, burst tokens at most; NULL on no memory. */
auth_limiter *auth_limiter_new(double rate, double burst);
void auth_limiter_free(auth_limiter *l);
/* Takes a token of key's bucket at time now (seconds, monotonic): 0 when
 * allowed, else the whole seconds (>= 1) until a token is there. */
int auth_limiter_take(auth_limiter *l, const char *key, double now);

/* ---- per request -------------------------------------------------------------- */

/* http.c, first call of a request (route is the route's pattern, or NULL for
 * an unknown URL): sets r->tenant/key_id/admin, or replies 401 (missing,
 * unknown or revoked key) or 429 (rate limit, with Retry-After) and returns
 * -1. /healthz and /readyz need no key. */
int auth_request(http_req *r, const char *route);
/* The tenant whose objects r may see: NULL for an admin key (every tenant). */
const char *auth_tenant(const http_req *r);
/* Whether r may see an object owned by tenant. */
int auth_sees(const http_req *r, const char *tenant);
/* 0 when the object exists and r may see it; else replies (404 naming
 * param, the same whether it is unknown or another tenant's; 500 on a
 * database error) and returns -1. */
int auth_file_or_reply(http_req *r, const char *file_id, const char *param);
int auth_job_or_reply(http_req *r, const char *job_id, const char *param);
/* Models: a base model is everyone's; a fine-tuned model ("ft:…") or a
 * checkpoint id is its job's tenant's (model_id_visible). Does not check
 * that the model exists. */
int auth_model_visible(http_req *r, const char *model_id);
int auth_model_or_reply(http_req *r, const char *model_id, const char *param);

/* ---- posture and limits ------------------------------------------------------- */

/* Whether HOST:PORT resolves to a loopback address only (127.0.0.0/8, ::1). */
int auth_listen_is_loopback(const char *listen);

/* `finetuned keys create|list|revoke` (main.c): argv[0] is "keys". */
int auth_cmd_keys(int argc, char **argv);
#endif
