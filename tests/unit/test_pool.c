/* The worker pool (server/pool.c) against a real store in a temp dir, with
 * fake workers written here that speak the wire protocol over the Unix socket
 * and over TCP: hello/welcome, claim -> job with its paths, metrics and
 * checkpoints recorded, a stale attempt answered with lease_lost, pause and
 * cancel relayed, a dropped connection requeueing its job at once (resumed
 * from the checkpoint), done moving the output into models/, the TCP token
 * check, garbage refused; and local worker supervision (restart with
 * back-off, SIGTERM at stop). No engine: the fake workers do not train. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "store.h"
#include "test.h"
#include "wire.h"

static char g_dir[64];
static store *g_store;
static pool *g_pool;
static int g_port;
static char g_job[64];

/* ---- a fake worker ------------------------------------------------------ */

typedef struct {
  int fd;
  wire_decoder dec;
} client;

static int cli_unix(client *c) {
  wire_decoder_init(&c->dec);
  c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/worker.sock", g_dir);
  return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

static int cli_tcp(client *c) {
  wire_decoder_init(&c->dec);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

static void cli_close(client *c) {
  close(c->fd);
  wire_decoder_free(&c->dec);
}

static void cli_send_raw(client *c, const char *b, size_t n) {
  while (n) {
    ssize_t k = write(c->fd, b, n);
    if (k <= 0) return;
    b += k;
    n -= (size_t)k;
  }
}

static void cli_send(client *c, json_t *msg) {
  char *b;
  size_t n;
  if (wire_encode(msg, &b, &n) == 0) {
    cli_send_raw(c, b, n);
    free(b);
  }
  json_decref(msg);
}

/* Next message within timeout_ms; NULL on timeout; *eof set at EOF. */
static json_t *cli_recv(client *c, int timeout_ms, int *eof) {
  if (eof) *eof = 0;
  for (;;) {
    json_t *m = NULL;
    if (wire_next(&c->dec, &m, NULL) == 0 && m) return m;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0) return NULL;
    char buf[4096];
    ssize_t k = read(c->fd, buf, sizeof buf);
    if (k <= 0) {
      if (eof) *eof = 1;
      return NULL;
    }
    wire_feed(&c->dec, buf, (size_t)k);
  }
}

/* Next message of the given type, skipping others (e.g. a stray welcome). */
static json_t *cli_expect(client *c, const char *type, int timeout_ms) {
  for (;;) {
    json_t *m = cli_recv(c, timeout_ms, NULL);
    if (!m) return NULL;
    if (!strcmp(json_string_value(json_object_get(m, "type")), type)) return m;
    fprintf(stderr, "  (skipped a %s message)\n", json_string_value(json_object_get(m, "type")));
    json_decref(m);
  }
}

static const char *str(const json_t *o, const char *path1, const char *path2) {
  const json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_string_value(v);
}

static int hello(client *c, const char *id, const char *token) {
  json_t *h = json_pack("{s:s, s:s, s:i}", "type", "hello", "worker_id", id, "pid", 1);
  if (token) json_object_set_new(h, "token", json_string(token));
  cli_send(c, h);
  json_t *w = cli_recv(c, 3000, NULL);
  int ok = w && !strcmp(str(w, "type", NULL), "welcome") &&
           json_integer_value(json_object_get(w, "heartbeat_ms")) == 500;
  json_decref(w);
  return ok;
}

static json_t *jmsg(const char *type, const char *job, int attempt) {
  return json_pack("{s:s, s:s, s:i}", "type", type, "job_id", job, "attempt", attempt);
}

/* ---- store helpers ------------------------------------------------------ */

static void insert_job(const char *suffix, char *id_out) {
  json_t *spec = json_pack("{s:s, s:s}", "model", "base", "training_file", "file-test");
  store_job_new n = {.model = "base",
                     .training_file = "file-test",
                     .suffix = suffix,
                     .seed = 42,
                     .spec = spec,
                     .queued = 1};
  json_t *job = NULL;
  ft_error e = {0};
  int rc = store_job_insert(g_store, &n, &job, &e);
  CHECK_EQ_INT(rc, 0);
  snprintf(id_out, 64, "%s", job ? json_string_value(json_object_get(job, "id")) : "");
  json_decref(job);
  json_decref(spec);
}

static json_t *job_get(const char *id) {
  json_t *j = NULL;
  store_job_get(g_store, id, &j);
  return j;
}

static int64_t job_int(const char *id, const char *key) {
  json_t *j = job_get(id);
  int64_t v = j ? json_integer_value(json_object_get(j, key)) : -1;
  json_decref(j);
  return v;
}

static int job_status_is(const char *id, const char *status) {
  char buf[32];
  store_job_status(g_store, id, buf, sizeof buf);
  return !strcmp(buf, status);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  } /* (SIGCHLD of the local workers interrupts it) */
}

