/* Tokenizers from Hugging Face files, giving Hugging Face's token ids.
 * The pipeline is HF's: split out added tokens (raw-text ones, then after the
 * normalizer the normalized ones), normalize (NFC, Prepend, Replace, Strip),
 * pre-tokenize (ByteLevel, Split with the file's own regex via PCRE2 + JIT,
 * Metaspace, Digits, Sequence), then BPE on each pre-token with a ranked
 * priority queue of merges (byte fallback, unk fusing, ignore_merges).
 * Decoding runs the file's decoder chain (ByteLevel, Replace, ByteFallback,
 * Fuse, Strip, Metaspace). The workload is training data: long texts with
 * many repeated words, so each encode keeps a cache of pre-token -> ids.
 * Everything is read-only after tok_load; an encode owns its scratch state. */
#include "tok/tok.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ft_fs.h"
#include "ft_utf8.h"
#include "tok/tok_unicode.h"

#define TOK_MAX_ID (1 << 24)
#define CACHE_MAX_WORD 64 /* pre-tokens longer than this are not cached */
#define MAX_STAGES 16     /* pre-tokenizer steps */

/* GPT-2's regex, used by ByteLevel(use_regex=true). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------- arena -- */

typedef struct ablock {
  struct ablock *next;
  size_t used, cap;
  char data[];
} ablock;

/* ------------------------------------------------- string -> id hash map -- */

typedef struct {
  const char *s; /* owned by the tok's arena */
  uint32_t len, hash;
  int32_t id;
} sm_ent;

typedef struct {
  sm_ent *ents;
  size_t n, cap;
  uint32_t *slots; /* entry index + 1, 0 = empty */
  size_t mask;
} strmap;

/* ----------------------------------------------- (id, id) -> merge map -- */

typedef struct {
  uint64_t *keys; /* (a << 32) | b, UINT64_MAX = empty */
  uint64_t *vals; /* (rank << 32) | new id */
  size_t mask;
} mergemap;

/* ------------------------------------------------------ pipeline nodes -- */

enum { N_SEQ, N_NFC, N_NFD, N_PREPEND, N_REPLACE, N_STRIP };
enum { P_SEQ, P_BYTELEVEL, P_SPLIT, P_METASPACE, P_DIGITS };
enum { D_SEQ, D_BYTELEVEL, D_BYTEFALLBACK, D_FUSE, D_REPLACE, D_STRIP, D_METASPACE };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

/* One node of a normalizer, pre-tokenizer or decoder tree. */
typedef struct node {
  int type;
  struct node **kids;
  size_t nkids;
  pcre2_code *re; /* a Regex pattern (Split, Replace), or NULL */
  char *a, *b;    /* String pattern / prepend / replacement / content */
  size_t alen, blen;
  int behavior, invert;            /* Split */
  int add_prefix_space, use_regex; /* ByteLevel */
  int prepend_scheme, split;       /* Metaspace */
  int left, right;                 /* Strip (normalizer: bools; decoder: counts) */
} node;

typedef struct {
  char *content; /* as written in the file */
  char *match;   /* what is matched: content, normalized when `normalized` */
  size_t len, mlen;
  int32_t id;
  int32_t next_same; /* next added token with the same match text, or -1 */
  uint8_t special, lstrip, rstrip, single_word, normalized;
} added_tok;

struct tok {
  ablock *arena;
  strmap vocab;     /* the model's vocabulary */
  strmap added_map; /* added token content -> id */
  mergemap merges;
  int32_t n_ids;       /* largest id + 1 */
  const char **id_str; /* [n_ids], NULL for holes */
  uint8_t *id_flags;   /* [n_ids]: ID_ADDED, ID_SPECIAL */
  added_tok *added;
  size_t n_added, cap_added;
  uint8_t *added_ids;  /* bit per id: an added token has it */
  size_t added_id_cap; /* bytes */
  /* Added tokens in two sets: [0] matched in raw text, [1] after
   * normalization. Per set, match text -> index in added (tokens with the
   * same text chained by next_same), and by first byte the distinct match
   * lengths, longest first: a position costs one lookup per length, not one
   * compare per token (Gemma 3 has 6,000 added tokens starting with '<'). */
  strmap amatch[2];
  uint32_t *alens[2][256];
  uint32_t nalens[2][256];
  int has_added[2];
  node *norm, *pre, *dec;
  const node *stages[MAX_STAGES]; /* pre-tokenizer with Sequences flattened */
  size_t nstages;
  int byte_fallback, fuse_unk, ignore_merges;
  int sp_chunk;         /* "▁" is a token: long words may be cut before a "▁" */
  uint8_t sp_glue[256]; /* some merge result has this byte just before a "▁":
                           no cut there (see bpe_word) */
  int32_t unk_id;       /* -1 when none */
  int32_t byte_id[256]; /* ids of <0xXX>, -1 when absent */
  int bos, eos, pad;
  char *chat_template;
  char *bos_s, *eos_s, *pad_s; /* from tokenizer_config.json until resolved */
  int vocab_mode;              /* loaded from vocab.json + merges.txt */
};

enum { ID_ADDED = 1, ID_SPECIAL = 2 };

/* GPT-2's byte <-> unicode alphabet */
static uint16_t byte_cp[256];
static char byte_utf8[256][2];
static uint8_t byte_ulen[256];
static int16_t cp_byte[324];

static void byte_alphabet_build(void) {
  int n = 0;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_cp[b] = (uint16_t)(keep ? b : 256 + n++);
  }
  for (int c = 0; c < 324; c++) cp_byte[c] = -1;
  for (int b = 0; b < 256; b++) {
    cp_byte[byte_cp[b]] = (int16_t)b;
    char buf[4];
    int k = tok_utf8_encode(buf, byte_cp[b]);
    memcpy(byte_utf8[b], buf, (size_t)k);
    byte_ulen[b] = (uint8_t)k;
  }
}

/* ------------------------------------------------------------- helpers -- */

static char *arena_dup(tok *t, const char *s, size_t len) {
  ablock *b = t->arena;
  if (!b || b->cap - b->used < len + 1) {
    size_t cap = len + 1 > (1u << 20) ? len + 1 : (1u << 20);
    ablock *nb = malloc(sizeof *nb + cap);
    if (!nb) return NULL;
    nb->next = t->arena;
    nb->used = 0;
    nb->cap = cap;
    t->arena = b = nb;
  }
  char *p = b->data + b->used;
  memcpy(p, s, len);
  p[len] = 0;
  b->used += len + 1;
  return p;
}

static uint32_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return (uint32_t)(h ^ (h >> 32));
}

static int sm_grow(strmap *m) {
  size_t ns = m->slots ? (m->mask + 1) * 2 : 1024;
  uint32_t *slots = calloc(ns, sizeof *slots);
  if (!slots) return FT_ENOMEM;
  for (size_t i = 0; i < m->n; i++) {
    size_t j = m->ents[i].hash & (ns - 1);
    while (slots[j]) j = (j + 1) & (ns - 1);
    slots[j] = (uint32_t)i + 1;
  }
  free(m->slots);
  m->slots = slots;
  m->mask = ns - 1;
  return 0;
}

static int32_t sm_get(const strmap *m, const char *s, size_t len) {
  if (!m->slots) return -1;
  uint32_t h = hash_bytes(s, len);
  for (size_t j = h & m->mask;; j = (j + 1) & m->mask) {
    uint32_t k = m->slots[j];
    if (!k) return -1;
    const sm_ent *e = &m->ents[k - 1];
    if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) return e->id;
  }
}

/* Maps s (which must outlive the map) to id; a present key gets the new id. */
static int sm_put(strmap *m, const char *s, size_t len, int32_t id) {
  if (!m->slots || (m->n + 1) * 2 > m->mask + 1) {
    int rc = sm_grow(m);
    if (rc) return rc;
  }
  uint32_t h = hash_bytes(s, len);
  size_t j = h & m->mask;
  for (;; j = (j + 1) & m->mask) {
    uint32_t k = m->slots[j];
    if (!k) break;
    sm_ent *e = &m->ents[k - 1];
    if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
      e->id = id;
      return 0;
    }
  }
  if (m->n == m->cap) {
    size_t nc = m->cap ? m->cap * 2 : 1024;
    sm_ent *ne = realloc(m->ents, nc * sizeof *ne);
    if (!ne) return FT_ENOMEM;
    m->ents = ne;
    m->cap = nc;
  }
  m->ents[m->n] = (sm_ent){s, (uint32_t)len, h, id};
  m->slots[j] = (uint32_t)++m->n;
  return 0;
}

static void sm_free(strmap *m) {
  free(m->ents);
  free(m->slots);
}

static inline size_t mm_hash(uint64_t k, size_t mask) {
  return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 29) & mask;
}

static int mm_init(mergemap *m, size_t n) {
  size_t ns = 1024;
  while (ns < n * 2) ns *= 2;
  m->keys = malloc(ns * sizeof *m->keys);
  m->vals = malloc(ns * sizeof *m->vals);
  if (!m->keys || !m->vals) return FT_ENOMEM;
  memset(m->keys, 0xFF, ns * sizeof *m->keys);
  m->mask = ns - 1;
  return 0;
}

static void mm_put(mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
  uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  size_t j = mm_hash(k, m->mask);
  while (m->keys[j] != UINT64_MAX && m->keys[j] != k) j = (j + 1) & m->mask;
  m->keys[j] = k;
  m->vals[j] = ((uint64_t)rank << 32) | (uint32_t)id;
}

/* 1 and (rank, new id) when a b is a merge */
static inline int mm_get(const mergemap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
  if (!m->keys) return 0;
  uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  for (size_t j = mm_hash(k, m->mask);; j = (j + 1) & m->mask) {
    if (m->keys[j] == k) {
      *rank = (uint32_t)(m->vals[j] >> 32);
      *id = (int32_t)(uint32_t)m->vals[j];
      return 1;
    }
    if (m->keys[j] == UINT64_MAX) return 0;
  }
}

