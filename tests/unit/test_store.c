/* The store against a real SQLite file in a temp dir: migrations, file rows,
 * the job state machine (claim order, stale attempts, lease expiry, pause,
 * terminal states that never change), event order and waiting, the
 * validating_files phase and the fields of trustworthy training. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "test.h"

static char dir[] = "/tmp/ft-test-store.XXXXXX";
static char db_path[256];

static store *open_fresh(void) {
  static int n;
  snprintf(db_path, sizeof db_path, "%s/db%d.sqlite", dir, n++);
  store *s = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_open(&s, db_path, &err), 0);
  return s;
}

static const char *jstr(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}
static long long jint(const json_t *o, const char *k) {
  return (long long)json_integer_value(json_object_get(o, k));
}

static void add_file(store *s, char *id, size_t n) {
  store_new_id("file", id, n);
  CHECK_EQ_INT(store_file_insert(s, id, 10, "train.jsonl", "fine-tune", NULL), 0);
}

/* A queued job on a new file; id into buf. */
static void add_job(store *s, char *buf, size_t n) {
  char fid[64];
  add_file(s, fid, sizeof fid);
  json_t *spec = json_pack("{s:s, s:{s:s, s:{s:{s:i}}}}", "model", "tiny", "method", "type",
                           "supervised", "supervised", "hyperparameters", "n_epochs", 2);
  store_job_new j = {.model = "tiny", .training_file = fid, .seed = 7, .spec = spec, .queued = 1};
  json_t *job = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), 0);
  snprintf(buf, n, "%s", job ? jstr(job, "id") : "");
  json_decref(job);
  json_decref(spec);
}

static void status_is(store *s, const char *id, const char *want) {
  char st[24];
  CHECK_EQ_INT(store_job_status(s, id, st, sizeof st), 0);
  CHECK_EQ_STR(st, want);
}

static void test_migrations_idempotent(void) {
  store *s = open_fresh();
  char fid[64];
  add_file(s, fid, sizeof fid);
  store_close(s);
  ft_error err = {0};
  for (int i = 0; i < 2; i++) { /* reopening applies nothing twice, loses nothing */
    CHECK_EQ_INT(store_open(&s, db_path, &err), 0);
    json_t *f = NULL;
    CHECK_EQ_INT(store_file_get(s, fid, &f), 0);
    CHECK_EQ_STR(jstr(f, "object"), "file");
    json_decref(f);
    store_close(s);
  }
  CHECK(store_open(&s, "/nonexistent-dir/x/db", &err) == FT_EDB);
  CHECK(s == NULL);
}

static void test_file_rows(void) {
  store *s = open_fresh();
  char ids[3][64];
  for (int i = 0; i < 3; i++) add_file(s, ids[i], sizeof ids[i]);
  json_t *list = NULL;
  CHECK_EQ_INT(store_file_list(s, NULL, 2, &list), 0);
  json_t *data = json_object_get(list, "data");
  CHECK_EQ_INT(json_array_size(data), 2);
  CHECK(json_is_true(json_object_get(list, "has_more")));
  CHECK_EQ_STR(jstr(json_array_get(data, 0), "id"), ids[2]); /* newest first */
  CHECK_EQ_STR(jstr(json_array_get(data, 1), "id"), ids[1]);
  json_decref(list);
  CHECK_EQ_INT(store_file_list(s, ids[1], 2, &list), 0);
  data = json_object_get(list, "data");
  CHECK_EQ_INT(json_array_size(data), 1);
  CHECK_EQ_STR(jstr(json_array_get(data, 0), "id"), ids[0]);
  CHECK(json_is_false(json_object_get(list, "has_more")));
  json_decref(list);
  CHECK_EQ_INT(store_file_list(s, "file-nope", 2, &list), FT_ENOT_FOUND);

  json_t *f = NULL;
  CHECK_EQ_INT(store_file_get(s, ids[0], &f), 0);
  CHECK_EQ_INT(jint(f, "bytes"), 10);
  CHECK_EQ_STR(jstr(f, "status"), "processed");
  CHECK_EQ_STR(jstr(f, "purpose"), "fine-tune");
  json_decref(f);
  ft_error err = {0};
  CHECK_EQ_INT(store_file_delete(s, ids[0], &err), 0);
  CHECK_EQ_INT(store_file_get(s, ids[0], &f), FT_ENOT_FOUND);
  CHECK_EQ_INT(store_file_delete(s, ids[0], &err), FT_ENOT_FOUND);
  store_close(s);
}

