/* The upload-time dataset validator (engine/data/dsval.h): for every error code a
 * small bad input and the line and code it must give, and the golden bad
 * files of tests/data/bad (expected.tsv; tests/engine/data/test_data.c checks the
 * training loader gives the same line and code); the same report whatever
 * the chunking; CSV quoting edge cases; duplicate, blank-line, cleaning and
 * label counting; the line cap; the one-line summary. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dsval.h"
#include "ft_fs.h"
#include "test.h"

/* Validates buf fed in chunks of `chunk` bytes (0: all at once). */
static json_t *run(const char *buf, size_t n, int csv, size_t chunk, size_t max_line) {
  dsval *v = NULL;
  if (dsval_new(&v, csv, max_line)) return NULL;
  if (!chunk) chunk = n ? n : 1;
  for (size_t off = 0; off < n; off += chunk) {
    size_t k = n - off < chunk ? n - off : chunk;
    if (dsval_feed(v, buf + off, k)) {
      dsval_free(v);
      return NULL;
    }
  }
  json_t *r = NULL;
  dsval_finish(v, &r);
  dsval_free(v);
  return r;
}
static json_t *jsonl(const char *s) { return run(s, strlen(s), 0, 0, 0); }
static json_t *csv(const char *s) { return run(s, strlen(s), 1, 0, 0); }

static long num(const json_t *r, const char *k) {
  return (long)json_integer_value(json_object_get(r, k));
}
static const char *str(const json_t *r, const char *k) {
  return json_string_value(json_object_get(r, k));
}
static const json_t *err0(const json_t *r) {
  return json_array_get(json_object_get(r, "errors"), 0);
}

/* The report has exactly one error, at line, with code. */
#define CHECK_ONE_ERROR(r, line_, code_)         \
  do {                                           \
    CHECK((r) != NULL);                          \
    CHECK_EQ_INT(num((r), "error_count"), 1);    \
    CHECK_EQ_INT(num(err0(r), "line"), (line_)); \
    CHECK_EQ_STR(str(err0(r), "code"), (code_)); \
  } while (0)

#define CHAT_OK                                                                                \
  "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":" \
  "\"yo\"}]}\n"

