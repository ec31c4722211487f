/* Batching (see batcher.h). A batch is made of B "units": one example per
 * row, or with packing one precomputed row of several whole examples. The
 * packing is computed once in batcher_new (best-fit decreasing over the
 * examples' lengths, ties in a seeded order), so every epoch has the same
 * rows and the same number of batches; an epoch only reorders the units
 * (seeded permutation), and with by_length sorts them by length inside
 * chunks of BYLEN_CHUNK batches and then shuffles the order of the batches.
 * Everything is a function of (seed, epoch, index). Per-step work is a copy
 * of each row's tokens into one reused buffer; nothing is allocated after
 * batcher_new (the sorts are counting sorts over preallocated arrays). */
#include "data/batcher.h"

#include <stdlib.h>
#include <string.h>

#define BYLEN_CHUNK 64                     /* batches per length-sorted chunk */
#define SALT_PACK 0x5851F42D4C957F2Dull    /* seed of the packing's tie order */
#define SALT_BATCHES 0x2545F4914F6CDD1Dull /* seed of the batch order (by_length) */
#define NONE UINT32_MAX

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void data_permutation(uint32_t *perm, size_t n, uint64_t seed, long epoch) {
  uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1));
  splitmix64(&s);
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(((unsigned __int128)splitmix64(&s) * i) >> 64); /* 0..i-1 */
    uint32_t x = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = x;
  }
}

struct ft_batcher {
  const ft_dataset *d;
  int B, T;
  int32_t pad;
  uint64_t seed;
  int shuffle, pack, by_length;
  size_t n;         /* examples used */
  size_t nu;        /* units: examples, or packed rows */
  int32_t *ulen;    /* (nu) tokens of each unit, at most T */
  size_t *row_off;  /* pack: (nu+1) row u holds row_ex[row_off[u] .. row_off[u+1]) */
  uint32_t *row_ex; /* pack: (n) examples by row, longest first */
  uint32_t *order;  /* (nu) units in the order of perm_epoch */
  uint32_t *bperm;  /* (nb) batch order of perm_epoch (by_length) */
  uint32_t *tmp;    /* (nu) sort scratch */
  size_t *cnt;      /* (T+2) counting-sort buckets */
  long perm_epoch;
  int32_t *buf; /* one block: tokens, targets, pos, seg (B*T), labels, lens (B) */
};

static int ex_len(const ft_batcher *bt, size_t ex) {
  int len = data_len(bt->d, ex);
  return len < bt->T ? len : bt->T;
}

/* Stable counting sort of ids[0..n) by len[id] (0..T), longest first. */
static void sort_by_len_desc(uint32_t *out, const uint32_t *ids, size_t n, const int32_t *len,
                             size_t *cnt, int T) {
  memset(cnt, 0, sizeof *cnt * ((size_t)T + 2));
  for (size_t i = 0; i < n; i++) cnt[T - len[ids[i]] + 1]++;
  for (int c = 1; c <= T + 1; c++) cnt[c] += cnt[c - 1];
  for (size_t i = 0; i < n; i++) out[cnt[T - len[ids[i]]]++] = ids[i];
}

/* Best-fit decreasing: each example (longest first, equal lengths in a
 * seeded order) goes into the open row whose free space is the smallest that
 * still fits it, else into a new row. Rows are kept in buckets by free space
 * (head[c], a stack through nxt), so a placement scans at most T buckets. */