static void test_job_insert_checks_files(void) {
  store *s = open_fresh();
  json_t *spec = json_object();
  store_job_new j = {
      .model = "tiny", .training_file = "file-000000000000000000000000", .spec = spec};
  json_t *job = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), FT_EINVALID);
  CHECK_EQ_STR(err.param, "training_file");
  CHECK(job == NULL);
  char fid[64];
  add_file(s, fid, sizeof fid);
  j.training_file = fid;
  j.validation_file = "file-111111111111111111111111";
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), FT_EINVALID);
  CHECK_EQ_STR(err.param, "validation_file");
  j.validation_file = NULL;
  json_t *meta = json_pack("{s:s}", "team", "a");
  j.metadata = meta;
  CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), 0);
  CHECK_EQ_STR(jstr(job, "object"), "fine_tuning.job");
  CHECK_EQ_STR(jstr(job, "status"), "validating_files");
  CHECK_EQ_STR(jstr(json_object_get(job, "metadata"), "team"), "a");
  CHECK(json_is_null(json_object_get(job, "error")));
  CHECK(json_is_array(json_object_get(job, "result_files")));
  /* a file in use by an unfinished job cannot be deleted */
  CHECK_EQ_INT(store_file_delete(s, fid, &err), FT_EBAD_STATE);
  json_decref(job);
  json_decref(meta);
  json_decref(spec);
  store_close(s);
}

static void test_claim_order(void) {
  store *s = open_fresh();
  char a[64], b[64];
  add_job(s, a, sizeof a);
  add_job(s, b, sizeof b);
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  CHECK_EQ_STR(jstr(job, "id"), a);
  CHECK_EQ_INT(jint(job, "attempt"), 1);
  CHECK_EQ_STR(jstr(job, "status"), "running");
  CHECK(json_is_object(json_object_get(job, "spec")));
  CHECK(json_is_null(json_object_get(job, "resume_from")));
  json_decref(job);
  CHECK_EQ_INT(store_job_claim(s, "w2", 30000, &job), 0);
  CHECK_EQ_STR(jstr(job, "id"), b);
  json_decref(job);
  CHECK_EQ_INT(store_job_claim(s, "w3", 30000, &job), 0);
  CHECK(job == NULL);
  store_close(s);
}

static void test_terminal_never_changes(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  json_decref(job);
  json_t *result = json_pack("{s:i, s:i}", "trained_tokens", 1234, "steps", 10);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "succeeded", NULL, "ft:tiny::x", "/m", result), 0);
  json_decref(result);
  status_is(s, a, "succeeded");
  ft_error err = {0};
  CHECK_EQ_INT(store_job_cancel(s, a, NULL, &err), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_pause(s, a, NULL, &err), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_resume(s, a, NULL, &err), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "failed", NULL, NULL, NULL, NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_heartbeat(s, a, 1, 30000), FT_EBAD_STATE);
  json_t *m = json_pack("{s:i}", "step", 3);
  CHECK_EQ_INT(store_job_metrics(s, a, 1, m, 30000), FT_EBAD_STATE);
  json_decref(m);
  int n = -1;
  CHECK_EQ_INT(store_jobs_expire(s, 3, &n), 0);
  CHECK_EQ_INT(n, 0);
  status_is(s, a, "succeeded");
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK_EQ_STR(jstr(job, "fine_tuned_model"), "ft:tiny::x");
  CHECK_EQ_INT(jint(job, "trained_tokens"), 1234);
  CHECK(jint(job, "finished_at") > 0);
  json_decref(job);
  /* a cancelled job stays cancelled, whatever its worker says */
  char b[64];
  add_job(s, b, sizeof b);
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  json_decref(job);
  CHECK_EQ_INT(store_job_cancel(s, b, &job, &err), 0);
  CHECK_EQ_STR(jstr(job, "status"), "cancelled");
  json_decref(job);
  int what = -1;
  CHECK_EQ_INT(store_job_control(s, b, 1, &what), 0);
  CHECK_EQ_INT(what, 1);
  CHECK_EQ_INT(store_job_finish(s, b, 1, "succeeded", NULL, "ft:x", "/m", NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_cancel(s, b, NULL, &err), FT_EBAD_STATE);
  status_is(s, b, "cancelled");
  store_close(s);
}

