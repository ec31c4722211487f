/* Byte-level BPE training (see bpe_train.h). Words (pre-tokens) are counted
 * in a hash table, then each distinct word becomes a sequence of token ids.
 * Pair counts live in a hash table keyed by (left << 32 | right), each pair
 * with the list of words it occurs in; a max-heap of (count, pair) with lazy
 * deletion picks the next merge: a popped entry whose count is stale is
 * pushed again with the current count. A merge rewrites only the words in
 * its pair's list: their pairs are subtracted, the word is rewritten, and its
 * pairs are added back (only pairs holding the new token can grow, so only
 * they are pushed). Nothing is recounted from scratch. */
#include "tok/bpe_train.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ft_buf.h"
#include "ft_fs.h"
#include "ft_utf8.h"
#include "tok/tok_unicode.h"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
#define N_SPECIALS 3
#define MAX_VOCAB (1 << 20)

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

typedef struct {
  char *key; /* the word's bytes (raw, not mapped) */
  uint32_t klen;
  int64_t cnt;
  int32_t *sym; /* after training starts: token ids */
  int32_t len;
} word;

typedef struct {
  uint64_t key;
  int64_t cnt;
  uint32_t *where; /* words holding the pair (may hold stale entries) */
  uint32_t nwhere, capwhere;
  uint32_t pushed; /* merge iteration of its last heap push */
} pair;

typedef struct {
  int64_t cnt;
  uint64_t key;
} hent;

struct bpe_trainer {
  pcre2_code *re;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jstack;
  word *w;
  size_t nw, capw;
  uint32_t *wtab; /* open addressing: word index + 1, 0 empty */
  size_t wcap;
  pair *p;
  size_t np, capp;
  uint32_t *ptab; /* pair index + 1 */
  size_t pcap;
  hent *heap;
  size_t nh, caph;
  char **tok; /* token strings (byte-level unicode), id order */
  size_t ntok, captok;
  int32_t (*merges)[2];
  size_t nmerges;
  int trained;
};

/* ---- GPT-2's bytes -> unicode ---- */

static uint32_t byte_cp[256];
static int32_t byte_id[256]; /* base token id of a byte */

static void init_bytes(void) {
  int n = 0;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
  }
  /* ids in code point order: the kept bytes ascending, then the others ascending */
  int id = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < 256; b++)
      if ((byte_cp[b] < 256) == (pass == 0)) byte_id[b] = id++;
}

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* Arrays grow by doubling from 16 elements (common/ft_buf.h). */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  return ft_grow(p, cap, need, elem, 16);
}

int bpe_trainer_new(bpe_trainer **out, ft_error *err) {
  *out = NULL;
  init_bytes();
  bpe_trainer *t = calloc(1, sizeof *t);
  if (!t) return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  int ec;
  PCRE2_SIZE eo;
  t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                        &ec, &eo, NULL);
  if (t->re) {
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    t->md = pcre2_match_data_create(4, NULL);
  }
  t->wcap = 1 << 12;
  t->wtab = calloc(t->wcap, sizeof *t->wtab);
  if (!t->re || !t->md || !t->wtab) {
    bpe_trainer_free(t);
    return ft_error_set(err, FT_ENOMEM, NULL, "cannot set up the pre-tokenizer");
  }
  *out = t;
  return 0;
}

void bpe_trainer_free(bpe_trainer *t) {
  if (!t) return;
  for (size_t i = 0; i < t->nw; i++) {
    free(t->w[i].key);
    free(t->w[i].sym);
  }
  free(t->w);
  free(t->wtab);
  for (size_t i = 0; i < t->np; i++) free(t->p[i].where);
  free(t->p);
  free(t->ptab);
  free(t->heap);
  for (size_t i = 0; i < t->ntok; i++) free(t->tok[i]);
  free(t->tok);
  free(t->merges);
  if (t->md) pcre2_match_data_free(t->md);
  if (t->mctx) pcre2_match_context_free(t->mctx);
  if (t->jstack) pcre2_jit_stack_free(t->jstack);
  if (t->re) pcre2_code_free(t->re);
  free(t);
}

size_t bpe_trainer_num_words(const bpe_trainer *t) { return t->nw; }
size_t bpe_trainer_num_merges(const bpe_trainer *t) { return t->nmerges; }

const char *bpe_trainer_merge(const bpe_trainer *t, size_t i, const char **right) {
  if (i >= t->nmerges) return NULL;
  if (right) *right = t->tok[t->merges[i][1]];
  return t->tok[t->merges[i][0]];
}