/* Unicode White_Space */
static int is_space_cp(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/* Length of the UTF-8 sequence starting with byte c (input is valid). */
static inline size_t u8len(unsigned char c) {
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code point ending at s[end) (valid UTF-8); its start in *start. */
static uint32_t cp_before(const char *s, size_t end, size_t *start) {
  size_t i = end - 1;
  while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
  uint32_t cp;
  tok_utf8_decode(s + i, &cp);
  *start = i;
  return cp;
}

/* -------------------------------------------------------- piece lists -- */

typedef struct {
  size_t off, len;
  int first; /* begins at offset 0 of the original text (Metaspace "first") */
} piece;

typedef struct {
  char *buf;
  size_t blen, bcap;
  piece *p;
  size_t n, cap;
} plist;

static int pl_reserve(plist *l, size_t more) {
  if (l->blen + more + 1 > l->bcap) {
    size_t nc = l->bcap ? l->bcap : 256;
    while (nc < l->blen + more + 1) nc *= 2;
    char *nb = realloc(l->buf, nc);
    if (!nb) return FT_ENOMEM;
    l->buf = nb;
    l->bcap = nc;
  }
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    piece *np = realloc(l->p, nc * sizeof *np);
    if (!np) return FT_ENOMEM;
    l->p = np;
    l->cap = nc;
  }
  return 0;
}

/* Appends the piece pre + s (either may be empty); empty pieces are dropped
 * as HF drops empty splits. */
static int pl_add2(plist *l, const char *pre, size_t plen, const char *s, size_t len, int first) {
  if (plen + len == 0) return 0;
  int rc = pl_reserve(l, plen + len);
  if (rc) return rc;
  memcpy(l->buf + l->blen, pre, plen);
  memcpy(l->buf + l->blen + plen, s, len);
  l->p[l->n++] = (piece){l->blen, plen + len, first};
  l->blen += plen + len;
  return 0;
}

static void pl_clear(plist *l) {
  l->blen = 0;
  l->n = 0;
}

static void pl_free(plist *l) {
  free(l->buf);
  free(l->p);
  memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------ encode scratch -- */

typedef struct {
  int32_t id, prev, next;
  int dead;
} sym;

typedef struct {
  uint32_t rank, pos;
  int32_t id;
} hent;

typedef struct {
  uint32_t koff, klen, ioff, icount;
} cache_ent;

typedef struct {
  char *buf;
  size_t cap;
} sbuf;

/* One encode's scratch: ids, BPE state, regex state, the word cache and,
 * per pre-tokenizer stage, a buffer for its transformed input and one for
 * the piece it hands on (pieces stream depth-first through the stages). */
typedef struct {
  int32_t *ids;
  size_t n, cap;
  sym *syms;
  size_t symcap;
  hent *heap;
  size_t heapcap;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jstack;
  cache_ent *cache; /* word cache: keys in kbuf, ids in cids */
  size_t cmask, cn;
  char *kbuf;
  size_t klen, kcap;
  int32_t *cids;
  size_t cidn, cidcap;
  sbuf in[MAX_STAGES], out[MAX_STAGES];
} enc;

static void enc_free(enc *e) {
  free(e->syms);
  free(e->heap);
  if (e->md) pcre2_match_data_free(e->md);
  if (e->mctx) pcre2_match_context_free(e->mctx);
  if (e->jstack) pcre2_jit_stack_free(e->jstack);
  free(e->cache);
  free(e->kbuf);
  free(e->cids);
  for (int k = 0; k < MAX_STAGES; k++) {
    free(e->in[k].buf);
    free(e->out[k].buf);
  }
}

static int sbuf_reserve(sbuf *b, size_t n) {
  if (n + 1 <= b->cap) return 0;
  size_t nc = b->cap ? b->cap : 256;
  while (nc < n + 1) nc *= 2;
  char *nb = realloc(b->buf, nc);
  if (!nb) return FT_ENOMEM;
  b->buf = nb;
  b->cap = nc;
  return 0;
}

static int push_id(enc *e, int32_t id) {
  if (e->n == e->cap) {
    size_t nc = e->cap ? e->cap * 2 : 256;
    int32_t *ni = realloc(e->ids, nc * sizeof *ni);
    if (!ni) return FT_ENOMEM;
    e->ids = ni;
    e->cap = nc;
  }
  e->ids[e->n++] = id;
  return 0;
}

/* Next match of re in s[0..len) at or after start; 1 found, 0 none, <0 error. */
static int re_next(enc *e, const pcre2_code *re, const char *s, size_t len, size_t start,
                   size_t *ms, size_t *me) {
  if (!e->md) {
    e->md = pcre2_match_data_create(16, NULL);
    if (!e->md) return FT_ENOMEM;
  }
  for (;;) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jstack) {
      e->mctx = pcre2_match_context_create(NULL);
      e->jstack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, NULL);
      if (!e->mctx || !e->jstack) return FT_ENOMEM;
      pcre2_jit_stack_assign(e->mctx, NULL, e->jstack);
      continue;
    }
    if (rc < 0) return FT_EINTERNAL;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
  }
}

/* Next non-empty match of p's pattern (Regex or String) in s[0..len) at or
 * after start: 1 with [*ms, *me), 0 when none, <0 on error. Empty regex
 * matches do not split (HF drops empty pieces). */
static int next_match(enc *e, const node *p, const char *s, size_t len, size_t start, size_t *ms,
                      size_t *me) {
  while (start < len) {
    if (!p->re) {
      if (p->alen == 0) return 0;
      const char *f = memmem(s + start, len - start, p->a, p->alen);
      if (!f) return 0;
      *ms = (size_t)(f - s);
      *me = *ms + p->alen;
      return 1;
    }
    int rc = re_next(e, p->re, s, len, start, ms, me);
    if (rc <= 0) return rc;
    if (*me > *ms) return 1;
    start = *ms + u8len((unsigned char)s[*ms]);
  }
  return 0;
}

/* --------------------------------------------------------- normalizer -- */

static int replace_all(enc *e, const node *n, const char *s, size_t len, char **out, size_t *outn) {
  sbuf o = {0};
  size_t w = 0, prev = 0, ms, me;
  int rc;
  if ((rc = sbuf_reserve(&o, len))) return rc;
  while ((rc = next_match(e, n, s, len, prev, &ms, &me)) > 0) {
    if ((rc = sbuf_reserve(&o, w + (ms - prev) + n->blen + (len - me)))) break;
    memcpy(o.buf + w, s + prev, ms - prev);
    w += ms - prev;
    memcpy(o.buf + w, n->b, n->blen);
    w += n->blen;
    prev = me;
  }
  if (rc < 0) {
    free(o.buf);
    return rc;
  }
  memcpy(o.buf + w, s + prev, len - prev);
  w += len - prev;
  o.buf[w] = 0;
  *out = o.buf;
  *outn = w;
  return 0;
}

static int dup_out(const char *s, size_t len, char **out, size_t *outn) {
  char *o = malloc(len + 1);
  if (!o) return FT_ENOMEM;
  memcpy(o, s, len);
  o[len] = 0;
  *out = o;
  *outn = len;
  return 0;
}

/* Normalizes s into a malloc'd *out. */
static int norm_run(enc *e, const node *n, const char *s, size_t len, char **out, size_t *outn) {
  switch (n->type) {
    case N_SEQ: {
      char *cur = NULL;
      size_t curn = 0;
      int rc = dup_out(s, len, &cur, &curn);
      for (size_t k = 0; !rc && k < n->nkids; k++) {
        char *nx;
        size_t nxn;
        rc = norm_run(e, n->kids[k], cur, curn, &nx, &nxn);
        if (!rc) {
          free(cur);
          cur = nx;
          curn = nxn;
        }
      }
      if (rc) {
        free(cur);
        return rc;
      }
      *out = cur;
      *outn = curn;
      return 0;
    }
    case N_NFC:
    case N_NFD:
      return tok_unicode_normalize(s, len, n->type == N_NFC, out, outn);
    case N_PREPEND: {
      if (len == 0) return dup_out(s, 0, out, outn);
      char *o = malloc(n->alen + len + 1);
      if (!o) return FT_ENOMEM;
      memcpy(o, n->a, n->alen);
      memcpy(o + n->alen, s, len);
      o[n->alen + len] = 0;
      *out = o;
      *outn = n->alen + len;
      return 0;
    }
    case N_REPLACE:
      return replace_all(e, n, s, len, out, outn);
    case N_STRIP: {
      size_t a = 0, b = len;
      while (n->left && a < b) {
        uint32_t cp;
        int k = tok_utf8_decode(s + a, &cp);
        if (!is_space_cp(cp)) break;
        a += (size_t)k;
      }
      while (n->right && b > a) {
        size_t st;
        if (!is_space_cp(cp_before(s, b, &st))) break;
        b = st;
      }
      return dup_out(s + a, b - a, out, outn);
    }
  }
  return FT_EINTERNAL;
}

/* ------------------------------------------------------ pre-tokenizer -- */

static pcre2_code *gpt2_re; /* compiled once, read-only afterwards */

static int bpe_word(const tok *t, enc *e, const char *w, size_t len);
static int run_stage(const tok *t, enc *e, size_t k, const char *s, size_t len, int first);

/* Hands the piece s[a..b) of stage k on to stage k + 1; ByteLevel maps its
 * pieces to the byte alphabet first. */
static int emit(const tok *t, enc *e, size_t k, const char *s, size_t a, size_t b, int first) {
  if (b <= a) return 0;
  first = first && a == 0;
  if (t->stages[k]->type != P_BYTELEVEL) return run_stage(t, e, k + 1, s + a, b - a, first);
  int rc = sbuf_reserve(&e->out[k], (b - a) * 2);
  if (rc) return rc;
  char *w = e->out[k].buf;
  for (size_t i = a; i < b; i++) {
    unsigned c = (unsigned char)s[i];
    *w++ = byte_utf8[c][0];
    if (byte_ulen[c] == 2) *w++ = byte_utf8[c][1];
  }
  return run_stage(t, e, k + 1, e->out[k].buf, (size_t)(w - e->out[k].buf), first);
}

/* HF's split behaviors over the stream of (gap, match) segments, holding at
 * most one segment back. */
typedef struct {
  int behavior, have, pm, prevm;
  size_t ps, pe;
} comb;

static int comb_push(const tok *t, enc *e, size_t k, comb *c, const char *s, size_t a, size_t b,
                     int m, int first) {
  int rc = 0;
  if (b <= a) return 0;
  switch (c->behavior) {
    case B_ISOLATED:
      return emit(t, e, k, s, a, b, first);
    case B_REMOVED:
      return m ? 0 : emit(t, e, k, s, a, b, first);
    case B_MERGED_PREV: /* a match joins the piece before it */
      if (m && !c->prevm && c->have) {
        c->pe = b;
      } else {
        if (c->have) rc = emit(t, e, k, s, c->ps, c->pe, first);
        c->ps = a;
        c->pe = b;
        c->have = 1;
      }
      c->prevm = m;
      return rc;
    case B_MERGED_NEXT: /* a match joins the non-match after it */
      if (c->have) {
        c->have = 0;
        if (!m) return emit(t, e, k, s, c->ps, b, first);
        if ((rc = emit(t, e, k, s, c->ps, c->pe, first))) return rc;
      }
      if (!m) return emit(t, e, k, s, a, b, first);
      c->ps = a;
      c->pe = b;
      c->have = 1;
      return 0;
    case B_CONTIGUOUS:
      if (c->have && c->pm == m) {
        c->pe = b;
        return 0;
      }
      if (c->have) rc = emit(t, e, k, s, c->ps, c->pe, first);
      c->ps = a;
      c->pe = b;
      c->pm = m;
      c->have = 1;
      return rc;
  }
  return FT_EINTERNAL;
}

