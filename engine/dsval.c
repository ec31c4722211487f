/* Incremental dataset validation (see dsval.h). Bytes are split into records
 * as they arrive: a JSONL record ends at '\n'; a CSV record at a '\n' outside
 * quotes (the quote state flips on every '"', which RFC 4180's "" escape
 * leaves unchanged). The current record is the only buffered text, capped at
 * max_line; past the cap the rest of the record is skipped and reported.
 * Each complete record is checked on its own (jansson for a JSONL line, a
 * small RFC 4180 splitter for a CSV row) against the format fixed by the
 * first classifiable record. Duplicates are found through a set of 64-bit
 * hashes of the record bytes, capped at DSVAL_MAX_HASHES entries (past it,
 * duplicates of new records are not counted). Workload: uploads of up to a
 * few hundred MB, so per-record work is linear in the record. */
#include "dsval.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ft_err.h"

#define DSVAL_MAX_HASHES (1u << 22) /* 32 MiB of set at most */
#define DSVAL_MAX_LABELS 1000       /* distinct labels counted */
#define DSVAL_LABEL_MAX 63          /* bytes, as data.c allows */

enum { F_NONE, F_CHAT, F_PROMPT, F_TEXT, F_CLASSIFY };
static const char *const format_names[] = {NULL, "chat", "prompt_completion", "text",
                                           "classification"};

struct dsval {
  int csv;
  size_t max_line;
  char *buf; /* (cap) the current record, buf[0..n) */
  size_t n, cap;
  int overflow;  /* the current record went past max_line */
  int in_quotes; /* CSV: inside a quoted field */
  long line;     /* physical lines ended so far */
  long rec_line; /* first physical line of the current record */
  int format;    /* F_* fixed by the first classifiable record */
  long format_line;
  /* CSV */
  int header_done, header_bad;
  int ncols, col_text, col_label, col_prompt, col_completion;
  size_t *fld; /* (2*fld_cap) start, length of each field in buf after unquoting */
  int fld_cap;
  /* counts */
  long examples, error_count, duplicates, empty_lines;
  json_t *errors; /* first DSVAL_MAX_ERRORS */
  json_t *labels; /* label -> count */
  uint64_t *set;  /* (set_cap) open addressing, 0 = empty */
  size_t set_cap, set_n;
  int oom;
};

/* ---- small helpers ------------------------------------------------------- */

static int utf8_ok(const unsigned char *p, size_t n, size_t *bad) {
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      need = 1;
    else if (c == 0xE0)
      need = 2, lo = 0xA0;
    else if (c == 0xED)
      need = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF)
      need = 2;
    else if (c == 0xF0)
      need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
      need = 3;
    else if (c == 0xF4)
      need = 3, hi = 0x8F;
    else
      goto fail;
    for (int k = 1; k <= need; k++) {
      if (i + (size_t)k >= n) goto fail;
      unsigned d = p[i + (size_t)k];
      if (d < lo || d > hi) goto fail;
      lo = 0x80, hi = 0xBF;
    }
    i += (size_t)need + 1;
    continue;
  fail:
    *bad = i;
    return 0;
  }
  return 1;
}

static uint64_t hash64(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a splitmix finaliser */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  h ^= (uint64_t)n;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h ? h : 1;
}

