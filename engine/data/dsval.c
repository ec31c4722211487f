/* Incremental dataset validation (see dsval.h). Bytes are split into records
 * as they arrive: a JSONL record ends at '\n'; a CSV record at a '\n' outside
 * quotes (the quote state flips on every '"', which RFC 4180's "" escape
 * leaves unchanged). The current record is the only buffered text, capped at
 * max_line; past the cap the rest of the record is skipped and reported.
 * Each complete record is parsed (jansson for a JSONL line, record.c's RFC
 * 4180 splitter for a CSV row) and checked by record.c, the checker the
 * trainer's loader uses, against the format fixed by the first classifiable
 * record. Duplicates are found through sets of 64-bit hashes (of the record
 * bytes, and of the cleaned content as training will see it), capped at
 * DSVAL_MAX_HASHES entries each (past it, duplicates of new records are not
 * counted). Workload: uploads of up to a few hundred MB, so per-record work
 * is linear in the record. */
#include "data/dsval.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/record.h"
#include "ft_err.h"
#include "ft_utf8.h"

#define DSVAL_MAX_HASHES (1u << 21) /* 16 MiB per set at most: two sets stay under 64 MiB */
#define DSVAL_MAX_LABELS 1000       /* distinct labels counted */

typedef struct {
  uint64_t *a; /* (cap) open addressing, 0 = empty */
  size_t cap, n;
} hset;

struct dsval {
  int csv;
  size_t max_line;
  char *buf; /* (cap) the current record, buf[0..n) */
  size_t n, cap;
  int overflow;          /* the current record went past max_line */
  int in_quotes;         /* CSV: inside a quoted field */
  long line;             /* physical lines ended so far */
  long rec_line;         /* first physical line of the current record */
  ft_data_format format; /* fixed by the first classifiable record (CSV: the header) */
  long format_line;
  /* CSV */
  int header_done, header_bad;
  int ncols, cols[4]; /* text, label, prompt, completion */
  size_t *fld;        /* (2*fld_cap) start, length of each field in buf after unquoting */
  int fld_cap;
  /* counts */
  long examples, error_count, duplicates, empty_lines, clean_dups, clean_empty;
  json_t *errors; /* first DSVAL_MAX_ERRORS */
  json_t *labels; /* label -> count */
  hset raw;       /* hashes of the valid records' bytes */
  hset clean;     /* hashes of the cleaned records' content keys */
  char *key;      /* content key scratch */
  size_t key_n, key_cap;
  int oom;
};

/* ---- small helpers ------------------------------------------------------- */

/* Adds h to a set; 1 if it was there already. */
static int set_add(dsval *v, hset *s, uint64_t h) {
  if (2 * (s->n + 1) > s->cap) {
    if (s->cap >= DSVAL_MAX_HASHES) {
      for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->a[i] == h) return 1;
        if (!s->a[i]) return 0; /* full: look up only */
      }
    }
    size_t cap = s->cap ? 2 * s->cap : 1024;
    uint64_t *t = calloc(cap, sizeof *t);
    if (!t) {
      v->oom = 1;
      return 0;
    }
    for (size_t j = 0; j < s->cap; j++) {
      uint64_t x = s->a[j];
      if (!x) continue;
      size_t i = x & (cap - 1);
      while (t[i]) i = (i + 1) & (cap - 1);
      t[i] = x;
    }
    free(s->a);
    s->a = t;
    s->cap = cap;
  }
  size_t i = h & (s->cap - 1);
  for (; s->a[i]; i = (i + 1) & (s->cap - 1))
    if (s->a[i] == h) return 1;
  s->a[i] = h;
  s->n++;
  return 0;
}