static int pack_rows(ft_batcher *bt) {
  size_t n = bt->n;
  int T = bt->T, rc = FT_ENOMEM;
  int32_t *len = malloc(n * sizeof *len);
  uint32_t *ids = malloc(n * sizeof *ids), *sorted = malloc(n * sizeof *sorted);
  uint32_t *row_of = malloc(n * sizeof *row_of), *nxt = malloc(n * sizeof *nxt);
  uint32_t *head = malloc(((size_t)T + 1) * sizeof *head);
  int32_t *used = malloc(n * sizeof *used);
  if (!len || !ids || !sorted || !row_of || !nxt || !head || !used) goto out;
  for (size_t i = 0; i < n; i++) len[i] = ex_len(bt, i);
  data_permutation(ids, n, bt->seed ^ SALT_PACK, 0);
  sort_by_len_desc(sorted, ids, n, len, bt->cnt, T);
  for (int c = 0; c <= T; c++) head[c] = NONE;
  size_t nrows = 0;
  for (size_t k = 0; k < n; k++) {
    uint32_t e = sorted[k];
    int l = len[e], c = l;
    while (c <= T && head[c] == NONE) c++;
    uint32_t r;
    if (c <= T) { /* take row r out of bucket c */
      r = head[c];
      head[c] = nxt[r];
    } else {
      r = (uint32_t)nrows++;
      used[r] = 0;
    }
    used[r] += l;
    row_of[e] = r;
    int free_now = T - used[r];
    nxt[r] = head[free_now];
    head[free_now] = r;
  }
  bt->nu = nrows;
  bt->ulen = malloc(nrows * sizeof *bt->ulen);
  bt->row_off = calloc(nrows + 1, sizeof *bt->row_off);
  bt->row_ex = malloc(n * sizeof *bt->row_ex);
  if (!bt->ulen || !bt->row_off || !bt->row_ex) goto out;
  for (size_t r = 0; r < nrows; r++) bt->ulen[r] = used[r];
  for (size_t i = 0; i < n; i++) bt->row_off[row_of[i] + 1]++;
  for (size_t r = 0; r < nrows; r++) bt->row_off[r + 1] += bt->row_off[r];
  for (size_t r = 0; r < nrows; r++) nxt[r] = (uint32_t)bt->row_off[r]; /* fill cursors */
  for (size_t k = 0; k < n; k++) bt->row_ex[nxt[row_of[sorted[k]]]++] = sorted[k];
  rc = 0;
out:
  free(len), free(ids), free(sorted), free(row_of), free(nxt), free(head), free(used);
  return rc;
}

int batcher_new(ft_batcher **out, const ft_dataset *d, const ft_batcher_opts *o, ft_error *err) {
  *out = NULL;
  int B = o->B, T = o->T;
  if (B <= 0 || T <= 0 || d->n == 0)
    return ft_error_set(err, FT_EINVALID, NULL, "batcher: B, T and the dataset must be non-empty");
  if (d->n >= NONE)
    return ft_error_set(err, FT_ERANGE, NULL, "batcher: too many examples (%zu)", d->n);
  ft_batcher *bt = calloc(1, sizeof *bt);
  if (!bt) return ft_error_set(err, FT_ENOMEM, NULL, "batcher: out of memory");
  bt->d = d;
  bt->B = B;
  bt->T = T;
  bt->pad = o->pad_id >= 0 ? o->pad_id : 0;
  bt->seed = o->seed;
  bt->shuffle = o->shuffle;
  bt->pack = o->pack && d->targets != NULL; /* causal LM only */
  bt->by_length = o->by_length;
  bt->n = o->limit && o->limit < d->n ? o->limit : d->n;
  bt->perm_epoch = -1;
  size_t BT = (size_t)B * (size_t)T;
  bt->cnt = malloc(((size_t)T + 2) * sizeof *bt->cnt);
  bt->buf = malloc((BT * (bt->pack ? 4 : 2) + 2 * (size_t)B) * sizeof *bt->buf);
  if (!bt->cnt || !bt->buf) goto nomem;
  if (bt->pack) {
    if (pack_rows(bt)) goto nomem;
  } else {
    bt->nu = bt->n;
    bt->ulen = malloc(bt->n * sizeof *bt->ulen);
    if (!bt->ulen) goto nomem;
    for (size_t i = 0; i < bt->n; i++) bt->ulen[i] = ex_len(bt, i);
  }
  bt->order = malloc(bt->nu * sizeof *bt->order);
  bt->tmp = malloc(bt->nu * sizeof *bt->tmp);
  bt->bperm = malloc((size_t)batcher_num_batches(bt) * sizeof *bt->bperm);
  if (!bt->order || !bt->tmp || !bt->bperm) goto nomem;
  *out = bt;
  return 0;
nomem:
  batcher_free(bt);
  return ft_error_set(err, FT_ENOMEM, NULL, "batcher: out of memory");
}

void batcher_free(ft_batcher *bt) {
  if (!bt) return;
  free(bt->ulen);
  free(bt->row_off);
  free(bt->row_ex);
  free(bt->order);
  free(bt->bperm);
  free(bt->tmp);
  free(bt->cnt);
  free(bt->buf);
  free(bt);
}

long batcher_num_batches(const ft_batcher *bt) {
  return (long)((bt->nu + (size_t)bt->B - 1) / (size_t)bt->B);
}