/* Polls cond for up to ms. */
#define WAIT_FOR(cond, ms)                                          \
  do {                                                              \
    for (int w_ = 0; w_ < (ms) / 20 && !(cond); w_++) sleep_ms(20); \
  } while (0)

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- tests -------------------------------------------------------------- */

static client A; /* the unix worker that holds g_job through several tests */
static int A_attempt;

static void test_socket_mode(void) {
  char path[300];
  snprintf(path, sizeof path, "%s/worker.sock", g_dir);
  struct stat sb;
  CHECK(stat(path, &sb) == 0);
  CHECK(S_ISSOCK(sb.st_mode));
  CHECK_EQ_INT(sb.st_mode & 0777, 0600);
}

static void test_claim_gets_job(void) {
  insert_job(NULL, g_job);
  CHECK_EQ_INT(cli_unix(&A), 0);
  CHECK(hello(&A, "fake-a", NULL));
  int conn = -1, busy = -1;
  WAIT_FOR((pool_counts(g_pool, &conn, &busy), conn == 1), 2000);
  CHECK_EQ_INT(conn, 1);
  CHECK_EQ_INT(busy, 0);
  cli_send(&A, json_pack("{s:s}", "type", "claim"));
  json_t *m = cli_expect(&A, "job", 3000);
  CHECK(m != NULL);
  json_t *job = json_object_get(m, "job");
  CHECK_EQ_STR(str(job, "id", NULL), g_job);
  A_attempt = (int)json_integer_value(json_object_get(job, "attempt"));
  CHECK_EQ_INT(A_attempt, 1);
  CHECK(json_is_object(json_object_get(job, "spec")));
  char want[512];
  snprintf(want, sizeof want, "%s/models/base", g_dir);
  CHECK_EQ_STR(str(job, "paths", "model_dir"), want);
  snprintf(want, sizeof want, "%s/files/file-test", g_dir);
  CHECK_EQ_STR(str(job, "paths", "train_path"), want);
  snprintf(want, sizeof want, "%s/jobs/%s/output-1", g_dir, g_job);
  CHECK_EQ_STR(str(job, "paths", "out_dir"), want);
  snprintf(want, sizeof want, "%s/jobs/%s/checkpoints", g_dir, g_job);
  CHECK_EQ_STR(str(job, "paths", "ckpt_dir"), want);
  CHECK(json_is_null(json_object_get(json_object_get(job, "paths"), "valid_path")));
  CHECK(json_is_null(json_object_get(json_object_get(job, "paths"), "resume_from")));
  json_decref(m);
  CHECK(job_status_is(g_job, "running"));
  WAIT_FOR((pool_counts(g_pool, &conn, &busy), busy == 1), 2000);
  CHECK_EQ_INT(busy, 1);
  /* nothing more queued: a second claimer waits */
  client B;
  CHECK_EQ_INT(cli_unix(&B), 0);
  CHECK(hello(&B, "fake-b", NULL));
  cli_send(&B, json_pack("{s:s}", "type", "claim"));
  m = cli_recv(&B, 300, NULL);
  CHECK(m == NULL);
  json_decref(m);
  cli_close(&B);
}

static void test_metrics_and_checkpoint_recorded(void) {
  json_t *m = jmsg("metrics", g_job, A_attempt);
  json_object_set_new(m, "metrics",
                      json_pack("{s:i, s:i, s:i, s:i, s:f}", "step", 3, "total_steps", 10,
                                "trained_tokens", 300, "epoch", 0, "train_loss", 2.5));
  cli_send(&A, m);
  WAIT_FOR(job_int(g_job, "steps_completed") == 3, 2000);
  CHECK_EQ_INT(job_int(g_job, "steps_completed"), 3);
  CHECK_EQ_INT(job_int(g_job, "total_steps"), 10);
  CHECK_EQ_INT(job_int(g_job, "trained_tokens"), 300);

  m = jmsg("checkpoint", g_job, A_attempt);
  char path[512];
  snprintf(path, sizeof path, "%s/jobs/%s/ckpt-3", g_dir, g_job);
  json_object_set_new(m, "step", json_integer(3));
  json_object_set_new(m, "path", json_string(path));
  json_object_set_new(m, "metrics", json_pack("{s:i}", "step", 3));
  cli_send(&A, m);
  /* an event and a heartbeat are accepted silently */
  m = jmsg("event", g_job, A_attempt);
  json_object_set_new(m, "level", json_string("info"));
  json_object_set_new(m, "message", json_string("epoch 1 done"));
  cli_send(&A, m);
  cli_send(&A, jmsg("heartbeat", g_job, A_attempt));
  json_t *none = cli_recv(&A, 300, NULL);
  CHECK(none == NULL);
  json_decref(none);

  /* a message about a job this connection does not hold: lease_lost */
  client C;
  CHECK_EQ_INT(cli_unix(&C), 0);
  CHECK(hello(&C, "fake-c", NULL));
  m = jmsg("metrics", "ftjob-nope", 1);
  json_object_set_new(m, "metrics", json_pack("{s:i}", "step", 1));
  cli_send(&C, m);
  json_t *ll = cli_expect(&C, "lease_lost", 2000);
  CHECK(ll != NULL);
  CHECK_EQ_STR(str(ll, "job_id", NULL), "ftjob-nope");
  json_decref(ll);
  cli_close(&C);
}

