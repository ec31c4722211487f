/* The shared record checker, cleaner and content key (see record.h). Every
 * function looks at one record: linear in its size, no state across
 * records except the file's format, which the caller keeps. */
#include "data/record.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ft_err.h"
#include "ft_utf8.h"

const char *rec_format_name(ft_data_format f) {
  switch (f) {
    case FT_DATA_CHAT:
      return "chat";
    case FT_DATA_PROMPT:
      return "prompt_completion";
    case FT_DATA_TEXT:
      return "text";
    case FT_DATA_CLASSIFY:
      return "classification";
  }
  return NULL;
}

uint64_t rec_hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a splitmix finaliser */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  h ^= (uint64_t)n;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h ? h : 1;
}

static int bad(rec_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(rec_error *e, const char *code, const char *fmt, ...) {
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return -1;
}

json_t *rec_parse_jsonl(const char *p, size_t n, rec_error *e) {
  size_t at;
  if (!ft_utf8_valid(p, n, &at)) {
    bad(e, "invalid_utf8", "not valid UTF-8 (byte %zu of the line)", at + 1);
    return NULL;
  }
  json_error_t je;
  json_t *o = json_loadb(p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
  if (!o) bad(e, "invalid_json", "not valid JSON: %s (column %d)", je.text, je.column);
  return o;
}

static ft_data_format detect(const json_t *o) {
  if (json_object_get(o, "messages")) return FT_DATA_CHAT;
  if (json_object_get(o, "prompt") || json_object_get(o, "completion")) return FT_DATA_PROMPT;
  if (json_object_get(o, "label")) return FT_DATA_CLASSIFY;
  if (json_object_get(o, "text")) return FT_DATA_TEXT;
  return 0;
}

static int has_nul(const json_t *s) {
  return memchr(json_string_value(s), 0, json_string_length(s)) != NULL;
}

/* A message's weight: 1 when absent. */
static int weight_of(const json_t *m) {
  json_t *w = json_object_get(m, "weight");
  return !w || json_number_value(w) != 0.0;
}

static int check_chat(const json_t *o, rec_error *e) {
  json_t *msgs = json_object_get(o, "messages");
  if (!json_is_array(msgs) || json_array_size(msgs) == 0)
    return bad(e, "missing_messages_list", "\"messages\" must be a non-empty list");
  int trained = 0;
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    if (!json_is_object(m)) return bad(e, "data_type", "messages[%zu] is not an object", i);
    json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
    if (!role || !content)
      return bad(e, "message_missing_key", "messages[%zu] has no \"%s\"", i,
                 role ? "content" : "role");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)m, k, x) {
      if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name") && strcmp(k, "weight"))
        return bad(e, "message_unrecognized_key", "messages[%zu] has an unrecognized key \"%.64s\"",
                   i, k);
    }
    const char *r = json_string_value(role);
    if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
      return bad(e, "unrecognized_role",
                 "messages[%zu].role must be \"system\", \"user\" or \"assistant\"", i);
    if (!json_is_string(content) || json_string_length(content) == 0)
      return bad(e, "missing_content", "messages[%zu].content must be a non-empty string", i);
    if (has_nul(content))
      return bad(e, "data_type", "messages[%zu].content contains a NUL character", i);
    json_t *name = json_object_get(m, "name");
    if (name && !json_is_string(name))
      return bad(e, "data_type", "messages[%zu].name must be a string", i);
    json_t *w = json_object_get(m, "weight");
    if (w && (!json_is_number(w) || (json_number_value(w) != 0.0 && json_number_value(w) != 1.0)))
      return bad(e, "data_type", "messages[%zu].weight must be 0 or 1", i);
    if (!strcmp(r, "assistant") && weight_of(m)) trained = 1;
  }
  if (!trained)
    return bad(e, "example_missing_assistant_message",
               "no message has role \"assistant\" (with weight 1) to train on");
  return 0;
}

static int check_string(const json_t *o, const char *key, int nonempty, rec_error *e) {
  json_t *x = json_object_get(o, key);
  if (!x) {
    if (nonempty) return bad(e, "empty_text", "\"%s\" is missing", key);
    return bad(e, "data_type", "\"%s\" is missing", key);
  }
  if (!json_is_string(x)) return bad(e, "data_type", "\"%s\" must be a string", key);
  if (nonempty && json_string_length(x) == 0) return bad(e, "empty_text", "\"%s\" is empty", key);
  if (has_nul(x)) return bad(e, "data_type", "\"%s\" contains a NUL character", key);
  return 0;
}