static int split_stream(const tok *t, enc *e, size_t k, const node *pat, int behavior, int invert,
                        const char *s, size_t len, int first) {
  comb c = {.behavior = behavior};
  size_t prev = 0, ms, me;
  int rc;
  while ((rc = next_match(e, pat, s, len, prev, &ms, &me)) > 0) {
    if ((rc = comb_push(t, e, k, &c, s, prev, ms, invert, first)) ||
        (rc = comb_push(t, e, k, &c, s, ms, me, !invert, first)))
      return rc;
    prev = me;
  }
  if (rc < 0) return rc;
  if ((rc = comb_push(t, e, k, &c, s, prev, len, invert, first))) return rc;
  return c.have ? emit(t, e, k, s, c.ps, c.pe, first) : 0;
}

/* Runs pre-tokenizer stage k (of the flattened Sequence) on one piece. */
static int run_stage(const tok *t, enc *e, size_t k, const char *s, size_t len, int first) {
  if (k == t->nstages) return bpe_word(t, e, s, len);
  const node *p = t->stages[k];
  int rc;
  switch (p->type) {
    case P_BYTELEVEL: {
      if (p->add_prefix_space && s[0] != ' ') {
        if ((rc = sbuf_reserve(&e->in[k], len + 1))) return rc;
        e->in[k].buf[0] = ' ';
        memcpy(e->in[k].buf + 1, s, len);
        s = e->in[k].buf;
        len++;
      }
      if (!p->use_regex) return emit(t, e, k, s, 0, len, first);
      node re = {.re = gpt2_re};
      return split_stream(t, e, k, &re, B_ISOLATED, 0, s, len, first);
    }
    case P_SPLIT:
    case P_DIGITS:
      return split_stream(t, e, k, p, p->behavior, p->invert, s, len, first);
    case P_METASPACE: {
      /* replace ' ' by the replacement, maybe prepend it, maybe split on it */
      size_t nsp = 0;
      for (size_t i = 0; i < len; i++) nsp += s[i] == ' ';
      if ((rc = sbuf_reserve(&e->in[k], len + (nsp + 1) * p->alen))) return rc;
      char *w = e->in[k].buf;
      int starts = s[0] == ' ' || (len >= p->alen && memcmp(s, p->a, p->alen) == 0);
      if (!starts && (p->prepend_scheme == PS_ALWAYS || (p->prepend_scheme == PS_FIRST && first))) {
        memcpy(w, p->a, p->alen);
        w += p->alen;
      }
      for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
          memcpy(w, p->a, p->alen);
          w += p->alen;
        } else {
          *w++ = s[i];
        }
      }
      size_t tl = (size_t)(w - e->in[k].buf);
      if (!p->split) return emit(t, e, k, e->in[k].buf, 0, tl, first);
      node lit = {.a = p->a, .alen = p->alen};
      return split_stream(t, e, k, &lit, B_MERGED_NEXT, 0, e->in[k].buf, tl, first);
    }
  }
  return FT_EINTERNAL;
}

/* ---------------------------------------------------------------- BPE -- */

