/* chatcli: drives engine/tok/chat.c for the template tests
 * (tests/tok/test_chat_templates.mjs). stdin: one JSON object per line,
 *   {"family": a chat_family_name ("chatml", "qwen3", "llama3.1", ...) and/or
 *    "model_dir": DIR (its tokenizer; its detected family unless "family"),
 *    "messages": [{"role", "content", "weight"?}], "add_generation_prompt": bool}
 * stdout: one JSON object per line,
 *   {"family", "text": the rendered text, "trained": [[byte_start, byte_end], ...],
 *    "pieces": [[text, special, trained, eos], ...], "eos_trained": 0|1|null}
 * and with "model_dir" also the tokens:
 *   "ids", "mask"   chat_tokenize: the whole text tokenized as Hugging Face
 *                   does (special tokens from the template markup only; the
 *                   text between two of them as one run), a token trained
 *                   when any of its bytes is
 *   "mask_exact"    the same mask found here by decoding every prefix of each
 *                   run (slow, exact); "exact_ids_equal": this tokenization's
 *                   ids equal chat_tokenize's; "aligned": the runs decode
 *                   back to their bytes
 *   "piece_ids", "piece_mask"  each piece tokenized on its own
 * or {"error": "<code>", "message"} for a line that cannot be rendered. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat.h"
#include "tok/tok.h"

typedef struct {
  char *s;
  size_t n;
  int special, trained, eos;
} piece;

typedef struct {
  piece *p;
  size_t n, cap;
} pieces;

static int collect(void *ud, const char *s, size_t n, int special, int trained, int eos) {
  pieces *ps = ud;
  if (ps->n == ps->cap) {
    ps->cap = ps->cap ? ps->cap * 2 : 16;
    ps->p = realloc(ps->p, ps->cap * sizeof *ps->p);
  }
  piece *p = &ps->p[ps->n++];
  p->s = malloc(n + 1);
  memcpy(p->s, s, n);
  p->s[n] = 0;
  p->n = n;
  p->special = special;
  p->trained = trained;
  p->eos = eos;
  return 0;
}

/* ---- tokens ---- */

typedef struct {
  int32_t *ids;
  uint8_t *mask;
  size_t n, cap;
} toks;

static void push(toks *o, int32_t id, int m) {
  if (o->n == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 64;
    o->ids = realloc(o->ids, o->cap * sizeof *o->ids);
    o->mask = realloc(o->mask, o->cap);
  }
  o->ids[o->n] = id;
  o->mask[o->n++] = (uint8_t)m;
}

/* A run of text between two special tokens, with its trained bytes. */
typedef struct {
  char *s;
  size_t n, cap;
  uint8_t *tr; /* per byte */
} run;

static void run_add(run *r, const char *s, size_t n, int trained) {
  if (r->n + n + 1 > r->cap) {
    r->cap = (r->n + n + 1) * 2;
    r->s = realloc(r->s, r->cap);
    r->tr = realloc(r->tr, r->cap);
  }
  memcpy(r->s + r->n, s, n);
  memset(r->tr + r->n, trained, n);
  r->n += n;
}

/* The mask of a run's tokens by decoding growing prefixes: token k spans
 * the bytes its prefix adds, and is trained when one of them is (exact for
 * byte-level BPE, and for SentencePiece, whose decoder drops the prepended
 * "\u2581"). A prefix ending inside a UTF-8 character decodes lossily: its
 * tokens wait for the next prefix that decodes to the run's bytes and share
 * that span. Quadratic: the reference the cheap method below is checked
 * against. */
static int mask_by_decoding(const tok *t, const run *r, const int32_t *ids, size_t n, uint8_t *mask,
                            int *aligned) {
  size_t prev = 0, pending = 0; /* tokens [pending, k] not yet placed */
  for (size_t k = 0; k < n; k++) {
    char *d = NULL;
    size_t dl = 0;
    int rc = tok_decode_len(t, ids, k + 1, 0, &d, &dl);
    if (rc) return rc;
    int ok = dl <= r->n && memcmp(d, r->s, dl) == 0;
    free(d);
    if (!ok && k + 1 < n) continue;
    if (!ok) {
      *aligned = 0;
      dl = r->n;
    }
    int m = 0;
    for (size_t b = prev; b < dl; b++) m |= r->tr[b];
    if (dl <= prev && prev > 0) m = r->tr[prev - 1]; /* empty span: as the byte before */
    for (; pending <= k; pending++) mask[pending] = (uint8_t)m;
    if (dl > prev) prev = dl;
  }
  if (prev != r->n) *aligned = 0;
  return 0;
}

