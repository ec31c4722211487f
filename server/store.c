/* The daemon's SQLite store: the connection and the one path every
 * statement takes (store.h is the contract, store_int.h what the store's
 * files share).
 *
 * Workload: a few writes per training step per running job (metrics events,
 * heartbeats), bursts of reads from API clients, and SSE streams that wait
 * for new events. One connection, one mutex: SQLite serialises writers anyway
 * and the rates are tiny next to a training step, so a pool of connections
 * would buy nothing but lock errors. Every write is one BEGIN IMMEDIATE ..
 * COMMIT with synchronous=FULL, so an acknowledged write survives a crash or
 * a power cut; every commit wakes the threads waiting on the condition
 * variable (store_events_wait, store_job_next_validating). */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "store_int.h"

/* ---- time and ids --------------------------------------------------------- */

int64_t store_now(void) { return (int64_t)time(NULL); }

int64_t st_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_new_id(const char *prefix, char *buf, size_t n) {
  unsigned char r[12];
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t k = getrandom(r + got, sizeof r - got, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      /* getrandom cannot fail on Linux >= 3.17 short of EINTR; fall back to
       * the clock rather than leave bytes uninitialised. */
      uint64_t t = (uint64_t)st_now_ms() ^ (uint64_t)clock();
      for (; got < sizeof r; got++) r[got] = (unsigned char)(t >> (8 * (got % 8)));
      break;
    }
    got += (size_t)k;
  }
  char hex[25];
  for (int i = 0; i < 12; i++) snprintf(hex + 2 * i, 3, "%02x", r[i]);
  snprintf(buf, n, "%s-%s", prefix, hex);
}

/* ---- the mutex and transactions ------------------------------------------ */

static int db_exec(store *s, const char *sql) {
  return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : FT_EDB;
}

static void rollback(store *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }

static int commit(store *s) {
  if (db_exec(s, "COMMIT") == 0) return 0;
  rollback(s);
  return FT_EDB;
}

store *st_lock(store *s) {
  pthread_mutex_lock(&s->mu);
  return s;
}

int st_unlock(store *s, int rc) {
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int st_begin(store *s, json_t **made) {
  if (made) *made = NULL;
  return db_exec(st_lock(s), "BEGIN IMMEDIATE") ? st_unlock(s, FT_EDB) : 0;
}

int st_end(store *s, int rc, json_t **made) {
  if (rc)
    rollback(s);
  else if ((rc = commit(s)) == 0)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (rc && made) {
    json_decref(*made);
    *made = NULL;
  }
  return rc;
}

/* ---- the one prepare/bind/step path (store_int.h says how to call it) ---- */

typedef int (*row_fn)(sqlite3_stmt *row, void *arg); /* 0 go on, 1 stop, or FT_E* */

/* JSON text of v (NULL for v NULL or JSON null), malloc'd. */
static char *dump_or_null(const json_t *v) {
  if (!v || json_is_null(v)) return NULL;
  return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int bind_args(sqlite3_stmt *st, const char *in, va_list *ap) {
  int rc = SQLITE_OK;
  for (int i = 1; in[i - 1] && rc == SQLITE_OK; i++) {
    switch (in[i - 1]) {
      case 's': {
        const char *v = va_arg(*ap, const char *);
        rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
        break;
      }
      case 'i':
        rc = sqlite3_bind_int(st, i, va_arg(*ap, int));
        break;
      case 'I':
        rc = sqlite3_bind_int64(st, i, (sqlite3_int64)va_arg(*ap, int64_t));
        break;
      case 'j': {
        char *t = dump_or_null(va_arg(*ap, const json_t *));
        rc = t ? sqlite3_bind_text(st, i, t, -1, free) : sqlite3_bind_null(st, i);
        break;
      }
      case 'n': {
        const json_t *v = va_arg(*ap, const json_t *);
        rc = json_is_integer(v) ? sqlite3_bind_int64(st, i, (sqlite3_int64)json_integer_value(v))
                                : sqlite3_bind_null(st, i);
        break;
      }
      default:
        rc = SQLITE_MISUSE;
    }
  }
  return rc;
}

/* Runs sql with in's arguments from *ap (afterwards *ap holds what follows
 * them), calling fn (may be NULL) on each row until it returns non-zero.
 * Returns how many rows fn saw (>= 0), fn's error, or FT_EDB. */
static int run(store *s, const char *sql, const char *in, va_list *ap, row_fn fn, void *arg) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return FT_EDB;
  int rc =
      (size_t)sqlite3_bind_parameter_count(st) == strlen(in) ? bind_args(st, in, ap) : SQLITE_RANGE;
  int rows = 0, stop = 0;
  if (rc == SQLITE_OK)
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      rows++;
      stop = fn ? fn(st, arg) : 0;
    }
  sqlite3_finalize(st);
  if (stop) return stop < 0 ? stop : rows;
  return rc == SQLITE_DONE ? rows : FT_EDB;
}