static void test_stale_attempt_refused(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_claim(s, "w1", -1000, &job), 0); /* lease already over */
  json_decref(job);
  int n = 0;
  CHECK_EQ_INT(store_jobs_expire(s, 3, &n), 0);
  CHECK_EQ_INT(n, 1);
  status_is(s, a, "queued");
  CHECK_EQ_INT(store_job_claim(s, "w2", 30000, &job), 0);
  CHECK_EQ_INT(jint(job, "attempt"), 2);
  json_decref(job);
  CHECK_EQ_INT(store_job_heartbeat(s, a, 1, 30000), FT_EBAD_STATE);
  json_t *m = json_pack("{s:i, s:i, s:i}", "step", 4, "total_steps", 20, "trained_tokens", 99);
  CHECK_EQ_INT(store_job_metrics(s, a, 1, m, 30000), FT_EBAD_STATE);
  CHECK_EQ_INT(store_checkpoint_add(s, a, 1, 4, "/ck", m), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "succeeded", NULL, "ft:x", "/m", NULL), FT_EBAD_STATE);
  int what = 0;
  CHECK_EQ_INT(store_job_control(s, a, 1, &what), FT_EBAD_STATE);
  CHECK_EQ_INT(what, 1);
  /* the current attempt is heard */
  CHECK_EQ_INT(store_job_heartbeat(s, a, 2, 30000), 0);
  CHECK_EQ_INT(store_job_metrics(s, a, 2, m, 30000), 0);
  CHECK_EQ_INT(store_job_control(s, a, 2, &what), 0);
  CHECK_EQ_INT(what, 0);
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK_EQ_INT(jint(job, "steps_completed"), 4);
  CHECK_EQ_INT(jint(job, "total_steps"), 20);
  CHECK_EQ_INT(jint(job, "trained_tokens"), 99);
  json_decref(job);
  CHECK_EQ_INT(store_checkpoint_add(s, a, 2, 4, "/ck/ckpt-4", m), 0);
  json_decref(m);
  json_t *list = NULL;
  CHECK_EQ_INT(store_checkpoints_list(s, a, NULL, 10, &list), 0);
  json_t *ck = json_array_get(json_object_get(list, "data"), 0);
  CHECK_EQ_INT(jint(ck, "step_number"), 4);
  CHECK_EQ_STR(jstr(ck, "object"), "fine_tuning.job.checkpoint");
  CHECK_EQ_STR(jstr(ck, "fine_tuning_job_id"), a);
  json_decref(list);
  /* lose this worker too: the next claim resumes from the checkpoint */
  store_close(s);
  ft_error err = {0};
  CHECK_EQ_INT(store_open(&s, db_path, &err), 0);
  CHECK_EQ_INT(store_job_pause(s, a, NULL, &err), 0);
  CHECK_EQ_INT(store_job_finish(s, a, 2, "paused", NULL, NULL, NULL, NULL), 0);
  CHECK_EQ_INT(store_job_resume(s, a, NULL, &err), 0);
  CHECK_EQ_INT(store_job_claim(s, "w3", 30000, &job), 0);
  CHECK_EQ_INT(jint(job, "attempt"), 3);
  CHECK_EQ_STR(jstr(job, "resume_from"), "/ck/ckpt-4");
  json_decref(job);
  store_close(s);
}

