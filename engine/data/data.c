/* Dataset loading, cleaning and splitting (see data.h). The file is read into
 * memory once; every record (a JSONL line, or a CSV row made into the same
 * kind of JSON object) is checked by record.c exactly as the upload
 * validator checks it, cleaned, checked for being a duplicate of an earlier
 * record (by content, through a hash table over the records' content keys),
 * rendered and tokenized into a scratch sequence with a per-token "trained"
 * mask, and appended cut (or dropped) at max_seq_len to growing flat arrays,
 * packed into one block at the end. data_prepare splits by content hash.
 * Workload: up to a few hundred MB of text; tokenization dominates. */
#include "data/data.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/record.h"
#include "ft_buf.h"
#include "ft_fs.h"
#include "ft_utf8.h"

#define LABEL_MAX REC_LABEL_MAX

typedef struct {
  uint64_t h;
  size_t off, len; /* the content key in the arena */
} dup_slot;

typedef struct {
  const tok *t;
  const ft_data_opts *o;
  ft_error *err;
  int code;              /* FT_ETRAIN_FILE / FT_EVALID_FILE */
  const char *param;     /* "training_file" / "validation_file" / "test_file" */
  int bos, eos;          /* -1 when not added */
  ft_data_format format; /* 0 until the first record */
  long format_line;
  /* scratch sequence of the current record */
  int32_t *seq;
  uint8_t *mask; /* 1 = this token is a training target */
  size_t seq_n, seq_cap;
  long line; /* of the record being rendered */
  /* growing outputs */
  int32_t *tok, *tgt;
  size_t n_tok, cap_tok;
  size_t *off;
  int32_t *lab;
  long *lines;
  uint64_t *hashes;
  uint8_t *cut;
  size_t n_ex, cap_ex;
  /* training labels before sorting: distinct names in first-seen order */
  char (*names)[LABEL_MAX];
  int n_names;
  /* duplicates: content keys in an arena, an open-addressing table over them */
  char *key;
  size_t key_n, key_cap;
  char *arena;
  size_t arena_n, arena_cap;
  dup_slot *dup;
  size_t dup_n, dup_cap;
  ft_dataset *d;
} loader;

static int fail(loader *L, long line, const char *fmt, const char *a) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a ? a : "");
  if (line > 0) return ft_error_set(L->err, L->code, L->param, "line %ld: %s", line, msg);
  return ft_error_set(L->err, L->code, L->param, "%s", msg);
}

/* A record.c error: "line N: code: message". */
static int fail_rec(loader *L, long line, const rec_error *e) {
  return ft_error_set(L->err, L->code, L->param, "line %ld: %s: %s", line, e->code, e->message);
}

static int nomem(loader *L) { return ft_error_set(L->err, FT_ENOMEM, NULL, "data: out of memory"); }

/* Arrays grow by doubling from 256 elements (common/ft_buf.h). */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  return ft_grow(p, cap, need, elem, 256);
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
 * for template markup, never for user text). */
static int enc(loader *L, const char *s, size_t len, int special, int trained) {
  if (len == 0) return 0;
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(L->t, s, len, special, &ids, &n);
  if (rc == FT_EUTF8) return fail(L, L->line, "invalid_utf8: text is not valid UTF-8", NULL);
  if (rc == FT_ENOMEM) return nomem(L);
  if (rc) return fail(L, L->line, "cannot tokenize the text", NULL);
  for (size_t i = 0; i < n && !rc; i++) rc = push(L, ids[i], trained);
  free(ids);
  return rc;
}

