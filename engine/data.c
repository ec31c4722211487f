/* Dataset loading and batching (see data.h). The file is read into memory
 * once; every record (a JSONL line, or a CSV row turned into the same kind of
 * JSON object) goes through one handler that checks it against the file's
 * format, renders and tokenizes it into a scratch sequence with a per-token
 * "trained" mask, and appends the cut sequence to growing flat arrays, packed
 * into one block at the end. Workload: up to a few hundred MB of text,
 * tokenization dominates; nothing here is per-step except batcher_get, which
 * copies B x T ints. */
#include "data.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 64

typedef struct {
  const tok *t;
  const ft_data_opts *o;
  ft_error *err;
  int code;              /* FT_ETRAIN_FILE / FT_EVALID_FILE */
  const char *param;     /* "training_file" / "validation_file" */
  int bos, eos;          /* -1 when not added */
  int chatml;            /* tokenizer has <|im_start|> */
  ft_data_format format; /* 0 until the first record */
  /* scratch sequence of the current record */
  int32_t *seq;
  uint8_t *mask; /* 1 = this token is a training target */
  size_t seq_n, seq_cap;
  /* growing outputs */
  int32_t *tok, *tgt;
  size_t n_tok, cap_tok;
  size_t *off;
  int32_t *lab;
  size_t n_ex, cap_ex;
  /* training labels before sorting: distinct names in first-seen order */
  char (*names)[LABEL_MAX];
  int n_names;
  ft_dataset *d;
} loader;

static int fail(loader *L, long line, const char *fmt, const char *a) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a ? a : "");
  if (line > 0) return ft_error_set(L->err, L->code, L->param, "line %ld: %s", line, msg);
  return ft_error_set(L->err, L->code, L->param, "%s", msg);
}

static int nomem(loader *L) { return ft_error_set(L->err, FT_ENOMEM, NULL, "data: out of memory"); }

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return -1;
  *p = q;
  *cap = c;
  return 0;
}

/* Appends one token to the scratch sequence. */
static int push(loader *L, int32_t id, int trained) {
  size_t cap = L->seq_cap;
  if (L->seq_n + 1 > cap) {
    size_t c2 = cap;
    if (grow((void **)&L->seq, &cap, L->seq_n + 1, sizeof *L->seq)) return nomem(L);
    if (grow((void **)&L->mask, &c2, L->seq_n + 1, sizeof *L->mask)) return nomem(L);
    L->seq_cap = cap;
  }
  L->seq[L->seq_n] = id;
  L->mask[L->seq_n] = (uint8_t)(trained != 0);
  L->seq_n++;
  return 0;
}

/* Tokenizes s and appends it. special: recognise special tokens in s (only
 * for our own template markers, never for user text). */
static int enc(loader *L, long line, const char *s, size_t len, int special, int trained) {
  if (len == 0) return 0;
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(L->t, s, len, special, &ids, &n);
  if (rc == FT_EUTF8) return fail(L, line, "text is not valid UTF-8", NULL);
  if (rc == FT_ENOMEM) return nomem(L);
  if (rc) return fail(L, line, "cannot tokenize the text", NULL);
  for (size_t i = 0; i < n && !rc; i++) rc = push(L, ids[i], trained);
  free(ids);
  return rc;
}

static const char *fmt_name(ft_data_format f) {
  switch (f) {
    case FT_DATA_TEXT:
      return "text";
    case FT_DATA_PROMPT:
      return "prompt/completion";
    case FT_DATA_CHAT:
      return "chat (messages)";
    case FT_DATA_CLASSIFY:
      return "classification (text/label)";
  }
  return "?";
}

/* A string field of obj: 0 and *s,*n set, or an error naming it. */
static int get_str(loader *L, long line, json_t *obj, const char *key, int allow_empty,
                   const char **s, size_t *n) {
  json_t *v = json_object_get(obj, key);
  if (!v) return fail(L, line, "missing field \"%s\"", key);
  if (!json_is_string(v)) return fail(L, line, "field \"%s\" must be a string", key);
  *s = json_string_value(v);
  *n = json_string_length(v);
  if (!allow_empty && *n == 0) return fail(L, line, "field \"%s\" is empty", key);
  if (strlen(*s) != *n) return fail(L, line, "field \"%s\" contains a NUL character", key);
  return 0;
}