/* Tokenizes a run (text between two special tokens) as one text. */
static int flush(const tok *t, run *r, toks *exact, int *aligned) {
  if (r->n == 0) return 0;
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(t, r->s, r->n, 0, &ids, &n);
  uint8_t *m = calloc(n + 1, 1);
  if (!rc) rc = mask_by_decoding(t, r, ids, n, m, aligned);
  for (size_t k = 0; !rc && k < n; k++) push(exact, ids[k], m[k]);
  free(m);
  free(ids);
  r->n = 0;
  return rc;
}

/* The special tokens chat.c's markup can hold. */
static const char *const specials[] = {"<|im_start|>",
                                       "<|im_end|>",
                                       "<|begin_of_text|>",
                                       "<|start_header_id|>",
                                       "<|end_header_id|>",
                                       "<|eot_id|>",
                                       "<s>",
                                       "</s>",
                                       "<bos>",
                                       "<start_of_turn>",
                                       "<end_of_turn>"};

static int special_at(const tok *t, const char *s, size_t n, int32_t *id) {
  for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
    size_t l = strlen(specials[i]);
    if (l <= n && memcmp(s, specials[i], l) == 0 && (*id = tok_token_id(t, specials[i])) >= 0)
      return (int)l;
  }
  return 0;
}

/* chat_tokenize again, with the mask found by decoding. */
static int tokenize_exact(const tok *t, const pieces *ps, toks *exact, int *aligned) {
  run r = {0};
  int rc = 0;
  *aligned = 1;
  for (size_t i = 0; i < ps->n && !rc; i++) {
    const piece *p = &ps->p[i];
    if (p->eos) {
      if ((rc = flush(t, &r, exact, aligned))) break;
      push(exact, tok_eos_id(t), p->trained);
      continue;
    }
    size_t a = 0;
    for (size_t j = 0; j < p->n;) {
      int32_t id;
      int l = p->special ? special_at(t, p->s + j, p->n - j, &id) : 0;
      if (l == 0) {
        j++;
        continue;
      }
      run_add(&r, p->s + a, j - a, p->trained);
      if ((rc = flush(t, &r, exact, aligned))) break;
      push(exact, id, p->trained);
      j += (size_t)l;
      a = j;
    }
    if (!rc) run_add(&r, p->s + a, p->n - a, p->trained);
  }
  if (!rc) rc = flush(t, &r, exact, aligned);
  free(r.s);
  free(r.tr);
  return rc;
}

