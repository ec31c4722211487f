/* Tests of engine/data/batcher.c over datasets built by hand (no tokenizer): the
 * padded batches, the seeded per-epoch order and resume determinism, the
 * eval limit, length-grouped batches and packed rows (every example once per
 * epoch, rows within T, segments, positions and boundary targets right). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/batcher.h"
#include "test.h"

/* Example e has tokens e*1000 + i (i < len, all ids < 1e6), so a token names
 * its example and position. LM: targets[i] = tokens[i+1], the last one
 * last_target (the data loader writes -1; other values test that packing
 * clears it). cls: labels e % 3 instead of targets. */
static ft_dataset *make_ds(size_t n, const int *lens, int cls, int32_t last_target) {
  ft_dataset *d = calloc(1, sizeof *d);
  d->n = n;
  d->off = calloc(n + 1, sizeof *d->off);
  for (size_t e = 0; e < n; e++) d->off[e + 1] = d->off[e] + (size_t)lens[e];
  d->tokens = malloc((d->off[n] + 1) * sizeof *d->tokens);
  if (cls) {
    d->format = FT_DATA_CLASSIFY;
    d->labels = malloc(n * sizeof *d->labels);
  } else {
    d->format = FT_DATA_TEXT;
    d->targets = malloc((d->off[n] + 1) * sizeof *d->targets);
  }
  for (size_t e = 0; e < n; e++) {
    for (int i = 0; i < lens[e]; i++) {
      d->tokens[d->off[e] + i] = (int32_t)(e * 1000 + (size_t)i);
      if (!cls)
        d->targets[d->off[e] + i] = i + 1 < lens[e] ? (int32_t)(e * 1000 + i + 1) : last_target;
    }
    if (cls) d->labels[e] = (int32_t)(e % 3);
    if (lens[e] > d->max_len) d->max_len = lens[e];
  }
  return d;
}

static void free_ds(ft_dataset *d) {
  free(d->off);
  free(d->tokens);
  free(d->targets);
  free(d->labels);
  free(d);
}

static ft_batcher *mk(const ft_dataset *d, ft_batcher_opts o) {
  ft_batcher *bt = NULL;
  ft_error err = {0};
  int rc = batcher_new(&bt, d, &o, &err);
  CHECK_EQ_INT(rc, 0);
  return bt;
}

/* ---- plain padded batches (the tests that used to live in test_data.c) */

static void test_batches(void) {
  int lens[] = {2, 5, 3, 8, 2};
  ft_dataset *d = make_ds(5, lens, 0, -1);
  ft_batcher *bt = mk(d, (ft_batcher_opts){.B = 2, .T = 6, .pad_id = 7, .seed = 42});
  CHECK_EQ_INT(batcher_num_batches(bt), 3);
  ft_batch b;
  long nt;
  CHECK_EQ_INT(batcher_get(bt, 0, 0, &b, &nt), 0);
  CHECK_EQ_INT(b.B, 2);
  CHECK_EQ_INT(b.T, 5); /* padded to the longest row of the batch */
  CHECK_EQ_INT(b.lens[0], 2);
  CHECK_EQ_INT(b.lens[1], 5);
  CHECK_EQ_INT(nt, 7);
  CHECK_EQ_INT(b.tokens[2], 7);   /* pad id */
  CHECK_EQ_INT(b.targets[1], -1); /* the last token predicts nothing */
  CHECK_EQ_INT(b.targets[2], -1); /* padding */
  CHECK_EQ_INT(b.targets[0], 1);
  CHECK(memcmp(b.tokens + b.T, d->tokens + d->off[1], 5 * sizeof(int32_t)) == 0);
  CHECK(b.labels == NULL && b.pos == NULL && b.seg == NULL);
  /* example 3 is longer than T = 6: cut, and its last target dropped */
  CHECK_EQ_INT(batcher_get(bt, 0, 1, &b, &nt), 0);
  CHECK_EQ_INT(b.T, 6);
  CHECK_EQ_INT(b.lens[1], 6);
  CHECK_EQ_INT(b.targets[6 + 5], -1);
  CHECK_EQ_INT(b.targets[6 + 4], d->tokens[d->off[3] + 5]);
  CHECK_EQ_INT(batcher_get(bt, 0, 2, &b, &nt), 0);
  CHECK_EQ_INT(b.B, 1);
  CHECK_EQ_INT(batcher_get(bt, 0, 3, &b, &nt), FT_ERANGE);
  CHECK_EQ_INT(batcher_get(bt, -1, 0, &b, &nt), FT_ERANGE);
  batcher_free(bt);
  /* eval limit */
  bt = mk(d, (ft_batcher_opts){.B = 2, .T = 16, .limit = 3});
  CHECK_EQ_INT(batcher_num_batches(bt), 2);
  batcher_free(bt);
  /* bad options */
  ft_error err = {0};
  CHECK_EQ_INT(batcher_new(&bt, d, &(ft_batcher_opts){.B = 0, .T = 4}, &err), FT_EINVALID);
  CHECK(bt == NULL);
  free_ds(d);
}