static int render_chat(loader *L, json_t *obj) {
  json_t *msgs = json_object_get(obj, "messages");
  size_t n = json_array_size(msgs), i;
  ft_chat_msg *m = calloc(n ? n : 1, sizeof *m);
  if (!m) return nomem(L);
  json_t *x;
  json_array_foreach(msgs, i, x) {
    json_t *c = json_object_get(x, "content"), *w = json_object_get(x, "weight");
    m[i].role = json_string_value(json_object_get(x, "role"));
    m[i].content = json_string_value(c);
    m[i].content_len = json_string_length(c);
    m[i].weight = !strcmp(m[i].role, "assistant") && !(w && json_number_value(w) == 0.0);
  }
  /* Tokenized the way Hugging Face tokenizes the whole rendered text:
   * piece by piece would put an extra "\u2581" before every Llama 2 turn. */
  int32_t *ids = NULL;
  uint8_t *mask = NULL;
  size_t len = 0;
  int rc = chat_tokenize(L->o->chat, L->t, m, n, 0, &ids, &mask, &len);
  free(m);
  for (size_t k = 0; k < len && !rc; k++) rc = push(L, ids[k], mask[k]);
  free(ids);
  free(mask);
  if (rc == FT_EUTF8) return fail(L, L->line, "invalid_utf8: text is not valid UTF-8", NULL);
  if (rc == FT_ENOMEM) return nomem(L);
  if (rc == FT_EINVALID) {
    const char *rule = chat_role_rule(L->o->chat);
    return ft_error_set(L->err, L->code, L->param,
                        "line %ld: unrecognized_role: the messages' roles cannot be rendered in "
                        "the %s chat template (%s)",
                        L->line, chat_family_name(L->o->chat),
                        rule ? rule : "roles system, user and assistant only");
  }
  return rc;
}

static int cmp_label(const void *a, const void *b) { return strcmp(a, b); }

/* The class id of a label: a validation/test set looks it up in the training
 * set; a training set collects distinct names (first-seen order, remapped to
 * sorted order at the end). */
static int label_id(loader *L, const char *name, int32_t *id) {
  if (L->o->labels) {
    const ft_dataset *tr = L->o->labels;
    const char(*hit)[LABEL_MAX] =
        bsearch(name, tr->label_names, (size_t)tr->num_labels, LABEL_MAX, cmp_label);
    if (!hit) return fail(L, L->line, "label \"%s\" does not occur in the training set", name);
    *id = (int32_t)(hit - tr->label_names);
    return 0;
  }
  for (int i = 0; i < L->n_names; i++)
    if (strcmp(L->names[i], name) == 0) {
      *id = i;
      return 0;
    }
  if (L->n_names >= FT_MAX_LABELS)
    return fail(L, L->line, "more than 256 distinct labels (at \"%s\")", name);
  if (L->n_names % 16 == 0) {
    void *q = realloc(L->names, (size_t)(L->n_names + 16) * LABEL_MAX);
    if (!q) return nomem(L);
    L->names = q;
  }
  memcpy(L->names[L->n_names], name, LABEL_MAX);
  *id = L->n_names++;
  return 0;
}

/* Cuts (or drops) the scratch sequence and appends it as one example. label:
 * the label's name for classification, else NULL. */