/* Adds h; 1 if it was there already. */
static int set_add(dsval *v, uint64_t h) {
  if (2 * (v->set_n + 1) > v->set_cap) {
    if (v->set_cap >= DSVAL_MAX_HASHES) {
      for (size_t i = h & (v->set_cap - 1);; i = (i + 1) & (v->set_cap - 1)) {
        if (v->set[i] == h) return 1;
        if (!v->set[i]) return 0; /* full: look up only */
      }
    }
    size_t cap = v->set_cap ? 2 * v->set_cap : 1024;
    uint64_t *s = calloc(cap, sizeof *s);
    if (!s) {
      v->oom = 1;
      return 0;
    }
    for (size_t j = 0; j < v->set_cap; j++) {
      uint64_t x = v->set[j];
      if (!x) continue;
      size_t i = x & (cap - 1);
      while (s[i]) i = (i + 1) & (cap - 1);
      s[i] = x;
    }
    free(v->set);
    v->set = s;
    v->set_cap = cap;
  }
  size_t i = h & (v->set_cap - 1);
  for (; v->set[i]; i = (i + 1) & (v->set_cap - 1))
    if (v->set[i] == h) return 1;
  v->set[i] = h;
  v->set_n++;
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

/* A valid record: counted, and checked for being a duplicate. */
static void good(dsval *v, const char *rec, size_t n) {
  v->examples++;
  if (set_add(v, hash64(rec, n))) v->duplicates++;
}

/* ---- JSONL ---------------------------------------------------------------- */

static int line_format(json_t *o) {
  if (json_object_get(o, "messages")) return F_CHAT;
  if (json_object_get(o, "prompt") || json_object_get(o, "completion")) return F_PROMPT;
  if (json_object_get(o, "label")) return F_CLASSIFY;
  if (json_object_get(o, "text")) return F_TEXT;
  return F_NONE;
}

static int check_chat(dsval *v, long line, json_t *o) {
  json_t *msgs = json_object_get(o, "messages");
  if (!json_is_array(msgs) || json_array_size(msgs) == 0)
    return bad(v, line, "missing_messages_list", "\"messages\" must be a non-empty list");
  int assistant = 0;
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    if (!json_is_object(m)) return bad(v, line, "data_type", "messages[%zu] is not an object", i);
    json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
    if (!role || !content)
      return bad(v, line, "message_missing_key", "messages[%zu] has no \"%s\"", i,
                 role ? "content" : "role");
    const char *k;
    json_t *x;
    json_object_foreach(m, k, x) {
      if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name") && strcmp(k, "weight"))
        return bad(v, line, "message_unrecognized_key",
                   "messages[%zu] has an unrecognized key \"%.64s\"", i, k);
    }
    const char *r = json_string_value(role);
    if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
      return bad(v, line, "unrecognized_role",
                 "messages[%zu].role must be \"system\", \"user\" or \"assistant\"", i);
    if (!json_is_string(content) || json_string_length(content) == 0)
      return bad(v, line, "missing_content", "messages[%zu].content must be a non-empty string", i);
    json_t *w = json_object_get(m, "weight");
    if (w && !(json_is_integer(w) && (json_integer_value(w) == 0 || json_integer_value(w) == 1)))
      return bad(v, line, "data_type", "messages[%zu].weight must be 0 or 1", i);
    if (!strcmp(r, "assistant")) assistant = 1;
  }
  if (!assistant)
    return bad(v, line, "example_missing_assistant_message", "no message has role \"assistant\"");
  return 0;
}

static int check_string(dsval *v, long line, json_t *o, const char *key, int nonempty) {
  json_t *x = json_object_get(o, key);
  if (!x) {
    if (nonempty) return bad(v, line, "empty_text", "\"%s\" is missing", key);
    return bad(v, line, "data_type", "\"%s\" is missing", key);
  }
  if (!json_is_string(x)) return bad(v, line, "data_type", "\"%s\" must be a string", key);
  if (nonempty && json_string_length(x) == 0)
    return bad(v, line, "empty_text", "\"%s\" is empty", key);
  return 0;
}

/* label into out (>= 64 bytes). */
static int check_label(dsval *v, long line, json_t *o, char *out) {
  json_t *l = json_object_get(o, "label");
  if (!l || json_is_null(l)) return bad(v, line, "missing_label", "\"label\" is missing");
  if (json_is_integer(l)) {
    snprintf(out, DSVAL_LABEL_MAX + 1, "%lld", (long long)json_integer_value(l));
    return 0;
  }
  if (!json_is_string(l))
    return bad(v, line, "data_type", "\"label\" must be a string or an integer");
  size_t n = json_string_length(l);
  if (n == 0) return bad(v, line, "missing_label", "\"label\" is empty");
  if (n > DSVAL_LABEL_MAX || memchr(json_string_value(l), 0, n))
    return bad(v, line, "data_type", "\"label\" is longer than 63 bytes or contains NUL");
  memcpy(out, json_string_value(l), n + 1);
  return 0;
}