static inline int heap_less(const hent *a, const hent *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(hent *h, size_t *n, hent x) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static hent heap_pop(hent *h, size_t *n) {
  hent top = h[0], x = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
    if (!heap_less(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = x;
  return top;
}

static int sym_add(enc *e, size_t *ns, int32_t id) {
  if (*ns == e->symcap) {
    size_t nc = e->symcap ? e->symcap * 2 : 64;
    sym *nsy = realloc(e->syms, nc * sizeof *nsy);
    if (!nsy) return FT_ENOMEM;
    e->syms = nsy;
    e->symcap = nc;
  }
  e->syms[*ns] = (sym){id, (int32_t)*ns - 1, (int32_t)*ns + 1, 0};
  (*ns)++;
  return 0;
}

/* BPE of one pre-token, appending its ids (HF's BPE::merge_word + merge_all). */
static int bpe_word_raw(const tok *t, enc *e, const char *w, size_t len) {
  int rc;
  if (t->ignore_merges) {
    int32_t id = sm_get(&t->vocab, w, len);
    if (id >= 0) return push_id(e, id);
  }
  size_t ns = 0;
  int32_t unk = -1; /* pending unk (fused when fuse_unk) */
  for (size_t i = 0; i < len;) {
    size_t cl = u8len((unsigned char)w[i]);
    int32_t id = sm_get(&t->vocab, w + i, cl);
    if (id >= 0) {
      if (unk >= 0) {
        if ((rc = sym_add(e, &ns, unk))) return rc;
        unk = -1;
      }
      if ((rc = sym_add(e, &ns, id))) return rc;
    } else {
      int done = 0;
      if (t->byte_fallback) {
        int all = 1;
        for (size_t k = 0; k < cl; k++) all &= t->byte_id[(unsigned char)w[i + k]] >= 0;
        if (all) {
          for (size_t k = 0; k < cl; k++)
            if ((rc = sym_add(e, &ns, t->byte_id[(unsigned char)w[i + k]]))) return rc;
          done = 1;
        }
      }
      if (!done && t->unk_id >= 0) {
        if (unk >= 0 && !t->fuse_unk)
          if ((rc = sym_add(e, &ns, unk))) return rc;
        unk = t->unk_id;
      }
    }
    i += cl;
  }
  if (unk >= 0 && (rc = sym_add(e, &ns, unk))) return rc;
  if (ns == 0) return 0;
  sym *sy = e->syms;
  sy[ns - 1].next = -1;
  if (ns > 1) {
    if (e->heapcap < ns * 2) {
      hent *nh = realloc(e->heap, ns * 2 * sizeof *nh);
      if (!nh) return FT_ENOMEM;
      e->heap = nh;
      e->heapcap = ns * 2;
    }
    size_t hn = 0;
    uint32_t rank;
    int32_t nid;
    for (size_t i = 0; i + 1 < ns; i++)
      if (mm_get(&t->merges, sy[i].id, sy[i + 1].id, &rank, &nid))
        heap_push(e->heap, &hn, (hent){rank, (uint32_t)i, nid});
    while (hn) {
      hent top = heap_pop(e->heap, &hn);
      sym *cur = &sy[top.pos];
      if (cur->dead || cur->next < 0) continue;
      sym *right = &sy[cur->next];
      if (!mm_get(&t->merges, cur->id, right->id, &rank, &nid) || nid != top.id) continue;
      cur->id = top.id;
      right->dead = 1;
      cur->next = right->next;
      if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
      /* at most two pushes per merge, and merges <= ns - 1: room is ns * 2 */
      if (hn + 2 > e->heapcap) {
        hent *nh = realloc(e->heap, (e->heapcap * 2 + 2) * sizeof *nh);
        if (!nh) return FT_ENOMEM;
        e->heap = nh;
        e->heapcap = e->heapcap * 2 + 2;
      }
      if (cur->prev >= 0 && mm_get(&t->merges, sy[cur->prev].id, cur->id, &rank, &nid))
        heap_push(e->heap, &hn, (hent){rank, (uint32_t)cur->prev, nid});
      if (cur->next >= 0 && mm_get(&t->merges, cur->id, sy[cur->next].id, &rank, &nid))
        heap_push(e->heap, &hn, (hent){rank, top.pos, nid});
    }
  }
  for (int32_t i = 0; i >= 0; i = sy[i].next)
    if ((rc = push_id(e, sy[i].id))) return rc;
  return 0;
}

static int bpe_word_cached(const tok *t, enc *e, const char *w, size_t len);

/* BPE of one pre-token. Without a pre-tokenizer that splits words
 * (SentencePiece style: Llama 2, Gemma) the whole text is one word. A merge
 * crossing the point i before a "▁" would make a token holding w[i - 1]
 * then "▁"; when no merge result has that byte before a "▁" (sp_glue) and
 * the character ending at i is a token of its own (not byte fallback or
 * unk), no merge crosses i, so the word is cut there and each part goes
 * through the cache with the same result as the whole. */
static int bpe_word(const tok *t, enc *e, const char *w, size_t len) {
  if (len <= CACHE_MAX_WORD || !t->sp_chunk) return bpe_word_cached(t, e, w, len);
  size_t start = 0;
  for (size_t i = 1; i + 3 <= len; i++) {
    if (memcmp(w + i, "\xE2\x96\x81", 3) != 0) continue;
    if (t->sp_glue[(unsigned char)w[i - 1]]) continue;
    size_t cs;
    cp_before(w, i, &cs);
    if (sm_get(&t->vocab, w + cs, i - cs) < 0) continue;
    int rc = bpe_word_cached(t, e, w + start, i - start);
    if (rc) return rc;
    start = i;
  }
  return bpe_word_cached(t, e, w + start, len - start);
}

/* BPE through the per-encode cache of pre-token -> ids. */
static int bpe_word_cached(const tok *t, enc *e, const char *w, size_t len) {
  if (len > CACHE_MAX_WORD) return bpe_word_raw(t, e, w, len);
  if (!e->cache || (e->cn + 1) * 2 > e->cmask + 1) {
    size_t ns = e->cache ? (e->cmask + 1) * 2 : 4096;
    cache_ent *nc = malloc(ns * sizeof *nc);
    if (!nc) return FT_ENOMEM;
    for (size_t i = 0; i < ns; i++) nc[i].klen = UINT32_MAX;
    for (size_t i = 0; e->cache && i <= e->cmask; i++) {
      if (e->cache[i].klen == UINT32_MAX) continue;
      size_t j = hash_bytes(e->kbuf + e->cache[i].koff, e->cache[i].klen) & (ns - 1);
      while (nc[j].klen != UINT32_MAX) j = (j + 1) & (ns - 1);
      nc[j] = e->cache[i];
    }
    free(e->cache);
    e->cache = nc;
    e->cmask = ns - 1;
  }
  size_t j = hash_bytes(w, len) & e->cmask;
  for (; e->cache[j].klen != UINT32_MAX; j = (j + 1) & e->cmask) {
    cache_ent *c = &e->cache[j];
    if (c->klen == len && memcmp(e->kbuf + c->koff, w, len) == 0) {
      for (uint32_t k = 0; k < c->icount; k++) {
        int rc = push_id(e, e->cids[c->ioff + k]);
        if (rc) return rc;
      }
      return 0;
    }
  }
  size_t before = e->n;
  int rc = bpe_word_raw(t, e, w, len);
  if (rc) return rc;
  size_t cnt = e->n - before;
  if (e->klen + len > e->kcap) {
    size_t nc = e->kcap ? e->kcap * 2 : 65536;
    while (nc < e->klen + len) nc *= 2;
    char *nk = realloc(e->kbuf, nc);
    if (!nk) return FT_ENOMEM;
    e->kbuf = nk;
    e->kcap = nc;
  }
  if (e->cidn + cnt > e->cidcap) {
    size_t nc = e->cidcap ? e->cidcap * 2 : 16384;
    while (nc < e->cidn + cnt) nc *= 2;
    int32_t *ni = realloc(e->cids, nc * sizeof *ni);
    if (!ni) return FT_ENOMEM;
    e->cids = ni;
    e->cidcap = nc;
  }
  memcpy(e->kbuf + e->klen, w, len);
  /* (fuzz/regressions/tok: a word with no tokens, e.g. no unk token, has
   * cnt 0 while e->ids and e->cids may still be NULL: NULL + 0 is UB) */
  if (cnt) memcpy(e->cids + e->cidn, e->ids + before, cnt * sizeof(int32_t));
  e->cache[j] = (cache_ent){(uint32_t)e->klen, (uint32_t)len, (uint32_t)e->cidn, (uint32_t)cnt};
  e->klen += len;
  e->cidn += cnt;
  e->cn++;
  return 0;
}

/* ------------------------------------------------------- added tokens -- */

static int is_word_cp(uint32_t c) {
  return (c < 0x80) ? ((c | 32) - 'a' < 26 || c - '0' < 10 || c == '_') : !is_space_cp(c);
}

/* Finds the leftmost-longest added token of set `which` in s[from..len);
 * returns 1 with [*ms, *me) (lstrip/rstrip whitespace included) and its id. */
static int added_find(const tok *t, int which, int parse_special, const char *s, size_t len,
                      size_t from, size_t *ms, size_t *me, int32_t *id) {
  for (size_t i = from; i < len; i++) {
    unsigned c = (unsigned char)s[i];
    for (size_t k = 0; k < t->nalens[which][c]; k++) {
      size_t l = t->alens[which][c][k];
      if (l > len - i) continue;
      for (int32_t x = sm_get(&t->amatch[which], s + i, l); x >= 0; x = t->added[x].next_same) {
        const added_tok *a = &t->added[x];
        if (a->special && !parse_special) continue;
        size_t st = i, en = i + l;
        if (a->single_word) {
          size_t ps;
          uint32_t nxt;
          if (st > 0 && is_word_cp(cp_before(s, st, &ps))) continue;
          if (en < len && (tok_utf8_decode(s + en, &nxt), is_word_cp(nxt))) continue;
        }
        if (a->lstrip) {
          size_t ps;
          while (st > from && is_space_cp(cp_before(s, st, &ps))) st = ps;
        }
        if (a->rstrip) {
          uint32_t cp;
          int cl;
          while (en < len && (cl = tok_utf8_decode(s + en, &cp), is_space_cp(cp))) en += (size_t)cl;
        }
        *ms = st;
        *me = en;
        *id = a->id;
        return 1;
      }
    }
  }
  return 0;
}

/* Pre-tokenizes and BPEs one piece of normalized text. */
static int encode_plain(const tok *t, enc *e, const char *s, size_t len, int first) {
  if (len == 0) return 0;
  return run_stage(t, e, 0, s, len, first);
}

static int encode_segment(const tok *t, enc *e, const char *s, size_t len, int parse_special,
                          int first) {
  char *ns = NULL;
  size_t nn = len;
  int rc;
  if (t->norm) {
    if ((rc = norm_run(e, t->norm, s, len, &ns, &nn))) return rc;
    s = ns;
  }
  size_t pos = 0, ms, me;
  int32_t id;
  rc = 0;
  while (!rc && t->has_added[1] && added_find(t, 1, parse_special, s, nn, pos, &ms, &me, &id)) {
    if (ms > pos && (rc = encode_plain(t, e, s + pos, ms - pos, first && pos == 0))) break;
    rc = push_id(e, id);
    pos = me;
  }
  if (!rc && pos < nn) rc = encode_plain(t, e, s + pos, nn - pos, first && pos == 0);
  free(ns);
  return rc;
}

int tok_encode(const tok *t, const char *text, size_t len, int parse_special, int32_t **ids,
               size_t *n) {
  if (!ids || !n) return FT_EINVALID;
  *ids = NULL;
  *n = 0;
  if (!t || (!text && len)) return FT_EINVALID;
  if (!ft_utf8_valid(text, len, NULL)) return FT_EUTF8;
  enc e = {0};
  int rc = push_id(&e, 0); /* *ids is never NULL on success */
  e.n = 0;
  size_t pos = 0, ms, me;
  int32_t id;
  while (!rc && t->has_added[0] && added_find(t, 0, parse_special, text, len, pos, &ms, &me, &id)) {
    if (ms > pos && (rc = encode_segment(t, &e, text + pos, ms - pos, parse_special, pos == 0)))
      break;
    rc = push_id(&e, id);
    pos = me;
  }
  if (!rc && pos < len) rc = encode_segment(t, &e, text + pos, len - pos, parse_special, pos == 0);
  enc_free(&e);
  if (rc) {
    free(e.ids);
    return rc;
  }
  *ids = e.ids;
  *n = e.n;
  return 0;
}

/* ------------------------------------------------------------ decoder -- */

static int dec_run(const node *d, plist *in, plist *out);

/* Appends the concatenation of all pieces of in as one piece. */
static int fuse_all(plist *in, plist *out) {
  int rc = pl_reserve(out, in->blen);
  if (rc) return rc;
  size_t start = out->blen;
  for (size_t i = 0; i < in->n; i++) {
    memcpy(out->buf + out->blen, in->buf + in->p[i].off, in->p[i].len);
    out->blen += in->p[i].len;
  }
  if (out->blen > start) out->p[out->n++] = (piece){start, out->blen - start, 0};
  return 0;
}

/* "<0xAB>" -> 0xAB, or -1 */
static int byte_token(const char *s, size_t len) {
  if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static int dec_piece_replace(const node *d, const char *s, size_t len, plist *out) {
  enc e = {0};
  char *r;
  size_t rn;
  int rc = replace_all(&e, d, s, len, &r, &rn);
  enc_free(&e);
  if (rc) return rc;
  /* keep the piece even when it becomes empty, as HF keeps tokens */
  rc = pl_reserve(out, rn);
  if (!rc) {
    memcpy(out->buf + out->blen, r, rn);
    out->p[out->n++] = (piece){out->blen, rn, 0};
    out->blen += rn;
  }
  free(r);
  return rc;
}

static int pl_push_keep(plist *out, const char *s, size_t len) {
  int rc = pl_reserve(out, len);
  if (rc) return rc;
  memcpy(out->buf + out->blen, s, len);
  out->p[out->n++] = (piece){out->blen, len, 0};
  out->blen += len;
  return 0;
}

static int dec_run(const node *d, plist *in, plist *out) {
  int rc = 0;
  switch (d->type) {
    case D_SEQ: {
      plist a = {0}, b = {0};
      plist *src = in;
      for (size_t k = 0; k < d->nkids && !rc; k++) {
        plist *dst = (src == &a) ? &b : &a;
        pl_clear(dst);
        if (!(rc = dec_run(d->kids[k], src, dst))) src = dst;
      }
      for (size_t i = 0; i < src->n && !rc; i++)
        rc = pl_push_keep(out, src->buf + src->p[i].off, src->p[i].len);
      pl_free(&a);
      pl_free(&b);
      return rc;
    }
    case D_BYTELEVEL: {
      plist raw = {0};
      if ((rc = pl_reserve(&raw, in->blen))) return rc;
      for (size_t i = 0; i < in->n; i++) {
        const char *s = in->buf + in->p[i].off;
        size_t len = in->p[i].len, w = raw.blen, j = 0;
        while (j < len) {
          uint32_t cp;
          j += (size_t)tok_utf8_decode(s + j, &cp);
          if (cp >= 324 || cp_byte[cp] < 0) break;
          raw.buf[w++] = (char)cp_byte[cp];
        }
        if (j < len) { /* not all in the alphabet: the token's own bytes */
          memcpy(raw.buf + raw.blen, s, len);
          w = raw.blen + len;
        }
        raw.blen = w;
      }
      char *fixed;
      size_t fn;
      rc = tok_utf8_lossy(raw.buf, raw.blen, &fixed, &fn);
      pl_free(&raw);
      if (rc) return rc;
      rc = pl_push_keep(out, fixed, fn);
      free(fixed);
      return rc;
    }
    case D_BYTEFALLBACK: {
      size_t i = 0;
      while (i < in->n && !rc) {
        const char *s = in->buf + in->p[i].off;
        if (byte_token(s, in->p[i].len) < 0) {
          rc = pl_push_keep(out, s, in->p[i].len);
          i++;
          continue;
        }
        char bytes[256];
        size_t nb = 0, j = i;
        int v;
        while (j < in->n && nb < sizeof bytes &&
               (v = byte_token(in->buf + in->p[j].off, in->p[j].len)) >= 0) {
          bytes[nb++] = (char)v;
          j++;
        }
        if (ft_utf8_valid(bytes, nb, NULL)) {
          rc = pl_push_keep(out, bytes, nb);
        } else {
          for (size_t k = 0; k < nb && !rc; k++) rc = pl_push_keep(out, "\xEF\xBF\xBD", 3);
        }
        i = j;
      }
      return rc;
    }
    case D_FUSE:
      return fuse_all(in, out);
    case D_REPLACE:
      for (size_t i = 0; i < in->n && !rc; i++)
        rc = dec_piece_replace(d, in->buf + in->p[i].off, in->p[i].len, out);
      return rc;
    case D_STRIP:
      for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->buf + in->p[i].off;
        size_t a = 0, b = in->p[i].len;
        for (int k = 0; k < d->left && a < b && b - a >= d->alen && !memcmp(s + a, d->a, d->alen);
             k++)
          a += d->alen;
        for (int k = 0;
             k < d->right && b > a && b - a >= d->alen && !memcmp(s + b - d->alen, d->a, d->alen);
             k++)
          b -= d->alen;
        rc = pl_push_keep(out, s + a, b - a);
      }
      return rc;
    case D_METASPACE:
      for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->buf + in->p[i].off;
        size_t len = in->p[i].len;
        if ((rc = pl_reserve(out, len))) break;
        char *w = out->buf + out->blen;
        for (size_t j = 0; j < len;) {
          if (d->alen && len - j >= d->alen && !memcmp(s + j, d->a, d->alen)) {
            if (!(i == 0 && d->prepend_scheme != PS_NEVER)) *w++ = ' ';
            j += d->alen;
          } else {
            *w++ = s[j++];
          }
        }
        size_t n = (size_t)(w - (out->buf + out->blen));
        out->p[out->n++] = (piece){out->blen, n, 0};
        out->blen += n;
      }
      return rc;
  }
  return FT_EINTERNAL;
}

int tok_decode(const tok *t, const int32_t *ids, size_t n, int skip_special, char **text) {
  size_t len;
  return tok_decode_len(t, ids, n, skip_special, text, &len);
}

int tok_decode_len(const tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
                   size_t *len) {
  if (!text || !len) return FT_EINVALID;
  *len = 0;
  *text = NULL;
  if (!t || (!ids && n)) return FT_EINVALID;
  plist in = {0}, out = {0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->n_ids || !t->id_str[id]) {
      rc = FT_ERANGE;
      break;
    }
    if (skip_special && (t->id_flags[id] & ID_SPECIAL)) continue;
    rc = pl_push_keep(&in, t->id_str[id], strlen(t->id_str[id]));
  }
  if (!rc) {
    if (t->dec) {
      rc = dec_run(t->dec, &in, &out);
    } else { /* HF joins tokens with spaces when there is no decoder */
      for (size_t i = 0; i < in.n && !rc; i++)
        rc = pl_add2(&out, " ", i ? 1 : 0, in.buf + in.p[i].off, in.p[i].len, 0);
    }
  }
  if (!rc) {
    plist joined = {0};
    rc = fuse_all(&out, &joined);
    if (!rc) rc = tok_utf8_lossy(joined.buf ? joined.buf : "", joined.blen, text, len);
    pl_free(&joined);
  }
  pl_free(&in);
  pl_free(&out);
  return rc;
}

/* ------------------------------------------------------------ loading -- */

static void node_free(node *n) {
  if (!n) return;
  for (size_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
  free(n->kids);
  if (n->re) pcre2_code_free(n->re);
  free(n->a);
  free(n->b);
  free(n);
}

void tok_free(tok *t) {
  if (!t) return;
  while (t->arena) {
    ablock *b = t->arena;
    t->arena = b->next;
    free(b);
  }
  sm_free(&t->vocab);
  sm_free(&t->added_map);
  free(t->merges.keys);
  free(t->merges.vals);
  free(t->id_str);
  free(t->id_flags);
  for (size_t i = 0; i < t->n_added; i++) {
    if (t->added[i].match != t->added[i].content) free(t->added[i].match);
  }
  free(t->added);
  free(t->added_ids);
  for (int w = 0; w < 2; w++) {
    sm_free(&t->amatch[w]);
    for (int c = 0; c < 256; c++) free(t->alens[w][c]);
  }
  node_free(t->norm);
  node_free(t->pre);
  node_free(t->dec);
  free(t->chat_template);
  free(t->bos_s);
  free(t->eos_s);
  free(t->pad_s);
  free(t);
}

static tok *tok_new(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, byte_alphabet_build);
  tok *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->unk_id = -1;
  t->bos = t->eos = t->pad = -1;
  for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
  return t;
}

static int compile_re(const char *pat, size_t len, pcre2_code **out, const char *param,
                      ft_error *err) {
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof msg);
    return ft_error_set(err, FT_EFORMAT, param, "%s: regex error at offset %zu: %s", param,
                        (size_t)eo, (const char *)msg);
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs */
  *out = re;
  return 0;
}