static void test_stale_attempt_gets_lease_lost(void) {
  cli_send(&A, jmsg("heartbeat", g_job, A_attempt + 7));
  json_t *m = cli_expect(&A, "lease_lost", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "job_id", NULL), g_job);
  CHECK_EQ_INT(json_integer_value(json_object_get(m, "attempt")), A_attempt + 7);
  json_decref(m);
  /* the real lease is untouched */
  CHECK(job_status_is(g_job, "running"));
  cli_send(&A, jmsg("heartbeat", g_job, A_attempt));
  m = cli_recv(&A, 300, NULL);
  CHECK(m == NULL);
  json_decref(m);
}

static void test_pause_relayed_then_resume_from_checkpoint(void) {
  ft_error e;
  CHECK_EQ_INT(store_job_pause(g_store, g_job, NULL, &e), 0);
  pool_control(g_pool, g_job);
  json_t *m = cli_expect(&A, "pause", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "job_id", NULL), g_job);
  json_decref(m);
  m = jmsg("paused", g_job, A_attempt);
  json_object_set_new(m, "step", json_integer(3));
  cli_send(&A, m);
  WAIT_FOR(job_status_is(g_job, "paused"), 2000);
  CHECK(job_status_is(g_job, "paused"));
  /* resume: queued again; the idle worker gets it with the checkpoint */
  cli_send(&A, json_pack("{s:s}", "type", "claim"));
  CHECK_EQ_INT(store_job_resume(g_store, g_job, NULL, &e), 0);
  pool_notify(g_pool);
  m = cli_expect(&A, "job", 3000);
  CHECK(m != NULL);
  json_t *job = json_object_get(m, "job");
  A_attempt = (int)json_integer_value(json_object_get(job, "attempt"));
  CHECK_EQ_INT(A_attempt, 2);
  char want[512];
  snprintf(want, sizeof want, "%s/jobs/%s/ckpt-3", g_dir, g_job);
  CHECK_EQ_STR(str(job, "paths", "resume_from"), want);
  snprintf(want, sizeof want, "%s/jobs/%s/output-2", g_dir, g_job);
  CHECK_EQ_STR(str(job, "paths", "out_dir"), want);
  json_decref(m);
}

static client T; /* a TCP worker */

static void test_closed_connection_requeues(void) {
  /* T waits for work over TCP */
  CHECK_EQ_INT(cli_tcp(&T), 0);
  CHECK(hello(&T, "fake-tcp", "s3cret-token"));
  cli_send(&T, json_pack("{s:s}", "type", "claim"));
  /* A dies while holding attempt 2: the job is requeued at once, not after
   * the 5 s lease, and T gets attempt 3 */
  cli_close(&A);
  json_t *m = cli_expect(&T, "job", 2500);
  CHECK(m != NULL);
  json_t *job = json_object_get(m, "job");
  CHECK_EQ_STR(str(job, "id", NULL), g_job);
  CHECK_EQ_INT(json_integer_value(json_object_get(job, "attempt")), 3);
  json_decref(m);
  /* the old attempt is stale now */
  CHECK_EQ_INT(store_job_heartbeat(g_store, g_job, 2, 1000), FT_EBAD_STATE);
}

static void test_done_moves_output(void) {
  char out[512], f[600], model[600];
  snprintf(out, sizeof out, "%s/jobs/%s", g_dir, g_job);
  mkdir(out, 0755);
  snprintf(out, sizeof out, "%s/jobs/%s/output-3", g_dir, g_job);
  CHECK_EQ_INT(mkdir(out, 0755), 0);
  snprintf(f, sizeof f, "%s/config.json", out);
  FILE *fp = fopen(f, "w");
  fputs("{}", fp);
  fclose(fp);
  json_t *m = jmsg("done", g_job, 3);
  json_object_set_new(m, "result", json_pack("{s:i, s:i}", "steps", 10, "trained_tokens", 1000));
  cli_send(&T, m);
  WAIT_FOR(job_status_is(g_job, "succeeded"), 2000);
  CHECK(job_status_is(g_job, "succeeded"));
  json_t *j = job_get(g_job);
  char want[200];
  snprintf(want, sizeof want, "ft:base:ft:%s", g_job);
  CHECK_EQ_STR(str(j, "fine_tuned_model", NULL), want);
  CHECK_EQ_INT(json_integer_value(json_object_get(j, "trained_tokens")), 1000);
  json_decref(j);
  snprintf(model, sizeof model, "%s/models/%s/config.json", g_dir, want);
  struct stat sb;
  CHECK(stat(model, &sb) == 0);
  CHECK(stat(out, &sb) != 0);
  /* a second done for the same attempt is stale */
  cli_send(&T, jmsg("done", g_job, 3));
  json_t *ll = cli_expect(&T, "lease_lost", 2000);
  CHECK(ll != NULL);
  json_decref(ll);
}