/* ---- counting words ---- */

static int word_add(bpe_trainer *t, const char *s, size_t n) {
  if (n == 0) return 0;
  if (n > UINT32_MAX) return FT_EINVALID;
  if ((t->nw + 1) * 2 > t->wcap) { /* rehash at half full */
    size_t nc = t->wcap * 2;
    uint32_t *nt = calloc(nc, sizeof *nt);
    if (!nt) return FT_ENOMEM;
    for (size_t i = 0; i < t->nw; i++) {
      size_t h = hash_bytes(t->w[i].key, t->w[i].klen) & (nc - 1);
      while (nt[h]) h = (h + 1) & (nc - 1);
      nt[h] = (uint32_t)i + 1;
    }
    free(t->wtab);
    t->wtab = nt;
    t->wcap = nc;
  }
  size_t h = hash_bytes(s, n) & (t->wcap - 1);
  for (; t->wtab[h]; h = (h + 1) & (t->wcap - 1)) {
    word *w = &t->w[t->wtab[h] - 1];
    if (w->klen == n && !memcmp(w->key, s, n)) {
      w->cnt++;
      return 0;
    }
  }
  if (grow((void **)&t->w, &t->capw, t->nw + 1, sizeof *t->w)) return FT_ENOMEM;
  word *w = &t->w[t->nw];
  memset(w, 0, sizeof *w);
  if (!(w->key = malloc(n))) return FT_ENOMEM;
  memcpy(w->key, s, n);
  w->klen = (uint32_t)n;
  w->cnt = 1;
  t->wtab[h] = (uint32_t)++t->nw;
  return 0;
}

/* Pre-tokenizes s[0..len) (valid UTF-8, no special tokens) into words. */
static int pretokenize(bpe_trainer *t, const char *s, size_t len) {
  size_t start = 0;
  while (start < len) {
    int rc = pcre2_match(t->re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, t->md, t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return word_add(t, s + start, len - start);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !t->jstack) {
      t->mctx = pcre2_match_context_create(NULL);
      t->jstack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, NULL);
      if (!t->mctx || !t->jstack) return FT_ENOMEM;
      pcre2_jit_stack_assign(t->mctx, NULL, t->jstack);
      continue;
    }
    if (rc < 0) return FT_EINTERNAL;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    size_t ms = ov[0], me = ov[1];
    if (ms > start && (rc = word_add(t, s + start, ms - start))) return rc; /* unmatched gap */
    if (me <= ms) me = ms + 1; /* the pattern never matches empty; guard anyway */
    while (me < len && ((unsigned char)s[me] & 0xC0) == 0x80) me++;
    if ((rc = word_add(t, s + ms, me - ms))) return rc;
    start = me;
  }
  return 0;
}

int bpe_trainer_add_text(bpe_trainer *t, const char *text, size_t len, ft_error *err) {
  if (t->trained)
    return ft_error_set(err, FT_EINVALID, NULL, "bpe_trainer_add_text after training");
  if (!ft_utf8_valid(text, len, NULL))
    return ft_error_set(err, FT_EUTF8, NULL, "the text is not valid UTF-8");
  size_t a = 0, i = 0;
  while (i < len) {
    const char *q = memchr(text + i, '<', len - i);
    if (!q) break;
    i = (size_t)(q - text);
    size_t sl = 0;
    for (int k = 0; k < N_SPECIALS && !sl; k++) {
      size_t l = strlen(SPECIALS[k]);
      if (len - i >= l && !memcmp(text + i, SPECIALS[k], l)) sl = l;
    }
    if (!sl) {
      i++;
      continue;
    }
    int rc = pretokenize(t, text + a, i - a);
    if (rc) return ft_error_set(err, rc, NULL, "counting words: %s", ft_err_message(rc));
    i += sl;
    a = i;
  }
  int rc = pretokenize(t, text + a, len - a);
  if (rc) return ft_error_set(err, rc, NULL, "counting words: %s", ft_err_message(rc));
  return 0;
}

/* ---- files ---- */

static int add_str(bpe_trainer *t, const json_t *v, const char *path, size_t line, int *found,
                   ft_error *err) {
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v))
    return ft_error_set(err, FT_EBAD_FILE, "files", "%s:%zu: a text field is not a string", path,
                        line);
  *found = 1;
  int rc = bpe_trainer_add_text(t, json_string_value(v), json_string_length(v), err);
  if (rc) ft_error_set(err, rc, "files", "%s:%zu: %s", path, line, ft_err_message(rc));
  return rc;
}