static void test_lease_expiry_fails_after_max(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  for (int attempt = 1; attempt <= 3; attempt++) {
    json_t *job = NULL;
    CHECK_EQ_INT(store_job_claim(s, "w", -1, &job), 0);
    CHECK_EQ_INT(jint(job, "attempt"), attempt);
    json_decref(job);
    usleep(2000);
    int n = 0;
    CHECK_EQ_INT(store_jobs_expire(s, 3, &n), 0);
    CHECK_EQ_INT(n, 1);
    status_is(s, a, attempt < 3 ? "queued" : "failed");
  }
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK_EQ_STR(jstr(json_object_get(job, "error"), "code"), "worker_lost");
  json_decref(job);
  CHECK_EQ_INT(store_job_claim(s, "w", 30000, &job), 0);
  CHECK(job == NULL);
  store_close(s);
}

/* Attempts that ended in a pause are not lost attempts: a job paused and
 * resumed three times still survives one lost worker. */
static void test_pauses_do_not_count_as_lost(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  ft_error err = {0};
  json_t *job = NULL;
  for (int i = 1; i <= 3; i++) {
    CHECK_EQ_INT(store_job_claim(s, "w", 30000, &job), 0);
    json_decref(job);
    CHECK_EQ_INT(store_job_pause(s, a, NULL, &err), 0);
    CHECK_EQ_INT(store_job_finish(s, a, i, "paused", NULL, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(store_job_resume(s, a, NULL, &err), 0);
  }
  CHECK_EQ_INT(store_job_claim(s, "w", -1, &job), 0);
  CHECK_EQ_INT(jint(job, "attempt"), 4);
  json_decref(job);
  int n = 0;
  CHECK_EQ_INT(store_jobs_expire(s, 3, &n), 0);
  CHECK_EQ_INT(n, 1);
  status_is(s, a, "queued");
  store_close(s);
}

static void test_pause_paths(void) {
  store *s = open_fresh();
  char a[64], b[64];
  add_job(s, a, sizeof a);
  add_job(s, b, sizeof b);
  ft_error err = {0};
  json_t *job = NULL;
  /* queued -> paused -> queued */
  CHECK_EQ_INT(store_job_pause(s, b, &job, &err), 0);
  CHECK_EQ_STR(jstr(job, "status"), "paused");
  json_decref(job);
  CHECK_EQ_INT(store_job_pause(s, b, NULL, &err), FT_EBAD_STATE);
  /* running -> pausing; its lease runs out -> paused */
  CHECK_EQ_INT(store_job_claim(s, "w", -1, &job), 0);
  CHECK_EQ_STR(jstr(job, "id"), a);
  json_decref(job);
  CHECK_EQ_INT(store_job_pause(s, a, NULL, &err), 0);
  status_is(s, a, "pausing");
  int what = 0;
  CHECK_EQ_INT(store_job_control(s, a, 1, &what), 0);
  CHECK_EQ_INT(what, 2);
  int n = 0;
  CHECK_EQ_INT(store_jobs_expire(s, 1, &n), 0); /* even at max attempts: paused, not failed */
  CHECK_EQ_INT(n, 1);
  status_is(s, a, "paused");
  CHECK_EQ_INT(store_job_resume(s, a, NULL, &err), 0);
  status_is(s, a, "queued");
  CHECK_EQ_INT(store_job_resume(s, a, NULL, &err), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_resume(s, b, NULL, &err), 0);
  CHECK_EQ_INT(store_job_cancel(s, "ftjob-000000000000000000000000", NULL, &err), FT_ENOT_FOUND);
  store_close(s);
}

static void test_events_order(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a); /* "Job created" is event 1 */
  for (int i = 0; i < 5; i++) {
    json_t *d = json_pack("{s:i}", "i", i);
    char msg[16];
    snprintf(msg, sizeof msg, "m%d", i);
    CHECK_EQ_INT(store_event_append(s, a, "info", "message", msg, d, NULL), 0);
    json_decref(d);
  }
  CHECK_EQ_INT(store_event_append(s, "ftjob-nope", "info", "message", "x", NULL, NULL),
               FT_ENOT_FOUND);
  json_t *evs = NULL;
  char status[24];
  CHECK_EQ_INT(store_events_since(s, a, 0, 100, &evs, status, sizeof status), 0);
  CHECK_EQ_STR(status, "queued");
  CHECK_EQ_INT(json_array_size(evs), 6);
  long long prev = 0;
  size_t i;
  json_t *it;
  json_array_foreach(evs, i, it) {
    long long seq = jint(it, "seq");
    CHECK(seq > prev);
    prev = seq;
  }
  CHECK_EQ_STR(jstr(json_object_get(json_array_get(evs, 1), "event"), "message"), "m0");
  long long third = jint(json_array_get(evs, 2), "seq");
  json_decref(evs);
  CHECK_EQ_INT(store_events_since(s, a, third, 100, &evs, status, sizeof status), 0);
  CHECK_EQ_INT(json_array_size(evs), 3);
  json_decref(evs);

  json_t *list = NULL;
  CHECK_EQ_INT(store_events_list(s, a, NULL, 2, &list), 0);
  json_t *data = json_object_get(list, "data");
  CHECK_EQ_STR(jstr(json_array_get(data, 0), "message"), "m4"); /* newest first */
  CHECK_EQ_STR(jstr(json_array_get(data, 0), "object"), "fine_tuning.job.event");
  CHECK_EQ_INT(jint(json_object_get(json_array_get(data, 0), "data"), "i"), 4);
  CHECK(json_is_true(json_object_get(list, "has_more")));
  char after[64];
  snprintf(after, sizeof after, "%s", jstr(json_array_get(data, 1), "id"));
  json_decref(list);
  CHECK_EQ_INT(store_events_list(s, a, after, 100, &list), 0);
  data = json_object_get(list, "data");
  CHECK_EQ_INT(json_array_size(data), 4);
  CHECK_EQ_STR(jstr(json_array_get(data, 3), "message"), "Job created");
  json_decref(list);
  CHECK_EQ_INT(store_events_list(s, "ftjob-nope", NULL, 10, &list), FT_ENOT_FOUND);
  store_close(s);
}

typedef struct {
  store *s;
  const char *id;
} waker_arg;

static void *waker(void *p) {
  waker_arg *a = p;
  usleep(100 * 1000);
  store_event_append(a->s, a->id, "info", "message", "wake", NULL, NULL);
  return NULL;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_events_wait(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *evs = NULL;
  char status[24];
  CHECK_EQ_INT(store_events_since(s, a, 0, 100, &evs, status, sizeof status), 0);
  long long last = jint(json_array_get(evs, json_array_size(evs) - 1), "seq");
  json_decref(evs);
  double t0 = now_s();
  store_events_wait(s, a, last, 200); /* nothing new: the timeout */
  double waited = now_s() - t0;
  CHECK(waited >= 0.15 && waited < 2.0);
  pthread_t th;
  waker_arg arg = {s, a};
  pthread_create(&th, NULL, waker, &arg);
  t0 = now_s();
  store_events_wait(s, a, last, 5000); /* woken by the append */
  waited = now_s() - t0;
  pthread_join(th, NULL);
  CHECK(waited >= 0.05 && waited < 2.0);
  /* a terminal job does not wait at all */
  ft_error err = {0};
  CHECK_EQ_INT(store_job_cancel(s, a, NULL, &err), 0);
  t0 = now_s();
  store_events_wait(s, a, 1 << 30, 5000);
  CHECK(now_s() - t0 < 1.0);
  store_close(s);
}

static int64_t count_events(store *s, const char *job) {
  json_t *list = NULL;
  store_events_list(s, job, NULL, 100, &list);
  int64_t n = (int64_t)json_array_size(json_object_get(list, "data"));
  json_decref(list);
  return n;
}

/* What a worker reports is heard only from the current attempt of a job
 * that is running (or pausing), and a worker cannot pause or cancel a job on
 * its own. */
static void test_worker_reports_checked(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *job = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  json_decref(job);
  CHECK_EQ_INT(store_job_event(s, a, 1, "info", "hello", NULL), 0);
  int64_t n0 = count_events(s, a);
  CHECK_EQ_INT(store_job_event(s, a, 2, "info", "stale", NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_event(s, "ftjob-nope", 1, "info", "x", NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(count_events(s, a), n0);
  /* nobody cancelled or paused it: the worker's word does not */
  CHECK_EQ_INT(store_job_finish(s, a, 1, "cancelled", NULL, NULL, NULL, NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "paused", NULL, NULL, NULL, NULL), FT_EBAD_STATE);
  status_is(s, a, "running");
  /* counts are integers; a double is not converted */
  json_t *m = json_pack("{s:f}", "step", 3.0);
  CHECK_EQ_INT(store_job_metrics(s, a, 1, m, 30000), FT_EINVALID);
  json_decref(m);
  m = json_pack("{s:i, s:f, s:f}", "step", 5, "trained_tokens", 1e300, "total_steps", -1e300);
  CHECK_EQ_INT(store_job_metrics(s, a, 1, m, 30000), 0);
  json_decref(m);
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK_EQ_INT(jint(job, "steps_completed"), 5);
  CHECK(json_is_null(json_object_get(job, "total_steps")) || jint(job, "total_steps") == 0);
  CHECK(jint(job, "trained_tokens") == 0 || json_is_null(json_object_get(job, "trained_tokens")));
  json_decref(job);
  /* the user cancels: the worker's "cancelled" is an acknowledgement only */
  CHECK_EQ_INT(store_job_cancel(s, a, NULL, &err), 0);
  int64_t n1 = count_events(s, a);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "cancelled", NULL, NULL, NULL, NULL), 0);
  CHECK_EQ_INT(store_job_finish(s, a, 2, "cancelled", NULL, NULL, NULL, NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(count_events(s, a), n1);
  status_is(s, a, "cancelled");
  /* and its events are no longer recorded */
  CHECK_EQ_INT(store_job_event(s, a, 1, "info", "late", NULL), FT_EBAD_STATE);
  CHECK_EQ_INT(count_events(s, a), n1);
  store_close(s);
}

/* validating_files: jobs are found in creation order (again after a
 * restart), then queued with their datasets or failed with the file error;
 * a cancel meanwhile wins. */
static void test_validating_files(void) {
  store *s = open_fresh();
  char fid[64];
  add_file(s, fid, sizeof fid);
  json_t *spec = json_object();
  store_job_new j = {.model = "tiny", .training_file = fid, .seed = 1, .spec = spec};
  json_t *job = NULL;
  ft_error err = {0};
  char ids[3][64];
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(store_job_insert(s, &j, &job, &err), 0);
    CHECK_EQ_STR(jstr(job, "status"), "validating_files");
    CHECK(json_is_null(json_object_get(job, "datasets")));
    snprintf(ids[i], 64, "%s", jstr(job, "id"));
    json_decref(job);
  }
  /* nothing is claimable while validating */
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  CHECK(job == NULL);
  int64_t after = 0;
  char id[64];
  CHECK_EQ_INT(store_job_next_validating(s, &after, id, sizeof id, 10), 0);
  CHECK_EQ_STR(id, ids[0]);
  json_t *ds = json_pack("{s:{s:i}, s:n, s:n}", "training", "examples", 40, "validation", "test");
  CHECK_EQ_INT(store_job_validated(s, id, ds), 0);
  CHECK_EQ_INT(store_job_validated(s, id, ds), FT_EBAD_STATE);
  CHECK_EQ_INT(store_job_get(s, id, &job), 0);
  CHECK_EQ_STR(jstr(job, "status"), "queued");
  CHECK_EQ_INT(jint(json_object_get(json_object_get(job, "datasets"), "training"), "examples"), 40);
  json_decref(job);
  CHECK_EQ_INT(store_job_next_validating(s, &after, id, sizeof id, 10), 0);
  CHECK_EQ_STR(id, ids[1]);
  ft_error_set(&err, FT_ETRAIN_FILE, "training_file", "line 3: too few examples");
  CHECK_EQ_INT(store_job_invalid(s, id, &err), 0);
  CHECK_EQ_INT(store_job_get(s, id, &job), 0);
  CHECK_EQ_STR(jstr(job, "status"), "failed");
  json_t *e = json_object_get(job, "error");
  CHECK_EQ_STR(jstr(e, "code"), "invalid_training_file");
  CHECK_EQ_STR(jstr(e, "param"), "training_file");
  CHECK_EQ_STR(jstr(e, "message"), "line 3: too few examples");
  CHECK(jint(job, "finished_at") > 0);
  json_decref(job);
  /* cancelled while validating: the cancel wins; a restart (after = 0) finds none */
  CHECK_EQ_INT(store_job_cancel(s, ids[2], NULL, &err), 0);
  after = 0;
  CHECK_EQ_INT(store_job_next_validating(s, &after, id, sizeof id, 10), FT_ENOT_FOUND);
  CHECK_EQ_INT(store_job_validated(s, ids[2], ds), FT_EBAD_STATE);
  status_is(s, ids[2], "cancelled");
  /* only the validated one is claimable */
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  CHECK_EQ_STR(jstr(job, "id"), ids[0]);
  json_decref(job);
  /* a stopping store answers at once */
  store_wake_all(s);
  CHECK_EQ_INT(store_job_next_validating(s, &after, id, sizeof id, 5000), FT_ECANCELLED);
  json_decref(ds);
  json_decref(spec);
  store_close(s);
}

/* The latest metrics, the result's fields, pruned checkpoints and the
 * checkpoint lookup behind checkpoint model ids. */
static void test_trust_fields(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_claim(s, "w1", 30000, &job), 0);
  CHECK(json_is_null(json_object_get(job, "metrics")));
  CHECK(json_is_null(json_object_get(job, "estimated_finish")));
  json_decref(job);
  for (int step = 1; step <= 4; step++) {
    json_t *m = json_pack("{s:i, s:i, s:f, s:i}", "step", step, "total_steps", 10, "train_loss",
                          2.0 / step, "epochs_completed", step / 2);
    CHECK_EQ_INT(store_job_metrics(s, a, 1, m, 30000), 0);
    json_decref(m);
    json_t *kept = json_pack("[i, i]", step - 1, step);
    char path[64];
    snprintf(path, sizeof path, "/x/ckpt-%d", step);
    CHECK_EQ_INT(store_checkpoint_add(s, a, 1, step, path, NULL), 0);
    CHECK_EQ_INT(store_checkpoints_prune(s, a, kept), 0);
    json_decref(kept);
    usleep(20000);
  }
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK_EQ_INT(jint(json_object_get(job, "metrics"), "step"), 4);
  CHECK_EQ_INT(jint(job, "epochs_completed"), 2);
  CHECK(json_is_integer(json_object_get(job, "estimated_finish")));
  CHECK(jint(job, "estimated_finish") >= (long long)store_now() - 1);
  CHECK(json_is_false(json_object_get(job, "early_stopped")));
  json_decref(job);
  json_t *list = NULL;
  CHECK_EQ_INT(store_checkpoints_list(s, a, NULL, 10, &list), 0);
  json_t *data = json_object_get(list, "data");
  CHECK_EQ_INT((int)json_array_size(data), 2);
  json_t *c0 = json_array_get(data, 0);
  CHECK_EQ_INT(jint(c0, "step_number"), 4);
  char want[200];
  snprintf(want, sizeof want, "ft:tiny:ft:%s:ckpt-step-4", a);
  CHECK_EQ_STR(jstr(c0, "fine_tuned_model_checkpoint"), want);
  json_decref(list);
  json_t *ck = NULL;
  CHECK_EQ_INT(store_checkpoint_find(s, a, 3, &ck), 0);
  CHECK_EQ_STR(jstr(ck, "path"), "/x/ckpt-3");
  CHECK_EQ_STR(jstr(ck, "model"), "tiny");
  CHECK(json_is_object(json_object_get(ck, "spec")));
  json_decref(ck);
  CHECK_EQ_INT(store_checkpoint_find(s, a, 1, &ck), FT_ENOT_FOUND);
  json_t *res = json_pack("{s:i, s:b, s:i, s:f, s:{s:f}, s:[s], s:i}", "steps", 4, "early_stopped",
                          1, "best_step", 2, "best_metric", 0.5, "test_metrics", "test_loss", 0.7,
                          "result_files", "file-abc", "epochs_completed", 3);
  CHECK_EQ_INT(store_job_finish(s, a, 1, "succeeded", NULL, "ft:x", "/m", res), 0);
  json_decref(res);
  CHECK_EQ_INT(store_job_get(s, a, &job), 0);
  CHECK(json_is_true(json_object_get(job, "early_stopped")));
  CHECK_EQ_INT(jint(job, "best_step"), 2);
  CHECK_EQ_INT(jint(job, "epochs_completed"), 3);
  CHECK_NEAR(json_number_value(json_object_get(json_object_get(job, "test_metrics"), "test_loss")),
             0.7, 1e-9);
  CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(job, "result_files"), 0)),
               "file-abc");
  CHECK(json_is_null(json_object_get(job, "estimated_finish")));
  json_decref(job);
  store_close(s);
}