static void test_cancel_relayed(void) {
  char id[64];
  insert_job("mine", id);
  cli_send(&T, json_pack("{s:s}", "type", "claim"));
  json_t *m = cli_expect(&T, "job", 3000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "job", "id"), id);
  json_decref(m);
  ft_error e;
  CHECK_EQ_INT(store_job_cancel(g_store, id, NULL, &e), 0);
  pool_control(g_pool, id);
  m = cli_expect(&T, "cancel", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "job_id", NULL), id);
  json_decref(m);
  /* the job is terminal: the worker's late event is not recorded */
  json_t *before = NULL;
  store_events_list(g_store, id, NULL, 100, &before);
  m = jmsg("event", id, 1);
  json_object_set_new(m, "message", json_string("late"));
  cli_send(&T, m);
  m = cli_expect(&T, "lease_lost", 2000);
  CHECK(m != NULL);
  json_decref(m);
  json_t *after = NULL;
  store_events_list(g_store, id, NULL, 100, &after);
  CHECK_EQ_INT(json_array_size(json_object_get(after, "data")),
               json_array_size(json_object_get(before, "data")));
  json_decref(before);
  json_decref(after);
  CHECK(job_status_is(id, "cancelled"));
  int conn = 0, busy = -1;
  WAIT_FOR((pool_counts(g_pool, &conn, &busy), busy == 0), 2000);
  CHECK_EQ_INT(busy, 0);
  cli_close(&T);
}

static void test_failed_recorded(void) {
  char id[64];
  insert_job(NULL, id);
  client c;
  CHECK_EQ_INT(cli_unix(&c), 0);
  CHECK(hello(&c, "fake-f", NULL));
  cli_send(&c, json_pack("{s:s}", "type", "claim"));
  json_t *m = cli_expect(&c, "job", 3000);
  CHECK(m != NULL);
  json_decref(m);
  m = jmsg("failed", id, 1);
  json_object_set_new(m, "error",
                      json_pack("{s:s, s:s, s:s}", "code", "invalid_training_file", "message",
                                "line 3: not JSON", "param", "training_file"));
  cli_send(&c, m);
  WAIT_FOR(job_status_is(id, "failed"), 2000);
  CHECK(job_status_is(id, "failed"));
  json_t *j = job_get(id);
  CHECK_EQ_STR(str(j, "error", "code"), "invalid_training_file");
  CHECK_EQ_STR(str(j, "error", "message"), "line 3: not JSON");
  CHECK_EQ_STR(str(j, "error", "param"), "training_file");
  json_decref(j);
  cli_close(&c);
}

static void test_tcp_token_required(void) {
  int eof = 0;
  /* wrong token */
  client c;
  CHECK_EQ_INT(cli_tcp(&c), 0);
  cli_send(&c, json_pack("{s:s, s:s, s:s}", "type", "hello", "worker_id", "x", "token", "wrong"));
  json_t *m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  CHECK_EQ_STR(str(m, "error", "code"), "invalid_api_key");
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* no token */
  CHECK_EQ_INT(cli_tcp(&c), 0);
  cli_send(&c, json_pack("{s:s, s:s}", "type", "hello", "worker_id", "x"));
  m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* claim before hello */
  CHECK_EQ_INT(cli_tcp(&c), 0);
  cli_send(&c, json_pack("{s:s}", "type", "claim"));
  m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* a prefix of the right token is wrong too */
  CHECK_EQ_INT(cli_tcp(&c), 0);
  cli_send(&c, json_pack("{s:s, s:s, s:s}", "type", "hello", "worker_id", "x", "token", "s3cret"));
  m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  json_decref(m);
  cli_close(&c);
}

static void test_garbage_closes(void) {
  int eof = 0;
  client c;
  CHECK_EQ_INT(cli_unix(&c), 0);
  cli_send_raw(&c, "\0\0\0\x05hello", 9);
  json_t *m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  CHECK_EQ_STR(str(m, "error", "code"), "protocol_error");
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* an oversized header */
  CHECK_EQ_INT(cli_unix(&c), 0);
  cli_send_raw(&c, "\x7f\xff\xff\xff", 4);
  m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* the pool still serves */
  CHECK_EQ_INT(cli_unix(&c), 0);
  CHECK(hello(&c, "after-garbage", NULL));
  cli_close(&c);
}

/* A message type the daemon does not know (or takes only from itself) is a
 * protocol error: answered with error protocol_error naming it, then the
 * connection is closed; it is never taken for another message. */