static int render_chat(loader *L, long line, json_t *obj) {
  json_t *msgs = json_object_get(obj, "messages");
  if (!json_is_array(msgs)) return fail(L, line, "\"messages\" must be an array", NULL);
  if (json_array_size(msgs) == 0) return fail(L, line, "\"messages\" is empty", NULL);
  static const char *roles[] = {"system", "user", "assistant", "tool", "developer"};
  int n_trained = 0, rc;
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    char where[64];
    snprintf(where, sizeof where, "messages[%zu]", i);
    if (!json_is_object(m)) return fail(L, line, "%s must be an object", where);
    json_t *jr = json_object_get(m, "role"), *jc = json_object_get(m, "content");
    json_t *jw = json_object_get(m, "weight");
    if (!json_is_string(jr)) return fail(L, line, "%s.role must be a string", where);
    if (!json_is_string(jc)) return fail(L, line, "%s.content must be a string", where);
    const char *role = json_string_value(jr);
    int known = 0;
    for (size_t k = 0; k < sizeof roles / sizeof *roles; k++)
      if (strcmp(role, roles[k]) == 0) known = 1;
    if (!known) {
      char msg[200];
      snprintf(msg, sizeof msg, "%.60s.role \"%.60s\" is not system, user, assistant or tool",
               where, role);
      return fail(L, line, "%s", msg);
    }
    double w = 1.0;
    if (jw) {
      if (!json_is_number(jw)) return fail(L, line, "%s.weight must be 0 or 1", where);
      w = json_number_value(jw);
      if (w != 0.0 && w != 1.0) return fail(L, line, "%s.weight must be 0 or 1", where);
    }
    const char *content = json_string_value(jc);
    size_t clen = json_string_length(jc);
    if (strlen(content) != clen) return fail(L, line, "%s.content contains a NUL character", where);
    int train = strcmp(role, "assistant") == 0 && w != 0.0;
    if (train && clen == 0) return fail(L, line, "%s.content is empty", where);
    n_trained += train;
    char head[96];
    if (L->chatml) {
      snprintf(head, sizeof head, "<|im_start|>%s\n", role);
      if ((rc = enc(L, line, head, strlen(head), 1, 0))) return rc;
      if ((rc = enc(L, line, content, clen, 0, train))) return rc;
      if ((rc = enc(L, line, "<|im_end|>", 10, 1, train))) return rc;
      if ((rc = enc(L, line, "\n", 1, 0, 0))) return rc;
    } else {
      snprintf(head, sizeof head, "%s: ", role);
      if ((rc = enc(L, line, head, strlen(head), 0, 0))) return rc;
      if ((rc = enc(L, line, content, clen, 0, train))) return rc;
      if ((rc = enc(L, line, "\n", 1, 0, train))) return rc;
    }
  }
  if (n_trained == 0) return fail(L, line, "no assistant message with weight 1 to train on", NULL);
  if (!L->chatml && L->eos >= 0) {
    /* The fallback has no end marker of its own: EOS ends the conversation,
     * trained when the last message is a trained one. */
    size_t last = json_array_size(msgs) - 1;
    json_t *lm = json_array_get(msgs, last), *lw = json_object_get(lm, "weight");
    int train = strcmp(json_string_value(json_object_get(lm, "role")), "assistant") == 0 &&
                !(lw && json_number_value(lw) == 0.0);
    if ((rc = push(L, L->eos, train))) return rc;
  }
  return 0;
}

static int label_of(loader *L, long line, json_t *obj, char out[LABEL_MAX]) {
  json_t *v = json_object_get(obj, "label");
  if (!v) return fail(L, line, "missing field \"label\"", NULL);
  if (json_is_integer(v)) {
    snprintf(out, LABEL_MAX, "%lld", (long long)json_integer_value(v));
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) return fail(L, line, "field \"label\" is empty", NULL);
    if (n >= LABEL_MAX || strlen(s) != n)
      return fail(L, line, "label is longer than 63 bytes or contains NUL", NULL);
    memcpy(out, s, n + 1);
  } else {
    return fail(L, line, "field \"label\" must be a string or an integer", NULL);
  }
  return 0;
}

static int cmp_label(const void *a, const void *b) { return strcmp(a, b); }

/* The class id of a label: validation looks it up in the training set;
 * training collects distinct names (first-seen order, remapped at the end). */