static int commit(loader *L, uint64_t hash, const char *label) {
  size_t n = L->seq_n;
  int cut = 0;
  if (n == 0) return fail(L, L->line, "the text has no tokens", NULL);
  if (n > (size_t)L->o->max_seq_len) {
    if (L->o->drop_long) {
      L->d->n_too_long++;
      return 0;
    }
    n = (size_t)L->o->max_seq_len;
    cut = 1;
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
  int32_t id = -1;
  int rc;
  if (!lm && (rc = label_id(L, label, &id))) return rc;
  L->d->n_truncated += cut;
  size_t cap = L->cap_tok;
  if (grow((void **)&L->tok, &cap, L->n_tok + n, sizeof *L->tok)) return nomem(L);
  if (lm) {
    size_t c2 = L->cap_tok;
    if (grow((void **)&L->tgt, &c2, L->n_tok + n, sizeof *L->tgt)) return nomem(L);
  }
  L->cap_tok = cap;
  size_t ce = L->cap_ex, c3 = L->cap_ex, c4 = L->cap_ex, c5 = L->cap_ex, c6 = L->cap_ex;
  if (grow((void **)&L->off, &ce, L->n_ex + 2, sizeof *L->off) ||
      grow((void **)&L->lab, &c3, L->n_ex + 2, sizeof *L->lab) ||
      grow((void **)&L->lines, &c4, L->n_ex + 2, sizeof *L->lines) ||
      grow((void **)&L->hashes, &c5, L->n_ex + 2, sizeof *L->hashes) ||
      grow((void **)&L->cut, &c6, L->n_ex + 2, sizeof *L->cut))
    return nomem(L);
  L->cap_ex = ce;
  memcpy(L->tok + L->n_tok, L->seq, n * sizeof *L->tok);
  if (lm) {
    int32_t *tg = L->tgt + L->n_tok;
    for (size_t i = 0; i + 1 < n; i++) tg[i] = L->mask[i + 1] ? L->seq[i + 1] : -1;
    tg[n - 1] = -1;
    L->d->n_target_tokens += n_targets;
  }
  L->lab[L->n_ex] = id;
  L->lines[L->n_ex] = L->line;
  L->hashes[L->n_ex] = hash;
  L->cut[L->n_ex] = (uint8_t)cut;
  L->off[L->n_ex] = L->n_tok;
  L->n_tok += n;
  L->n_ex++;
  L->off[L->n_ex] = L->n_tok;
  if ((int)n > L->d->max_len) L->d->max_len = (int)n;
  return 0;
}

/* 1 if the current key was seen before (content equal), else adds it. */
static int seen_before(loader *L, uint64_t h, int *dup) {
  *dup = 0;
  if (2 * (L->dup_n + 1) > L->dup_cap) {
    size_t cap = L->dup_cap ? 2 * L->dup_cap : 1024;
    dup_slot *s = calloc(cap, sizeof *s);
    if (!s) return nomem(L);
    for (size_t j = 0; j < L->dup_cap; j++) {
      if (!L->dup[j].h) continue;
      size_t i = L->dup[j].h & (cap - 1);
      while (s[i].h) i = (i + 1) & (cap - 1);
      s[i] = L->dup[j];
    }
    free(L->dup);
    L->dup = s;
    L->dup_cap = cap;
  }
  size_t i = h & (L->dup_cap - 1);
  for (; L->dup[i].h; i = (i + 1) & (L->dup_cap - 1)) {
    dup_slot *x = &L->dup[i];
    if (x->h == h && x->len == L->key_n && !memcmp(L->arena + x->off, L->key, L->key_n)) {
      *dup = 1;
      return 0;
    }
  }
  if (grow((void **)&L->arena, &L->arena_cap, L->arena_n + L->key_n, 1)) return nomem(L);
  memcpy(L->arena + L->arena_n, L->key, L->key_n);
  L->dup[i] = (dup_slot){h, L->arena_n, L->key_n};
  L->arena_n += L->key_n;
  L->dup_n++;
  return 0;
}

static int record(loader *L, long line, json_t *obj) {
  rec_error e;
  L->line = line;
  if (rec_check(obj, &L->format, &L->format_line, line, &e)) return fail_rec(L, line, &e);
  ft_data_format f = L->format;
  if (!L->d->format) {
    int cls = L->o->task == FT_TASK_CLASSIFY;
    if (cls && f != FT_DATA_CLASSIFY)
      return fail(L, line, "a %s example, but a classification job needs {\"text\",\"label\"}",
                  rec_format_name(f));
    if (!cls && f == FT_DATA_CLASSIFY)
      return fail(L, line,
                  "a classification example (it has \"label\"), but the job is supervised%s", NULL);
    L->d->format = f;
  }
  L->d->n_lines++;
  int rc;
  if (!L->o->no_clean) {
    rc = rec_clean(obj, f);
    if (rc < 0) return nomem(L);
    if (rc) {
      L->d->n_empty++;
      return 0;
    }
  }
  if (rec_key(obj, f, &L->key, &L->key_n, &L->key_cap)) return nomem(L);
  uint64_t h = rec_hash(L->key, L->key_n);
  if (!L->o->no_clean) {
    int dup;
    if ((rc = seen_before(L, h, &dup))) return rc;
    if (dup) {
      L->d->n_duplicates++;
      return 0;
    }
  }
  L->seq_n = 0;
  json_t *s = json_object_get(obj, "text"), *c = json_object_get(obj, "completion");
  /* Llama 2, 3 and Gemma templates write their own BOS text. */
  int bos = L->bos >= 0 && !(f == FT_DATA_CHAT && chat_writes_bos(L->o->chat));
  if (bos && (rc = push(L, L->bos, 0))) return rc;
  switch (f) {
    case FT_DATA_TEXT:
      if ((rc = enc(L, json_string_value(s), json_string_length(s), 0, 1))) return rc;
      if (L->eos >= 0 && (rc = push(L, L->eos, 1))) return rc;
      return commit(L, h, NULL);
    case FT_DATA_PROMPT: {
      json_t *p = json_object_get(obj, "prompt");
      if ((rc = enc(L, json_string_value(p), json_string_length(p), 0, L->o->train_on_inputs)))
        return rc;
      if ((rc = enc(L, json_string_value(c), json_string_length(c), 0, 1))) return rc;
      if (L->eos >= 0 && (rc = push(L, L->eos, 1))) return rc;
      return commit(L, h, NULL);
    }
    case FT_DATA_CHAT:
      if ((rc = render_chat(L, obj))) return rc;
      return commit(L, h, NULL);
    case FT_DATA_CLASSIFY: {
      char name[LABEL_MAX];
      rec_label(obj, name);
      if (L->o->labels) { /* a label the training set lacks is an error even if dropped */
        int32_t id;
        if ((rc = label_id(L, name, &id))) return rc;
      }
      if ((rc = enc(L, json_string_value(s), json_string_length(s), 0, 0))) return rc;
      return commit(L, h, name);
    }
  }
  return fail(L, line, "unknown record format", NULL);
}

/* Blank: nothing but spaces and tabs (a trailing '\r' is already cut). */
static int blank(const char *p, const char *e) {
  for (; p < e; p++)
    if (*p != ' ' && *p != '\t') return 0;
  return 1;
}

static int load_jsonl(loader *L, const char *p, const char *end) {
  long line = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    line++;
    const char *re = e > p && e[-1] == '\r' ? e - 1 : e;
    if (!blank(p, re)) {
      rec_error er;
      json_t *obj = rec_parse_jsonl(p, (size_t)(re - p), &er);
      if (!obj) return fail_rec(L, line, &er);
      int rc = record(L, line, obj);
      json_decref(obj);
      if (rc) return rc;
    }
    p = e + (nl ? 1 : 0);
  }
  return 0;
}