/* Records the error of the record at line; always returns -1. */
static int bad(dsval *v, long line, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(dsval *v, long line, const char *code, const char *fmt, ...) {
  v->error_count++;
  if (json_array_size(v->errors) >= DSVAL_MAX_ERRORS) return -1;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *e = json_pack("{s:I, s:s, s:s}", "line", (json_int_t)line, "code", code, "message", msg);
  if (!e || json_array_append_new(v->errors, e)) v->oom = 1;
  return -1;
}

static void count_label(dsval *v, const char *label) {
  json_t *c = json_object_get(v->labels, label);
  if (c) {
    json_integer_set(c, json_integer_value(c) + 1);
  } else if (json_object_size(v->labels) < DSVAL_MAX_LABELS) {
    if (json_object_set_new(v->labels, label, json_integer(1))) v->oom = 1;
  }
}

/* A record (JSON object o) checked by record.c: counted, its label counted,
 * and looked up as a duplicate, byte for byte (rec[0..n)) and, as the
 * trainer cleans it, by content. */
static void check(dsval *v, long line, json_t *o, uint64_t raw_hash) {
  rec_error e;
  if (rec_check(o, &v->format, &v->format_line, line, &e)) {
    bad(v, line, e.code, "%s", e.message);
    return;
  }
  v->examples++;
  if (set_add(v, &v->raw, raw_hash)) v->duplicates++;
  int empty = rec_clean(o, v->format);
  if (empty < 0) {
    v->oom = 1;
    return;
  }
  if (empty) {
    v->clean_empty++;
    return;
  }
  if (v->format == FT_DATA_CLASSIFY) { /* the label as training will see it: trimmed */
    char label[REC_LABEL_MAX];
    rec_label(o, label);
    count_label(v, label);
  }
  if (rec_key(o, v->format, &v->key, &v->key_n, &v->key_cap)) {
    v->oom = 1;
    return;
  }
  if (set_add(v, &v->clean, rec_hash(v->key, v->key_n))) v->clean_dups++;
}

/* ---- JSONL ---------------------------------------------------------------- */

static void jsonl_record(dsval *v, long line, const char *p, size_t n) {
  rec_error e;
  json_t *o = rec_parse_jsonl(p, n, &e);
  if (!o) {
    bad(v, line, e.code, "%s", e.message);
    return;
  }
  check(v, line, o, rec_hash(p, n));
  json_decref(o);
}

/* ---- CSV ------------------------------------------------------------------ */

static void csv_record(dsval *v, long line, size_t n) {
  size_t bad_at;
  if (!ft_utf8_valid(v->buf, n, &bad_at)) {
    if (!v->header_done) v->header_done = v->header_bad = 1;
    bad(v, line, "invalid_utf8", "not valid UTF-8 (byte %zu of the record)", bad_at + 1);
    return;
  }
  if (v->header_bad) return;        /* rows mean nothing without a header */
  uint64_t h = rec_hash(v->buf, n); /* before unquoting rewrites buf */
  const char *why = NULL;
  int nf = rec_csv_split(v->buf, n, &v->fld, &v->fld_cap, &why);
  if (nf == FT_ENOMEM) {
    v->oom = 1;
    return;
  }
  if (nf < 0) {
    if (!v->header_done) v->header_done = v->header_bad = 1;
    bad(v, line, "csv_quoting", "malformed CSV: %s", why);
    return;
  }
  if (!v->header_done) {
    v->header_done = 1;
    v->ncols = nf;
    v->format = rec_csv_header(v->buf, v->fld, nf, v->cols);
    v->format_line = line;
    if (v->format) return;
    v->header_bad = 1;
    bad(v, line, "csv_header",
        "the header must name a \"text\" column (and \"label\"), or \"prompt\" and "
        "\"completion\"");
    return;
  }
  if (nf != v->ncols) {
    bad(v, line, "csv_columns", "%d fields, but the header has %d", nf, v->ncols);
    return;
  }
  json_t *o = rec_csv_object(v->buf, v->fld, v->format, v->cols);
  if (!o) {
    v->oom = 1;
    return;
  }
  check(v, line, o, h);
  json_decref(o);
}

/* ---- records ------------------------------------------------------------- */

static void record_end(dsval *v) {
  long line = v->rec_line;
  v->rec_line = v->line + 1;
  if (v->overflow) {
    v->overflow = 0;
    v->n = 0;
    if (v->csv && !v->header_done) v->header_done = v->header_bad = 1;
    bad(v, line, "line_too_long", "line too long (over %zu bytes)", v->max_line);
    return;
  }
  size_t n = v->n, s = 0;
  v->n = 0;
  if (n && v->buf[n - 1] == '\r') n--;
  if (line == 1 && n >= 3 && !memcmp(v->buf, "\xEF\xBB\xBF", 3)) s = 3; /* BOM */
  size_t k = s;
  while (k < n && (v->buf[k] == ' ' || v->buf[k] == '\t')) k++;
  if (k == n) {
    v->empty_lines++;
    return;
  }
  if (v->csv) {
    if (s) memmove(v->buf, v->buf + s, n - s);
    csv_record(v, line, n - s);
  } else {
    jsonl_record(v, line, v->buf + s, n - s);
  }
}

static int append(dsval *v, const char *p, size_t k) {
  if (v->overflow || !k) return 0;
  if (v->n + k > v->max_line) {
    v->overflow = 1;
    return 0;
  }
  if (v->n + k > v->cap) {
    size_t cap = v->cap ? v->cap : 4096;
    while (cap < v->n + k) cap *= 2;
    if (cap > v->max_line) cap = v->max_line;
    char *b = realloc(v->buf, cap);
    if (!b) return v->oom = 1, FT_ENOMEM;
    v->buf = b;
    v->cap = cap;
  }
  memcpy(v->buf + v->n, p, k);
  v->n += k;
  return 0;
}

/* ---- API ------------------------------------------------------------------- */

int dsval_new(dsval **out, int csv, size_t max_line) {
  *out = NULL;
  dsval *v = calloc(1, sizeof *v);
  if (!v) return FT_ENOMEM;
  v->csv = csv;
  v->max_line = max_line ? max_line : DSVAL_MAX_LINE;
  v->rec_line = 1;
  v->errors = json_array();
  v->labels = json_object();
  if (!v->errors || !v->labels) {
    dsval_free(v);
    return FT_ENOMEM;
  }
  *out = v;
  return 0;
}

void dsval_free(dsval *v) {
  if (!v) return;
  json_decref(v->errors);
  json_decref(v->labels);
  free(v->buf);
  free(v->fld);
  free(v->raw.a);
  free(v->clean.a);
  free(v->key);
  free(v);
}

int dsval_feed(dsval *v, const void *data, size_t n) {
  const char *p = data;
  while (n && !v->oom) {
    size_t k;
    int end = 0;
    if (!v->csv) {
      const char *nl = memchr(p, '\n', n);
      k = nl ? (size_t)(nl - p) : n;
      end = nl != NULL;
    } else {
      for (k = 0; k < n; k++) {
        if (p[k] == '"') {
          v->in_quotes ^= 1;
        } else if (p[k] == '\n') {
          if (!v->in_quotes) {
            end = 1;
            break;
          }
          v->line++; /* a newline inside a quoted field */
        }
      }
    }
    if (append(v, p, k)) break; /* quoted newlines stay in the record */
    p += k, n -= k;
    if (end) {
      p++, n--;
      v->line++;
      record_end(v);
    }
  }
  return v->oom ? FT_ENOMEM : 0;
}

int dsval_finish(dsval *v, json_t **report) {
  *report = NULL;
  if (v->n || v->overflow) {
    long first = v->rec_line;
    if (v->csv && v->in_quotes && !v->overflow) {
      v->n = 0;
      v->rec_line = v->line + 1;
      if (!v->header_done) v->header_done = v->header_bad = 1;
      bad(v, first, "csv_quoting", "malformed CSV: a quoted field is not closed");
    } else {
      v->line++;
      record_end(v);
    }
  }
  if (!v->format && v->error_count == 0)
    bad(v, 1, "unknown_format", "the file has no examples");
  else if (v->csv && v->format && v->examples == 0 && v->error_count == 0)
    bad(v, v->format_line, "csv_header", "the file has a header but no rows");
  if (v->oom) return FT_ENOMEM;
  const char *fname = rec_format_name(v->format);
  json_t *r =
      json_pack("{s:o, s:I, s:O, s:I, s:I, s:I, s:{s:I, s:I}}", "format",
                fname ? json_string(fname) : json_null(), "examples", (json_int_t)v->examples,
                "errors", v->errors, "error_count", (json_int_t)v->error_count, "duplicates",
                (json_int_t)v->duplicates, "empty_lines", (json_int_t)v->empty_lines, "cleaning",
                "duplicates", (json_int_t)v->clean_dups, "empty", (json_int_t)v->clean_empty);
  if (r && v->format == FT_DATA_CLASSIFY && json_object_set(r, "label_counts", v->labels)) {
    json_decref(r);
    r = NULL;
  }
  if (!r) return FT_ENOMEM;
  *report = r;
  return 0;
}

int dsval_name_is_csv(const char *f) {
  size_t n = strlen(f);
  return n >= 4 && !strcasecmp(f + n - 4, ".csv");
}

long dsval_summary(const json_t *report, char *buf, size_t n) {
  long count = (long)json_integer_value(json_object_get(report, "error_count"));
  if (n) buf[0] = 0;
  json_t *e = json_array_get(json_object_get(report, "errors"), 0);
  if (!count || !e) return count;
  int k = snprintf(buf, n, "line %lld: %s: %s",
                   (long long)json_integer_value(json_object_get(e, "line")),
                   json_string_value(json_object_get(e, "code")),
                   json_string_value(json_object_get(e, "message")));
  if (count > 1 && k >= 0 && (size_t)k < n)
    snprintf(buf + k, n - (size_t)k, " (and %ld more error%s)", count - 1, count > 2 ? "s" : "");
  return count;
}