static int label_id(loader *L, long line, const char *name, int32_t *id) {
  if (L->o->labels) {
    const ft_dataset *tr = L->o->labels;
    const char(*hit)[LABEL_MAX] =
        bsearch(name, tr->label_names, (size_t)tr->num_labels, LABEL_MAX, cmp_label);
    if (!hit) return fail(L, line, "label \"%s\" does not occur in the training file", name);
    *id = (int32_t)(hit - tr->label_names);
    return 0;
  }
  for (int i = 0; i < L->n_names; i++)
    if (strcmp(L->names[i], name) == 0) {
      *id = i;
      return 0;
    }
  if (L->n_names >= FT_MAX_LABELS)
    return fail(L, line, "more than 256 distinct labels (at \"%s\")", name);
  if (L->n_names % 16 == 0) {
    void *q = realloc(L->names, (size_t)(L->n_names + 16) * LABEL_MAX);
    if (!q) return nomem(L);
    L->names = q;
  }
  memcpy(L->names[L->n_names], name, LABEL_MAX);
  *id = L->n_names++;
  return 0;
}

/* Cuts the scratch sequence and appends it as one example. */
static int commit(loader *L, long line, int32_t label) {
  size_t n = L->seq_n;
  if (n == 0) return fail(L, line, "the text has no tokens", NULL);
  if (n > (size_t)L->o->max_seq_len) {
    n = (size_t)L->o->max_seq_len;
    L->d->n_truncated++;
  }
  int lm = L->format != FT_DATA_CLASSIFY;
  long n_targets = 0;
  if (lm) {
    for (size_t i = 0; i + 1 < n; i++) n_targets += L->mask[i + 1];
    if (n_targets == 0) {
      L->d->n_dropped++;
      return 0;
    }
  }
  size_t cap = L->cap_tok;
  if (grow((void **)&L->tok, &cap, L->n_tok + n, sizeof *L->tok)) return nomem(L);
  if (lm) {
    size_t c2 = L->cap_tok;
    if (grow((void **)&L->tgt, &c2, L->n_tok + n, sizeof *L->tgt)) return nomem(L);
  }
  L->cap_tok = cap;
  size_t ce = L->cap_ex;
  if (grow((void **)&L->off, &ce, L->n_ex + 2, sizeof *L->off)) return nomem(L);
  if (!lm) {
    size_t c3 = L->cap_ex;
    if (grow((void **)&L->lab, &c3, L->n_ex + 2, sizeof *L->lab)) return nomem(L);
  }
  L->cap_ex = ce;
  memcpy(L->tok + L->n_tok, L->seq, n * sizeof *L->tok);
  if (lm) {
    int32_t *tg = L->tgt + L->n_tok;
    for (size_t i = 0; i + 1 < n; i++) tg[i] = L->mask[i + 1] ? L->seq[i + 1] : -1;
    tg[n - 1] = -1;
    L->d->n_target_tokens += n_targets;
  } else {
    L->lab[L->n_ex] = label;
  }
  L->off[L->n_ex] = L->n_tok;
  L->n_tok += n;
  L->n_ex++;
  L->off[L->n_ex] = L->n_tok;
  if ((int)n > L->d->max_len) L->d->max_len = (int)n;
  return 0;
}

static ft_data_format detect(json_t *obj) {
  if (json_object_get(obj, "messages")) return FT_DATA_CHAT;
  if (json_object_get(obj, "prompt") || json_object_get(obj, "completion")) return FT_DATA_PROMPT;
  if (json_object_get(obj, "label")) return FT_DATA_CLASSIFY;
  if (json_object_get(obj, "text")) return FT_DATA_TEXT;
  return 0;
}