/* CSV: a record ends at a '\n' outside quotes, exactly as dsval reads it. */
static int load_csv(loader *L, char *p, char *end) {
  size_t *fld = NULL;
  int fld_cap = 0, rc = 0, ncols = 0, have_header = 0, cols[4];
  long line = 1;
  ft_data_format hf = 0;
  while (p < end) {
    long rec_line = line;
    int inq = 0;
    char *e = p;
    for (; e < end; e++) {
      if (*e == '"') inq ^= 1;
      if (*e == '\n') {
        if (!inq) break;
        line++;
      }
    }
    if (inq) {
      rc = fail(L, rec_line, "csv_quoting: malformed CSV: a quoted field is not closed", NULL);
      goto out;
    }
    char *next = e < end ? e + 1 : end;
    line++;
    if (e > p && e[-1] == '\r') e--;
    size_t n = (size_t)(e - p), at;
    if (blank(p, e)) {
      p = next;
      continue;
    }
    if (!ft_utf8_valid(p, n, &at)) {
      char msg[96];
      snprintf(msg, sizeof msg, "invalid_utf8: not valid UTF-8 (byte %zu of the record)", at + 1);
      rc = fail(L, rec_line, "%s", msg);
      goto out;
    }
    const char *why = "";
    int nf = rec_csv_split(p, n, &fld, &fld_cap, &why);
    if (nf == FT_ENOMEM) {
      rc = nomem(L);
      goto out;
    }
    if (nf < 0) {
      rc = fail(L, rec_line, "csv_quoting: malformed CSV: %s", why);
      goto out;
    }
    if (!have_header) {
      have_header = 1;
      ncols = nf;
      hf = rec_csv_header(p, fld, nf, cols);
      if (!hf) {
        rc = fail(L, rec_line,
                  "csv_header: the header must name a \"text\" column (and \"label\"), or "
                  "\"prompt\" and \"completion\"%s",
                  NULL);
        goto out;
      }
      L->format_line = rec_line;
    } else {
      if (nf != ncols) {
        char msg[96];
        snprintf(msg, sizeof msg, "csv_columns: %d fields, but the header has %d", nf, ncols);
        rc = fail(L, rec_line, "%s", msg);
        goto out;
      }
      json_t *obj = rec_csv_object(p, fld, hf, cols);
      if (!obj) {
        rc = nomem(L);
        goto out;
      }
      L->format = hf;
      rc = record(L, rec_line, obj);
      json_decref(obj);
      if (rc) goto out;
    }
    p = next;
  }
  if (!have_header) rc = fail(L, 1, "csv_header: the CSV file has no header%s", NULL);
out:
  free(fld);
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
  free(d->line);
  free(d->hash);
  free(d->cut);
  free(d);
}

