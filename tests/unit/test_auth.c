/* auth.c without a daemon: SHA-256 against FIPS 180-4's vectors and hashlib's
 * at the padding boundaries, the key format and its randomness, names, the
 * token-bucket rate limiter, loopback detection, and the store's keys and
 * tenant columns (lists per tenant, waiting jobs, the results file that takes
 * its job's tenant); also http.c's JSON depth pre-scan of request bodies. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "http.h"
#include "store.h"
#include "test.h"

static void hex_of(const void *data, size_t n, char out[65]) {
  uint8_t d[32];
  auth_sha256(data, n, d);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha256_vectors(void) {
  char h[65];
  hex_of("", 0, h);
  CHECK_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  hex_of("abc", 3, h);
  CHECK_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  hex_of(m448, strlen(m448), h);
  CHECK_EQ_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  char *mil = malloc(1000000);
  memset(mil, 'a', 1000000);
  hex_of(mil, 1000000, h);
  CHECK_EQ_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(mil);
  auth_sha256_hex("abc", h);
  CHECK_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* Lengths around the 55/56 and 64-byte padding boundaries (Python's hashlib). */
static void test_sha256_boundaries(void) {
  static const struct {
    int n;
    const char *want;
  } v[] = {{55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
           {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
           {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
           {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
           {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
           {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
           {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"}};
  char buf[128], h[65];
  memset(buf, 'x', sizeof buf);
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    hex_of(buf, (size_t)v[i].n, h);
    CHECK_EQ_STR(h, v[i].want);
  }
}

static void test_key_format(void) {
  enum { N = 2000 };
  static char keys[N][AUTH_KEY_LEN + 1];
  int counts[128] = {0};
  for (int i = 0; i < N; i++) {
    CHECK_EQ_INT(auth_key_generate(keys[i], sizeof keys[i]), 0);
    CHECK(auth_key_format_ok(keys[i]));
    CHECK(!strncmp(keys[i], "ftk-", 4));
    CHECK_EQ_INT(strlen(keys[i]), 44);
    for (const char *p = keys[i] + 4; *p; p++) counts[(unsigned char)*p]++;
  }
  int dup = 0;
  for (int i = 1; i < N; i++) dup += !strcmp(keys[i], keys[i - 1]);
  CHECK_EQ_INT(dup, 0);
  /* 80000 characters over 62 symbols: each about 1290; a broken sampler
   * (a fixed byte, or only hex) leaves symbols at 0 or far off */
  int lo = N * 40, hi = 0, used = 0;
  for (int c = 0; c < 128; c++) {
    if (!counts[c]) continue;
    used++;
    if (counts[c] < lo) lo = counts[c];
    if (counts[c] > hi) hi = counts[c];
  }
  CHECK_EQ_INT(used, 62);
  CHECK(lo > 1000 && hi < 1600);
  char small[8];
  CHECK(auth_key_generate(small, sizeof small) != 0);
  /* the shape */
  char k[AUTH_KEY_LEN + 1];
  snprintf(k, sizeof k, "%s", keys[0]);
  k[10] = '-';
  CHECK(!auth_key_format_ok(k));
  CHECK(!auth_key_format_ok("ftk-abc"));
  CHECK(!auth_key_format_ok(""));
  snprintf(k, sizeof k, "%s", keys[0]);
  k[0] = 'x';
  CHECK(!auth_key_format_ok(k));
  char longer[64];
  snprintf(longer, sizeof longer, "%sA", keys[0]);
  CHECK(!auth_key_format_ok(longer));
}

static void test_names(void) {
  CHECK(auth_name_ok("acme"));
  CHECK(auth_name_ok("team_a.prod-2"));
  CHECK(!auth_name_ok(""));
  CHECK(!auth_name_ok(".hidden"));
  CHECK(!auth_name_ok("-x"));
  CHECK(!auth_name_ok("a/b"));
  CHECK(!auth_name_ok("a b"));
  CHECK(!auth_name_ok("caf\xc3\xa9"));
  char l[80];
  memset(l, 'a', 64);
  l[64] = 0;
  CHECK(auth_name_ok(l));
  l[64] = 'a', l[65] = 0;
  CHECK(!auth_name_ok(l));
}

static void test_rate_limiter(void) {
  auth_limiter *l = auth_limiter_new(2.0, 3.0); /* 2/s, bursts of 3 */
  CHECK(l != NULL);
  double t = 100.0;
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 0);
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 0);
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 0);
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 1);       /* empty: 0.5 s to a token, rounded up */
  CHECK_EQ_INT(auth_limiter_take(l, "k2", t), 0);       /* another key has its own bucket */
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t + 0.5), 0); /* one token back */
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t + 0.5), 1);
  /* a long pause refills only up to the burst */
  t += 100;
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 0);
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t), 1);
  /* time going backwards (never from CLOCK_MONOTONIC) gives nothing back */
  CHECK_EQ_INT(auth_limiter_take(l, "k1", t - 50), 1);
  auth_limiter_free(l);
  /* a slow rate: the wait is the time to the next token */
  l = auth_limiter_new(0.1, 1.0);
  CHECK_EQ_INT(auth_limiter_take(l, "k", 0), 0);
  CHECK_EQ_INT(auth_limiter_take(l, "k", 0), 10);
  CHECK_EQ_INT(auth_limiter_take(l, "k", 5), 5);
  CHECK_EQ_INT(auth_limiter_take(l, "k", 10.01), 0);
  /* many keys */
  char name[32];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "key-%d", i);
    CHECK_EQ_INT(auth_limiter_take(l, name, 20), 0);
  }
  CHECK_EQ_INT(auth_limiter_take(l, "key-50", 20), 10);
  auth_limiter_free(l);
}