static int record(loader *L, long line, json_t *obj) {
  ft_data_format f = detect(obj);
  if (!f)
    return fail(L, line,
                "no \"text\", \"prompt\"/\"completion\", \"messages\" or \"label\" field%s", NULL);
  if (!L->format) {
    int cls = L->o->task == FT_TASK_CLASSIFY;
    if (cls && f != FT_DATA_CLASSIFY)
      return fail(L, line, "a %s record, but classification needs {\"text\",\"label\"}",
                  fmt_name(f));
    if (!cls && f == FT_DATA_CLASSIFY)
      return fail(L, line,
                  "a classification record (it has \"label\"), but the job is supervised%s", NULL);
    L->format = f;
    L->d->format = f;
  } else if (f != L->format) {
    char msg[128];
    snprintf(msg, sizeof msg, "a %s record in a %s file", fmt_name(f), fmt_name(L->format));
    return fail(L, line, "%s", msg);
  }
  L->seq_n = 0;
  L->d->n_lines++;
  int rc;
  const char *s, *s2;
  size_t n, n2;
  if (L->bos >= 0 && (rc = push(L, L->bos, 0))) return rc;
  switch (f) {
    case FT_DATA_TEXT:
      if ((rc = get_str(L, line, obj, "text", 0, &s, &n))) return rc;
      if ((rc = enc(L, line, s, n, 0, 1))) return rc;
      if (L->eos >= 0 && (rc = push(L, L->eos, 1))) return rc;
      return commit(L, line, -1);
    case FT_DATA_PROMPT:
      if ((rc = get_str(L, line, obj, "prompt", 1, &s, &n))) return rc;
      if ((rc = get_str(L, line, obj, "completion", 0, &s2, &n2))) return rc;
      if ((rc = enc(L, line, s, n, 0, L->o->train_on_inputs))) return rc;
      if ((rc = enc(L, line, s2, n2, 0, 1))) return rc;
      if (L->eos >= 0 && (rc = push(L, L->eos, 1))) return rc;
      return commit(L, line, -1);
    case FT_DATA_CHAT:
      if ((rc = render_chat(L, line, obj))) return rc;
      return commit(L, line, -1);
    case FT_DATA_CLASSIFY: {
      char name[LABEL_MAX];
      int32_t id = -1;
      if ((rc = get_str(L, line, obj, "text", 0, &s, &n))) return rc;
      if ((rc = label_of(L, line, obj, name))) return rc;
      if ((rc = label_id(L, line, name, &id))) return rc;
      if ((rc = enc(L, line, s, n, 0, 0))) return rc;
      return commit(L, line, id);
    }
  }
  return fail(L, line, "unknown record format", NULL);
}

static int blank(const char *p, const char *e) {
  for (; p < e; p++)
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') return 0;
  return 1;
}

static int load_jsonl(loader *L, const char *p, const char *end) {
  long line = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    line++;
    if (!blank(p, e)) {
      json_error_t je;
      json_t *obj = json_loadb(p, (size_t)(e - p), JSON_REJECT_DUPLICATES, &je);
      if (!obj) {
        char msg[200];
        snprintf(msg, sizeof msg, "not valid JSON: %s (column %d)", je.text, je.column);
        return fail(L, line, "%s", msg);
      }
      int rc =
          json_is_object(obj) ? record(L, line, obj) : fail(L, line, "not a JSON object", NULL);
      json_decref(obj);
      if (rc) return rc;
    }
    p = e + (nl ? 1 : 0);
  }
  return 0;
}

/* One RFC 4180 record: fields into f (a growing buffer of NUL-separated
 * strings), their starts into fs. Advances *pp and *line. Returns the field
 * count, 0 at end of input, or an error. */
typedef struct {
  char *buf;
  size_t n, cap;
  size_t *start;
  size_t nf, capf;
} csv_rec;

static int csv_put(csv_rec *r, char c) {
  if (grow((void **)&r->buf, &r->cap, r->n + 1, 1)) return -1;
  r->buf[r->n++] = c;
  return 0;
}

static int csv_field(csv_rec *r) {
  if (grow((void **)&r->start, &r->capf, r->nf + 1, sizeof *r->start)) return -1;
  r->start[r->nf++] = r->n;
  return 0;
}