static int add_jsonl(bpe_trainer *t, const char *buf, size_t n, const char *path, ft_error *err) {
  size_t line = 0, i = 0;
  while (i < n) {
    const char *nl = memchr(buf + i, '\n', n - i);
    size_t e = nl ? (size_t)(nl - buf) : n;
    line++;
    size_t a = i;
    i = e + 1;
    while (a < e && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
    if (a == e) continue;
    json_error_t je;
    json_t *j = json_loadb(buf + a, e - a, 0, &je);
    if (!j || !json_is_object(j)) {
      json_decref(j);
      return ft_error_set(err, FT_EBAD_FILE, "files", "%s:%zu: not a JSON object%s%s", path, line,
                          j ? "" : ": ", j ? "" : je.text);
    }
    int found = 0, rc = 0;
    static const char *const keys[] = {"text", "prompt", "completion", NULL};
    for (int k = 0; keys[k] && !rc; k++)
      rc = add_str(t, json_object_get(j, keys[k]), path, line, &found, err);
    const json_t *msgs = json_object_get(j, "messages");
    if (!rc && json_is_array(msgs)) {
      size_t mi;
      const json_t *m;
      json_array_foreach(msgs, mi, m) {
        if (rc) break;
        if (json_is_object(m)) rc = add_str(t, json_object_get(m, "content"), path, line, &found, err);
      }
    }
    json_decref(j);
    if (rc) return rc;
    if (!found)
      return ft_error_set(err, FT_EBAD_FILE, "files",
                          "%s:%zu: no \"text\", \"prompt\"/\"completion\" or \"messages\" content",
                          path, line);
  }
  return 0;
}

int bpe_trainer_add_file(bpe_trainer *t, const char *path, ft_error *err) {
  char *buf = NULL;
  size_t n = 0, bad = 0;
  int rc = ft_read_file(path, 0, &buf, &n, err);
  if (rc) {
    if (err) snprintf(err->param, sizeof err->param, "files");
    return rc;
  }
  size_t a = 0;
  while (a < n && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r' || buf[a] == '\n')) a++;
  if (a < n && buf[a] == '{') {
    rc = add_jsonl(t, buf, n, path, err);
  } else if (!ft_utf8_valid(buf, n, &bad)) {
    size_t line = 1; /* of the first bad byte, for the message */
    for (size_t i = 0; i < bad; i++) line += buf[i] == '\n';
    rc = ft_error_set(err, FT_EUTF8, "files", "%s:%zu: not valid UTF-8", path, line);
  } else {
    rc = bpe_trainer_add_text(t, buf, n, err);
    if (rc) ft_error_set(err, rc, "files", "%s: %s", path, err ? err->message : "");
  }
  free(buf);
  return rc;
}

/* ---- pairs and the heap ---- */

static uint64_t pkey(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* The index of pair key, created (count 0) when missing; <0 on ENOMEM. */
static long pair_get(bpe_trainer *t, uint64_t key) {
  if ((t->np + 1) * 2 > t->pcap) {
    size_t nc = t->pcap ? t->pcap * 2 : 1 << 14;
    uint32_t *nt = calloc(nc, sizeof *nt);
    if (!nt) return FT_ENOMEM;
    for (size_t i = 0; i < t->np; i++) {
      size_t h = hash_u64(t->p[i].key) & (nc - 1);
      while (nt[h]) h = (h + 1) & (nc - 1);
      nt[h] = (uint32_t)i + 1;
    }
    free(t->ptab);
    t->ptab = nt;
    t->pcap = nc;
  }
  size_t h = hash_u64(key) & (t->pcap - 1);
  for (; t->ptab[h]; h = (h + 1) & (t->pcap - 1))
    if (t->p[t->ptab[h] - 1].key == key) return (long)t->ptab[h] - 1;
  if (grow((void **)&t->p, &t->capp, t->np + 1, sizeof *t->p)) return FT_ENOMEM;
  memset(&t->p[t->np], 0, sizeof *t->p);
  t->p[t->np].key = key;
  t->p[t->np].pushed = UINT32_MAX;
  t->ptab[h] = (uint32_t)++t->np;
  return (long)t->np - 1;
}

static int where_add(pair *p, uint32_t w) {
  if (p->nwhere && p->where[p->nwhere - 1] == w) return 0;
  if (p->nwhere == p->capwhere) {
    uint32_t c = p->capwhere ? p->capwhere * 2 : 2;
    uint32_t *q = realloc(p->where, c * sizeof *q);
    if (!q) return FT_ENOMEM;
    p->where = q;
    p->capwhere = c;
  }
  p->where[p->nwhere++] = w;
  return 0;
}

/* a before b in the heap: larger count, then smaller key. */
static int hbefore(const hent *a, const hent *b) {
  return a->cnt > b->cnt || (a->cnt == b->cnt && a->key < b->key);
}

static int heap_push(bpe_trainer *t, int64_t cnt, uint64_t key) {
  if (grow((void **)&t->heap, &t->caph, t->nh + 1, sizeof *t->heap)) return FT_ENOMEM;
  size_t i = t->nh++;
  hent e = {cnt, key};
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!hbefore(&e, &t->heap[up])) break;
    t->heap[i] = t->heap[up];
    i = up;
  }
  t->heap[i] = e;
  return 0;
}

static hent heap_pop(bpe_trainer *t) {
  hent top = t->heap[0], e = t->heap[--t->nh];
  size_t i = 0, n = t->nh;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && hbefore(&t->heap[c + 1], &t->heap[c])) c++;
    if (!hbefore(&t->heap[c], &e)) break;
    t->heap[i] = t->heap[c];
    i = c;
  }
  if (n) t->heap[i] = e;
  return top;
}