static const char *param_of(const ft_data_opts *o) {
  if (o->param) return o->param;
  return o->err_code == FT_EVALID_FILE ? "validation_file" : "training_file";
}

/* Everything of a dataset but tokens/targets, from the per-example arrays. */
static void set_min_len(ft_dataset *d) {
  d->min_len = 0;
  for (size_t i = 0; i < d->n; i++)
    if (i == 0 || data_len(d, i) < d->min_len) d->min_len = data_len(d, i);
}

int data_load_buffer(ft_dataset **out, const char *buf, size_t len, const tok *t,
                     const ft_data_opts *o, ft_error *err) {
  *out = NULL;
  loader L = {0};
  L.t = t;
  L.o = o;
  L.err = err;
  L.code = o->err_code ? o->err_code : FT_ETRAIN_FILE;
  L.param = param_of(o);
  L.bos = o->add_bos ? tok_bos_id(t) : -1;
  L.eos = o->task == FT_TASK_CAUSAL_LM ? tok_eos_id(t) : -1;
  if (o->max_seq_len <= 0)
    return ft_error_set(err, FT_EINVALID, "max_seq_len", "max_seq_len must be > 0");
  if (o->task == FT_TASK_CLASSIFY && o->labels && !o->labels->label_names)
    return ft_error_set(err, FT_EINVALID, NULL, "data: the training set has no labels");
  L.d = calloc(1, sizeof *L.d);
  /* A private copy: CSV fields are unquoted in place. */
  char *copy = malloc(len + 1);
  int rc;
  if (!L.d || !copy) {
    rc = nomem(&L);
    goto out;
  }
  memcpy(copy, buf, len);
  copy[len] = 0;
  char *p = copy, *end = copy + len;
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
              L.d->n_dropped    ? "no example has a token to train on within max_seq_len"
              : L.d->n_too_long ? "every example is longer than max_seq_len"
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
  d->off = L.off, L.off = NULL;
  d->line = L.lines, L.lines = NULL;
  d->hash = L.hashes, L.hashes = NULL;
  d->cut = L.cut, L.cut = NULL;
  set_min_len(d);
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
  free(copy);
  data_free(L.d);
  free(L.seq);
  free(L.mask);
  free(L.tok);
  free(L.tgt);
  free(L.off);
  free(L.lab);
  free(L.lines);
  free(L.hashes);
  free(L.cut);
  free(L.names);
  free(L.key);
  free(L.arena);
  free(L.dup);
  return rc;
}

int data_load(ft_dataset **out, const char *path, const tok *t, const ft_data_opts *o,
              ft_error *err) {
  *out = NULL;
  const char *param = param_of(o);
  char *buf;
  size_t len;
  int rc = ft_read_file(path, 0, &buf, &len, err);
  if (rc) {
    if (err && rc != FT_ENOMEM) snprintf(err->param, sizeof err->param, "%s", param);
    return rc;
  }
  rc = data_load_buffer(out, buf, len, t, o, err);
  free(buf);
  return rc;
}

/* ---- splits ----------------------------------------------------------------- */