static int check_label(const json_t *o, rec_error *e) {
  json_t *l = json_object_get(o, "label");
  if (!l || json_is_null(l)) return bad(e, "missing_label", "\"label\" is missing");
  if (json_is_integer(l)) return 0;
  if (!json_is_string(l)) return bad(e, "data_type", "\"label\" must be a string or an integer");
  size_t n = json_string_length(l);
  if (n == 0) return bad(e, "missing_label", "\"label\" is empty");
  if (n >= REC_LABEL_MAX || has_nul(l))
    return bad(e, "data_type", "\"label\" is longer than 63 bytes or contains NUL");
  return 0;
}

int rec_check(const json_t *o, ft_data_format *fmt, long *fmt_line, long line, rec_error *e) {
  if (!json_is_object(o)) return bad(e, "data_type", "the record is not a JSON object");
  ft_data_format f = detect(o);
  if (!f) {
    if (*fmt == FT_DATA_CHAT) return bad(e, "missing_messages_list", "no \"messages\" list");
    return bad(e, "unknown_format",
               "no \"messages\", \"prompt\"/\"completion\", \"text\" or \"label\" key");
  }
  if (*fmt == FT_DATA_CLASSIFY && f == FT_DATA_TEXT)
    return bad(e, "missing_label", "\"label\" is missing");
  if (*fmt && f != *fmt)
    return bad(e, "mixed_formats", "a %s example, but the file is %s (from line %ld)",
               rec_format_name(f), rec_format_name(*fmt), *fmt_line);
  if (!*fmt) *fmt = f, *fmt_line = line;
  switch (f) {
    case FT_DATA_CHAT:
      return check_chat(o, e);
    case FT_DATA_PROMPT:
      if (check_string(o, "prompt", 0, e)) return -1;
      return check_string(o, "completion", 1, e);
    case FT_DATA_TEXT:
      return check_string(o, "text", 1, e);
    case FT_DATA_CLASSIFY:
      if (check_string(o, "text", 1, e)) return -1;
      return check_label(o, e);
  }
  return bad(e, "unknown_format", "unknown record format");
}

void rec_label(const json_t *o, char out[REC_LABEL_MAX]) {
  json_t *l = json_object_get(o, "label");
  if (json_is_integer(l))
    snprintf(out, REC_LABEL_MAX, "%lld", (long long)json_integer_value(l));
  else
    snprintf(out, REC_LABEL_MAX, "%s", json_string_value(l) ? json_string_value(l) : "");
}

/* ---- cleaning ------------------------------------------------------------- */

enum { TRIM_BOTH, TRIM_LEAD, TRIM_COMPLETION };

static int ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* CRLF and CR to LF, then trims as mode says. Returns the cleaned length, or
 * FT_ENOMEM. */
static int clean_string(json_t *s, int mode, size_t *len) {
  const char *p = json_string_value(s);
  size_t n = json_string_length(s);
  char *b = malloc(n + 2);
  if (!b) return FT_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\r') {
      b[k++] = '\n';
      if (i + 1 < n && p[i + 1] == '\n') i++;
    } else {
      b[k++] = p[i];
    }
  }
  size_t a = 0, z = k;
  if (mode != TRIM_LEAD)
    while (z > 0 && ws(b[z - 1])) z--;
  while (a < z && ws(b[a])) a++;
  if (mode == TRIM_COMPLETION && a > 0 && b[0] == ' ' && a < z) b[--a] = ' ';
  int changed = a != 0 || z != n || k != n;
  int rc = 0;
  if (changed && json_string_setn_nocheck(s, b + a, z - a)) rc = FT_ENOMEM;
  free(b);
  *len = z - a;
  return rc;
}

int rec_clean(json_t *o, ft_data_format f) {
  size_t n = 0, n2 = 0;
  int rc;
  json_t *l;
  switch (f) {
    case FT_DATA_TEXT:
      if ((rc = clean_string(json_object_get(o, "text"), TRIM_BOTH, &n))) return rc;
      return n == 0;
    case FT_DATA_PROMPT:
      if ((rc = clean_string(json_object_get(o, "prompt"), TRIM_LEAD, &n))) return rc;
      if ((rc = clean_string(json_object_get(o, "completion"), TRIM_COMPLETION, &n2))) return rc;
      return n2 == 0;
    case FT_DATA_CLASSIFY:
      if ((rc = clean_string(json_object_get(o, "text"), TRIM_BOTH, &n))) return rc;
      l = json_object_get(o, "label");
      if (json_is_string(l) && (rc = clean_string(l, TRIM_BOTH, &n2))) return rc;
      return n == 0 || (json_is_string(l) && n2 == 0);
    case FT_DATA_CHAT: {
      size_t i;
      json_t *m;
      int kept = 0;
      json_array_foreach(json_object_get(o, "messages"), i, m) {
        if ((rc = clean_string(json_object_get(m, "content"), TRIM_BOTH, &n))) return rc;
        if (!strcmp(json_string_value(json_object_get(m, "role")), "assistant") && weight_of(m) &&
            n > 0)
          kept = 1;
      }
      return !kept;
    }
  }
  return 0;
}

