/* API keys, tenants and request limits (see auth.h).
 *
 * Workload: one key lookup per request (an indexed SELECT by hash, under the
 * store's mutex, so a revocation takes effect on the next request) and one
 * token-bucket update per keyed request. Keys are few (tens), so the rate
 * limiter is a small array searched linearly under one mutex.
 *
 * SHA-256 is written here (FIPS 180-4, tested against the standard's vectors
 * and against sha256sum) rather than taken from a crypto library: it is the
 * only primitive needed, keys have 238 bits of entropy (no slow hash or salt
 * is needed against guessing), and no new dependency is worth 80 lines. A
 * lookup by the hash's index does not leak the key through timing: an
 * attacker who learns how far two hashes agree learns nothing about a key. */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "app.h"
#include "datadir.h"
#include "ft_log.h"
#include "http.h"
#include "model_id.h"
#include "obs.h"
#include "store.h"

/* ---- SHA-256 --------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void auth_sha256(const void *data, size_t n, uint8_t out[32]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const uint8_t *p = data;
  size_t left = n;
  for (; left >= 64; left -= 64, p += 64) sha256_block(h, p);
  uint8_t tail[128] = {0};
  memcpy(tail, p, left);
  tail[left] = 0x80;
  size_t tl = left + 9 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
  sha256_block(h, tail);
  if (tl == 128) sha256_block(h, tail + 64);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

void auth_sha256_hex(const char *s, char out[65]) {
  uint8_t d[32];
  auth_sha256(s, strlen(s), d);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- keys and names -------------------------------------------------------- */

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

int auth_key_generate(char *out, size_t n) {
  if (n < AUTH_KEY_LEN + 1) return FT_EINVALID;
  size_t pl = strlen(AUTH_KEY_PREFIX);
  memcpy(out, AUTH_KEY_PREFIX, pl);
  size_t got = 0;
  while (got < AUTH_KEY_BODY) {
    uint8_t buf[64];
    ssize_t k = getrandom(buf, sizeof buf, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      return FT_EIO;
    }
    /* rejection sampling: 248 = 4 * 62, so every character is uniform */
    for (ssize_t i = 0; i < k && got < AUTH_KEY_BODY; i++)
      if (buf[i] < 248) out[pl + got++] = B62[buf[i] % 62];
  }
  out[pl + AUTH_KEY_BODY] = 0;
  return 0;
}

int auth_key_format_ok(const char *s) {
  size_t pl = strlen(AUTH_KEY_PREFIX);
  if (strncmp(s, AUTH_KEY_PREFIX, pl) || strlen(s) != AUTH_KEY_LEN) return 0;
  for (const char *p = s + pl; *p; p++)
    if (!strchr(B62, *p)) return 0;
  return 1;
}

int auth_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* ---- the rate limiter ------------------------------------------------------ */

typedef struct {
  char key[40];
  double tokens, last;
} bucket;

struct auth_limiter {
  pthread_mutex_t mu;
  double rate, burst;
  bucket *b;
  size_t n, cap;
};

auth_limiter *auth_limiter_new(double rate, double burst) {
  auth_limiter *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  pthread_mutex_init(&l->mu, NULL);
  l->rate = rate > 0 ? rate : 1;
  l->burst = burst >= 1 ? burst : 1;
  return l;
}

void auth_limiter_free(auth_limiter *l) {
  if (!l) return;
  pthread_mutex_destroy(&l->mu);
  free(l->b);
  free(l);
}

int auth_limiter_take(auth_limiter *l, const char *key, double now) {
  pthread_mutex_lock(&l->mu);
  bucket *b = NULL;
  for (size_t i = 0; i < l->n && !b; i++)
    if (!strcmp(l->b[i].key, key)) b = &l->b[i];
  if (!b) {
    if (l->n == l->cap) {
      size_t cap = l->cap ? l->cap * 2 : 16;
      bucket *nb = realloc(l->b, cap * sizeof *nb);
      if (!nb) { /* no memory for a bucket: let the request through */
        pthread_mutex_unlock(&l->mu);
        return 0;
      }
      l->b = nb, l->cap = cap;
    }
    b = &l->b[l->n++];
    snprintf(b->key, sizeof b->key, "%s", key);
    b->tokens = l->burst;
    b->last = now;
  }
  if (now > b->last) b->tokens += (now - b->last) * l->rate;
  if (b->tokens > l->burst) b->tokens = l->burst;
  b->last = now > b->last ? now : b->last;
  int wait = 0;
  if (b->tokens >= 1) {
    b->tokens -= 1;
  } else {
    double s = (1 - b->tokens) / l->rate;
    wait = (int)s;
    if (wait < s) wait++;
    if (wait < 1) wait = 1;
  }
  pthread_mutex_unlock(&l->mu);
  return wait;
}

/* ---- per request ----------------------------------------------------------- */

/* Replies the error with one extra header (name, value); returns -1. */
static int reply_with(http_req *r, int code, const char *message, const char *name,
                      const char *value) {
  ft_error e;
  ft_error_set(&e, code, NULL, "%s", message);
  const char *const headers[] = {name, value, NULL};
  http_fail_hdrs(r, &e, headers);
  return -1;
}