static void jsonl_record(dsval *v, long line, const char *p, size_t n) {
  size_t bad_at;
  if (!utf8_ok((const unsigned char *)p, n, &bad_at)) {
    bad(v, line, "invalid_utf8", "not valid UTF-8 (byte %zu of the line)", bad_at + 1);
    return;
  }
  json_error_t je;
  json_t *o = json_loadb(p, n, JSON_DECODE_ANY, &je);
  if (!o) {
    bad(v, line, "invalid_json", "not valid JSON: %s (column %d)", je.text, je.column);
    return;
  }
  int f = json_is_object(o) ? line_format(o) : F_NONE;
  int rc = 0;
  char label[DSVAL_LABEL_MAX + 1] = "";
  if (!json_is_object(o)) {
    rc = bad(v, line, "data_type", "the line is not a JSON object");
  } else if (f == F_NONE) {
    if (v->format == F_CHAT)
      rc = bad(v, line, "missing_messages_list", "no \"messages\" list");
    else
      rc = bad(v, line, "unknown_format",
               "no \"messages\", \"prompt\"/\"completion\", \"text\" or \"label\" key");
  } else if (v->format == F_CLASSIFY && f == F_TEXT) {
    rc = bad(v, line, "missing_label", "\"label\" is missing");
  } else if (v->format != F_NONE && f != v->format) {
    rc = bad(v, line, "mixed_formats", "a %s example, but the file is %s (from line %ld)",
             format_names[f], format_names[v->format], v->format_line);
  } else {
    if (v->format == F_NONE) v->format = f, v->format_line = line;
    switch (f) {
      case F_CHAT:
        rc = check_chat(v, line, o);
        break;
      case F_PROMPT:
        rc = check_string(v, line, o, "prompt", 0);
        if (!rc) rc = check_string(v, line, o, "completion", 1);
        break;
      case F_TEXT:
        rc = check_string(v, line, o, "text", 1);
        break;
      case F_CLASSIFY:
        rc = check_string(v, line, o, "text", 1);
        if (!rc) rc = check_label(v, line, o, label);
        break;
    }
  }
  json_decref(o);
  if (rc) return;
  if (f == F_CLASSIFY) count_label(v, label);
  good(v, p, n);
}

/* ---- CSV ------------------------------------------------------------------ */

/* Splits buf[0..n) into fields, unquoting in place; v->fld gets (start, len)
 * pairs. Returns the field count, or -1 with *why set. */
static int csv_split(dsval *v, size_t n, const char **why) {
  char *b = v->buf;
  int nf = 0;
  size_t i = 0;
  for (;;) {
    if (nf == v->fld_cap) {
      int cap = v->fld_cap ? 2 * v->fld_cap : 16;
      size_t *f = realloc(v->fld, 2 * (size_t)cap * sizeof *f);
      if (!f) {
        v->oom = 1;
        *why = "out of memory";
        return -1;
      }
      v->fld = f;
      v->fld_cap = cap;
    }
    size_t start = i, out = i;
    if (i < n && b[i] == '"') {
      for (i++;; i++) {
        if (i >= n) {
          *why = "a quoted field is not closed";
          return -1;
        }
        if (b[i] == '"') {
          if (i + 1 < n && b[i + 1] == '"') {
            b[out++] = '"';
            i++;
            continue;
          }
          i++;
          break;
        }
        b[out++] = b[i];
      }
      if (i < n && b[i] != ',') {
        *why = "a character after the closing quote of a field";
        return -1;
      }
    } else {
      for (; i < n && b[i] != ','; i++) {
        if (b[i] == '"') {
          *why = "a quote inside an unquoted field";
          return -1;
        }
      }
      out = i;
    }
    v->fld[2 * nf] = start;
    v->fld[2 * nf + 1] = out - start;
    nf++;
    if (i < n && b[i] == ',') {
      i++;
      continue;
    }
    return nf;
  }
}

static int field_is(dsval *v, int k, const char *name) {
  size_t s = v->fld[2 * k], len = v->fld[2 * k + 1];
  while (len && (v->buf[s] == ' ' || v->buf[s] == '\t')) s++, len--;
  while (len && (v->buf[s + len - 1] == ' ' || v->buf[s + len - 1] == '\t')) len--;
  return len == strlen(name) && !strncasecmp(v->buf + s, name, len);
}