static void test_shuffle(void) {
  enum { N = 100 };
  uint32_t a[N], b[N], c[N];
  data_permutation(a, N, 42, 0);
  data_permutation(b, N, 42, 0);
  CHECK(memcmp(a, b, sizeof a) == 0);
  data_permutation(c, N, 42, 1);
  CHECK(memcmp(a, c, sizeof a) != 0);
  data_permutation(c, N, 43, 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  int seen[N] = {0}, fixed = 0;
  for (int i = 0; i < N; i++) {
    CHECK(a[i] < N);
    if (a[i] < N) seen[a[i]]++;
    fixed += a[i] == (uint32_t)i;
  }
  for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
  CHECK(fixed < 10); /* actually shuffled */
  /* the batcher follows the permutation, and a fresh batcher (a resumed run)
   * gives the same batch at the same position */
  int lens[10];
  for (int i = 0; i < 10; i++) lens[i] = 2 + i % 3;
  ft_dataset *d = make_ds(10, lens, 0, -1);
  ft_batcher_opts o = {.B = 3, .T = 16, .seed = 5, .shuffle = 1};
  ft_batcher *b1 = mk(d, o), *b2 = mk(d, o);
  ft_batch x, y;
  batcher_get(b1, 0, 0, &x, NULL);
  batcher_get(b1, 1, 2, &x, NULL);
  batcher_get(b2, 1, 2, &y, NULL);
  CHECK(x.B == y.B && x.T == y.T);
  CHECK(memcmp(x.tokens, y.tokens, (size_t)(x.B * x.T) * 4) == 0);
  uint32_t perm[10];
  data_permutation(perm, 10, 5, 1);
  CHECK(memcmp(x.tokens, d->tokens + d->off[perm[6]], (size_t)x.lens[0] * 4) == 0);
  batcher_free(b1);
  batcher_free(b2);
  free_ds(d);
}

static void test_classify_ignores_pack(void) {
  int lens[] = {3, 4, 2, 5};
  ft_dataset *d = make_ds(4, lens, 1, -1);
  ft_batcher *bt = mk(d, (ft_batcher_opts){.B = 2, .T = 16, .pack = 1});
  CHECK_EQ_INT(batcher_num_batches(bt), 2); /* one example per row */
  ft_batch b;
  CHECK_EQ_INT(batcher_get(bt, 0, 1, &b, NULL), 0);
  CHECK(b.pos == NULL && b.seg == NULL && b.targets == NULL && b.labels != NULL);
  CHECK_EQ_INT(b.labels[0], 2);
  CHECK_EQ_INT(b.labels[1], 0);
  CHECK_EQ_INT(b.lens[1], 5);
  batcher_free(bt);
  free_ds(d);
}

/* ---- packing and length grouping */

/* Walks one epoch of bt over d and checks every batch; counts how often each
 * example was seen in seen[] and returns the padded size sum(rows * T). */
static long walk_epoch(ft_batcher *bt, const ft_dataset *d, long epoch, int Tmax, int packed,
                       int *seen, long *ntok_out) {
  long nb = batcher_num_batches(bt), padded = 0, ntok_sum = 0;
  for (long i = 0; i < nb; i++) {
    ft_batch b;
    long nt = 0;
    if (batcher_get(bt, epoch, i, &b, &nt) != 0) {
      CHECK(0);
      return -1;
    }
    CHECK(b.T >= 1 && b.T <= Tmax);
    CHECK(packed ? (b.pos != NULL && b.seg != NULL) : (b.pos == NULL && b.seg == NULL));
    long rowsum = 0;
    for (int r = 0; r < b.B; r++) {
      CHECK(b.lens[r] >= 1 && b.lens[r] <= b.T);
      rowsum += b.lens[r];
      const int32_t *tk = b.tokens + (size_t)r * b.T, *tg = b.targets + (size_t)r * b.T;
      int t = 0, nseg = 0;
      while (t < b.lens[r]) { /* one example starts at t */
        int e = tk[t] / 1000;
        CHECK(tk[t] % 1000 == 0);
        if (e < 0 || (size_t)e >= d->n) {
          CHECK(0);
          return -1;
        }
        seen[e]++;
        int full = data_len(d, (size_t)e), len = full < Tmax ? full : Tmax;
        CHECK(t + len <= b.lens[r]);
        for (int i2 = 0; i2 < len && t + i2 < b.lens[r]; i2++) {
          CHECK_EQ_INT(tk[t + i2], e * 1000 + i2);
          if (packed) {
            CHECK_EQ_INT(b.pos[(size_t)r * b.T + t + i2], i2);
            CHECK_EQ_INT(b.seg[(size_t)r * b.T + t + i2], nseg);
          }
          if (i2 + 1 < len) CHECK_EQ_INT(tg[t + i2], e * 1000 + i2 + 1);
        }
        /* no example's last token predicts the next example's first */
        if (packed || len < full) CHECK_EQ_INT(tg[t + len - 1], -1);
        t += len;
        nseg++;
      }
      CHECK_EQ_INT(t, b.lens[r]);
      for (int i2 = b.lens[r]; i2 < b.T; i2++) CHECK_EQ_INT(tg[i2], -1);
    }
    CHECK_EQ_INT(nt, rowsum);
    ntok_sum += nt;
    padded += (long)b.B * b.T;
  }
  if (ntok_out) *ntok_out = ntok_sum;
  return padded;
}

static int *random_lens(size_t n, uint64_t seed, int lo, int hi) {
  int *lens = malloc(n * sizeof *lens);
  uint32_t *p = malloc(n * sizeof *p);
  data_permutation(p, n, seed, 0);
  for (size_t i = 0; i < n; i++) lens[i] = lo + (int)(p[i] * 2654435761u % (uint32_t)(hi - lo + 1));
  free(p);
  return lens;
}

static void test_pack_rows(void) {
  enum { N = 300, T = 64 };
  int *lens = random_lens(N, 7, 2, 40);
  lens[5] = 100;                          /* longer than T: cut, alone in its row */
  lens[6] = T;                            /* exactly T */
  ft_dataset *d = make_ds(N, lens, 0, 9); /* last targets 9: packing must clear them */
  ft_batcher *bt =
      mk(d, (ft_batcher_opts){.B = 4, .T = T, .pad_id = 3, .seed = 11, .shuffle = 1, .pack = 1});
  long nb = batcher_num_batches(bt);
  long total = 0;
  for (int i = 0; i < N; i++) total += lens[i] < T ? lens[i] : T;
  /* rows are nearly full: best-fit decreasing leaves little room */
  CHECK(nb * 4 * T < total * 5 / 4 + 4 * T);
  for (long ep = 0; ep < 3; ep++) {
    int seen[N] = {0};
    long ntok = 0;
    walk_epoch(bt, d, ep, T, 1, seen, &ntok);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK_EQ_INT(ntok, total);
    CHECK_EQ_INT(batcher_num_batches(bt), nb);
  }
  /* the long example fills its row alone; padding is pad_id */
  ft_batch b;
  int found = 0;
  for (long i = 0; i < nb && !found; i++) {
    batcher_get(bt, 0, i, &b, NULL);
    for (int r = 0; r < b.B; r++) {
      const int32_t *tk = b.tokens + (size_t)r * b.T;
      if (tk[0] == 5000) {
        found = 1;
        CHECK_EQ_INT(b.lens[r], T);
        CHECK_EQ_INT(b.seg[(size_t)r * b.T + T - 1], 0);
      }
      if (b.lens[r] < b.T) CHECK_EQ_INT(tk[b.lens[r]], 3);
    }
  }
  CHECK(found);
  batcher_free(bt);
  free_ds(d);
  free(lens);
}

/* A batch copied out of the batcher's buffers. */
typedef struct {
  int B, T;
  int32_t v[4 * 8 * 64 + 8];
} saved_batch;

static void save_batch(saved_batch *s, const ft_batch *b) {
  size_t n = (size_t)b->B * b->T;
  memset(s, 0, sizeof *s);
  s->B = b->B;
  s->T = b->T;
  memcpy(s->v, b->tokens, n * 4);
  memcpy(s->v + n, b->targets, n * 4);
  if (b->pos) memcpy(s->v + 2 * n, b->pos, n * 4);
  if (b->seg) memcpy(s->v + 3 * n, b->seg, n * 4);
  memcpy(s->v + 4 * n, b->lens, (size_t)b->B * 4);
}

static int same_saved(const saved_batch *x, const saved_batch *y) {
  return x->B == y->B && x->T == y->T && memcmp(x->v, y->v, sizeof x->v) == 0;
}

/* A fresh batcher (a resumed run) reads, in any access order, exactly the
 * batches of the uninterrupted one; epochs and seeds differ. */
static void test_determinism(void) {
  enum { N = 200, T = 48 };
  int *lens = random_lens(N, 3, 1, 30);
  ft_dataset *d = make_ds(N, lens, 0, -1);
  for (int mode = 0; mode < 4; mode++) {
    ft_batcher_opts o = {
        .B = 3, .T = T, .seed = 99, .shuffle = 1, .pack = mode & 1, .by_length = mode >= 2};
    ft_batcher *a = mk(d, o), *c = mk(d, o);
    o.seed = 100;
    ft_batcher *other = mk(d, o);
    long nb = batcher_num_batches(a);
    CHECK_EQ_INT(batcher_num_batches(c), nb);
    int diff_epoch = 0, diff_seed = 0, n = 0;
    for (long ep = 0; ep < 3; ep++)
      for (long i = 0; i < nb; i++) {
        ft_batch b;
        saved_batch x, y, z;
        batcher_get(a, ep, i, &b, NULL); /* the uninterrupted run, in order */
        save_batch(&x, &b);
        /* the resumed one: starts at (ep, i) after reading another epoch */
        batcher_get(c, ep + 1, nb - 1 - i, &b, NULL);
        batcher_get(c, ep, i, &b, NULL);
        save_batch(&y, &b);
        CHECK(same_saved(&x, &y));
        batcher_get(c, ep + 1, i, &b, NULL);
        save_batch(&z, &b);
        diff_epoch += !same_saved(&x, &z);
        if (i < batcher_num_batches(other)) {
          batcher_get(other, ep, i, &b, NULL);
          save_batch(&z, &b);
          diff_seed += !same_saved(&x, &z);
        }
        n++;
      }
    CHECK(diff_epoch > n / 2);
    CHECK(diff_seed > n / 2);
    batcher_free(a);
    batcher_free(c);
    batcher_free(other);
  }
  free_ds(d);
  free(lens);
}

/* by_length: same number of batches, every example once, much less padding
 * than plain shuffled batches; packing less still. */
static void test_by_length(void) {
  enum { N = 400, T = 128, B = 8 };
  int *lens = random_lens(N, 5, 4, 120);
  ft_dataset *d = make_ds(N, lens, 0, -1);
  ft_batcher *plain = mk(d, (ft_batcher_opts){.B = B, .T = T, .seed = 1, .shuffle = 1});
  ft_batcher *byl =
      mk(d, (ft_batcher_opts){.B = B, .T = T, .seed = 1, .shuffle = 1, .by_length = 1});
  ft_batcher *pk = mk(d, (ft_batcher_opts){.B = B, .T = T, .seed = 1, .shuffle = 1, .pack = 1});
  CHECK_EQ_INT(batcher_num_batches(byl), batcher_num_batches(plain));
  long pad_plain = 0, pad_byl = 0, pad_pack = 0, ntok = 0;
  for (long ep = 0; ep < 2; ep++) {
    int s1[N] = {0}, s2[N] = {0}, s3[N] = {0};
    pad_plain += walk_epoch(plain, d, ep, T, 0, s1, &ntok);
    pad_byl += walk_epoch(byl, d, ep, T, 0, s2, NULL);
    pad_pack += walk_epoch(pk, d, ep, T, 1, s3, NULL);
    for (int i = 0; i < N; i++) CHECK(s1[i] == 1 && s2[i] == 1 && s3[i] == 1);
  }
  ntok *= 2;
  fprintf(stderr, "  tokens %ld, padded: plain %ld, by_length %ld, packed %ld\n", ntok, pad_plain,
          pad_byl, pad_pack);
  CHECK(pad_byl - ntok < (pad_plain - ntok) / 4);
  CHECK(pad_pack < pad_byl);
  CHECK(pad_pack - ntok < ntok / 10);
  /* batches of similar lengths: within a batch, lengths are sorted */
  ft_batch b;
  batcher_get(byl, 0, 0, &b, NULL);
  for (int r = 1; r < b.B; r++) CHECK(b.lens[r] <= b.lens[r - 1]);
  /* without shuffle the order is fixed: epochs equal */
  batcher_free(byl);
  byl = mk(d, (ft_batcher_opts){.B = B, .T = T, .by_length = 1});
  ft_batch x, y;
  batcher_get(byl, 0, 3, &x, NULL);
  int32_t first = x.tokens[0];
  batcher_get(byl, 5, 3, &y, NULL);
  CHECK_EQ_INT(y.tokens[0], first);
  batcher_free(plain);
  batcher_free(byl);
  batcher_free(pk);
  free_ds(d);
  free(lens);
}

/* Packed eval with a limit: only the first `limit` examples. */
static void test_pack_limit(void) {
  int lens[] = {3, 3, 3, 3, 3, 3};
  ft_dataset *d = make_ds(6, lens, 0, -1);
  ft_batcher *bt = mk(d, (ft_batcher_opts){.B = 1, .T = 8, .pack = 1, .limit = 4});
  CHECK_EQ_INT(batcher_num_batches(bt), 2); /* 4 x 3 tokens in rows of 8: 2 rows */
  int seen[6] = {0};
  walk_epoch(bt, d, 0, 8, 1, seen, NULL);
  for (int i = 0; i < 6; i++) CHECK_EQ_INT(seen[i], i < 4);
  batcher_free(bt);
  free_ds(d);
}

int main(void) {
  RUN(test_batches);
  RUN(test_shuffle);
  RUN(test_classify_ignores_pack);
  RUN(test_pack_rows);
  RUN(test_determinism);
  RUN(test_by_length);
  RUN(test_pack_limit);
  return test_report();
}