/* A lease that ran out and is not claimed again (queued, same attempt) is
 * stale for its old worker: lease_lost, not a cancel. */
static void test_control_expired_lease_is_stale(void) {
  store *s = open_fresh();
  char a[64];
  add_job(s, a, sizeof a);
  json_t *job = NULL;
  CHECK_EQ_INT(store_job_claim(s, "w1", -1000, &job), 0);
  json_decref(job);
  int n = 0;
  CHECK_EQ_INT(store_jobs_expire(s, 3, &n), 0);
  status_is(s, a, "queued");
  int what = -1;
  CHECK_EQ_INT(store_job_control(s, a, 1, &what), FT_EBAD_STATE);
  /* a cancelled job is a cancel */
  ft_error err = {0};
  CHECK_EQ_INT(store_job_claim(s, "w2", 30000, &job), 0);
  json_decref(job);
  CHECK_EQ_INT(store_job_control(s, a, 2, &what), 0);
  CHECK_EQ_INT(what, 0);
  CHECK_EQ_INT(store_job_cancel(s, a, NULL, &err), 0);
  CHECK_EQ_INT(store_job_control(s, a, 2, &what), 0);
  CHECK_EQ_INT(what, 1);
  store_close(s);
}

static void test_counts(void) {
  store *s = open_fresh();
  char a[64], b[64];
  add_job(s, a, sizeof a);
  add_job(s, b, sizeof b);
  ft_error err = {0};
  store_job_cancel(s, b, NULL, &err);
  json_t *c = NULL;
  CHECK_EQ_INT(store_job_counts(s, &c), 0);
  CHECK_EQ_INT(jint(c, "queued"), 1);
  CHECK_EQ_INT(jint(c, "cancelled"), 1);
  CHECK_EQ_INT(jint(c, "running"), 0);
  json_decref(c);
  int n = -1;
  CHECK_EQ_INT(store_jobs_using_model(s, "tiny", &n), 0);
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(store_ping(s), 0);
  store_close(s);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(test_migrations_idempotent);
  RUN(test_file_rows);
  RUN(test_job_insert_checks_files);
  RUN(test_claim_order);
  RUN(test_terminal_never_changes);
  RUN(test_stale_attempt_refused);
  RUN(test_lease_expiry_fails_after_max);
  RUN(test_pauses_do_not_count_as_lost);
  RUN(test_pause_paths);
  RUN(test_events_order);
  RUN(test_events_wait);
  RUN(test_counts);
  RUN(test_worker_reports_checked);
  RUN(test_control_expired_lease_is_stale);
  RUN(test_validating_files);
  RUN(test_trust_fields);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return test_report();
}