static void csv_header(dsval *v, long line, int nf) {
  v->header_done = 1;
  v->ncols = nf;
  v->col_text = v->col_label = v->col_prompt = v->col_completion = -1;
  for (int k = 0; k < nf; k++) {
    if (field_is(v, k, "text") && v->col_text < 0) v->col_text = k;
    if (field_is(v, k, "label") && v->col_label < 0) v->col_label = k;
    if (field_is(v, k, "prompt") && v->col_prompt < 0) v->col_prompt = k;
    if (field_is(v, k, "completion") && v->col_completion < 0) v->col_completion = k;
  }
  if (v->col_text >= 0 && v->col_label >= 0)
    v->format = F_CLASSIFY;
  else if (v->col_prompt >= 0 && v->col_completion >= 0)
    v->format = F_PROMPT;
  else if (v->col_text >= 0)
    v->format = F_TEXT;
  if (v->format) {
    v->format_line = line;
    return;
  }
  v->header_bad = 1;
  bad(v, line, "csv_header",
      "the header must name a \"text\" column (and \"label\"), or \"prompt\" and \"completion\"");
}

static void csv_record(dsval *v, long line, size_t n) {
  size_t bad_at;
  if (!utf8_ok((const unsigned char *)v->buf, n, &bad_at)) {
    if (!v->header_done) v->header_done = v->header_bad = 1;
    bad(v, line, "invalid_utf8", "not valid UTF-8 (byte %zu of the record)", bad_at + 1);
    return;
  }
  if (v->header_bad) return;      /* rows mean nothing without a header */
  uint64_t h = hash64(v->buf, n); /* before unquoting rewrites buf */
  const char *why = NULL;
  int nf = csv_split(v, n, &why);
  if (nf < 0) {
    if (!v->header_done) v->header_done = v->header_bad = 1;
    bad(v, line, "csv_quoting", "malformed CSV: %s", why);
    return;
  }
  if (!v->header_done) {
    csv_header(v, line, nf);
    return;
  }
  if (nf != v->ncols) {
    bad(v, line, "csv_columns", "%d fields, but the header has %d", nf, v->ncols);
    return;
  }
  char label[DSVAL_LABEL_MAX + 1] = "";
  switch (v->format) {
    case F_TEXT:
    case F_CLASSIFY:
      if (v->fld[2 * v->col_text + 1] == 0) {
        bad(v, line, "empty_text", "the \"text\" field is empty");
        return;
      }
      if (v->format == F_TEXT) break;
      size_t ls = v->fld[2 * v->col_label], ln = v->fld[2 * v->col_label + 1];
      if (ln == 0) {
        bad(v, line, "missing_label", "the \"label\" field is empty");
        return;
      }
      if (ln > DSVAL_LABEL_MAX || memchr(v->buf + ls, 0, ln)) {
        bad(v, line, "data_type", "the \"label\" field is longer than 63 bytes or contains NUL");
        return;
      }
      memcpy(label, v->buf + ls, ln);
      label[ln] = 0;
      count_label(v, label);
      break;
    case F_PROMPT:
      if (v->fld[2 * v->col_completion + 1] == 0) {
        bad(v, line, "empty_text", "the \"completion\" field is empty");
        return;
      }
      break;
  }
  v->examples++;
  if (set_add(v, h)) v->duplicates++;
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
  free(v->set);
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
  if (v->format == F_NONE && v->error_count == 0)
    bad(v, 1, "unknown_format", "the file has no examples");
  else if (v->csv && v->format != F_NONE && v->examples == 0 && v->error_count == 0)
    bad(v, v->format_line, "csv_header", "the file has a header but no rows");
  if (v->oom) return FT_ENOMEM;
  json_t *r = json_pack(
      "{s:o, s:I, s:O, s:I, s:I, s:I}", "format",
      format_names[v->format] ? json_string(format_names[v->format]) : json_null(), "examples",
      (json_int_t)v->examples, "errors", v->errors, "error_count", (json_int_t)v->error_count,
      "duplicates", (json_int_t)v->duplicates, "empty_lines", (json_int_t)v->empty_lines);
  if (r && v->format == F_CLASSIFY && json_object_set(r, "label_counts", v->labels)) {
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