static void test_unknown_type_closes(void) {
  static const char *const types[] = {"canceled", "welcome", "lease_lost", ""};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
    int eof = 0;
    client c;
    CHECK_EQ_INT(cli_unix(&c), 0);
    CHECK(hello(&c, "speaks-another-protocol", NULL));
    cli_send(&c, json_pack("{s:s}", "type", types[i]));
    json_t *m = cli_recv(&c, 2000, NULL);
    CHECK(m && !strcmp(str(m, "type", NULL), "error"));
    CHECK_EQ_STR(str(m, "error", "code"), "protocol_error");
    CHECK(str(m, "error", "message") && strstr(str(m, "error", "message"), "unknown message type"));
    json_decref(m);
    m = cli_recv(&c, 2000, &eof);
    CHECK(m == NULL && eof);
    cli_close(&c);
  }
}

/* A unix worker that said hello and holds the next queued job (id, attempt). */
static int take_job(client *c, const char *name, const char *id, int *attempt) {
  if (cli_unix(c) || !hello(c, name, NULL)) return -1;
  cli_send(c, json_pack("{s:s}", "type", "claim"));
  json_t *m = cli_expect(c, "job", 3000);
  int ok = m && !strcmp(str(m, "job", "id"), id);
  *attempt = (int)json_integer_value(json_object_get(json_object_get(m, "job"), "attempt"));
  json_decref(m);
  return ok ? 0 : -1;
}