double data_split_u(uint64_t hash, uint64_t seed) {
  uint64_t x = hash ^ (seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return (double)(x >> 11) * 0x1.0p-53;
}

/* The examples of d with which[i] == k, as a new dataset; counts of dropped
 * records stay with the file's (training) set. */
static int subset(ft_dataset **out, const ft_dataset *d, const uint8_t *which, int k,
                  ft_error *err) {
  *out = NULL;
  size_t n = 0, nt = 0;
  for (size_t i = 0; i < d->n; i++)
    if (which[i] == k) n++, nt += (size_t)data_len(d, i);
  if (n == 0) return 0;
  ft_dataset *s = calloc(1, sizeof *s);
  int lm = d->targets != NULL;
  if (!s) return ft_error_set(err, FT_ENOMEM, NULL, "data: out of memory");
  s->format = d->format;
  s->n = n;
  s->n_lines = (long)n;
  s->off = malloc((n + 1) * sizeof *s->off);
  s->tokens = malloc((nt ? nt : 1) * sizeof(int32_t) * (lm ? 2 : 1));
  s->line = malloc(n * sizeof *s->line);
  s->hash = malloc(n * sizeof *s->hash);
  s->cut = malloc(n);
  if (!lm) s->labels = malloc(n * sizeof *s->labels);
  if (d->label_names) s->label_names = malloc((size_t)d->num_labels * LABEL_MAX);
  if (!s->off || !s->tokens || !s->line || !s->hash || !s->cut || (!lm && !s->labels) ||
      (d->label_names && !s->label_names)) {
    data_free(s);
    return ft_error_set(err, FT_ENOMEM, NULL, "data: out of memory");
  }
  if (lm) s->targets = s->tokens + nt;
  if (d->label_names) {
    s->num_labels = d->num_labels;
    memcpy(s->label_names, d->label_names, (size_t)d->num_labels * LABEL_MAX);
  }
  size_t j = 0, o = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (which[i] != k) continue;
    size_t len = (size_t)data_len(d, i);
    s->off[j] = o;
    memcpy(s->tokens + o, d->tokens + d->off[i], len * sizeof(int32_t));
    if (lm) {
      memcpy(s->targets + o, d->targets + d->off[i], len * sizeof(int32_t));
      for (size_t t = 0; t < len; t++) s->n_target_tokens += s->targets[o + t] >= 0;
    } else {
      s->labels[j] = d->labels[i];
    }
    s->line[j] = d->line[i];
    s->hash[j] = d->hash[i];
    s->cut[j] = d->cut[i];
    s->n_truncated += d->cut[i];
    if ((int)len > s->max_len) s->max_len = (int)len;
    o += len;
    j++;
  }
  s->off[n] = o;
  set_min_len(s);
  *out = s;
  return 0;
}

/* Splits d into the training part (kept in d's file counts) and the
 * validation/test parts. */
static int split(ft_data_sets *S, ft_dataset *all, float vs, float ts, uint64_t seed,
                 ft_error *err) {
  uint8_t *which = malloc(all->n ? all->n : 1);
  if (!which) return ft_error_set(err, FT_ENOMEM, NULL, "data: out of memory");
  for (size_t i = 0; i < all->n; i++) {
    double u = data_split_u(all->hash[i], seed);
    which[i] = u < ts ? 2 : u < (double)ts + (double)vs ? 1 : 0;
  }
  if (all->labels) { /* a label the training part lacks: its examples train */
    long cnt[FT_MAX_LABELS] = {0};
    for (size_t i = 0; i < all->n; i++)
      if (which[i] == 0) cnt[all->labels[i]]++;
    for (size_t i = 0; i < all->n; i++)
      if (which[i] && cnt[all->labels[i]] == 0) which[i] = 0;
  }
  ft_dataset *tr = NULL, *va = NULL, *te = NULL;
  int rc = subset(&tr, all, which, 0, err);
  if (!rc) rc = subset(&va, all, which, 1, err);
  if (!rc) rc = subset(&te, all, which, 2, err);
  free(which);
  if (rc) {
    data_free(tr);
    data_free(va);
    data_free(te);
    return rc;
  }
  if (tr) { /* the file's counts */
    tr->n_lines = all->n_lines;
    tr->n_dropped = all->n_dropped;
    tr->n_duplicates = all->n_duplicates;
    tr->n_empty = all->n_empty;
    tr->n_too_long = all->n_too_long;
  }
  S->train = tr;
  if (va) S->valid = va, S->valid_from_split = 1;
  if (te) S->test = te, S->test_from_split = 1;
  return 0;
}