static void test_json_depth(void) {
  char buf[256];
  int n = 0;
  for (int i = 0; i < 32; i++) buf[n++] = '[';
  for (int i = 0; i < 32; i++) buf[n++] = ']';
  CHECK(http_json_depth_ok(buf, (size_t)n, 32));
  CHECK(!http_json_depth_ok(buf, (size_t)n, 31));
  const char *obj = "{\"a\":{\"b\":[1,{\"c\":2}]}}";
  CHECK(http_json_depth_ok(obj, strlen(obj), 4));
  CHECK(!http_json_depth_ok(obj, strlen(obj), 3));
  /* brackets in strings, and escaped quotes, do not count */
  const char *s = "{\"a\":\"[[[[[\\\"[[[[\"}";
  CHECK(http_json_depth_ok(s, strlen(s), 1));
  /* siblings do not add up */
  const char *sib = "[[],[],[],[]]";
  CHECK(http_json_depth_ok(sib, strlen(sib), 2));
}

static void test_loopback(void) {
  CHECK(auth_listen_is_loopback("127.0.0.1:8080"));
  CHECK(auth_listen_is_loopback("127.1.2.3:0"));
  CHECK(auth_listen_is_loopback("[::1]:8080"));
  CHECK(auth_listen_is_loopback("localhost:8080"));
  CHECK(!auth_listen_is_loopback("0.0.0.0:8080"));
  CHECK(!auth_listen_is_loopback("[::]:8080"));
  CHECK(!auth_listen_is_loopback(":8080"));
  CHECK(!auth_listen_is_loopback("8080"));
}

static char dir[] = "/tmp/ft-test-auth.XXXXXX";

static void test_store_keys(void) {
  char db[256];
  snprintf(db, sizeof db, "%s/keys.db", dir);
  store *s = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_open(&s, db, &err), 0);
  int n = -1;
  CHECK_EQ_INT(store_key_count(s, &n), 0);
  CHECK_EQ_INT(n, 0);
  char key[AUTH_KEY_LEN + 1], hash[65];
  auth_key_generate(key, sizeof key);
  auth_sha256_hex(key, hash);
  CHECK_EQ_INT(store_key_insert(s, "key-1", "alice", "acme", 0, hash, "ftk-abcd", &err), 0);
  CHECK_EQ_INT(store_key_insert(s, "key-2", "alice", "other", 0, "00", "ftk-x", &err),
               FT_EBAD_STATE);
  CHECK_EQ_STR(err.param, "name");
  CHECK_EQ_INT(store_key_insert(s, "key-3", "root", "ops", 1, "11", "ftk-y", &err), 0);
  CHECK_EQ_INT(store_key_count(s, &n), 0);
  CHECK_EQ_INT(n, 2);
  char id[40], tenant[65];
  int admin = -1;
  CHECK_EQ_INT(store_key_find(s, hash, id, sizeof id, tenant, sizeof tenant, &admin), 0);
  CHECK_EQ_STR(id, "key-1");
  CHECK_EQ_STR(tenant, "acme");
  CHECK_EQ_INT(admin, 0);
  CHECK_EQ_INT(store_key_find(s, "11", id, sizeof id, tenant, sizeof tenant, &admin), 0);
  CHECK_EQ_INT(admin, 1);
  CHECK_EQ_INT(store_key_find(s, "22", id, sizeof id, tenant, sizeof tenant, &admin),
               FT_ENOT_FOUND);
  json_t *list = NULL;
  CHECK_EQ_INT(store_key_list(s, &list), 0);
  CHECK_EQ_INT(json_array_size(list), 2);
  CHECK(json_object_get(json_array_get(list, 0), "hash") == NULL); /* never listed */
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(list, 0), "name")), "alice");
  json_decref(list);
  json_t *k = NULL;
  CHECK_EQ_INT(store_key_revoke(s, "alice", &k), 0);
  CHECK(json_is_integer(json_object_get(k, "revoked_at")));
  json_decref(k);
  CHECK_EQ_INT(store_key_find(s, hash, id, sizeof id, tenant, sizeof tenant, &admin),
               FT_ENOT_FOUND);
  CHECK_EQ_INT(store_key_revoke(s, "key-3", NULL), 0); /* by id */
  CHECK_EQ_INT(store_key_revoke(s, "nobody", NULL), FT_ENOT_FOUND);
  CHECK_EQ_INT(store_key_count(s, &n), 0);
  CHECK_EQ_INT(n, 2); /* revoked keys still count: keys stay required */
  store_close(s);
}