static double mono_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The key of "Bearer KEY" (scheme case-insensitive), or NULL. */
static const char *bearer(const char *h) {
  if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
  h += 7;
  while (*h == ' ') h++;
  return *h ? h : NULL;
}

int auth_request(http_req *r, const char *route) {
  snprintf(r->tenant, sizeof r->tenant, "%s", STORE_DEFAULT_TENANT);
  r->key_id[0] = 0;
  r->admin = 0;
  if (route && (!strcmp(route, "/healthz") || !strcmp(route, "/readyz"))) return 0;
  ft_app *app = r->app;
  if (app->auth_open_allowed) {
    int n = 0;
    if (store_key_count(app->store, &n)) {
      http_fail(r, FT_EDB, NULL, "cannot check API keys: database error");
      return -1;
    }
    if (n == 0) return 0; /* open loopback mode: any Authorization is ignored */
  }
  static const char how[] =
      "send \"Authorization: Bearer KEY\" with a key made by `finetuned keys "
      "create`";
  const char *key = bearer(http_header(r, MHD_HTTP_HEADER_AUTHORIZATION));
  char msg[256];
  if (!key) {
    snprintf(msg, sizeof msg, "missing API key: %s", how);
    return reply_with(r, FT_EUNAUTHORIZED, msg, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  }
  char hash[65];
  int rc = FT_ENOT_FOUND;
  if (auth_key_format_ok(key)) {
    auth_sha256_hex(key, hash);
    rc = store_key_find(app->store, hash, r->key_id, sizeof r->key_id, r->tenant, sizeof r->tenant,
                        &r->admin);
  }
  if (rc == FT_ENOT_FOUND) {
    snprintf(r->tenant, sizeof r->tenant, "%s", STORE_DEFAULT_TENANT);
    r->key_id[0] = 0;
    snprintf(msg, sizeof msg, "invalid or revoked API key: %s", how);
    return reply_with(r, FT_EUNAUTHORIZED, msg, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  }
  if (rc) {
    http_fail(r, rc, NULL, "cannot check API keys: database error");
    return -1;
  }
  if (app->limiter) {
    int wait = auth_limiter_take(app->limiter, r->key_id, mono_now());
    if (wait) {
      char secs[16];
      snprintf(secs, sizeof secs, "%d", wait);
      snprintf(msg, sizeof msg, "rate limit of this API key exceeded; retry in %d s", wait);
      obs_reject(OBS_REJECT_RATE_LIMITED);
      return reply_with(r, FT_ERATE, msg, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
  }
  return 0;
}

const char *auth_tenant(const http_req *r) { return r->admin ? NULL : r->tenant; }

int auth_sees(const http_req *r, const char *tenant) {
  return r->admin || !strcmp(r->tenant, tenant);
}

static int owned_or_reply(http_req *r, const char *kind, const char *id, const char *param,
                          const char *what) {
  char tenant[STORE_TENANT_MAX + 1];
  int rc = store_tenant_of(r->app->store, kind, id, tenant, sizeof tenant);
  if (rc == 0 && auth_sees(r, tenant)) return 0;
  if (rc == 0 || rc == FT_ENOT_FOUND)
    http_fail(r, FT_ENOT_FOUND, param, "no such %s: %s", what, id);
  else
    http_fail(r, rc, NULL, NULL);
  return -1;
}

int auth_file_or_reply(http_req *r, const char *file_id, const char *param) {
  return owned_or_reply(r, "file", file_id, param, "file");
}

int auth_job_or_reply(http_req *r, const char *job_id, const char *param) {
  return owned_or_reply(r, "job", job_id, param, "job");
}

int auth_model_visible(http_req *r, const char *model_id) {
  return model_id_visible(r->app->store, model_id, auth_tenant(r));
}

int auth_model_or_reply(http_req *r, const char *model_id, const char *param) {
  if (auth_model_visible(r, model_id)) return 0;
  http_fail(r, FT_ENOT_FOUND, param, "no such model: %s", model_id);
  return -1;
}

/* ---- posture and limits ---------------------------------------------------- */

int auth_listen_is_loopback(const char *listen) {
  char host[256];
  const char *colon = strrchr(listen, ':');
  if (!colon || (size_t)(colon - listen) >= sizeof host) return 0;
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = 0;
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  if (!host[0]) return 0; /* ":8080": every address */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(host, NULL, &hints, &ai) || !ai) return 0;
  int loop = 1;
  for (struct addrinfo *a = ai; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      uint32_t v = ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr);
      loop &= (v >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      loop &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
    } else {
      loop = 0;
    }
  }
  freeaddrinfo(ai);
  return loop;
}

/* ---- `finetuned keys` ------------------------------------------------------ */

static void keys_usage(FILE *f) {
  fprintf(f,
          "usage: finetuned keys create [--data-dir DIR] --name NAME [--tenant T] [--admin]\n"
          "       finetuned keys list   [--data-dir DIR]\n"
          "       finetuned keys revoke [--data-dir DIR] ID|NAME\n"
          "  create prints the new key once (only its SHA-256 is stored). The key's\n"
          "  tenant defaults to \"default\", which owns what was made while the API was\n"
          "  open; an admin key sees every tenant. DIR defaults to $STATE_DIRECTORY\n"
          "  (systemd) if set, else ./var, as for serve.\n");
}

int auth_cmd_keys(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    keys_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "revoke")) {
    fprintf(stderr, "finetuned keys: unknown command \"%s\"\n", sub);
    keys_usage(stderr);
    return 2;
  }
  static const struct option longopts[] = {
      {"data-dir", required_argument, 0, 'd'}, {"name", required_argument, 0, 'n'},
      {"tenant", required_argument, 0, 't'},   {"admin", no_argument, 0, 'a'},
      {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  const char *data_opt = NULL, *name = NULL, *tenant = NULL;
  int admin = 0, c;
  optind = 1;
  while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
    if (c == 'd')
      data_opt = optarg;
    else if (c == 'n')
      name = optarg;
    else if (c == 't')
      tenant = optarg;
    else if (c == 'a')
      admin = 1;
    else if (c == 'h') {
      keys_usage(stdout);
      return 0;
    } else {
      keys_usage(stderr);
      return 2;
    }
  }
  int nargs = argc - 1 - optind;
  int is_create = !strcmp(sub, "create"), is_revoke = !strcmp(sub, "revoke");
  if ((is_revoke ? nargs != 1 : nargs != 0) || (!is_create && (name || tenant || admin))) {
    keys_usage(stderr);
    return 2;
  }
  if (is_create) {
    if (!name || !auth_name_ok(name)) {
      fprintf(stderr,
              "finetuned keys create: --name wants 1..64 of A-Z a-z 0-9 . _ - (not starting "
              "with '.' or '-')\n");
      return 2;
    }
    if (!tenant) tenant = STORE_DEFAULT_TENANT; /* (what the open mode made stays visible) */
    if (!auth_name_ok(tenant)) {
      fprintf(stderr,
              "finetuned keys create: --tenant wants 1..64 of A-Z a-z 0-9 . _ - (not "
              "starting with '.' or '-')\n");
      return 2;
    }
  }
  ft_error err = {0};
  char *data_dir = datadir_resolve(data_opt, &err);
  if (!data_dir) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    return 1;
  }
  char db[PATH_MAX + 32];
  snprintf(db, sizeof db, "%s/finetuned.db", data_dir);
  free(data_dir);
  store *st = NULL;
  if (store_open(&st, db, &err)) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    return 1;
  }
  int rc = 1;
  if (is_create) {
    char key[AUTH_KEY_LEN + 1], hash[65], id[64], prefix[16];
    if (auth_key_generate(key, sizeof key)) {
      fprintf(stderr, "finetuned: no randomness from the OS for a key\n");
      goto out;
    }
    auth_sha256_hex(key, hash);
    store_new_id("key", id, sizeof id);
    snprintf(prefix, sizeof prefix, "%.8s", key);
    if (store_key_insert(st, id, name, tenant, admin, hash, prefix, &err)) {
      fprintf(stderr, "finetuned keys create: %s\n", err.message);
      goto out;
    }
    fprintf(stderr, "created %skey %s (name %s, tenant %s); it is shown only now:\n",
            admin ? "admin " : "", id, name, tenant);
    printf("%s\n", key);
    rc = 0;
  } else if (is_revoke) {
    json_t *k = NULL;
    const char *which = argv[1 + optind];
    int r = store_key_revoke(st, which, &k);
    if (r == FT_ENOT_FOUND)
      fprintf(stderr, "finetuned keys revoke: no key with id or name \"%s\"\n", which);
    else if (r)
      fprintf(stderr, "finetuned keys revoke: database error\n");
    else {
      printf("revoked %s (%s)\n", json_string_value(json_object_get(k, "id")),
             json_string_value(json_object_get(k, "name")));
      rc = 0;
    }
    json_decref(k);
  } else {
    json_t *keys = NULL;
    if (store_key_list(st, &keys)) {
      fprintf(stderr, "finetuned keys list: database error\n");
    } else {
      printf("%-28s %-20s %-20s %-6s %-10s %s\n", "ID", "NAME", "TENANT", "ADMIN", "PREFIX",
             "STATUS");
      size_t i;
      json_t *k;
      json_array_foreach(keys, i, k) {
        json_t *rev = json_object_get(k, "revoked_at");
        printf("%-28s %-20s %-20s %-6s %-10s %s\n", json_string_value(json_object_get(k, "id")),
               json_string_value(json_object_get(k, "name")),
               json_string_value(json_object_get(k, "tenant")),
               json_is_true(json_object_get(k, "admin")) ? "yes" : "no",
               json_string_value(json_object_get(k, "prefix")),
               json_is_null(rev) ? "active" : "revoked");
      }
      rc = 0;
    }
    json_decref(keys);
  }
out:
  store_close(st);
  return rc;
}