static int file_exists(const char *fmt, const char *a, const char *b) {
  char path[700];
  snprintf(path, sizeof path, fmt, a, b);
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Entries of dir whose names start with prefix ("": every entry not
 * starting with "."). */
static int count_entries(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    n += *prefix ? !strncmp(e->d_name, prefix, strlen(prefix)) : e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

/* The daemon died after moving an attempt's output into models/ and before
 * recording it: the retry's output replaces that leftover, and the job
 * succeeds instead of failing on ENOTEMPTY. */
static void test_done_replaces_leftover(void) {
  char id[64], dir[600];
  insert_job("again", id);
  client c;
  int attempt = 0;
  CHECK_EQ_INT(take_job(&c, "fake-l", id, &attempt), 0);
  snprintf(dir, sizeof dir, "%s/models/ft:base:again:%s", g_dir, id);
  CHECK_EQ_INT(mkdir(dir, 0755), 0);
  char f[700];
  snprintf(f, sizeof f, "%s/stale.bin", dir);
  fclose(fopen(f, "w"));
  snprintf(dir, sizeof dir, "%s/jobs/%s", g_dir, id);
  mkdir(dir, 0755);
  snprintf(dir, sizeof dir, "%s/jobs/%s/output-%d", g_dir, id, attempt);
  CHECK_EQ_INT(mkdir(dir, 0755), 0);
  snprintf(f, sizeof f, "%s/config.json", dir);
  fclose(fopen(f, "w"));
  json_t *m = jmsg("done", id, attempt);
  json_object_set_new(m, "result", json_pack("{s:i, s:i}", "steps", 4, "trained_tokens", 40));
  cli_send(&c, m);
  WAIT_FOR(!job_status_is(id, "running"), 3000);
  CHECK(job_status_is(id, "succeeded"));
  CHECK(file_exists("%s/models/ft:base:again:%s/config.json", g_dir, id));
  CHECK(!file_exists("%s/models/ft:base:again:%s/stale.bin", g_dir, id));
  char models[300];
  snprintf(models, sizeof models, "%s/models", g_dir);
  CHECK_EQ_INT(count_entries(models, ".deleting-"), 0);
  cli_close(&c);
}

/* Inserts a job, claims it, gives it an output and sends done with
 * result.result_csv = csv_fmt(data dir, job id), first writing content there
 * when content is not NULL; returns the job as stored afterwards. */
static json_t *done_with_csv(const char *suffix, const char *csv_fmt, const char *content,
                             char *id) {
  client c;
  int attempt = 0;
  char dir[600], csv[800];
  insert_job(suffix, id);
  if (take_job(&c, suffix, id, &attempt)) return NULL;
  snprintf(dir, sizeof dir, "%s/jobs/%s", g_dir, id);
  mkdir(dir, 0755);
  snprintf(dir, sizeof dir, "%s/jobs/%s/output-%d", g_dir, id, attempt);
  mkdir(dir, 0755);
  snprintf(csv, sizeof csv, "%s/config.json", dir);
  fclose(fopen(csv, "w"));
  snprintf(csv, sizeof csv, csv_fmt, g_dir, id);
  if (content) {
    FILE *fp = fopen(csv, "w");
    fputs(content, fp);
    fclose(fp);
  }
  json_t *m = jmsg("done", id, attempt);
  json_object_set_new(m, "result", json_pack("{s:i, s:i, s:s}", "steps", 2, "trained_tokens", 20,
                                             "result_csv", csv));
  cli_send(&c, m);
  WAIT_FOR(!job_status_is(id, "running"), 3000);
  cli_close(&c);
  return job_get(id);
}

/* result.result_csv becomes a "fine-tune-results" file only when it is inside
 * the job's directory: a path that climbs out of it (or is elsewhere) is
 * ignored, the job still succeeds, and nothing is copied into files/. */
static void test_result_csv_inside_job_only(void) {
  char id[64], files[300], path[800];
  snprintf(files, sizeof files, "%s/files", g_dir);
  mkdir(files, 0755);
  snprintf(path, sizeof path, "%s/secret.csv", g_dir);
  FILE *fp = fopen(path, "w");
  fputs("step,secret\n1,2\n", fp);
  fclose(fp);
  int before = count_entries(files, "");
  const char *evil[] = {"%s/jobs/%s/../../secret.csv", "%s/secret.csv%.0s", "/etc/hostname%.0s%.0s",
                        "%s/jobs/%s/"};
  for (size_t i = 0; i < sizeof evil / sizeof *evil; i++) {
    json_t *j = done_with_csv("csvevil", evil[i], NULL, id);
    CHECK(job_status_is(id, "succeeded"));
    json_t *rf = json_object_get(j, "result_files");
    CHECK(rf == NULL || json_array_size(rf) == 0);
    json_decref(j);
  }
  CHECK_EQ_INT(count_entries(files, ""), before);

  /* a CSV the worker wrote in the job's directory is registered */
  json_t *j = done_with_csv("csvgood", "%s/jobs/%s/metrics.csv", "step,train_loss\n1,2.5\n", id);
  CHECK(job_status_is(id, "succeeded"));
  json_t *rf = json_object_get(j, "result_files");
  CHECK_EQ_INT(json_array_size(rf), 1);
  const char *fid = json_string_value(json_array_get(rf, 0));
  CHECK(fid && file_exists("%s/files/%s", g_dir, fid));
  json_decref(j);
  CHECK_EQ_INT(count_entries(files, ""), before + 1);
}

/* Counts must be integers in 0..1e15: a double or an out-of-range value is
 * a protocol error (and nothing is recorded). */
static void test_counts_checked(void) {
  char id[64];
  insert_job(NULL, id);
  client c;
  int attempt = 0, eof = 0;
  CHECK_EQ_INT(take_job(&c, "fake-n1", id, &attempt), 0);
  json_t *m = jmsg("metrics", id, attempt);
  json_object_set_new(m, "metrics", json_pack("{s:f}", "step", 1e20));
  cli_send(&c, m);
  m = cli_expect(&c, "error", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "error", "code"), "protocol_error");
  CHECK_EQ_STR(str(m, "error", "param"), "step");
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  /* (the dropped connection requeued the job) */
  WAIT_FOR(job_status_is(id, "queued"), 2000);
  CHECK_EQ_INT(take_job(&c, "fake-n2", id, &attempt), 0);
  m = jmsg("metrics", id, attempt);
  json_object_set_new(m, "metrics",
                      json_pack("{s:i, s:I}", "step", 1, "trained_tokens", (json_int_t)2e15));
  cli_send(&c, m);
  m = cli_expect(&c, "error", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "error", "param"), "trained_tokens");
  json_decref(m);
  cli_close(&c);
  WAIT_FOR(job_status_is(id, "queued"), 2000);
  json_t *j = job_get(id);
  CHECK(json_integer_value(json_object_get(j, "steps_completed")) == 0);
  json_decref(j);
  ft_error e;
  CHECK_EQ_INT(store_job_cancel(g_store, id, NULL, &e), 0);
  /* a done with a negative count */
  insert_job(NULL, id);
  CHECK_EQ_INT(take_job(&c, "fake-n3", id, &attempt), 0);
  m = jmsg("done", id, attempt);
  json_object_set_new(m, "result", json_pack("{s:i}", "steps", -1));
  cli_send(&c, m);
  m = cli_expect(&c, "error", 2000);
  CHECK(m != NULL);
  CHECK_EQ_STR(str(m, "error", "param"), "steps");
  json_decref(m);
  cli_close(&c);
  WAIT_FOR(job_status_is(id, "queued"), 2000);
  CHECK(job_status_is(id, "queued"));
  CHECK_EQ_INT(store_job_cancel(g_store, id, NULL, &e), 0);
}

/* A worker cannot cancel (or pause) a running job nobody cancelled. */
static void test_worker_cannot_cancel(void) {
  char id[64];
  insert_job(NULL, id);
  client c;
  int attempt = 0;
  CHECK_EQ_INT(take_job(&c, "fake-x", id, &attempt), 0);
  cli_send(&c, jmsg("paused", id, attempt));
  json_t *m = cli_expect(&c, "lease_lost", 2000);
  CHECK(m != NULL);
  json_decref(m);
  CHECK(job_status_is(id, "running"));
  cli_close(&c);
  /* (the connection gave its lease up above; the store's word for a
   * "cancelled" of the attempt that still runs) */
  CHECK_EQ_INT(store_job_finish(g_store, id, attempt, "cancelled", NULL, NULL, NULL, NULL),
               FT_EBAD_STATE);
  CHECK(job_status_is(id, "running"));
  ft_error e;
  CHECK_EQ_INT(store_job_cancel(g_store, id, NULL, &e), 0);
}