static int tok_add(bpe_trainer *t, char *s) {
  if (!s || grow((void **)&t->tok, &t->captok, t->ntok + 1, sizeof *t->tok)) {
    free(s);
    return FT_ENOMEM;
  }
  t->tok[t->ntok++] = s;
  return 0;
}

/* ---- training ---- */

/* Rewrites word wi for merge (a, b) -> z and updates the pair counts;
 * new pairs holding z are pushed at the end of the merge (iteration it). */
static int merge_word(bpe_trainer *t, uint32_t wi, int32_t a, int32_t b, int32_t z) {
  word *w = &t->w[wi];
  long pi;
  for (int32_t i = 0; i + 1 < w->len; i++) {
    if ((pi = pair_get(t, pkey(w->sym[i], w->sym[i + 1]))) < 0) return (int)pi;
    t->p[pi].cnt -= w->cnt;
  }
  int32_t j = 0;
  for (int32_t i = 0; i < w->len; i++) {
    if (i + 1 < w->len && w->sym[i] == a && w->sym[i + 1] == b) {
      w->sym[j++] = z;
      i++;
    } else {
      w->sym[j++] = w->sym[i];
    }
  }
  w->len = j;
  for (int32_t i = 0; i + 1 < w->len; i++) {
    if ((pi = pair_get(t, pkey(w->sym[i], w->sym[i + 1]))) < 0) return (int)pi;
    t->p[pi].cnt += w->cnt;
    if ((w->sym[i] == z || w->sym[i + 1] == z) && where_add(&t->p[pi], wi)) return FT_ENOMEM;
  }
  return 0;
}