static char *dupn(const char *s, size_t n) {
  char *o = malloc(n + 1);
  if (o) {
    memcpy(o, s, n);
    o[n] = 0;
  }
  return o;
}

static int get_str(json_t *o, const char *key, const char **s, size_t *n) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v)) return 0;
  *s = json_string_value(v);
  *n = json_string_length(v);
  return 1;
}

static int get_bool(json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  return v ? json_is_true(v) : dflt;
}

/* {"String": s} or {"Regex": r} into n->a / n->re */
static int load_pattern(node *n, json_t *pat, const char *param, ft_error *err) {
  const char *s;
  size_t len;
  if (get_str(pat, "String", &s, &len)) {
    n->a = dupn(s, len);
    n->alen = len;
    return n->a ? 0 : ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  }
  if (get_str(pat, "Regex", &s, &len)) return compile_re(s, len, &n->re, param, err);
  return ft_error_set(err, FT_EFORMAT, param, "%s: pattern must be {\"String\"} or {\"Regex\"}",
                      param);
}

static int set_str(char **dst, size_t *dlen, json_t *o, const char *key, const char *dflt) {
  const char *s = dflt;
  size_t n = dflt ? strlen(dflt) : 0;
  if (!get_str(o, key, &s, &n) && !dflt) return FT_EFORMAT;
  *dst = dupn(s, n);
  *dlen = n;
  return *dst ? 0 : FT_ENOMEM;
}

/* The Metaspace pre-tokenizer's and decoder's shared fields: the replacement
 * character (default U+2581) and when to prepend it. */
static int load_metaspace(node *n, json_t *j) {
  int rc = set_str(&n->a, &n->alen, j, "replacement", "\xE2\x96\x81");
  const char *ps = json_string_value(json_object_get(j, "prepend_scheme"));
  if (ps)
    n->prepend_scheme = !strcmp(ps, "first")   ? PS_FIRST
                        : !strcmp(ps, "never") ? PS_NEVER
                                               : PS_ALWAYS;
  else
    n->prepend_scheme = get_bool(j, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
  return rc;
}

enum { K_NORM, K_PRE, K_DEC };

static int load_node(json_t *j, int kind, node **out, ft_error *err) {
  static const char *params[] = {"normalizer", "pre_tokenizer", "decoder"};
  const char *param = params[kind];
  *out = NULL;
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!json_is_object(j) || !type)
    return ft_error_set(err, FT_EFORMAT, param, "%s: expected an object with a type", param);
  node *n = calloc(1, sizeof *n);
  if (!n) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  int rc = 0;
  n->type = -1;
  if (!strcmp(type, "Sequence")) {
    json_t *arr = json_object_get(j, kind == K_NORM  ? "normalizers"
                                     : kind == K_PRE ? "pretokenizers"
                                                     : "decoders");
    n->type = kind == K_NORM ? N_SEQ : kind == K_PRE ? P_SEQ : D_SEQ;
    if (!json_is_array(arr)) {
      rc = ft_error_set(err, FT_EFORMAT, param, "%s: Sequence without a list", param);
    } else {
      n->kids = calloc(json_array_size(arr) + 1, sizeof *n->kids);
      if (!n->kids) rc = ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
      for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
        rc = load_node(json_array_get(arr, i), kind, &n->kids[i], err);
        if (!rc) n->nkids++;
      }
    }
  } else if (kind == K_NORM) {
    if (!strcmp(type, "NFC")) {
      n->type = N_NFC;
    } else if (!strcmp(type, "NFD")) {
      n->type = N_NFD;
    } else if (!strcmp(type, "Prepend")) {
      n->type = N_PREPEND;
      if (set_str(&n->a, &n->alen, j, "prepend", NULL))
        rc = ft_error_set(err, FT_EFORMAT, param, "normalizer Prepend needs prepend");
    } else if (!strcmp(type, "Replace")) {
      n->type = N_REPLACE;
      rc = load_pattern(n, json_object_get(j, "pattern"), param, err);
      if (!rc && set_str(&n->b, &n->blen, j, "content", NULL))
        rc = ft_error_set(err, FT_EFORMAT, param, "normalizer Replace needs content");
    } else if (!strcmp(type, "Strip")) {
      n->type = N_STRIP;
      n->left = get_bool(j, "strip_left", 1);
      n->right = get_bool(j, "strip_right", 1);
    }
  } else if (kind == K_PRE) {
    if (!strcmp(type, "ByteLevel")) {
      n->type = P_BYTELEVEL;
      n->add_prefix_space = get_bool(j, "add_prefix_space", 1);
      n->use_regex = get_bool(j, "use_regex", 1);
    } else if (!strcmp(type, "Split")) {
      static const char *bn[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                 "Contiguous"};
      const char *b = json_string_value(json_object_get(j, "behavior"));
      n->type = P_SPLIT;
      n->behavior = -1;
      for (int i = 0; b && i < 5; i++)
        if (!strcmp(b, bn[i])) n->behavior = i;
      n->invert = get_bool(j, "invert", 0);
      if (n->behavior < 0)
        rc = ft_error_set(err, FT_EFORMAT, param, "Split: unknown behavior");
      else
        rc = load_pattern(n, json_object_get(j, "pattern"), param, err);
    } else if (!strcmp(type, "Metaspace")) {
      n->type = P_METASPACE;
      rc = load_metaspace(n, j);
      n->split = get_bool(j, "split", 1);
    } else if (!strcmp(type, "Digits")) {
      n->type = P_DIGITS;
      n->behavior = B_ISOLATED;
      const char *pat = get_bool(j, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+";
      rc = compile_re(pat, strlen(pat), &n->re, param, err);
    }
  } else {
    if (!strcmp(type, "ByteLevel")) {
      n->type = D_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
      n->type = D_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
      n->type = D_FUSE;
    } else if (!strcmp(type, "Replace")) {
      n->type = D_REPLACE;
      rc = load_pattern(n, json_object_get(j, "pattern"), param, err);
      if (!rc && set_str(&n->b, &n->blen, j, "content", NULL))
        rc = ft_error_set(err, FT_EFORMAT, param, "decoder Replace needs content");
    } else if (!strcmp(type, "Strip")) {
      n->type = D_STRIP;
      rc = set_str(&n->a, &n->alen, j, "content", " ");
      n->left = (int)json_integer_value(json_object_get(j, "start"));
      n->right = (int)json_integer_value(json_object_get(j, "stop"));
    } else if (!strcmp(type, "Metaspace")) {
      n->type = D_METASPACE;
      rc = load_metaspace(n, j);
    }
  }
  if (!rc && n->type < 0)
    rc = ft_error_set(err, FT_EUNSUPPORTED, param, "%s type %s is not supported", param, type);
  if (rc) {
    if (err && err->code == 0) ft_error_set(err, rc, param, "%s: %s", param, ft_err_message(rc));
    node_free(n);
    return rc;
  }
  *out = n;
  return 0;
}

static int add_token(tok *t, const char *content, size_t len, int32_t id, int special, int lstrip,
                     int rstrip, int single_word, int normalized) {
  if (id < 0 || id >= TOK_MAX_ID || len == 0) return FT_EFORMAT;
  /* first definition wins (tokenizer_config.json repeats tokenizer.json's) */
  if (sm_get(&t->added_map, content, len) >= 0) return 0;
  if ((size_t)id / 8 >= t->added_id_cap) {
    size_t nc = t->added_id_cap ? t->added_id_cap : 1024;
    while (nc <= (size_t)id / 8) nc *= 2;
    uint8_t *nb = realloc(t->added_ids, nc);
    if (!nb) return FT_ENOMEM;
    memset(nb + t->added_id_cap, 0, nc - t->added_id_cap);
    t->added_ids = nb;
    t->added_id_cap = nc;
  }
  if (t->added_ids[id / 8] & (1u << (id % 8))) return 0;
  t->added_ids[id / 8] |= (uint8_t)(1u << (id % 8));
  if (t->n_added == t->cap_added) {
    size_t nc = t->cap_added ? t->cap_added * 2 : 64;
    added_tok *na = realloc(t->added, nc * sizeof *na);
    if (!na) return FT_ENOMEM;
    t->added = na;
    t->cap_added = nc;
  }
  char *c = arena_dup(t, content, len);
  if (!c) return FT_ENOMEM;
  t->added[t->n_added++] = (added_tok){c,
                                       c,
                                       len,
                                       len,
                                       id,
                                       -1,
                                       (uint8_t)special,
                                       (uint8_t)lstrip,
                                       (uint8_t)rstrip,
                                       (uint8_t)single_word,
                                       (uint8_t)normalized};
  return sm_put(&t->added_map, c, len, id);
}