int st_exec(store *s, int none, const char *sql, const char *in, ...) {
  va_list ap;
  va_start(ap, in);
  int rc = run(s, sql, in, &ap, NULL, NULL);
  va_end(ap);
  return rc < 0 ? rc : sqlite3_changes(s->db) > 0 ? 0 : none;
}

/* st_get's row: the columns into the pointers that out's letters describe,
 * read from the arguments after in's. */
struct get_arg {
  const char *out;
  va_list *ap;
};

static int get_row(sqlite3_stmt *row, void *arg) {
  struct get_arg *g = arg;
  for (int i = 0; g->out[i]; i++) {
    if (g->out[i] == 't') {
      char *buf = va_arg(*g->ap, char *);
      size_t n = va_arg(*g->ap, size_t);
      if (buf) snprintf(buf, n, "%s", st_col_text(row, i));
    } else if (g->out[i] == 'i') {
      int *v = va_arg(*g->ap, int *);
      if (v) *v = sqlite3_column_int(row, i);
    } else if (g->out[i] == 'I') {
      int64_t *v = va_arg(*g->ap, int64_t *);
      if (v) *v = (int64_t)sqlite3_column_int64(row, i);
    }
  }
  return 1;
}

int st_get(store *s, const char *sql, const char *in, const char *out, ...) {
  va_list ap;
  va_start(ap, out);
  int rc = run(s, sql, in, &ap, get_row, &(struct get_arg){out, &ap});
  va_end(ap);
  return rc < 0 ? rc : rc == 0 ? FT_ENOT_FOUND : 0;
}

struct json_arg {
  st_json_fn fn;
  json_t *out; /* the first row's value, or the array rows are appended to */
};

static int json_first(sqlite3_stmt *row, void *arg) {
  struct json_arg *a = arg;
  a->out = a->fn(row);
  return a->out ? 1 : FT_ENOMEM;
}

static int json_append(sqlite3_stmt *row, void *arg) {
  struct json_arg *a = arg;
  json_t *v = a->fn(row);
  return v && json_array_append_new(a->out, v) == 0 ? 0 : FT_ENOMEM;
}

int st_get_json(store *s, st_json_fn fn, json_t **out, const char *sql, const char *in, ...) {
  va_list ap;
  va_start(ap, in);
  struct json_arg a = {fn, NULL};
  int rc = run(s, sql, in, &ap, json_first, &a);
  va_end(ap);
  *out = a.out;
  return rc < 0 ? rc : rc == 0 ? FT_ENOT_FOUND : 0;
}

int st_rows(store *s, st_json_fn fn, json_t *arr, const char *sql, const char *in, ...) {
  va_list ap;
  va_start(ap, in);
  int rc = run(s, sql, in, &ap, json_append, &(struct json_arg){fn, arr});
  va_end(ap);
  return rc < 0 ? rc : 0;
}

/* ---- lists ---------------------------------------------------------------- */