/* Before hello a peer may send only small frames; after it, large ones. */
static void test_preauth_frame_limit(void) {
  client c;
  int eof = 0;
  CHECK_EQ_INT(cli_unix(&c), 0);
  cli_send_raw(&c, "\0\x01\0\x01", 4); /* 65537 bytes announced */
  json_t *m = cli_recv(&c, 2000, NULL);
  CHECK(m && !strcmp(str(m, "type", NULL), "error"));
  CHECK_EQ_STR(str(m, "error", "code"), "protocol_error");
  json_decref(m);
  m = cli_recv(&c, 2000, &eof);
  CHECK(m == NULL && eof);
  cli_close(&c);
  CHECK_EQ_INT(cli_unix(&c), 0);
  CHECK(hello(&c, "fake-big", NULL));
  char *pad = malloc(100001);
  memset(pad, 'x', 100000);
  pad[100000] = 0;
  /* (a job message about no job of ours: answered lease_lost, not refused) */
  cli_send(&c, json_pack("{s:s, s:s, s:i, s:s}", "type", "event", "job_id", "ftjob-nope",
                         "attempt", 1, "message", pad));
  free(pad);
  m = jmsg("heartbeat", "ftjob-nope", 1);
  cli_send(&c, m);
  m = cli_expect(&c, "lease_lost", 2000);
  CHECK(m != NULL);
  json_decref(m);
  cli_close(&c);
}

/* Worker connections are capped: past 256 a new one is closed at once. */
static void test_connection_cap(void) {
  enum { N = 300 };
  static client cs[N];
  int opened = 0;
  for (int i = 0; i < N; i++) opened += cli_unix(&cs[i]) == 0;
  CHECK_EQ_INT(opened, N);
  sleep_ms(500);
  int eofs = 0;
  for (int i = 0; i < N; i++) {
    struct pollfd pf = {.fd = cs[i].fd, .events = POLLIN};
    char b[64];
    if (poll(&pf, 1, 0) == 1 && read(cs[i].fd, b, sizeof b) == 0) eofs++;
  }
  CHECK(eofs >= N - 256 && eofs <= N - 250);
  for (int i = 0; i < N; i++) cli_close(&cs[i]);
  sleep_ms(300);
  client c;
  CHECK_EQ_INT(cli_unix(&c), 0);
  CHECK(hello(&c, "after-cap", NULL));
  cli_close(&c);
}

/* At start, ft:*:<job> dirs of jobs that did not succeed (and half-removed
 * .deleting-* dirs) are removed; other models are kept. */
static void test_clean_models_at_start(void) {
  char dir[300], models[320], id[64];
  snprintf(dir, sizeof dir, "%s/clean", g_dir);
  snprintf(models, sizeof models, "%s/models", dir);
  mkdir(dir, 0700);
  mkdir(models, 0755);
  insert_job(NULL, id); /* queued: never succeeded */
  char p1[700], p2[700], p3[700], p4[700];
  snprintf(p1, sizeof p1, "%s/ft:base:ft:%s", models, id);
  snprintf(p2, sizeof p2, "%s/ft:base:ft:%s", models, g_job); /* succeeded */
  snprintf(p3, sizeof p3, "%s/.deleting-000000000000000000000000", models);
  snprintf(p4, sizeof p4, "%s/tiny", models);
  CHECK_EQ_INT(mkdir(p1, 0755), 0);
  CHECK_EQ_INT(mkdir(p2, 0755), 0);
  CHECK_EQ_INT(mkdir(p3, 0755), 0);
  CHECK_EQ_INT(mkdir(p4, 0755), 0);
  char f[800];
  snprintf(f, sizeof f, "%s/model.safetensors", p1);
  fclose(fopen(f, "w"));
  snprintf(f, sizeof f, "%s/x", p3);
  fclose(fopen(f, "w"));
  pool_opts o = {.data_dir = dir, .lease_ms = 5000, .heartbeat_ms = 500, .max_attempts = 3};
  pool *p = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(pool_start(&p, g_store, &o, &e), 0);
  pool_stop(p);
  struct stat sb;
  CHECK(stat(p1, &sb) != 0);
  CHECK(stat(p2, &sb) == 0);
  CHECK(stat(p3, &sb) != 0);
  CHECK(stat(p4, &sb) == 0);
  CHECK_EQ_INT(count_entries(models, ".deleting-"), 0);
  CHECK_EQ_INT(store_job_cancel(g_store, id, NULL, &e), 0);
}

/* Local workers: a fake "worker" script that logs each start and exits is
 * restarted with back-off; one that sleeps is stopped by SIGTERM at pool_stop. */
static int count_lines(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int n = 0, ch;
  while ((ch = fgetc(f)) != EOF) n += ch == '\n';
  fclose(f);
  return n;
}