static int add_token_json(tok *t, json_t *a, int32_t id, const char *param, ft_error *err) {
  const char *c;
  size_t len;
  if (!get_str(a, "content", &c, &len) || len == 0)
    return ft_error_set(err, FT_EFORMAT, param, "%s: added token %d has no content", param, id);
  int rc = add_token(t, c, len, id, get_bool(a, "special", 0), get_bool(a, "lstrip", 0),
                     get_bool(a, "rstrip", 0), get_bool(a, "single_word", 0),
                     get_bool(a, "normalized", !get_bool(a, "special", 0)));
  if (rc == FT_EFORMAT) return ft_error_set(err, rc, param, "%s: bad added token id %d", param, id);
  if (rc)
    return ft_error_set(err, rc, param, "%s: added token %d: %s", param, id, ft_err_message(rc));
  return 0;
}

static int vocab_put(tok *t, const char *k, size_t klen, json_int_t id, ft_error *err) {
  if (id < 0 || id >= TOK_MAX_ID)
    return ft_error_set(err, FT_EFORMAT, "model.vocab", "vocab id %lld out of range",
                        (long long)id);
  char *s = arena_dup(t, k, klen);
  if (!s) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  return sm_put(&t->vocab, s, klen, (int32_t)id);
}

/* The ids of a merge's two tokens and of their concatenation, in ids[3]. */
static int merge_ids(tok *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank,
                     int32_t ids[3], ft_error *err) {
  int32_t ia = sm_get(&t->vocab, a, alen), ib = sm_get(&t->vocab, b, blen);
  char buf[512];
  char *ab = alen + blen < sizeof buf ? buf : malloc(alen + blen);
  if (!ab) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  memcpy(ab, a, alen);
  memcpy(ab + alen, b, blen);
  int32_t iab = sm_get(&t->vocab, ab, alen + blen);
  for (const char *p = ab + 1; (p = memmem(p, (size_t)(ab + alen + blen - p), "\xE2\x96\x81", 3));
       p++)
    t->sp_glue[(unsigned char)p[-1]] = 1; /* for bpe_word's cuts */
  if (ab != buf) free(ab);
  if (ia < 0 || ib < 0 || iab < 0)
    return ft_error_set(err, FT_EFORMAT, "model.merges",
                        "merge %u (%.*s %.*s) uses a token not in the vocab", rank,
                        (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b);
  ids[0] = ia;
  ids[1] = ib;
  ids[2] = iab;
  return 0;
}

static int merge_put(tok *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank,
                     ft_error *err) {
  int32_t ids[3];
  int rc = merge_ids(t, a, alen, b, blen, rank, ids, err);
  if (!rc) mm_put(&t->merges, ids[0], ids[1], rank, ids[2]);
  return rc;
}

/* ---- tokenizer.json's vocab and merges without jansson ----
 * A Gemma 3 tokenizer.json is 33 MB: 262,144 vocab entries and 514,906
 * merges. jansson makes a value (an allocation or more) of every string,
 * 2.3 million of them, and that was most of a 2.5 s load. model.vocab and
 * model.merges have one fixed shape each, so they are read here straight
 * from the file's bytes; jansson then parses the rest of the file with the
 * two members replaced by {} and [] (and the newlines they held, so that
 * its error lines stay right). Anything unexpected in them (or a NUL in a
 * string) leaves the whole file to jansson, whose path gives the same
 * tokenizer or the same error. */

typedef struct {
  int32_t (*m)[3]; /* merges in rank order: a, b, a+b */
  size_t n, cap;
} fast_merges;

/* The end of the JSON string starting at p (at its '"'), or NULL. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '\\')
      p++;
    else if (*p == '"')
      return p + 1;
  }
  return NULL;
}

/* The end of the JSON value starting at p, or NULL; only brackets and
 * strings are followed (jansson checks the rest). */
static const char *skip_value(const char *p, const char *end) {
  if (p >= end) return NULL;
  if (*p == '"') return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    size_t depth = 0;
    while (p < end) {
      if (*p == '"') {
        if (!(p = skip_string(p, end))) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[')
        depth++;
      else if ((*p == '}' || *p == ']') && --depth == 0)
        return p + 1;
      p++;
    }
    return NULL;
  }
  const char *s = p;
  while (p < end && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.')) p++;
  return p > s ? p : NULL;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static int hex4(const char *p, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (d < 0) return -1;
    *v = *v * 16 + (uint32_t)d;
  }
  return 0;
}

/* Reads the JSON string at *pp (at its '"'); *out points into the file when
 * there is no escape, else into sb. Returns 0, or -1 for anything jansson
 * should judge. */
static int read_string(const char **pp, const char *end, sbuf *sb, const char **out, size_t *len) {
  const char *p = *pp + 1, *s = p;
  while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
  if (p < end && *p == '"') {
    if (!ft_utf8_valid(s, (size_t)(p - s), NULL)) return -1;
    *out = s;
    *len = (size_t)(p - s);
    *pp = p + 1;
    return 0;
  }
  size_t w = (size_t)(p - s);
  const char *q = skip_string(*pp, end); /* decoding never lengthens */
  if (!q || sbuf_reserve(sb, (size_t)(q - s))) return -1;
  memcpy(sb->buf, s, w);
  while (p < end && *p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20) return -1;
    if (c != '\\') {
      sb->buf[w++] = (char)c;
      p++;
      continue;
    }
    if (++p >= end) return -1;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *e = *p != 'u' ? memchr(from, *p, sizeof from - 1) : NULL;
    uint32_t cp;
    if (e) {
      cp = (unsigned char)to[e - from];
      p++;
    } else if (*p == 'u' && end - p >= 5 && !hex4(p + 1, &cp)) {
      p += 5;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 ||
            lo > 0xDFFF)
          return -1;
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (cp == 0) return -1; /* the jansson path reads vocab keys up to a NUL */
    } else {
      return -1;
    }
    w += (size_t)tok_utf8_encode(sb->buf + w, cp);
  }
  if (p >= end || !ft_utf8_valid(sb->buf, w, NULL)) return -1;
  *out = sb->buf;
  *len = w;
  *pp = p + 1;
  return 0;
}

/* model.vocab at *pp: {"token": id, ...} into t->vocab; *pp moves past it. */
static int fast_vocab(tok *t, const char **pp, const char *end) {
  sbuf sb = {0};
  int rc = -1;
  const char *p = skip_ws(*pp + 1, end);
  if (p < end && *p == '}') {
    *pp = p + 1;
    return 0;
  }
  while (p < end && *p == '"') {
    const char *k;
    size_t kl;
    if (read_string(&p, end, &sb, &k, &kl)) break;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') break;
    p = skip_ws(p + 1, end);
    json_int_t id = 0;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9' && p - d < 10) id = id * 10 + (*p++ - '0');
    if (p == d || (*d == '0' && p - d > 1) || (p < end && *p >= '0' && *p <= '9')) break;
    if (vocab_put(t, k, kl, id, NULL)) break;
    p = skip_ws(p, end);
    if (p < end && *p == '}') {
      *pp = p + 1;
      rc = 0;
      break;
    }
    if (p >= end || *p != ',') break;
    p = skip_ws(p + 1, end);
  }
  free(sb.buf);
  return rc;
}

static int fast_merge_add(tok *t, fast_merges *fm, const char *a, size_t al, const char *b,
                          size_t bl) {
  if (fm->n == fm->cap) {
    size_t nc = fm->cap ? fm->cap * 2 : 65536;
    int32_t(*nm)[3] = realloc(fm->m, nc * sizeof *nm);
    if (!nm) return -1;
    fm->m = nm;
    fm->cap = nc;
  }
  if (merge_ids(t, a, al, b, bl, (uint32_t)fm->n, fm->m[fm->n], NULL)) return -1;
  fm->n++;
  return 0;
}

/* model.merges at *pp: ["a b", ...] or [["a", "b"], ...] into fm, with
 * t->vocab already read; *pp moves past it. */
static int fast_merges_read(tok *t, const char **pp, const char *end, fast_merges *fm) {
  sbuf sa = {0}, sb = {0};
  int rc = -1;
  const char *p = skip_ws(*pp + 1, end);
  if (p < end && *p == ']') {
    *pp = p + 1;
    return 0;
  }
  while (p < end) {
    const char *a, *b;
    size_t al, bl;
    if (*p == '"') {
      if (read_string(&p, end, &sa, &a, &al)) break;
      const char *sp = memchr(a, ' ', al);
      if (!sp || fast_merge_add(t, fm, a, (size_t)(sp - a), sp + 1, al - (size_t)(sp - a) - 1))
        break;
    } else if (*p == '[') {
      p = skip_ws(p + 1, end);
      if (p >= end || *p != '"' || read_string(&p, end, &sa, &a, &al)) break;
      p = skip_ws(p, end);
      if (p >= end || *p != ',') break;
      p = skip_ws(p + 1, end);
      if (p >= end || *p != '"' || read_string(&p, end, &sb, &b, &bl)) break;
      p = skip_ws(p, end);
      if (p >= end || *p != ']') break;
      p++;
      if (fast_merge_add(t, fm, a, al, b, bl)) break;
    } else {
      break;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ']') {
      *pp = p + 1;
      rc = 0;
      break;
    }
    if (p >= end || *p != ',') break;
    p = skip_ws(p + 1, end);
  }
  free(sa.buf);
  free(sb.buf);
  return rc;
}

/* Reads model.vocab then model.merges of the tokenizer.json in buf (each
 * key once, in that order, as Hugging Face writes them) into t->vocab and
 * fm, and replaces them in buf by {} and [] followed by the newlines they
 * held (*n shrinks). Returns 0, or -1 when jansson must read the file as it
 * is (t->vocab and fm may then hold part of it: fast_reset). */
static int fast_model(tok *t, char *buf, size_t *n, fast_merges *fm) {
  const char *end = buf + *n, *p = skip_ws(buf, end);
  const char *span[2][2] = {{NULL, NULL}, {NULL, NULL}}; /* vocab, merges */
  int models = 0;
  if (p >= end || *p != '{') return -1;
  p = skip_ws(p + 1, end);
  while (p < end && *p == '"') { /* the top-level object */
    const char *k = p + 1;
    if (!(p = skip_string(p, end))) return -1;
    int is_model = p - k == 6 && !memcmp(k, "model\"", 6);
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    if (is_model && models++) return -1;
    if (is_model && p < end && *p == '{') { /* the model object */
      p = skip_ws(p + 1, end);
      while (p < end && *p == '"') {
        const char *mk = p + 1;
        if (!(p = skip_string(p, end))) return -1;
        int which = p - mk == 6 && !memcmp(mk, "vocab\"", 6)    ? 0
                    : p - mk == 7 && !memcmp(mk, "merges\"", 7) ? 1
                                                                : -1;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return -1;
        p = skip_ws(p + 1, end);
        const char *v = p;
        if (which == 0 && !span[0][0] && !span[1][0] && p < end && *p == '{') {
          if (fast_vocab(t, &p, end)) return -1;
        } else if (which == 1 && span[0][0] && !span[1][0] && p < end && *p == '[') {
          if (fast_merges_read(t, &p, end, fm)) return -1;
        } else if (which >= 0) {
          return -1; /* repeated, out of order or of another type */
        } else if (!(p = skip_value(p, end))) {
          return -1;
        }
        if (which >= 0) {
          span[which][0] = v;
          span[which][1] = p;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') p = skip_ws(p + 1, end);
      }
      if (p >= end || *p != '}') return -1;
      p++;
    } else if (!(p = skip_value(p, end))) {
      return -1;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  if (!span[0][0] || !span[1][0]) return -1;
  char *w = buf + (span[0][0] - buf); /* the bytes before vocab stay */
  for (int k = 0; k < 2; k++) {
    const char *a = span[k][0], *b = span[k][1];
    char close = b[-1];
    *w++ = *a; /* '{' or '[' */
    for (const char *q = a + 1; (q = memchr(q, '\n', (size_t)(b - q))); q++) *w++ = '\n';
    *w++ = close;
    const char *next = k == 0 ? span[1][0] : end;
    memmove(w, b, (size_t)(next - b));
    w += next - b;
  }
  *n = (size_t)(w - buf);
  return 0;
}

/* Forgets what a failed fast_model read (its strings stay in the arena). */
static void fast_reset(tok *t, fast_merges *fm) {
  sm_free(&t->vocab);
  memset(&t->vocab, 0, sizeof t->vocab);
  memset(t->sp_glue, 0, sizeof t->sp_glue);
  fm->n = 0;
}

/* The model object; its vocab and merges were read by fast_model when fm
 * is not NULL (then they are empty here). */
static int load_model(tok *t, json_t *m, const fast_merges *fm, ft_error *err) {
  const char *type = json_string_value(json_object_get(m, "type"));
  json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
  if (!json_is_object(m))
    return ft_error_set(err, FT_EFORMAT, "model", "tokenizer.json has no model");
  if (type ? strcmp(type, "BPE") != 0 : !json_is_array(merges))
    return ft_error_set(err, FT_EUNSUPPORTED, "model.type",
                        "model type %s is not supported (BPE only)", type ? type : "(none)");
  if (!json_is_object(vocab) || !json_is_array(merges))
    return ft_error_set(err, FT_EFORMAT, "model", "BPE model needs vocab and merges");
  const char *s;
  size_t n;
  if ((get_str(m, "continuing_subword_prefix", &s, &n) && n) ||
      (get_str(m, "end_of_word_suffix", &s, &n) && n))
    return ft_error_set(err, FT_EUNSUPPORTED, "model",
                        "BPE subword prefix/suffix is not supported");
  json_t *dropout = json_object_get(m, "dropout");
  if (json_is_number(dropout) && json_number_value(dropout) > 0)
    return ft_error_set(err, FT_EUNSUPPORTED, "model.dropout", "BPE dropout is not supported");
  t->byte_fallback = get_bool(m, "byte_fallback", 0);
  t->fuse_unk = get_bool(m, "fuse_unk", 0);
  t->ignore_merges = get_bool(m, "ignore_merges", 0);
  const char *key;
  json_t *v;
  int rc;
  if (fm) {
    if ((rc = mm_init(&t->merges, fm->n))) return rc;
    for (size_t i = 0; i < fm->n; i++)
      mm_put(&t->merges, fm->m[i][0], fm->m[i][1], (uint32_t)i, fm->m[i][2]);
  }
  json_object_foreach(vocab, key, v) {
    if (!json_is_integer(v))
      return ft_error_set(err, FT_EFORMAT, "model.vocab", "vocab entry %.64s is not an integer",
                          key);
    if ((rc = vocab_put(t, key, strlen(key), json_integer_value(v), err))) return rc;
  }
  if (!fm && (rc = mm_init(&t->merges, json_array_size(merges)))) return rc;
  for (size_t i = 0; i < json_array_size(merges); i++) {
    json_t *e = json_array_get(merges, i);
    if (json_is_string(e)) {
      const char *ms = json_string_value(e);
      size_t ml = json_string_length(e);
      const char *sp = memchr(ms, ' ', ml);
      if (!sp) return ft_error_set(err, FT_EFORMAT, "model.merges", "merge %zu has no space", i);
      rc =
          merge_put(t, ms, (size_t)(sp - ms), sp + 1, ml - (size_t)(sp - ms) - 1, (uint32_t)i, err);
    } else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
      json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
      rc = merge_put(t, json_string_value(a), json_string_length(a), json_string_value(b),
                     json_string_length(b), (uint32_t)i, err);
    } else {
      return ft_error_set(err, FT_EFORMAT, "model.merges",
                          "merge %zu is neither \"a b\" nor [a, b]", i);
    }
    if (rc) return rc;
  }
  if (get_str(m, "unk_token", &s, &n)) {
    t->unk_id = sm_get(&t->vocab, s, n);
    if (t->unk_id < 0)
      return ft_error_set(err, FT_EFORMAT, "model.unk_token", "unk_token is not in the vocab");
  }
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_id[b] = sm_get(&t->vocab, name, 6);
  }
  return 0;
}

static int load_json_file(const char *path, size_t flags, json_t **out, ft_error *err) {
  json_error_t je;
  struct stat st;
  if (stat(path, &st) != 0)
    return ft_error_set(err, errno == ENOENT ? FT_ENOT_FOUND : FT_EIO, "tokenizer", "%s: %s", path,
                        strerror(errno));
  *out = json_load_file(path, JSON_ALLOW_NUL | flags, &je);
  if (!*out) return ft_error_set(err, FT_EFORMAT, "tokenizer", "%s:%d: %s", path, je.line, je.text);
  return 0;
}

static int load_tokenizer_json(tok *t, const char *path, ft_error *err) {
  char *buf;
  size_t len;
  int rc = ft_read_file(path, 0, &buf, &len, NULL);
  if (rc)
    return rc == FT_ENOMEM ? ft_error_set(err, rc, "tokenizer", NULL)
                           : ft_error_set(err, errno == ENOENT ? FT_ENOT_FOUND : FT_EIO,
                                          "tokenizer", "%s: %s", path, strerror(errno));
  fast_merges fm = {0};
  int fast = fast_model(t, buf, &len, &fm) == 0;
  if (!fast) fast_reset(t, &fm);
  json_error_t je;
  json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
  free(buf);
  if (!j) {
    free(fm.m);
    return ft_error_set(err, FT_EFORMAT, "tokenizer", "%s:%d: %s", path, je.line, je.text);
  }
  if (!json_is_object(j)) {
    json_decref(j);
    free(fm.m);
    return ft_error_set(err, FT_EFORMAT, "tokenizer", "%s: not a JSON object", path);
  }
  rc = load_model(t, json_object_get(j, "model"), fast ? &fm : NULL, err);
  free(fm.m);
  json_t *n;
  if (!rc && (n = json_object_get(j, "normalizer")) && !json_is_null(n))
    rc = load_node(n, K_NORM, &t->norm, err);
  if (!rc && (n = json_object_get(j, "pre_tokenizer")) && !json_is_null(n))
    rc = load_node(n, K_PRE, &t->pre, err);
  if (!rc && (n = json_object_get(j, "decoder")) && !json_is_null(n))
    rc = load_node(n, K_DEC, &t->dec, err);
  json_t *added = json_object_get(j, "added_tokens");
  for (size_t i = 0; !rc && i < json_array_size(added); i++) {
    json_t *a = json_array_get(added, i);
    json_t *id = json_object_get(a, "id");
    if (!json_is_integer(id)) {
      rc = ft_error_set(err, FT_EFORMAT, "added_tokens", "added token %zu has no id", i);
      break;
    }
    rc = add_token_json(t, a, (int32_t)json_integer_value(id), "added_tokens", err);
  }
  json_decref(j);
  return rc;
}

/* GPT-2's vocab.json + merges.txt (or encoder.json + vocab.bpe). */
static int load_vocab_merges(tok *t, const char *vpath, const char *mpath, ft_error *err) {
  json_t *v;
  int rc = load_json_file(vpath, 0, &v, err);
  if (rc) return rc;
  const char *key;
  json_t *val;
  if (!json_is_object(v)) rc = ft_error_set(err, FT_EFORMAT, "vocab", "%s: not an object", vpath);
  json_object_foreach(v, key, val) {
    if (rc) break;
    if (!json_is_integer(val))
      rc = ft_error_set(err, FT_EFORMAT, "vocab", "%s: entry %.64s is not an integer", vpath, key);
    else
      rc = vocab_put(t, key, strlen(key), json_integer_value(val), err);
  }
  json_decref(v);
  if (rc) return rc;
  char *m = NULL;
  size_t mn = 0;
  if ((rc = ft_read_file(mpath, 0, &m, &mn, NULL)))
    return rc == FT_ENOMEM ? rc
                           : ft_error_set(err, errno == ENOENT ? FT_ENOT_FOUND : FT_EIO,
                                          "tokenizer", "%s: %s", mpath, strerror(errno));
  if (!ft_utf8_valid(m, mn, NULL))
    rc = ft_error_set(err, FT_EFORMAT, "merges", "%s: not UTF-8", mpath);
  size_t lines = 1;
  for (size_t i = 0; i < mn; i++) lines += m[i] == '\n';
  if (!rc) rc = mm_init(&t->merges, lines);
  uint32_t rank = 0, lineno = 0;
  for (size_t i = 0; !rc && i < mn;) {
    size_t e = i;
    while (e < mn && m[e] != '\n') e++;
    size_t le = e;
    if (le > i && m[le - 1] == '\r') le--;
    lineno++;
    if (le > i && !(le - i >= 8 && !memcmp(m + i, "#version", 8))) {
      const char *sp = memchr(m + i, ' ', le - i);
      if (!sp || memchr(sp + 1, ' ', (size_t)(m + le - sp - 1)))
        rc = ft_error_set(err, FT_EFORMAT, "merges", "%s:%u: expected two tokens", mpath, lineno);
      else
        rc = merge_put(t, m + i, (size_t)(sp - (m + i)), sp + 1, (size_t)(m + le - sp - 1), rank++,
                       err);
    }
    i = e + 1;
  }
  free(m);
  if (rc) return rc;
  /* HF's GPT-2: ByteLevel pre-tokenizer and decoder, <|endoftext|> special */
  t->pre = calloc(1, sizeof *t->pre);
  t->dec = calloc(1, sizeof *t->dec);
  if (!t->pre || !t->dec) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  t->pre->type = P_BYTELEVEL;
  t->pre->use_regex = 1;
  t->dec->type = D_BYTELEVEL;
  int32_t eot = sm_get(&t->vocab, "<|endoftext|>", 13);
  if (eot >= 0 && (rc = add_token(t, "<|endoftext|>", 13, eot, 1, 0, 0, 0, 1)))
    return ft_error_set(err, rc, "tokenizer", "<|endoftext|>: %s", ft_err_message(rc));
  t->vocab_mode = 1;
  return 0;
}

static int config_token(json_t *c, const char *key, char **out) {
  json_t *v = json_object_get(c, key);
  if (json_is_object(v)) v = json_object_get(v, "content");
  if (!json_is_string(v)) return 0;
  *out = dupn(json_string_value(v), json_string_length(v));
  return *out ? 0 : FT_ENOMEM;
}

static int load_config(tok *t, const char *path, ft_error *err) {
  json_t *c; /* model_max_length is often 1e30, too big for an integer */
  int rc = load_json_file(path, JSON_DECODE_INT_AS_REAL, &c, err);
  if (rc) return rc;
  if (!json_is_object(c)) {
    json_decref(c);
    return ft_error_set(err, FT_EFORMAT, "tokenizer_config", "%s: not an object", path);
  }
  json_t *atd = json_object_get(c, "added_tokens_decoder");
  const char *key;
  json_t *a;
  json_object_foreach(atd, key, a) {
    char *end;
    long id = strtol(key, &end, 10);
    if (*end || end == key || id < 0 || id >= TOK_MAX_ID) {
      rc = ft_error_set(err, FT_EFORMAT, "added_tokens_decoder", "bad token id %.32s", key);
      break;
    }
    if ((rc = add_token_json(t, a, (int32_t)id, "added_tokens_decoder", err))) break;
  }
  if (!rc) rc = config_token(c, "bos_token", &t->bos_s);
  if (!rc) rc = config_token(c, "eos_token", &t->eos_s);
  if (!rc) rc = config_token(c, "pad_token", &t->pad_s);
  if (!rc && t->vocab_mode && t->pre && json_is_true(json_object_get(c, "add_prefix_space")))
    t->pre->add_prefix_space = 1;
  json_t *ct = json_object_get(c, "chat_template");
  if (!rc && json_is_array(ct)) { /* [{name, template}]: the "default" one, else the first */
    json_t *pick = NULL, *e;
    size_t i;
    json_array_foreach(ct, i, e) {
      const char *nm = json_string_value(json_object_get(e, "name"));
      if (!pick || (nm && !strcmp(nm, "default"))) pick = e;
    }
    ct = json_object_get(pick, "template");
  }
  if (!rc && json_is_string(ct)) {
    t->chat_template = dupn(json_string_value(ct), json_string_length(ct));
    if (!t->chat_template) rc = ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  }
  json_decref(c);
  return rc;
}

static int cmp_u32_desc(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Builds amatch and alens from the added tokens (their match texts final).
 * Tokens with the same match text are chained in definition order, which
 * is the order added_find tries them in. */
static int index_added(tok *t) {
  int rc;
  for (size_t i = 0; i < t->n_added; i++) {
    added_tok *a = &t->added[i];
    int w = a->normalized && t->norm;
    unsigned c = (unsigned char)a->match[0];
    a->next_same = -1;
    if (a->mlen > UINT32_MAX) return FT_EFORMAT;
    int32_t x = sm_get(&t->amatch[w], a->match, a->mlen);
    if (x < 0) {
      if ((rc = sm_put(&t->amatch[w], a->match, a->mlen, (int32_t)i))) return rc;
    } else {
      while (t->added[x].next_same >= 0) x = t->added[x].next_same;
      t->added[x].next_same = (int32_t)i;
    }
    uint32_t n = t->nalens[w][c];
    if ((n & (n - 1)) == 0) { /* grows at powers of two */
      uint32_t *nl = realloc(t->alens[w][c], (n ? n * 2 : 1) * sizeof *nl);
      if (!nl) return FT_ENOMEM;
      t->alens[w][c] = nl;
    }
    t->alens[w][c][t->nalens[w][c]++] = (uint32_t)a->mlen;
    t->has_added[w] = 1;
  }
  for (int w = 0; w < 2; w++)
    for (int c = 0; c < 256; c++) {
      uint32_t *l = t->alens[w][c], n = t->nalens[w][c], k = 0;
      if (n < 2) continue;
      qsort(l, n, sizeof *l, cmp_u32_desc);
      for (uint32_t i = 0; i < n; i++)
        if (k == 0 || l[k - 1] != l[i]) l[k++] = l[i];
      t->nalens[w][c] = k;
    }
  return 0;
}

static int flatten(tok *t, const node *p, ft_error *err) {
  if (p->type == P_SEQ) {
    for (size_t i = 0; i < p->nkids; i++) {
      int rc = flatten(t, p->kids[i], err);
      if (rc) return rc;
    }
    return 0;
  }
  if (t->nstages == MAX_STAGES)
    return ft_error_set(err, FT_EUNSUPPORTED, "pre_tokenizer", "more than %d pre-tokenizer steps",
                        MAX_STAGES);
  t->stages[t->nstages++] = p;
  return 0;
}

/* Builds the id tables and the added-token buckets; resolves bos/eos/pad. */
static int finalize(tok *t, ft_error *err) {
  int rc;
  if (t->pre && (rc = flatten(t, t->pre, err))) return rc;
  int32_t maxid = -1;
  for (size_t i = 0; i < t->vocab.n; i++)
    if (t->vocab.ents[i].id > maxid) maxid = t->vocab.ents[i].id;
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].id > maxid) maxid = t->added[i].id;
  t->n_ids = maxid + 1;
  t->id_str = calloc((size_t)t->n_ids + 1, sizeof *t->id_str);
  t->id_flags = calloc((size_t)t->n_ids + 1, 1);
  if (!t->id_str || !t->id_flags) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  for (size_t i = 0; i < t->vocab.n; i++) t->id_str[t->vocab.ents[i].id] = t->vocab.ents[i].s;
  for (size_t i = 0; i < t->n_added; i++) {
    added_tok *a = &t->added[i];
    t->id_str[a->id] = a->content;
    t->id_flags[a->id] = (uint8_t)(ID_ADDED | (a->special ? ID_SPECIAL : 0));
    if (a->normalized && t->norm) {
      enc e = {0};
      char *m;
      size_t mn;
      rc = norm_run(&e, t->norm, a->content, a->len, &m, &mn);
      enc_free(&e);
      if (rc) return rc;
      if (mn == 0) {
        free(m);
        continue;
      }
      a->match = m;
      a->mlen = mn;
    }
  }
  t->sp_chunk = t->merges.keys && sm_get(&t->vocab, "\xE2\x96\x81", 3) >= 0;
  if ((rc = index_added(t))) return ft_error_set(err, rc, "tokenizer", NULL);
  if (t->vocab_mode) { /* HF's GPT2Tokenizer defaults */
    if (!t->bos_s) t->bos_s = dupn("<|endoftext|>", 13);
    if (!t->eos_s) t->eos_s = dupn("<|endoftext|>", 13);
  }
  t->bos = t->bos_s ? tok_token_id(t, t->bos_s) : -1;
  t->eos = t->eos_s ? tok_token_id(t, t->eos_s) : -1;
  t->pad = t->pad_s ? tok_token_id(t, t->pad_s) : -1;
  return 0;
}

static int gpt2_re_rc;
static void gpt2_re_init(void) {
  gpt2_re_rc = compile_re(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, &gpt2_re, "pre_tokenizer", NULL);
}

/* Compiles GPT-2's regex once per process (shared, read-only). */
static int prepare_regex(ft_error *err) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, gpt2_re_init);
  if (gpt2_re_rc)
    return ft_error_set(err, gpt2_re_rc, "pre_tokenizer", "GPT-2 regex failed to compile");
  return 0;
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int tok_load_json(tok **out, const char *path, ft_error *err) {
  if (!out || !path) return ft_error_set(err, FT_EINVALID, "tokenizer", "no path");
  *out = NULL;
  int rc = prepare_regex(err);
  if (rc) return rc;
  tok *t = tok_new();
  if (!t) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  rc = load_tokenizer_json(t, path, err);
  if (!rc) rc = finalize(t, err);
  if (rc) {
    if (err && err->code != rc)
      ft_error_set(err, rc, "tokenizer", "%s: %s", path, ft_err_message(rc));
    tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int tok_load(tok **out, const char *dir, ft_error *err) {
  if (!out || !dir) return ft_error_set(err, FT_EINVALID, "tokenizer", "no directory");
  *out = NULL;
  int rc = prepare_regex(err);
  if (rc) return rc;
  char p1[4096], p2[4096];
  tok *t = tok_new();
  if (!t) return ft_error_set(err, FT_ENOMEM, "tokenizer", NULL);
  if (ft_path_join(p1, sizeof p1, dir, "tokenizer.json", NULL)) {
    rc = ft_error_set(err, FT_EINVALID, "tokenizer", "path too long");
  } else if (file_exists(p1)) {
    rc = load_tokenizer_json(t, p1, err);
  } else {
    static const char *pairs[][2] = {{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}};
    rc = ft_error_set(err, FT_ENOT_FOUND, "tokenizer",
                      "%s: no tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe",
                      dir);
    for (int k = 0; k < 2; k++) {
      if (!ft_path_join(p1, sizeof p1, dir, pairs[k][0], NULL) &&
          !ft_path_join(p2, sizeof p2, dir, pairs[k][1], NULL) && file_exists(p1) &&
          file_exists(p2)) {
        if (err) memset(err, 0, sizeof *err);
        rc = load_vocab_merges(t, p1, p2, err);
        break;
      }
    }
  }
  if (!rc && !ft_path_join(p1, sizeof p1, dir, "tokenizer_config.json", NULL) && file_exists(p1))
    rc = load_config(t, p1, err);
  if (!rc) rc = finalize(t, err);
  if (rc) {
    if (err && err->code != rc)
      ft_error_set(err, rc, "tokenizer", "%s: %s", dir, ft_err_message(rc));
    tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* ------------------------------------------------------------ queries -- */

int tok_vocab_size(const tok *t) { return t->n_ids; }

int tok_token_id(const tok *t, const char *s) {
  if (!s) return -1;
  size_t n = strlen(s);
  int32_t id = sm_get(&t->added_map, s, n);
  return id >= 0 ? id : sm_get(&t->vocab, s, n);
}

const char *tok_token_str(const tok *t, int id) {
  return (id >= 0 && id < t->n_ids) ? t->id_str[id] : NULL;
}

int tok_bos_id(const tok *t) { return t->bos; }
int tok_eos_id(const tok *t) { return t->eos; }
int tok_pad_id(const tok *t) { return t->pad; }
const char *tok_chat_template(const tok *t) { return t->chat_template; }