int st_list_page(store *s, int which, const char *owner, const char *after, int limit,
                 json_t **out) {
  const st_list *l = &st_lists[which];
  *out = NULL;
  if (limit < 1) limit = 1;
  char filter[64], sql[1024];
  if (owner)
    snprintf(filter, sizeof filter, " AND %s = ?2", l->owner_col);
  else
    snprintf(filter, sizeof filter, " AND ?2 IS NULL");
  json_t *data = json_array();
  if (!data) return FT_ENOMEM;
  int64_t after_key = 0;
  st_lock(s);
  int rc = l->of_job ? st_get(s, "SELECT 1 FROM jobs WHERE id = ?", "s", "", owner) : 0;
  if (!rc && after) {
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?1%s", l->key, l->from, l->idcol,
             filter);
    rc = st_get(s, sql, "ss", "I", after, owner, &after_key);
  }
  if (!rc) { /* one row more than the page says whether there are more */
    snprintf(sql, sizeof sql,
             "SELECT %s FROM %s WHERE (?1 = 0 OR %s < ?1)%s ORDER BY %s DESC LIMIT ?3", l->cols,
             l->from, l->key, filter, l->key);
    rc = st_rows(s, l->row, data, sql, "Isi", after_key, owner, limit + 1);
  }
  st_unlock(s, 0);
  int has_more = json_array_size(data) > (size_t)limit;
  if (has_more) json_array_remove(data, (size_t)limit);
  if (rc) {
    json_decref(data);
    return rc;
  }
  *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", has_more);
  return *out ? 0 : FT_ENOMEM;
}

/* ---- open, close, migrations --------------------------------------------- */

/* schema/NNNN_*.sql, embedded at build time (schema/embed.cmake) */
extern const struct ft_migration {
  const char *name;
  const char *sql;
} ft_migrations[];

static int migrate(store *s, ft_error *err) {
  if (db_exec(s,
              "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, "
              "applied_at INTEGER NOT NULL)"))
    return ft_error_set(err, FT_EDB, NULL, "creating schema_migrations: %s", sqlite3_errmsg(s->db));
  for (int i = 0; ft_migrations[i].name; i++) {
    const char *name = ft_migrations[i].name;
    if (db_exec(s, "BEGIN IMMEDIATE"))
      return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
    int rc = st_get(s, "SELECT 1 FROM schema_migrations WHERE name = ?", "s", "", name);
    if (rc == FT_ENOT_FOUND) { /* not applied yet */
      rc = db_exec(s, ft_migrations[i].sql);
      if (rc)
        ft_error_set(err, rc, NULL, "migration %s: %s", name, sqlite3_errmsg(s->db));
      else if ((rc = st_exec(s, FT_EDB,
                             "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", "sI",
                             name, store_now())))
        ft_error_set(err, rc, NULL, "recording migration %s", name);
    } else if (rc) { /* (the message now: ROLLBACK clears it) */
      ft_error_set(err, rc, NULL, "%s", sqlite3_errmsg(s->db));
    }
    if (rc) {
      rollback(s);
      return FT_EDB;
    }
    if (commit(s)) return ft_error_set(err, FT_EDB, NULL, "%s", sqlite3_errmsg(s->db));
  }
  return 0;
}

int store_open(store **out, const char *db_path, ft_error *err) {
  *out = NULL;
  store *s = calloc(1, sizeof *s);
  if (!s) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  pthread_mutex_init(&s->mu, NULL);
  ft_cond_init_monotonic(&s->cv);
  int rc = sqlite3_open_v2(db_path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    ft_error_set(err, FT_EDB, NULL, "opening %s: %s", db_path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    store_close(s);
    return FT_EDB;
  }
  sqlite3_busy_timeout(s->db, 5000);
  /* journal_mode answers with the mode in force: insist on WAL. */
  char mode[16] = "";
  st_get(s, "PRAGMA journal_mode=WAL", "", "t", mode, sizeof mode);
  if (strcmp(mode, "wal") || db_exec(s, "PRAGMA synchronous=FULL") ||
      db_exec(s, "PRAGMA foreign_keys=ON")) {
    ft_error_set(err, FT_EDB, NULL, "configuring %s: %s", db_path, sqlite3_errmsg(s->db));
    store_close(s);
    return FT_EDB;
  }
  if (migrate(s, err)) {
    store_close(s);
    return FT_EDB;
  }
  *out = s;
  return 0;
}

void store_close(store *s) {
  if (!s) return;
  if (s->db) sqlite3_close_v2(s->db);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int store_ping(store *s) {
  int rc = st_unlock(s, st_get(st_lock(s), "SELECT count(*) FROM schema_migrations", "", ""));
  return rc ? FT_EDB : 0;
}

void store_set_transition_hook(store *s, store_transition_fn fn) { s->on_transition = fn; }

void store_wake_all(store *s) {
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}