static void test_store_tenants(void) {
  char db[256];
  snprintf(db, sizeof db, "%s/tenants.db", dir);
  store *s = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_open(&s, db, &err), 0);
  json_t *f = NULL;
  /* the old insert: tenant "default" */
  CHECK_EQ_INT(store_file_insert(s, "file-000000000000000000000001", 5, "a.jsonl", "fine-tune", &f),
               0);
  json_decref(f);
  CHECK_EQ_INT(store_file_insert_tenant(s, "acme", "file-000000000000000000000002", 5, "b.jsonl",
                                        "fine-tune", "processed", NULL, NULL, &f),
               0);
  CHECK(json_object_get(f, "tenant") == NULL); /* not part of the API object */
  json_decref(f);
  char t[65];
  CHECK_EQ_INT(store_tenant_of(s, "file", "file-000000000000000000000001", t, sizeof t), 0);
  CHECK_EQ_STR(t, "default");
  CHECK_EQ_INT(store_tenant_of(s, "file", "file-000000000000000000000002", t, sizeof t), 0);
  CHECK_EQ_STR(t, "acme");
  CHECK_EQ_INT(store_tenant_of(s, "file", "file-nope", t, sizeof t), FT_ENOT_FOUND);
  CHECK_EQ_INT(store_tenant_of(s, "thing", "x", t, sizeof t), FT_EINVALID);
  json_t *list = NULL;
  CHECK_EQ_INT(store_file_list_tenant(s, "acme", NULL, 10, &list), 0);
  CHECK_EQ_INT(json_array_size(json_object_get(list, "data")), 1);
  json_decref(list);
  CHECK_EQ_INT(store_file_list_tenant(s, NULL, NULL, 10, &list), 0);
  CHECK_EQ_INT(json_array_size(json_object_get(list, "data")), 2);
  json_decref(list);
  /* another tenant's id as ?after= is unknown */
  CHECK_EQ_INT(store_file_list_tenant(s, "acme", "file-000000000000000000000001", 10, &list),
               FT_ENOT_FOUND);
  /* jobs */
  json_t *spec = json_pack("{s:s}", "model", "tiny"), *job = NULL;
  store_job_new j = {.model = "tiny",
                     .training_file = "file-000000000000000000000002",
                     .spec = spec,
                     .tenant = "acme"};
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), 0);
  char jid[64];
  snprintf(jid, sizeof jid, "%s", json_string_value(json_object_get(job, "id")));
  json_decref(job);
  j.tenant = NULL;
  j.queued = 1;
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), 0);
  json_decref(job);
  CHECK_EQ_INT(store_tenant_of(s, "job", jid, t, sizeof t), 0);
  CHECK_EQ_STR(t, "acme");
  int n = -1;
  CHECK_EQ_INT(store_jobs_waiting(s, "acme", &n), 0);
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(store_jobs_waiting(s, NULL, &n), 0); /* "default" */
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(store_jobs_waiting(s, "nobody", &n), 0);
  CHECK_EQ_INT(n, 0);
  CHECK_EQ_INT(store_job_list_tenant(s, "acme", NULL, 10, &list), 0);
  CHECK_EQ_INT(json_array_size(json_object_get(list, "data")), 1);
  CHECK_EQ_STR(
      json_string_value(json_object_get(json_array_get(json_object_get(list, "data"), 0), "id")),
      jid);
  json_decref(list);
  CHECK_EQ_INT(store_job_list_tenant(s, NULL, NULL, 10, &list), 0);
  CHECK_EQ_INT(json_array_size(json_object_get(list, "data")), 2);
  json_decref(list);
  /* a job's results file (as pool.c names it) takes the job's tenant */
  char fname[128];
  snprintf(fname, sizeof fname, "%s-metrics.csv", jid);
  CHECK_EQ_INT(
      store_file_insert(s, "file-000000000000000000000003", 9, fname, "fine-tune-results", &f), 0);
  json_decref(f);
  CHECK_EQ_INT(store_tenant_of(s, "file", "file-000000000000000000000003", t, sizeof t), 0);
  CHECK_EQ_STR(t, "acme");
  /* a user's upload with such a name does not */
  CHECK_EQ_INT(store_file_insert(s, "file-000000000000000000000004", 9, fname, "fine-tune", &f), 0);
  json_decref(f);
  CHECK_EQ_INT(store_tenant_of(s, "file", "file-000000000000000000000004", t, sizeof t), 0);
  CHECK_EQ_STR(t, "default");
  json_decref(spec);
  store_close(s);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(test_sha256_vectors);
  RUN(test_sha256_boundaries);
  RUN(test_key_format);
  RUN(test_names);
  RUN(test_rate_limiter);
  RUN(test_json_depth);
  RUN(test_loopback);
  RUN(test_store_keys);
  RUN(test_store_tenants);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) return 1;
  return test_report();
}