static int csv_next(loader *L, csv_rec *r, const char **pp, const char *end, long *line,
                    long *rec_line) {
  const char *p = *pp;
  r->n = 0;
  r->nf = 0;
  if (p >= end) return 0;
  *rec_line = *line;
  if (csv_field(r)) return nomem(L);
  for (;;) {
    if (p < end && *p == '"') { /* quoted field */
      p++;
      for (;;) {
        if (p >= end) return fail(L, *rec_line, "unterminated quoted field", NULL);
        if (*p == '"') {
          if (p + 1 < end && p[1] == '"') {
            if (csv_put(r, '"')) return nomem(L);
            p += 2;
            continue;
          }
          p++;
          break;
        }
        if (*p == '\n') (*line)++;
        if (csv_put(r, *p++)) return nomem(L);
      }
      if (p < end && *p != ',' && *p != '\n' && !(*p == '\r' && (p + 1 == end || p[1] == '\n')))
        return fail(L, *line, "unexpected character after a closing quote", NULL);
    } else {
      while (p < end && *p != ',' && *p != '\n' && !(*p == '\r' && (p + 1 == end || p[1] == '\n')))
        if (csv_put(r, *p++)) return nomem(L);
    }
    if (csv_put(r, '\0')) return nomem(L);
    if (p < end && *p == ',') {
      p++;
      if (csv_field(r)) return nomem(L);
      continue;
    }
    if (p < end && *p == '\r') p++;
    if (p < end && *p == '\n') p++;
    (*line)++;
    break;
  }
  *pp = p;
  return (int)r->nf;
}

static int load_csv(loader *L, const char *p, const char *end) {
  csv_rec r = {0};
  long line = 1, rec_line = 1;
  int rc, nh, col_text = -1, col_label = -1, col_prompt = -1, col_completion = -1;
  nh = csv_next(L, &r, &p, end, &line, &rec_line);
  if (nh < 0) {
    rc = nh;
    goto out;
  }
  for (int i = 0; i < nh; i++) {
    const char *h = r.buf + r.start[i];
    if (strcmp(h, "text") == 0) col_text = i;
    if (strcmp(h, "label") == 0) col_label = i;
    if (strcmp(h, "prompt") == 0) col_prompt = i;
    if (strcmp(h, "completion") == 0) col_completion = i;
  }
  if (col_text < 0 && col_prompt < 0 && col_completion < 0) {
    rc = fail(L, 1, "the CSV header has no \"text\" column (expected columns text,label)", NULL);
    goto out;
  }
  const int cols[4] = {col_text, col_label, col_prompt, col_completion};
  static const char *keys[4] = {"text", "label", "prompt", "completion"};
  for (;;) {
    int nf = csv_next(L, &r, &p, end, &line, &rec_line);
    if (nf < 0) {
      rc = nf;
      goto out;
    }
    if (nf == 0) break;
    if (nf == 1 && r.buf[r.start[0]] == '\0') continue; /* blank line */
    if (nf != nh) {
      char msg[96];
      snprintf(msg, sizeof msg, "expected %d fields as in the header, found %d", nh, nf);
      rc = fail(L, rec_line, "%s", msg);
      goto out;
    }
    json_t *obj = json_object();
    if (!obj) {
      rc = nomem(L);
      goto out;
    }
    for (int k = 0; k < 4; k++) {
      if (cols[k] < 0) continue;
      const char *v = r.buf + r.start[cols[k]];
      /* CSV text is not checked by jansson: tok_encode rejects bad UTF-8. */
      json_object_set_new_nocheck(obj, keys[k], json_stringn_nocheck(v, strlen(v)));
    }
    rc = record(L, rec_line, obj);
    json_decref(obj);
    if (rc) goto out;
  }
  rc = 0;
out:
  free(r.buf);
  free(r.start);
  return rc;
}

/* Sorts the training label names and renumbers the examples' ids. */
static int finish_labels(loader *L) {
  ft_dataset *d = L->d;
  if (L->n_names < 2) {
    char msg[160];
    snprintf(msg, sizeof msg, "classification needs at least 2 distinct labels, found %d%s%.64s%s",
             L->n_names, L->n_names ? " (\"" : "", L->n_names ? L->names[0] : "",
             L->n_names ? "\")" : "");
    return fail(L, 0, "%s", msg);
  }
  d->num_labels = L->n_names;
  d->label_names = malloc((size_t)L->n_names * LABEL_MAX);
  int32_t remap[FT_MAX_LABELS];
  if (!d->label_names) return nomem(L);
  memcpy(d->label_names, L->names, (size_t)L->n_names * LABEL_MAX);
  qsort(d->label_names, (size_t)L->n_names, LABEL_MAX, cmp_label);
  for (int i = 0; i < L->n_names; i++) {
    const char(*hit)[LABEL_MAX] =
        bsearch(L->names[i], d->label_names, (size_t)L->n_names, LABEL_MAX, cmp_label);
    remap[i] = (int32_t)(hit - d->label_names);
  }
  for (size_t i = 0; i < d->n; i++) d->labels[i] = remap[d->labels[i]];
  return 0;
}