int data_prepare(ft_data_sets *out, const ft_data_job *j, const tok *t, ft_error *err) {
  memset(out, 0, sizeof *out);
  ft_data_opts o = j->opts;
  o.err_code = FT_ETRAIN_FILE;
  o.labels = NULL;
  o.param = "training_file";
  ft_dataset *all = NULL;
  int rc = data_load(&all, j->train_path, t, &o, err);
  if (rc) return rc;
  float vs = j->valid_path ? 0.0f : j->valid_split, ts = j->test_path ? 0.0f : j->test_split;
  if (vs > 0 || ts > 0) {
    rc = split(out, all, vs, ts, j->seed, err);
    data_free(all);
    all = NULL;
    if (rc) goto fail;
  } else {
    out->train = all;
  }
  long n = out->train ? (long)out->train->n : 0;
  long lines = out->train ? out->train->n_lines : 0;
  if (n < j->min_examples) {
    rc = ft_error_set(err, FT_ETRAIN_FILE, "training_file",
                      "training_file has %ld usable example%s%s, at least %d are needed "
                      "(%ld records; dropped: %ld duplicate, %ld empty, %ld too long, "
                      "%ld with nothing to train)",
                      n, n == 1 ? "" : "s",
                      out->valid_from_split || out->test_from_split ? " after splitting" : "",
                      j->min_examples, lines, out->train ? out->train->n_duplicates : 0,
                      out->train ? out->train->n_empty : 0, out->train ? out->train->n_too_long : 0,
                      out->train ? out->train->n_dropped : 0);
    goto fail;
  }
  o.labels = o.task == FT_TASK_CLASSIFY ? out->train : NULL;
  o.err_code = FT_EVALID_FILE;
  if (j->valid_path) {
    o.param = "validation_file";
    if ((rc = data_load(&out->valid, j->valid_path, t, &o, err))) goto fail;
  }
  if (j->test_path) {
    o.param = "test_file";
    if ((rc = data_load(&out->test, j->test_path, t, &o, err))) goto fail;
  }
  return 0;
fail:
  data_sets_free(out);
  return rc;
}

void data_sets_free(ft_data_sets *s) {
  if (!s) return;
  data_free(s->train);
  data_free(s->valid);
  data_free(s->test);
  memset(s, 0, sizeof *s);
}

json_t *data_stats_json(const ft_dataset *d, int from_split) {
  if (!d) return json_null();
  long total = d->n ? (long)d->off[d->n] : 0;
  json_t *r = json_pack("{s:I, s:I, s:s?, s:s, s:{s:I, s:I, s:f, s:I}, s:I, s:I, s:I, s:I, s:I}",
                        "examples", (json_int_t)d->n, "lines", (json_int_t)d->n_lines, "format",
                        rec_format_name(d->format), "source", from_split ? "split" : "file",
                        "tokens", "total", (json_int_t)total, "min", (json_int_t)d->min_len, "mean",
                        d->n ? (double)total / (double)d->n : 0.0, "max", (json_int_t)d->max_len,
                        "truncated", (json_int_t)d->n_truncated, "dropped_too_long",
                        (json_int_t)d->n_too_long, "dropped_no_target", (json_int_t)d->n_dropped,
                        "duplicates", (json_int_t)d->n_duplicates, "empty", (json_int_t)d->n_empty);
  if (!r || !d->labels || !d->label_names) return r;
  json_t *lc = json_object();
  long cnt[FT_MAX_LABELS] = {0};
  for (size_t i = 0; i < d->n; i++) cnt[d->labels[i]]++;
  for (int k = 0; k < d->num_labels && lc; k++)
    json_object_set_new(lc, d->label_names[k], json_integer(cnt[k]));
  if (!lc || json_object_set_new(r, "label_counts", lc)) {
    json_decref(r);
    return NULL;
  }
  return r;
}