static void test_local_workers_supervised(void) {
  char dir[300], script[400], log[400];
  snprintf(dir, sizeof dir, "%s/local", g_dir);
  mkdir(dir, 0700);
  snprintf(script, sizeof script, "%s/fake-worker.sh", dir);
  snprintf(log, sizeof log, "%s/starts.log", dir);
  FILE *f = fopen(script, "w");
  /* args must be: --connect unix:DIR/worker.sock ... */
  fprintf(f,
          "#!/bin/sh\necho \"$1 $2\" >> %s\nif [ -e %s/sleep ]; then exec sleep 100; fi\nexit 3\n",
          log, dir);
  fclose(f);
  chmod(script, 0755);
  pool_opts o = {.data_dir = dir,
                 .worker_exe = script,
                 .n_workers = 1,
                 .lease_ms = 5000,
                 .heartbeat_ms = 500,
                 .max_attempts = 3};
  pool *p = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(pool_start(&p, g_store, &o, &e), 0);
  /* starts at 0, +0.5 s, +1 s, +2 s: three starts in about 2 s */
  sleep_ms(2200);
  int n = count_lines(log);
  CHECK(n >= 3 && n <= 4);
  FILE *lf = fopen(log, "r");
  char line[512] = "";
  if (lf) {
    if (!fgets(line, sizeof line, lf)) line[0] = 0;
    fclose(lf);
  }
  char want[512];
  snprintf(want, sizeof want, "--connect unix:%s/worker.sock\n", dir);
  CHECK_EQ_STR(line, want);
  pool_stop(p);
  /* a worker that keeps running is sent SIGTERM at stop */
  snprintf(line, sizeof line, "%s/sleep", dir);
  fclose(fopen(line, "w"));
  int before = count_lines(log);
  CHECK_EQ_INT(pool_start(&p, g_store, &o, &e), 0);
  WAIT_FOR(count_lines(log) > before, 2000);
  sleep_ms(100);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pool_stop(p);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  CHECK(secs < 3.0);
  /* the socket is gone after stop */
  snprintf(line, sizeof line, "%s/worker.sock", dir);
  struct stat sb;
  CHECK(stat(line, &sb) != 0);
}

static void test_start_errors(void) {
  pool *p = NULL;
  ft_error e = {0};
  pool_opts o = {.data_dir = g_dir, .worker_listen = "127.0.0.1:1"};
  CHECK_EQ_INT(pool_start(&p, g_store, &o, &e), FT_EINVALID); /* TCP without a token */
  CHECK_EQ_STR(e.param, "worker_token");
  CHECK(p == NULL);
  pool_opts rel = {.data_dir = "relative/dir"};
  CHECK_EQ_INT(pool_start(&p, g_store, &rel, &e), FT_EINVALID);
  char longdir[200];
  memset(longdir, 'a', sizeof longdir - 1);
  longdir[0] = '/';
  longdir[sizeof longdir - 1] = 0;
  pool_opts lng = {.data_dir = longdir};
  CHECK_EQ_INT(pool_start(&p, g_store, &lng, &e), FT_EINVALID);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ftpool.XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  char db[300];
  snprintf(db, sizeof db, "%s/finetuned.db", g_dir);
  ft_error e = {0};
  if (store_open(&g_store, db, &e)) {
    fprintf(stderr, "store_open: %s\n", e.message);
    return 1;
  }
  store_file_insert(g_store, "file-test", 10, "train.jsonl", "fine-tune", NULL);
  g_port = free_port();
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", g_port);
  pool_opts o = {.data_dir = g_dir,
                 .n_workers = 0,
                 .worker_listen = listen,
                 .worker_token = "s3cret-token",
                 .lease_ms = 5000,
                 .heartbeat_ms = 500,
                 .max_attempts = 3};
  if (pool_start(&g_pool, g_store, &o, &e)) {
    fprintf(stderr, "pool_start: %s\n", e.message);
    return 1;
  }
  RUN(test_socket_mode);
  RUN(test_claim_gets_job);
  RUN(test_metrics_and_checkpoint_recorded);
  RUN(test_stale_attempt_gets_lease_lost);
  RUN(test_pause_relayed_then_resume_from_checkpoint);
  RUN(test_closed_connection_requeues);
  RUN(test_done_moves_output);
  RUN(test_cancel_relayed);
  RUN(test_failed_recorded);
  RUN(test_tcp_token_required);
  RUN(test_garbage_closes);
  RUN(test_unknown_type_closes);
  RUN(test_done_replaces_leftover);
  RUN(test_result_csv_inside_job_only);
  RUN(test_counts_checked);
  RUN(test_worker_cannot_cancel);
  RUN(test_preauth_frame_limit);
  RUN(test_connection_cap);
  pool_stop(g_pool);
  RUN(test_clean_models_at_start);
  RUN(test_local_workers_supervised);
  RUN(test_start_errors);
  store_close(g_store);
  int rc = test_report();
  if (rc == 0) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) {
    }
  }
  return rc;
}