static int put(char **buf, size_t *n, size_t *cap, const char *s, size_t len) {
  if (*n + len + 1 > *cap) {
    size_t c = *cap ? *cap : 256;
    while (c < *n + len + 1) c *= 2;
    char *q = realloc(*buf, c);
    if (!q) return FT_ENOMEM;
    *buf = q;
    *cap = c;
  }
  if (len) memcpy(*buf + *n, s, len);
  *n += len;
  (*buf)[(*n)++] = 0;
  return 0;
}

static int put_str(char **buf, size_t *n, size_t *cap, const json_t *s) {
  return put(buf, n, cap, json_string_value(s), json_string_length(s));
}

int rec_key(const json_t *o, ft_data_format f, char **buf, size_t *n, size_t *cap) {
  *n = 0;
  char tag = (char)('0' + f);
  if (put(buf, n, cap, &tag, 1)) return FT_ENOMEM;
  switch (f) {
    case FT_DATA_TEXT:
      return put_str(buf, n, cap, json_object_get(o, "text"));
    case FT_DATA_PROMPT:
      if (put_str(buf, n, cap, json_object_get(o, "prompt"))) return FT_ENOMEM;
      return put_str(buf, n, cap, json_object_get(o, "completion"));
    case FT_DATA_CLASSIFY: {
      char label[REC_LABEL_MAX];
      rec_label(o, label);
      if (put_str(buf, n, cap, json_object_get(o, "text"))) return FT_ENOMEM;
      return put(buf, n, cap, label, strlen(label));
    }
    case FT_DATA_CHAT: {
      size_t i;
      json_t *m;
      json_array_foreach(json_object_get(o, "messages"), i, m) {
        const char *w = weight_of(m) ? "1" : "0";
        if (put_str(buf, n, cap, json_object_get(m, "role")) ||
            put_str(buf, n, cap, json_object_get(m, "content")) || put(buf, n, cap, w, 1))
          return FT_ENOMEM;
      }
      return 0;
    }
  }
  return 0;
}

/* ---- CSV ------------------------------------------------------------------ */

int rec_csv_split(char *b, size_t n, size_t **fldp, int *fld_cap, const char **why) {
  int nf = 0;
  size_t i = 0;
  for (;;) {
    if (nf == *fld_cap) {
      int cap = *fld_cap ? 2 * *fld_cap : 16;
      size_t *f = realloc(*fldp, 2 * (size_t)cap * sizeof *f);
      if (!f) {
        *why = "out of memory";
        return FT_ENOMEM;
      }
      *fldp = f;
      *fld_cap = cap;
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
    (*fldp)[2 * nf] = start;
    (*fldp)[2 * nf + 1] = out - start;
    nf++;
    if (i < n && b[i] == ',') {
      i++;
      continue;
    }
    return nf;
  }
}

static int field_is(const char *b, const size_t *fld, int k, const char *name) {
  size_t s = fld[2 * k], len = fld[2 * k + 1];
  while (len && (b[s] == ' ' || b[s] == '\t')) s++, len--;
  while (len && (b[s + len - 1] == ' ' || b[s + len - 1] == '\t')) len--;
  return len == strlen(name) && !strncasecmp(b + s, name, len);
}

ft_data_format rec_csv_header(const char *b, const size_t *fld, int nf, int cols[4]) {
  static const char *names[4] = {"text", "label", "prompt", "completion"};
  for (int c = 0; c < 4; c++) cols[c] = -1;
  for (int k = 0; k < nf; k++)
    for (int c = 0; c < 4; c++)
      if (cols[c] < 0 && field_is(b, fld, k, names[c])) cols[c] = k;
  if (cols[0] >= 0 && cols[1] >= 0) return FT_DATA_CLASSIFY;
  if (cols[2] >= 0 && cols[3] >= 0) return FT_DATA_PROMPT;
  if (cols[0] >= 0) return FT_DATA_TEXT;
  return 0;
}

json_t *rec_csv_object(const char *b, const size_t *fld, ft_data_format f, const int cols[4]) {
  static const char *names[4] = {"text", "label", "prompt", "completion"};
  int use[4] = {f == FT_DATA_CLASSIFY || f == FT_DATA_TEXT, f == FT_DATA_CLASSIFY,
                f == FT_DATA_PROMPT, f == FT_DATA_PROMPT};
  json_t *o = json_object();
  if (!o) return NULL;
  for (int c = 0; c < 4; c++) {
    if (!use[c] || cols[c] < 0) continue;
    /* UTF-8 was checked over the whole record; NULs are refused by rec_check. */
    json_t *s = json_stringn_nocheck(b + fld[2 * cols[c]], fld[2 * cols[c] + 1]);
    if (!s || json_object_set_new_nocheck(o, names[c], s)) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}