static void test_good_formats(void) {
  json_t *r = jsonl(CHAT_OK CHAT_OK
                    "\n{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                    "{\"role\":\"assistant\",\"content\":\"a\",\"weight\":0}]}\n");
  CHECK_EQ_STR(str(r, "format"), "chat");
  CHECK_EQ_INT(num(r, "examples"), 2);
  /* nothing to train on (the only assistant message has weight 0): the
   * trainer refuses it, so the validator does too */
  CHECK_ONE_ERROR(r, 4, "example_missing_assistant_message");
  CHECK_EQ_INT(num(r, "duplicates"), 1);
  CHECK_EQ_INT(num(r, "empty_lines"), 1);
  CHECK(json_object_get(r, "label_counts") == NULL);
  json_decref(r);
  r = jsonl(CHAT_OK
            "{\"messages\":[{\"role\":\"system\",\"content\":\"s\",\"name\":\"n\"},"
            "{\"role\":\"assistant\",\"content\":\"a\",\"weight\":0},"
            "{\"role\":\"assistant\",\"content\":\"b\",\"weight\":1.0}]}\n");
  CHECK_EQ_INT(num(r, "examples"), 2);
  CHECK_EQ_INT(num(r, "error_count"), 0);
  json_decref(r);
  r = jsonl("{\"prompt\":\"a\",\"completion\":\"b\"}\r\n{\"prompt\":\"\",\"completion\":\"c\"}");
  CHECK_EQ_STR(str(r, "format"), "prompt_completion");
  CHECK_EQ_INT(num(r, "examples"), 2);
  CHECK_EQ_INT(num(r, "error_count"), 0);
  json_decref(r);
  r = jsonl("\xEF\xBB\xBF{\"text\":\"caf\xC3\xA9\"}\n");
  CHECK_EQ_STR(str(r, "format"), "text");
  CHECK_EQ_INT(num(r, "examples"), 1);
  json_decref(r);
}

static void test_each_jsonl_code(void) {
  static const struct {
    const char *in;
    long line;
    const char *code;
  } cases[] = {
      {"{\"text\":\"a\"}\n{\"text\":\"b\"\n", 2, "invalid_json"},
      {"{\"text\":\"a\"}\n\n{\"text\":\"\xC3\x28\"}\n", 3, "invalid_utf8"},
      {"{\"text\":\"a\"}\n[1,2]\n", 2, "data_type"},
      {"{\"text\":5}\n", 1, "data_type"},
      {"{\"prompt\":\"a\",\"completion\":7}\n", 1, "data_type"},
      {CHAT_OK "{\"messages\":{}}\n", 2, "missing_messages_list"},
      {CHAT_OK "{\"msgs\":[]}\n", 2, "missing_messages_list"},
      {"{\"messages\":[{\"content\":\"x\"}]}\n", 1, "message_missing_key"},
      {CHAT_OK CHAT_OK "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"mood\":1}]}\n", 3,
       "message_unrecognized_key"},
      {"{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n", 1, "unrecognized_role"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":null}]}\n", 1, "missing_content"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}\n", 1, "missing_content"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"weight\":2},"
       "{\"role\":\"assistant\",\"content\":\"y\"}]}\n",
       1, "data_type"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n", 1,
       "example_missing_assistant_message"},
      {"{\"text\":\"a\"}\n{\"text\":\"\"}\n", 2, "empty_text"},
      {"{\"prompt\":\"a\",\"completion\":\"\"}\n", 1, "empty_text"},
      {"{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"}\n", 2, "missing_label"},
      {"{\"text\":\"a\",\"label\":\"\"}\n", 1, "missing_label"},
      {"{\"text\":\"a\",\"label\":1.5}\n", 1, "data_type"},
      {"{\"text\":\"a\"}\n" CHAT_OK, 2, "mixed_formats"},
      {"{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"a\",\"label\":1}\n", 2,
       "mixed_formats"},
      {"{\"foo\":1}\n{\"text\":\"a\"}\n", 1, "unknown_format"},
      {"\n \n\r\n", 1, "unknown_format"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    json_t *r = jsonl(cases[i].in);
    CHECK_ONE_ERROR(r, cases[i].line, cases[i].code);
    if (num(r, "error_count") != 1 || num(err0(r), "line") != cases[i].line ||
        strcmp(str(err0(r), "code"), cases[i].code))
      fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
    CHECK(strlen(str(err0(r), "message")) > 0);
    json_decref(r);
  }
}

static void test_each_csv_code(void) {
  json_t *r = csv("txt,lbl\na,b\n");
  CHECK_ONE_ERROR(r, 1, "csv_header");
  CHECK_EQ_INT(num(r, "examples"), 0);
  json_decref(r);
  r = csv("text,label\n");
  CHECK_ONE_ERROR(r, 1, "csv_header"); /* a header and no rows */
  json_decref(r);
  r = csv("text,label\na,x\nb,y,z\n");
  CHECK_ONE_ERROR(r, 3, "csv_columns");
  json_decref(r);
  r = csv("text,label\n,x\n");
  CHECK_ONE_ERROR(r, 2, "empty_text");
  json_decref(r);
  r = csv("text,label\na,\n");
  CHECK_ONE_ERROR(r, 2, "missing_label");
  json_decref(r);
  r = csv("text,label\na\"b,x\n");
  CHECK_ONE_ERROR(r, 2, "csv_quoting");
  json_decref(r);
  r = csv("text,label\n\"ab\"c,x\n");
  CHECK_ONE_ERROR(r, 2, "csv_quoting");
  json_decref(r);
  r = csv("text,label\nok,x\n\"never closed,x\nmore\n");
  CHECK_ONE_ERROR(r, 3, "csv_quoting");
  json_decref(r);
  r = csv("text,label\nok,x\n\xFF,x\n");
  CHECK_ONE_ERROR(r, 3, "invalid_utf8");
  json_decref(r);
}

static void test_csv_quoting(void) {
  /* quoted commas, "" escapes, a quoted newline (CRLF too), an empty quoted
   * label is still empty, BOM, a header with spaces and other columns */
  const char *in =
      "\xEF\xBB\xBFid, Text ,label\r\n"
      "1,\"a, b\",pos\r\n"
      "2,\"she said \"\"hi\"\"\",neg\r\n"
      "3,\"two\r\nlines\",pos\r\n"
      "\r\n"
      "4,\"three\nlines\nhere\",\"pos\"\n"
      "5,x,\"\"\n";
  json_t *r = csv(in);
  CHECK_EQ_STR(str(r, "format"), "classification");
  CHECK_EQ_INT(num(r, "examples"), 4);
  CHECK_ONE_ERROR(r, 10, "missing_label"); /* physical line 10, after the quoted newlines */
  CHECK_EQ_INT(num(r, "empty_lines"), 1);
  json_t *lc = json_object_get(r, "label_counts");
  CHECK_EQ_INT(json_integer_value(json_object_get(lc, "pos")), 3);
  CHECK_EQ_INT(json_integer_value(json_object_get(lc, "neg")), 1);
  CHECK_EQ_INT(json_object_size(lc), 2);
  json_decref(r);
  r = csv("prompt,completion\nq,a\n\"q2\",\"a,2\"\nq3,a3"); /* no final newline */
  CHECK_EQ_STR(str(r, "format"), "prompt_completion");
  CHECK_EQ_INT(num(r, "examples"), 3);
  CHECK_EQ_INT(num(r, "error_count"), 0);
  json_decref(r);
  r = csv("text\nhello\n\"\"\"quoted\"\"\"\n");
  CHECK_EQ_STR(str(r, "format"), "text");
  CHECK_EQ_INT(num(r, "examples"), 2);
  json_decref(r);
}

static void test_duplicates_and_labels(void) {
  json_t *r = jsonl(
      "{\"text\":\"a\",\"label\":\"x\"}\n"
      "{\"text\":\"b\",\"label\":2}\n"
      "{\"text\":\"a\",\"label\":\"x\"}\n"
      "{\"text\":\"a\", \"label\":\"x\"}\n" /* not byte-identical */
      "{\"text\":\"a\",\"label\":\"x\"}\n"
      "{\"text\":\"\",\"label\":\"x\"}\n" /* bad: not counted */
      "{\"text\":\"c\",\"label\":2}\n");
  CHECK_EQ_STR(str(r, "format"), "classification");
  CHECK_EQ_INT(num(r, "examples"), 6);
  CHECK_EQ_INT(num(r, "duplicates"), 2);
  CHECK_ONE_ERROR(r, 6, "empty_text");
  json_t *lc = json_object_get(r, "label_counts");
  CHECK_EQ_INT(json_integer_value(json_object_get(lc, "x")), 4);
  CHECK_EQ_INT(json_integer_value(json_object_get(lc, "2")), 2);
  json_decref(r);
  r = csv("text,label\nhi,a\nhi,a\nhi,b\nhi,a\n");
  CHECK_EQ_INT(num(r, "duplicates"), 2);
  json_decref(r);
}

static void test_line_cap(void) {
  char buf[256];
  snprintf(buf, sizeof buf, "{\"text\":\"a\"}\n{\"text\":\"%060d\"}\n{\"text\":\"b\"}\n", 0);
  json_t *r = run(buf, strlen(buf), 0, 7, 32);
  CHECK_ONE_ERROR(r, 2, "line_too_long");
  CHECK_EQ_INT(num(r, "examples"), 2);
  json_decref(r);
}

static void test_error_list_is_capped(void) {
  size_t n = 150 * 4;
  char *buf = malloc(n + 1);
  for (size_t i = 0; i < 150; i++) memcpy(buf + 4 * i, "{x}\n", 4);
  json_t *r = run(buf, n, 0, 0, 0);
  CHECK_EQ_INT(num(r, "error_count"), 150);
  CHECK_EQ_INT(json_array_size(json_object_get(r, "errors")), DSVAL_MAX_ERRORS);
  CHECK_EQ_INT(num(json_array_get(json_object_get(r, "errors"), 99), "line"), 100);
  json_decref(r);
  free(buf);
}

/* The same file fed in 1-byte, 7-byte and whole chunks gives the same report. */
static void test_chunking_is_invisible(void) {
  const char *jl =
      "{\"messages\":[{\"role\":\"user\",\"content\":\"h\xC3\xA9\"},"
      "{\"role\":\"assistant\",\"content\":\"\xF0\x9F\x98\x80\"}]}\r\n"
      "\n"
      "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n"
      "not json\n"
      "{\"messages\":[{\"role\":\"user\",\"content\":\"h\xC3\xA9\"},"
      "{\"role\":\"assistant\",\"content\":\"\xF0\x9F\x98\x80\"}]}\r\n"
      "{\"text\":\"t\"}";
  const char *cv = "text,label\n\"a\nb\",x\n\"c,\"\"d\"\"\",y\n\n\"a\nb\",x\nbad,row,here\n,z\n";
  const char *ins[2] = {jl, cv};
  for (int k = 0; k < 2; k++) {
    size_t n = strlen(ins[k]);
    json_t *whole = run(ins[k], n, k, 0, 0);
    json_t *one = run(ins[k], n, k, 1, 0);
    json_t *seven = run(ins[k], n, k, 7, 0);
    char *a = json_dumps(whole, JSON_SORT_KEYS), *b = json_dumps(one, JSON_SORT_KEYS),
         *c = json_dumps(seven, JSON_SORT_KEYS);
    CHECK(a && b && c);
    CHECK_EQ_STR(a, b);
    CHECK_EQ_STR(a, c);
    CHECK(num(whole, "error_count") >= 2);
    CHECK_EQ_INT(num(whole, "duplicates"), 1);
    free(a), free(b), free(c);
    json_decref(whole), json_decref(one), json_decref(seven);
  }
}

static void test_summary(void) {
  json_t *r = jsonl("{\"text\":\"a\"}\n{bad\n{\"text\":\"\"}\n[]\n");
  char buf[256];
  CHECK_EQ_INT(dsval_summary(r, buf, sizeof buf), 3);
  CHECK(strncmp(buf, "line 2: invalid_json: ", 22) == 0);
  CHECK(strstr(buf, "(and 2 more errors)") != NULL);
  json_decref(r);
  r = jsonl("{\"text\":\"a\"}\n");
  CHECK_EQ_INT(dsval_summary(r, buf, sizeof buf), 0);
  CHECK_EQ_STR(buf, "");
  json_decref(r);
  CHECK(dsval_name_is_csv("train.CSV"));
  CHECK(!dsval_name_is_csv("train.jsonl"));
  CHECK(!dsval_name_is_csv("csv"));
}

/* Every golden bad file gives exactly one error, at its line, with its code,
 * fed whole and 3 bytes at a time. */
static void test_golden_files(void) {
  const char *src = getenv("FT_SRC") ? getenv("FT_SRC") : ".";
  char path[1024], line[512];
  snprintf(path, sizeof path, "%s/tests/data/bad/expected.tsv", src);
  FILE *m = fopen(path, "r");
  CHECK(m != NULL);
  if (!m) return;
  int n_files = 0;
  while (fgets(line, sizeof line, m)) {
    char name[256], code[64], task[8];
    long want;
    if (line[0] == '#' || sscanf(line, "%255s %ld %63s %7s", name, &want, code, task) != 4)
      continue;
    snprintf(path, sizeof path, "%s/tests/data/bad/%s", src, name);
    size_t n = 0;
    char *buf = NULL;
    CHECK_EQ_INT(ft_read_file(path, 0, &buf, &n, NULL), 0);
    if (!buf) continue;
    for (size_t chunk = 0; chunk <= 3; chunk += 3) {
      json_t *r = run(buf, n, dsval_name_is_csv(name), chunk, 0);
      CHECK_ONE_ERROR(r, want, code);
      if (num(r, "error_count") != 1 || num(err0(r), "line") != want ||
          strcmp(str(err0(r), "code"), code)) {
        char *d = json_dumps(r, 0);
        fprintf(stderr, "  golden %s (chunk %zu): %s\n", name, chunk, d ? d : "(null)");
        free(d);
      }
      json_decref(r);
    }
    free(buf);
    n_files++;
  }
  fclose(m);
  CHECK(n_files >= 20);
}

/* "cleaning" counts what training's cleaning drops: empty after trimming, and
 * duplicates of the cleaned content (whitespace and CRLF variants included). */
static void test_cleaning_counts(void) {
  json_t *r = jsonl(
      "{\"text\":\"a b\"}\n"
      "{\"text\":\"  a b \"}\n"   /* same after trimming */
      "{\"text\":\"   \"}\n"      /* empty after trimming */
      "{\"text\":\"x\\r\\ny\"}\n" /* CRLF */
      "{\"text\":\"x\\ny\"}\n"    /* LF: duplicate of the CRLF one */
      "{\"text\":\"x\\ny\"}\n");  /* byte duplicate too */
  CHECK_EQ_INT(num(r, "error_count"), 0);
  CHECK_EQ_INT(num(r, "examples"), 6);
  CHECK_EQ_INT(num(r, "duplicates"), 1);
  json_t *c = json_object_get(r, "cleaning");
  CHECK(c != NULL);
  CHECK_EQ_INT(num(c, "duplicates"), 3);
  CHECK_EQ_INT(num(c, "empty"), 1);
  json_decref(r);
  /* completions keep one leading space: " a" and "a" differ, " a" and "  a" do not */
  r = jsonl(
      "{\"prompt\":\"q\",\"completion\":\" a\"}\n"
      "{\"prompt\":\"q\",\"completion\":\"a\"}\n"
      "{\"prompt\":\"q\",\"completion\":\"  a \"}\n"
      "{\"prompt\":\"q\",\"completion\":\" \"}\n");
  c = json_object_get(r, "cleaning");
  CHECK_EQ_INT(num(c, "duplicates"), 1);
  CHECK_EQ_INT(num(c, "empty"), 1);
  json_decref(r);
  /* labels are part of the content; CSV rows count the same */
  r = csv("text,label\nhi,a\n\" hi\",a\nhi,b\nhi, a\nho,\" \"\n");
  c = json_object_get(r, "cleaning");
  CHECK_EQ_INT(num(r, "duplicates"), 0);
  CHECK_EQ_INT(num(c, "duplicates"), 2);
  CHECK_EQ_INT(num(c, "empty"), 1); /* a blank label */
  json_t *lc = json_object_get(r, "label_counts");
  CHECK_EQ_INT(json_integer_value(json_object_get(lc, "a")), 3); /* " a" counts as "a" */
  CHECK_EQ_INT(json_object_size(lc), 2);
  json_decref(r);
}

int main(void) {
  RUN(test_good_formats);
  RUN(test_each_jsonl_code);
  RUN(test_each_csv_code);
  RUN(test_csv_quoting);
  RUN(test_duplicates_and_labels);
  RUN(test_line_cap);
  RUN(test_error_list_is_capped);
  RUN(test_chunking_is_invisible);
  RUN(test_summary);
  RUN(test_golden_files);
  RUN(test_cleaning_counts);
  return test_report();
}
