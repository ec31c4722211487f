/* Batching (see batcher.h): per-step work is a copy of each row's tokens
 * into one reused buffer; nothing is allocated after batcher_new. */
#include "batcher.h"

#include <stdlib.h>
#include <string.h>

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
  int shuffle;
  size_t n;       /* examples used */
  uint32_t *perm; /* (n) order of perm_epoch */
  long perm_epoch;
  int32_t *buf; /* one block: tokens (B*T), targets (B*T), labels (B), lens (B) */
};

int batcher_new(ft_batcher **out, const ft_dataset *d, const ft_batcher_opts *o, ft_error *err) {
  *out = NULL;
  int B = o->B, T = o->T, shuffle = o->shuffle;
  int32_t pad_id = o->pad_id;
  uint64_t seed = o->seed;
  size_t limit = o->limit;
  if (B <= 0 || T <= 0 || d->n == 0)
    return ft_error_set(err, FT_EINVALID, NULL, "batcher: B, T and the dataset must be non-empty");
  ft_batcher *bt = calloc(1, sizeof *bt);
  if (!bt) return ft_error_set(err, FT_ENOMEM, NULL, "batcher: out of memory");
  bt->d = d;
  bt->B = B;
  bt->T = T;
  bt->pad = pad_id >= 0 ? pad_id : 0;
  bt->seed = seed;
  bt->shuffle = shuffle;
  bt->n = limit && limit < d->n ? limit : d->n;
  bt->perm = malloc(bt->n * sizeof *bt->perm);
  bt->buf = malloc(((size_t)B * (size_t)T * 2 + 2 * (size_t)B) * sizeof *bt->buf);
  if (!bt->perm || !bt->buf) {
    batcher_free(bt);
    return ft_error_set(err, FT_ENOMEM, NULL, "batcher: out of memory");
  }
  bt->perm_epoch = -1;
  *out = bt;
  return 0;
}

void batcher_free(ft_batcher *bt) {
  if (!bt) return;
  free(bt->perm);
  free(bt->buf);
  free(bt);
}

long batcher_num_batches(const ft_batcher *bt) {
  return (long)((bt->n + (size_t)bt->B - 1) / (size_t)bt->B);
}

int batcher_get(ft_batcher *bt, long epoch, long index, ft_batch *b, long *n_tokens) {
  if (epoch < 0 || index < 0 || index >= batcher_num_batches(bt)) return FT_ERANGE;
  if (bt->perm_epoch != epoch) {
    if (bt->shuffle) {
      data_permutation(bt->perm, bt->n, bt->seed, epoch);
    } else {
      for (size_t i = 0; i < bt->n; i++) bt->perm[i] = (uint32_t)i;
    }
    bt->perm_epoch = epoch;
  }
  const ft_dataset *d = bt->d;
  size_t first = (size_t)index * (size_t)bt->B;
  int rows = (int)(bt->n - first < (size_t)bt->B ? bt->n - first : (size_t)bt->B);
  int T = 0;
  for (int r = 0; r < rows; r++) {
    int len = data_len(d, bt->perm[first + (size_t)r]);
    if (len > T) T = len;
  }
  if (T > bt->T) T = bt->T;
  int32_t *tokens = bt->buf;                                 /* (rows,T) */
  int32_t *targets = tokens + (size_t)bt->B * (size_t)bt->T; /* (rows,T) */
  int32_t *labels = targets + (size_t)bt->B * (size_t)bt->T; /* (rows) */
  int32_t *lens = labels + bt->B;                            /* (rows) */
  long ntok = 0;
  for (int r = 0; r < rows; r++) {
    size_t ex = bt->perm[first + (size_t)r];
    int len = data_len(d, ex);
    if (len > T) len = T;
    const int32_t *src = d->tokens + d->off[ex];
    int32_t *tr = tokens + (size_t)r * (size_t)T, *gr = targets + (size_t)r * (size_t)T;
    memcpy(tr, src, (size_t)len * sizeof *tr);
    for (int i = len; i < T; i++) tr[i] = bt->pad;
    if (d->targets) {
      memcpy(gr, d->targets + d->off[ex], (size_t)len * sizeof *gr);
      if (len < data_len(d, ex)) gr[len - 1] = -1; /* its next token was cut */
      for (int i = len; i < T; i++) gr[i] = -1;
    }
    labels[r] = d->labels ? d->labels[ex] : -1;
    lens[r] = len;
    ntok += len;
  }
  b->B = rows;
  b->T = T;
  b->tokens = tokens;
  b->targets = d->targets ? targets : NULL;
  b->labels = d->labels ? labels : NULL;
  b->lens = lens;
  b->pos = NULL;
  b->seg = NULL;
  if (n_tokens) *n_tokens = ntok;
  return 0;
}