/* The unit order and batch order of an epoch. */
static void set_epoch(ft_batcher *bt, long epoch) {
  size_t nu = bt->nu, nb = (size_t)batcher_num_batches(bt);
  if (bt->shuffle) {
    data_permutation(bt->order, nu, bt->seed, epoch);
  } else {
    for (size_t i = 0; i < nu; i++) bt->order[i] = (uint32_t)i;
  }
  if (bt->by_length) {
    size_t chunk = (size_t)bt->B * BYLEN_CHUNK;
    for (size_t c0 = 0; c0 < nu; c0 += chunk) {
      size_t m = nu - c0 < chunk ? nu - c0 : chunk;
      sort_by_len_desc(bt->tmp, bt->order + c0, m, bt->ulen, bt->cnt, bt->T);
      memcpy(bt->order + c0, bt->tmp, m * sizeof *bt->tmp);
    }
    if (bt->shuffle) {
      data_permutation(bt->bperm, nb, bt->seed ^ SALT_BATCHES, epoch);
    } else {
      for (size_t i = 0; i < nb; i++) bt->bperm[i] = (uint32_t)i;
    }
  }
  bt->perm_epoch = epoch;
}

int batcher_get(ft_batcher *bt, long epoch, long index, ft_batch *b, long *n_tokens) {
  if (epoch < 0 || index < 0 || index >= batcher_num_batches(bt)) return FT_ERANGE;
  if (bt->perm_epoch != epoch) set_epoch(bt, epoch);
  const ft_dataset *d = bt->d;
  size_t bi = bt->by_length ? bt->bperm[index] : (size_t)index;
  size_t first = bi * (size_t)bt->B;
  int rows = (int)(bt->nu - first < (size_t)bt->B ? bt->nu - first : (size_t)bt->B);
  const uint32_t *units = bt->order + first;
  int T = 1;
  for (int r = 0; r < rows; r++)
    if (bt->ulen[units[r]] > T) T = bt->ulen[units[r]];
  size_t BT = (size_t)bt->B * (size_t)bt->T;
  int32_t *tokens = bt->buf;                           /* (rows,T) */
  int32_t *targets = tokens + BT;                      /* (rows,T) */
  int32_t *pos = targets + BT;                         /* (rows,T) pack only */
  int32_t *seg = pos + BT;                             /* (rows,T) pack only */
  int32_t *labels = bt->buf + BT * (bt->pack ? 4 : 2); /* (rows) */
  int32_t *lens = labels + bt->B;                      /* (rows) */
  long ntok = 0;
  for (int r = 0; r < rows; r++) {
    size_t u = units[r], o = (size_t)r * (size_t)T;
    size_t e0 = bt->pack ? bt->row_off[u] : 0, e1 = bt->pack ? bt->row_off[u + 1] : 1;
    int t = 0;
    for (size_t k = e0; k < e1; k++) {
      size_t ex = bt->pack ? bt->row_ex[k] : u;
      int len = ex_len(bt, ex);
      memcpy(tokens + o + t, d->tokens + d->off[ex], (size_t)len * sizeof *tokens);
      if (d->targets) {
        int32_t *g = targets + o + t;
        memcpy(g, d->targets + d->off[ex], (size_t)len * sizeof *g);
        /* its next token was cut, or is another example's */
        if (len > 0 && (len < data_len(d, ex) || bt->pack)) g[len - 1] = -1;
      }
      if (bt->pack)
        for (int i = 0; i < len; i++) {
          pos[o + t + i] = i;
          seg[o + t + i] = (int32_t)(k - e0);
        }
      t += len;
    }
    for (int i = t; i < T; i++) {
      tokens[o + i] = bt->pad;
      targets[o + i] = -1;
      if (bt->pack) {
        pos[o + i] = 0;
        seg[o + i] = (int32_t)(e1 - e0);
      }
    }
    labels[r] = d->labels && !bt->pack ? d->labels[u] : -1;
    lens[r] = t;
    ntok += t;
  }
  b->B = rows;
  b->T = T;
  b->tokens = tokens;
  b->targets = d->targets ? targets : NULL;
  b->labels = d->labels && !bt->pack ? labels : NULL;
  b->lens = lens;
  b->pos = bt->pack ? pos : NULL;
  b->seg = bt->pack ? seg : NULL;
  if (n_tokens) *n_tokens = ntok;
  return 0;
}
