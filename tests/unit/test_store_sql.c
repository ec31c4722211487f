/* The store's one prepare/bind/step path (store_int.h) on a scratch table of
 * a real database: every bind letter round-trips (NULLs included, an int64
 * beyond 32 bits, a JSON integer and a JSON double that must not bind), a
 * format that does not match the statement's parameters runs nothing, the
 * codes for no row and no change, text truncated to its buffer, the first
 * row against every row, and st_end rolling back and releasing what a
 * failed write built. */
#include <stdlib.h>
#include <unistd.h>

#include "store_int.h"
#include "test.h"

static char dir[] = "/tmp/ft-test-store-sql.XXXXXX";

static store *open_scratch(void) {
  static int n;
  char path[256];
  snprintf(path, sizeof path, "%s/db%d.sqlite", dir, n++);
  store *s = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(store_open(&s, path, &err), 0);
  if (!s) return NULL;
  CHECK_EQ_INT(st_begin(s, NULL), 0);
  CHECK_EQ_INT(st_exec(s, 0,
                       "CREATE TABLE t (n INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT, "
                       "d INTEGER, e INTEGER)",
                       ""),
               0);
  CHECK_EQ_INT(st_end(s, 0, NULL), 0);
  return s;
}

#define INSERT "INSERT INTO t (a, b, c, d, e) VALUES (?, ?, ?, ?, ?)"

static void test_binds_round_trip(void) {
  store *s = open_scratch();
  if (!s) return;
  json_t *obj = json_pack("{s:i}", "k", 1), *seven = json_integer(7), *real = json_real(2.5);
  st_lock(s);
  CHECK_EQ_INT(st_exec(s, FT_EDB, INSERT, "sIjni", "x", (int64_t)1 << 40, obj, seven, -3), 0);
  CHECK_EQ_INT(st_exec(s, FT_EDB, INSERT, "sIjni", NULL, (int64_t)-1, json_null(), real, 0), 0);
  char a[16] = "?", c[32] = "?";
  int64_t b = 0, d = 0;
  int e = 99;
  CHECK_EQ_INT(st_get(s, "SELECT a, b, c, d, e FROM t WHERE n = ?", "i", "tItIi", 1, a, sizeof a,
                      &b, c, sizeof c, &d, &e),
               0);
  CHECK_EQ_STR(a, "x");
  CHECK(b == (int64_t)1 << 40);
  CHECK_EQ_STR(c, "{\"k\":1}");
  CHECK_EQ_INT(d, 7);
  CHECK_EQ_INT(e, -3);
  /* NULL text, JSON null and a JSON double all bind SQL NULL */
  int nulls = -1;
  CHECK_EQ_INT(st_get(s, "SELECT (a IS NULL) + (c IS NULL) + (d IS NULL) FROM t WHERE b = ?", "I",
                      "i", (int64_t)-1, &nulls),
               0);
  CHECK_EQ_INT(nulls, 3);
  /* a NULL column reads as "", and a NULL pointer skips its column */
  CHECK_EQ_INT(st_get(s, "SELECT a, b FROM t WHERE n = 2", "", "tI", a, sizeof a, NULL), 0);
  CHECK_EQ_STR(a, "");
  st_unlock(s, 0);
  json_decref(obj);
  json_decref(seven);
  json_decref(real);
  store_close(s);
}

static void test_codes(void) {
  store *s = open_scratch();
  if (!s) return;
  st_lock(s);
  /* a format that does not name every parameter runs nothing */
  CHECK_EQ_INT(st_exec(s, FT_EDB, INSERT, "sI", "x", (int64_t)1), FT_EDB);
  CHECK_EQ_INT(st_exec(s, FT_EDB, "INSERT INTO t (a) VALUES (?)", "ss", "x", "y"), FT_EDB);
  CHECK_EQ_INT(st_exec(s, FT_EDB, "INSERT INTO t (a) VALUES (?)", "q", "x"), FT_EDB);
  CHECK_EQ_INT(st_exec(s, FT_EDB, "NOT SQL", ""), FT_EDB);
  int n = -1;
  CHECK_EQ_INT(st_get(s, "SELECT count(*) FROM t", "", "i", &n), 0);
  CHECK_EQ_INT(n, 0);
  /* no row: FT_ENOT_FOUND and the outputs untouched; no change: the caller's code */
  char a[4] = "?";
  CHECK_EQ_INT(st_get(s, "SELECT a FROM t WHERE n = ?", "i", "t", 1, a, sizeof a), FT_ENOT_FOUND);
  CHECK_EQ_STR(a, "?");
  CHECK_EQ_INT(st_exec(s, FT_EBAD_STATE, "UPDATE t SET a = 'z' WHERE n = ?", "i", 1),
               FT_EBAD_STATE);
  CHECK_EQ_INT(st_exec(s, 0, "DELETE FROM t", ""), 0);
  /* text is cut to its buffer */
  CHECK_EQ_INT(st_exec(s, FT_EDB, INSERT, "sIjni", "abcdef", (int64_t)1, NULL, NULL, 1), 0);
  CHECK_EQ_INT(st_get(s, "SELECT a FROM t", "", "t", a, sizeof a), 0);
  CHECK_EQ_STR(a, "abc");
  st_unlock(s, 0);
  store_close(s);
}

static json_t *a_json(sqlite3_stmt *row) { return st_col_str(row, 0); }

static void test_rows_and_transactions(void) {
  store *s = open_scratch();
  if (!s) return;
  CHECK_EQ_INT(st_begin(s, NULL), 0);
  const char *names[] = {"p", "q", "r"};
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(st_exec(s, FT_EDB, INSERT, "sIjni", names[i], (int64_t)i, NULL, NULL, i), 0);
  CHECK_EQ_INT(st_end(s, 0, NULL), 0);
  st_lock(s);
  json_t *all = json_array(), *first = NULL;
  CHECK_EQ_INT(st_rows(s, a_json, all, "SELECT a FROM t ORDER BY n DESC", ""), 0);
  CHECK_EQ_INT(json_array_size(all), 3);
  CHECK_EQ_STR(json_string_value(json_array_get(all, 0)), "r");
  CHECK_EQ_INT(st_get_json(s, a_json, &first, "SELECT a FROM t ORDER BY n", ""), 0);
  CHECK_EQ_STR(json_string_value(first), "p");
  json_decref(first);
  CHECK_EQ_INT(st_get_json(s, a_json, &first, "SELECT a FROM t WHERE n < 0", ""), FT_ENOT_FOUND);
  CHECK(first == NULL);
  st_unlock(s, 0);
  /* a failed write rolls back and releases what it built */
  json_t *made = NULL;
  CHECK_EQ_INT(st_begin(s, &made), 0);
  CHECK_EQ_INT(st_exec(s, 0, "DELETE FROM t", ""), 0);
  made = json_string("built");
  CHECK_EQ_INT(st_end(s, FT_EBAD_STATE, &made), FT_EBAD_STATE);
  CHECK(made == NULL);
  int n = 0;
  CHECK_EQ_INT(st_unlock(s, st_get(st_lock(s), "SELECT count(*) FROM t", "", "i", &n)), 0);
  CHECK_EQ_INT(n, 3);
  /* a write that commits keeps it */
  CHECK_EQ_INT(st_begin(s, &made), 0);
  made = json_string("kept");
  CHECK_EQ_INT(st_end(s, 0, &made), 0);
  CHECK_EQ_STR(json_string_value(made), "kept");
  json_decref(made);
  json_decref(all);
  store_close(s);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(test_binds_round_trip);
  RUN(test_codes);
  RUN(test_rows_and_transactions);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return test_report();
}