int bpe_trainer_train(bpe_trainer *t, const bpe_train_opts *o, ft_error *err) {
  if (t->trained) return ft_error_set(err, FT_EINVALID, NULL, "the trainer has already trained");
  if (o->vocab_size < 256 + N_SPECIALS || o->vocab_size > MAX_VOCAB)
    return ft_error_set(err, FT_ERANGE, "vocab_size", "vocab_size must be %d..%d (got %d)",
                        256 + N_SPECIALS, MAX_VOCAB, o->vocab_size);
  if (o->min_frequency < 0)
    return ft_error_set(err, FT_ERANGE, "min_frequency", "min_frequency must be >= 1 (got %d)",
                        o->min_frequency);
  int64_t minf = o->min_frequency ? o->min_frequency : 2;
  t->trained = 1;
  /* base tokens in id order */
  int rev[256];
  for (int b = 0; b < 256; b++) rev[byte_id[b]] = b;
  for (int id = 0; id < 256; id++) {
    char *s = malloc(5);
    if (s) s[tok_utf8_encode(s, byte_cp[rev[id]])] = 0;
    if (tok_add(t, s)) return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  }
  size_t want = (size_t)o->vocab_size - N_SPECIALS - 256;
  if (want && !(t->merges = malloc(want * sizeof *t->merges)))
    return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  /* words -> symbols, initial pair counts */
  for (size_t wi = 0; wi < t->nw; wi++) {
    word *w = &t->w[wi];
    if (!(w->sym = malloc(w->klen * sizeof *w->sym)))
      return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
    for (uint32_t i = 0; i < w->klen; i++) w->sym[i] = byte_id[(unsigned char)w->key[i]];
    w->len = (int32_t)w->klen;
    for (int32_t i = 0; i + 1 < w->len; i++) {
      long pi = pair_get(t, pkey(w->sym[i], w->sym[i + 1]));
      if (pi < 0 || where_add(&t->p[pi], (uint32_t)wi))
        return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
      t->p[pi].cnt += w->cnt;
    }
  }
  for (size_t i = 0; i < t->np; i++)
    if (heap_push(t, t->p[i].cnt, t->p[i].key))
      return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  uint32_t *stamp = calloc(t->nw ? t->nw : 1, sizeof *stamp), *list = NULL;
  uint64_t *fresh = NULL;
  size_t nfresh = 0, capfresh = 0;
  int rc = stamp ? 0 : FT_ENOMEM;
  while (!rc && t->nmerges < want && t->nh) {
    hent top = heap_pop(t);
    long pi = pair_get(t, top.key);
    if (pi < 0) {
      rc = (int)pi;
      break;
    }
    int64_t cur = t->p[pi].cnt;
    if (cur != top.cnt) {
      if (cur > 0) rc = heap_push(t, cur, top.key);
      continue;
    }
    if (cur < minf) break;
    int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(uint32_t)top.key, z = (int32_t)t->ntok;
    size_t la = strlen(t->tok[a]), lb = strlen(t->tok[b]);
    char *s = malloc(la + lb + 1);
    if (s) {
      memcpy(s, t->tok[a], la);
      memcpy(s + la, t->tok[b], lb + 1);
    }
    if ((rc = tok_add(t, s))) break;
    t->merges[t->nmerges][0] = a;
    t->merges[t->nmerges][1] = b;
    t->nmerges++;
    uint32_t it = (uint32_t)t->nmerges;
    /* take the word list: every occurrence is merged, the pair ends at 0 */
    list = t->p[pi].where;
    uint32_t nl = t->p[pi].nwhere;
    t->p[pi].where = NULL;
    t->p[pi].nwhere = t->p[pi].capwhere = 0;
    nfresh = 0;
    for (uint32_t k = 0; k < nl && !rc; k++) {
      uint32_t wi = list[k];
      if (stamp[wi] == it) continue;
      stamp[wi] = it;
      word *w = &t->w[wi];
      int has = 0;
      for (int32_t i = 0; i + 1 < w->len && !has; i++) has = w->sym[i] == a && w->sym[i + 1] == b;
      if (!has) continue; /* a stale entry */
      if ((rc = merge_word(t, wi, a, b, z))) break;
      for (int32_t i = 0; i + 1 < w->len && !rc; i++)
        if (w->sym[i] == z || w->sym[i + 1] == z) {
          if (grow((void **)&fresh, &capfresh, nfresh + 1, sizeof *fresh))
            rc = FT_ENOMEM;
          else
            fresh[nfresh++] = pkey(w->sym[i], w->sym[i + 1]);
        }
    }
    free(list);
    list = NULL;
    for (size_t k = 0; k < nfresh && !rc; k++) {
      long q = pair_get(t, fresh[k]);
      if (q < 0) {
        rc = (int)q;
        break;
      }
      if (t->p[q].pushed == it || t->p[q].cnt <= 0) continue;
      t->p[q].pushed = it;
      rc = heap_push(t, t->p[q].cnt, fresh[k]);
    }
  }
  free(stamp);
  free(fresh);
  if (rc) return ft_error_set(err, rc, NULL, "training the merges: %s", ft_err_message(rc));
  return 0;
}

/* ---- output ---- */

static json_t *added_token(int id, const char *s) {
  return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s, "single_word", 0,
                   "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

static json_t *byte_level(int add_prefix_space, int trim_offsets) {
  return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                   add_prefix_space, "trim_offsets", trim_offsets, "use_regex", 1);
}

static int write_json(const char *dir, const char *name, const json_t *j, ft_error *err) {
  char path[4096];
  if (ft_pathf(path, sizeof path, "%s/%s", dir, name))
    return ft_error_set(err, FT_EIO, "out", "path too long: %s/%s", dir, name);
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
  if (!s) return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  int rc = ft_write_atomic(path, s, strlen(s), 0644, err);
  free(s);
  return rc;
}