void data_free(ft_dataset *d) {
  if (!d) return;
  free(d->off);
  free(d->tokens); /* tokens and targets share one block */
  free(d->labels);
  free(d->label_names);
  free(d);
}

int data_load_buffer(ft_dataset **out, const char *buf, size_t len, const tok *t,
                     const ft_data_opts *o, ft_error *err) {
  *out = NULL;
  loader L = {0};
  L.t = t;
  L.o = o;
  L.err = err;
  L.code = o->err_code ? o->err_code : FT_ETRAIN_FILE;
  L.param = L.code == FT_EVALID_FILE ? "validation_file" : "training_file";
  L.bos = o->arch == FT_ARCH_LLAMA ? tok_bos_id(t) : -1;
  L.eos = o->task == FT_TASK_CAUSAL_LM ? tok_eos_id(t) : -1;
  L.chatml = tok_token_id(t, "<|im_start|>") >= 0 && tok_token_id(t, "<|im_end|>") >= 0;
  if (o->max_seq_len <= 0)
    return ft_error_set(err, FT_EINVALID, "max_seq_len", "max_seq_len must be > 0");
  if (o->task == FT_TASK_CLASSIFY && o->labels && !o->labels->label_names)
    return ft_error_set(err, FT_EINVALID, NULL, "data: the training set has no labels");
  L.d = calloc(1, sizeof *L.d);
  if (!L.d) return nomem(&L);
  int rc;
  const char *p = buf, *end = buf + len;
  if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 BOM */
  const char *q = p;
  while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
  if (q == end) {
    rc = fail(&L, 0, "the file is empty", NULL);
    goto out;
  }
  rc = *q == '{' ? load_jsonl(&L, p, end) : load_csv(&L, p, end);
  if (rc) goto out;
  ft_dataset *d = L.d;
  d->n = L.n_ex;
  if (d->n == 0) {
    rc = fail(&L, 0,
              L.d->n_dropped ? "no example has a token to train on within max_seq_len"
                             : "the file has no examples%s",
              NULL);
    goto out;
  }
  /* Pack tokens and targets into one block. */
  int lm = L.format != FT_DATA_CLASSIFY;
  d->tokens = malloc(L.n_tok * sizeof(int32_t) * (lm ? 2 : 1));
  if (!d->tokens) {
    rc = nomem(&L);
    goto out;
  }
  memcpy(d->tokens, L.tok, L.n_tok * sizeof(int32_t));
  if (lm) {
    d->targets = d->tokens + L.n_tok;
    memcpy(d->targets, L.tgt, L.n_tok * sizeof(int32_t));
  }
  d->off = L.off;
  L.off = NULL;
  if (!lm) {
    d->labels = L.lab;
    L.lab = NULL;
    if (o->labels) {
      d->num_labels = o->labels->num_labels;
      d->label_names = malloc((size_t)d->num_labels * LABEL_MAX);
      if (!d->label_names) {
        rc = nomem(&L);
        goto out;
      }
      memcpy(d->label_names, o->labels->label_names, (size_t)d->num_labels * LABEL_MAX);
    } else if ((rc = finish_labels(&L))) {
      goto out;
    }
  }
  *out = d;
  L.d = NULL;
out:
  data_free(L.d);
  free(L.seq);
  free(L.mask);
  free(L.tok);
  free(L.tgt);
  free(L.off);
  free(L.lab);
  free(L.names);
  return rc;
}

int data_load(ft_dataset **out, const char *path, const tok *t, const ft_data_opts *o,
              ft_error *err) {
  *out = NULL;
  const char *param = o->err_code == FT_EVALID_FILE ? "validation_file" : "training_file";
  FILE *f = fopen(path, "rb");
  if (!f) return ft_error_set(err, FT_EIO, param, "cannot open %s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (grow((void **)&buf, &cap, len + 65536, 1)) {
      rc = ft_error_set(err, FT_ENOMEM, NULL, "data: out of memory");
      break;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) rc = ft_error_set(err, FT_EIO, param, "cannot read %s", path);
      break;
    }
  }
  fclose(f);
  if (!rc) rc = data_load_buffer(out, buf ? buf : "", len, t, o, err);
  free(buf);
  return rc;
}