static int tokenize_pieces(const tok *t, const pieces *ps, toks *o) {
  for (size_t i = 0; i < ps->n; i++) {
    const piece *p = &ps->p[i];
    if (p->eos) {
      push(o, tok_eos_id(t), p->trained);
      continue;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tok_encode(t, p->s, p->n, p->special, &ids, &n);
    if (rc) return rc;
    for (size_t k = 0; k < n; k++) push(o, ids[k], p->trained);
    free(ids);
  }
  return 0;
}

static json_t *ids_json(const toks *o, int mask) {
  json_t *a = json_array();
  for (size_t i = 0; i < o->n; i++)
    json_array_append_new(a, json_integer(mask ? o->mask[i] : o->ids[i]));
  return a;
}

/* ---- one line ---- */

static json_t *err_json(int code, const char *msg) {
  return json_pack("{s:s, s:s}", "error", ft_err_code(code), "message", msg);
}

/* A small cache: the tests use one model directory at a time. */
static char *cached_dir;
static tok *cached_tok;

static json_t *handle(json_t *in) {
  ft_error err = {0};
  json_t *jm = json_object_get(in, "messages");
  const char *fam_s = json_string_value(json_object_get(in, "family"));
  const char *dir = json_string_value(json_object_get(in, "model_dir"));
  int gen = json_is_true(json_object_get(in, "add_generation_prompt"));
  if (!json_is_array(jm)) return err_json(FT_EINVALID, "messages must be an array");
  ft_chat_family f = FT_CHAT_PLAIN;
  tok *t = NULL;
  if (dir) {
    if (!cached_dir || strcmp(cached_dir, dir) != 0) {
      tok_free(cached_tok);
      free(cached_dir);
      cached_tok = NULL;
      cached_dir = strdup(dir);
      if (tok_load(&cached_tok, dir, &err)) {
        free(cached_dir);
        cached_dir = NULL;
        return err_json(err.code, err.message);
      }
    }
    t = cached_tok;
    if (chat_detect(dir, t, &f, &err)) return err_json(err.code, err.message);
  }
  if (fam_s && chat_family_parse(fam_s, &f)) return err_json(FT_EINVALID, "unknown family");
  size_t n = json_array_size(jm);
  ft_chat_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(jm, i);
    json_t *w = json_object_get(m, "weight");
    msgs[i].role = json_string_value(json_object_get(m, "role"));
    msgs[i].content = json_string_value(json_object_get(m, "content"));
    msgs[i].content_len = json_string_length(json_object_get(m, "content"));
    msgs[i].weight = w ? (int)json_number_value(w) : 1;
  }
  pieces ps = {0};
  json_t *out;
  int rc = chat_render(f, msgs, n, gen, collect, &ps);
  if (rc) {
    out = err_json(rc, "chat_render failed");
  } else {
    out = json_object();
    json_object_set_new(out, "family", json_string(chat_family_name(f)));
    json_t *jp = json_array(), *jt = json_array(), *eos = json_null();
    size_t len = 0;
    for (size_t i = 0; i < ps.n; i++) len += ps.p[i].n;
    char *text = malloc(len + 1);
    size_t off = 0;
    for (size_t i = 0; i < ps.n; i++) {
      piece *p = &ps.p[i];
      memcpy(text + off, p->s, p->n);
      json_array_append_new(jp,
                            json_pack("[s%,i,i,i]", p->s, p->n, p->special, p->trained, p->eos));
      if (p->eos) {
        json_decref(eos);
        eos = json_integer(p->trained);
      }
      /* adjacent trained pieces make one range */
      size_t k = json_array_size(jt);
      json_t *last = k ? json_array_get(jt, k - 1) : NULL;
      if (p->trained && p->n) {
        if (last && (size_t)json_integer_value(json_array_get(last, 1)) == off)
          json_array_set_new(last, 1, json_integer((json_int_t)(off + p->n)));
        else
          json_array_append_new(jt, json_pack("[I,I]", (json_int_t)off, (json_int_t)(off + p->n)));
      }
      off += p->n;
    }
    json_object_set_new(out, "text", json_stringn(text, len));
    json_object_set_new(out, "trained", jt);
    json_object_set_new(out, "pieces", jp);
    json_object_set_new(out, "eos_trained", eos);
    free(text);
    if (t) {
      toks exact = {0}, each = {0};
      int32_t *ids = NULL;
      uint8_t *mask = NULL;
      size_t nid = 0;
      int aligned = 0;
      rc = chat_tokenize(f, t, msgs, n, gen, &ids, &mask, &nid);
      if (!rc) rc = tokenize_exact(t, &ps, &exact, &aligned);
      if (!rc) rc = tokenize_pieces(t, &ps, &each);
      if (rc) {
        json_decref(out);
        out = err_json(rc, "tokenize failed");
      } else {
        toks whole = {ids, mask, nid, nid};
        json_object_set_new(out, "ids", ids_json(&whole, 0));
        json_object_set_new(out, "mask", ids_json(&whole, 1));
        json_object_set_new(out, "mask_exact", ids_json(&exact, 1));
        json_object_set_new(out, "exact_ids_equal",
                            json_boolean(exact.n == nid &&
                                         (nid == 0 || !memcmp(exact.ids, ids, nid * sizeof *ids))));
        json_object_set_new(out, "aligned", json_boolean(aligned));
        json_object_set_new(out, "piece_ids", ids_json(&each, 0));
        json_object_set_new(out, "piece_mask", ids_json(&each, 1));
      }
      free(ids);
      free(mask);
      free(exact.ids);
      free(exact.mask);
      free(each.ids);
      free(each.mask);
    }
  }
  for (size_t i = 0; i < ps.n; i++) free(ps.p[i].s);
  free(ps.p);
  free(msgs);
  return out;
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) > 0) {
    json_error_t je;
    json_t *in = json_loadb(line, (size_t)len, 0, &je);
    json_t *out = json_is_object(in) ? handle(in) : err_json(FT_EJSON, je.text);
    char *s = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII);
    puts(s ? s : "{\"error\":\"dump\"}");
    fflush(stdout);
    free(s);
    json_decref(out);
    json_decref(in);
  }
  free(line);
  tok_free(cached_tok);
  free(cached_dir);
  return 0;
}
