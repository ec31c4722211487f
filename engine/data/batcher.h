/* Batches for training and evaluation over a loaded dataset (data.h): the
 * seeded per-epoch order and padded (B,T) batches. Everything a batch
 * depends on is (seed, epoch, index), so a resumed run reads exactly the
 * batches the uninterrupted run would have read. */
#ifndef FT_BATCHER_H
#define FT_BATCHER_H
#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "nn/model.h"

/* The order of epoch `epoch`: a Fisher-Yates permutation of 0..n-1 that
 * depends only on (seed, epoch). */
void data_permutation(uint32_t *perm, size_t n, uint64_t seed, long epoch);

/* How batches are made. Row r of a batch is one example, right-padded to
 * the longest row of the batch and cut at T, unless packing puts several
 * examples in one row (then ft_batch.pos/.seg say where each begins).
 * The batches of an epoch are a function of (seed, epoch) only, and their
 * number is the same in every epoch. */
typedef struct {
  int B, T;       /* rows per batch, tokens per row (> 0) */
  int32_t pad_id; /* token id for padding (< 0: 0) */
  uint64_t seed;
  int shuffle; /* a seeded new order every epoch; else file order */
  /* Causal LM only (ignored without targets): rows of up to T tokens holding
   * whole examples (best-fit decreasing, computed once from the lengths and
   * the seed, so the rows are the same every epoch and only their order
   * changes); pos/seg filled, the last target of each example is -1, lens[r]
   * the row's used tokens. The number of batches is ceil(rows / B). */
  int pack;
  /* Rows (examples, or packed rows) sorted by length, longest first, inside
   * chunks of 64 batches of the epoch's order; with shuffle the order of the
   * batches is then a seeded permutation per epoch. Less padding. */
  int by_length;
  size_t limit; /* > 0: use only the first `limit` examples (evaluation) */
} ft_batcher_opts;

typedef struct ft_batcher ft_batcher;
int batcher_new(ft_batcher **out, const ft_dataset *d, const ft_batcher_opts *o, ft_error *err);
void batcher_free(ft_batcher *bt);
long batcher_num_batches(const ft_batcher *bt); /* per epoch, the same in every epoch */
/* Fills *b (pointing into the batcher's buffers, valid until the next call).
 * *n_tokens gets the non-padding token count. FT_ERANGE for a bad index. */
int batcher_get(ft_batcher *bt, long epoch, long index, ft_batch *b, long *n_tokens);
#endif