int bpe_trainer_write(const bpe_trainer *t, const char *out_dir, ft_error *err) {
  if (!t->trained) return ft_error_set(err, FT_EINVALID, NULL, "the trainer has not trained");
  if (ft_mkdir_p(out_dir, 0755, NULL))
    return ft_error_set(err, FT_EIO, "out", "cannot create %s: %s", out_dir, strerror(errno));
  json_t *root = json_object(), *added = json_array(), *vocab = json_object(),
         *merges = json_array(), *model = json_object();
  int ok = root && added && vocab && merges && model;
  for (size_t i = 0; ok && i < t->ntok; i++)
    ok = !json_object_set_new(vocab, t->tok[i], json_integer((json_int_t)i));
  for (int k = 0; ok && k < N_SPECIALS; k++) {
    int id = (int)t->ntok + k;
    ok = !json_object_set_new(vocab, SPECIALS[k], json_integer(id)) &&
         !json_array_append_new(added, added_token(id, SPECIALS[k]));
  }
  for (size_t i = 0; ok && i < t->nmerges; i++) {
    const char *a = t->tok[t->merges[i][0]], *b = t->tok[t->merges[i][1]];
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) {
      ok = 0;
      break;
    }
    memcpy(s, a, la);
    s[la] = ' ';
    memcpy(s + la + 1, b, lb + 1);
    ok = !json_array_append_new(merges, json_string(s));
    free(s);
  }
  if (ok) {
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    json_object_set_new(model, "unk_token", json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_string(""));
    json_object_set_new(model, "end_of_word_suffix", json_string(""));
    json_object_set_new(model, "fuse_unk", json_false());
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    vocab = merges = NULL;
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_object_set_new(root, "added_tokens", added);
    added = NULL;
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", byte_level(0, 1));
    json_object_set_new(root, "post_processor", byte_level(1, 0));
    json_object_set_new(root, "decoder", byte_level(1, 1));
    json_object_set_new(root, "model", model);
    model = NULL;
  }
  json_decref(added);
  json_decref(vocab);
  json_decref(merges);
  json_decref(model);
  int rc;
  if (!ok) {
    rc = ft_error_set(err, FT_ENOMEM, NULL, "out of memory building tokenizer.json");
  } else {
    rc = write_json(out_dir, "tokenizer.json", root, err);
  }
  json_decref(root);
  if (rc) return rc;
  json_t *cfg = json_pack(
      "{s:b, s:b, s:s, s:s, s:s, s:s, s:s, s:b, s:i, s:[s,s], s:s}", "add_bos_token", 0,
      "add_eos_token", 0, "bos_token", SPECIALS[0], "eos_token", SPECIALS[0], "pad_token",
      SPECIALS[0], "unk_token", SPECIALS[0], "tokenizer_class", "GPT2Tokenizer",
      "clean_up_tokenization_spaces", 0, "model_max_length", 1048576, "additional_special_tokens",
      SPECIALS[1], SPECIALS[2], "chat_template", CHATML_TEMPLATE);
  if (!cfg) return ft_error_set(err, FT_ENOMEM, NULL, "out of memory");
  rc = write_json(out_dir, "tokenizer_config.json", cfg, err);
  json_decref(cfg);
  if (!rc && ft_fsync_dir(out_dir, NULL) != 0)
    rc = ft_error_set(err, FT_EIO, "out", "cannot fsync %s", out_dir);
  return rc;
}

int bpe_train_files(const char *const *files, size_t n, const bpe_train_opts *o,
                    const char *out_dir, ft_error *err) {
  if (n == 0) return ft_error_set(err, FT_EMISSING, "files", "no training files given");
  bpe_trainer *t;
  int rc = bpe_trainer_new(&t, err);
  if (rc) return rc;
  for (size_t i = 0; i < n && !rc; i++) rc = bpe_trainer_add_file(t, files[i], err);
  if (!rc && bpe_trainer_num_words(t) == 0)
    rc = ft_error_set(err, FT_EINVALID, "files", "the training files hold no text");
  if (!rc) rc = bpe_trainer_train(t, o, err);
  if (!rc) rc = bpe_trainer_write(t, out_dir, err);
  bpe_trainer_free(t);
  return rc;
}
