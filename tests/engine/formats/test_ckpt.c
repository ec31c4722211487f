/* Checkpoint files on their own (no model training): every torn length of
 * the state file and of each tensor file is refused by ckpt_verify and
 * ckpt_load without changing anything; a version-1 state file (before
 * best_step) still loads; an older checkpoint loads back its own weights;
 * ckpt_latest passes over broken newer checkpoints; pruning keeps the best
 * besides the newest. (ckpt_load_weights into a model is covered by
 * test_train: checkpoint export and early stopping's promotion.) */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/ckpt.h"
#include "ft_fs.h"
#include "train/optim.h"
#include "test.h"

static char tmp[] = "/tmp/ft_test_ckpt_XXXXXX";

typedef struct {
  float w[6], g[6], b[2], gb[2];
  ft_param p[2];
  optim *o;
} toy;

static void toy_init(toy *t) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < 6; i++) t->w[i] = (float)(i + 1), t->g[i] = 0.25f * (float)(i - 2);
  t->b[0] = 7, t->b[1] = 8, t->gb[0] = 1, t->gb[1] = -1;
  snprintf(t->p[0].name, sizeof t->p[0].name, "h.0.w");
  t->p[0].ndim = 2, t->p[0].shape[0] = 2, t->p[0].shape[1] = 3, t->p[0].numel = 6;
  t->p[0].w = t->w, t->p[0].g = t->g, t->p[0].trainable = 1;
  snprintf(t->p[1].name, sizeof t->p[1].name, "h.0.b");
  t->p[1].ndim = 1, t->p[1].shape[0] = 2, t->p[1].numel = 2;
  t->p[1].w = t->b, t->p[1].g = t->gb, t->p[1].trainable = 1;
  ft_error e = {0};
  CHECK_EQ_INT(optim_new_params(&t->o, t->p, 2, 0.0f, &e), 0);
  optim_step(t->o, 0.1f);
}

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int copy(const char *src, const char *dst) {
  FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
  int c, ok = a && b;
  while (ok && (c = fgetc(a)) != EOF) fputc(c, b);
  if (a) fclose(a);
  if (b) fclose(b);
  return ok ? 0 : -1;
}

static void test_torn_lengths(void) {
  toy t;
  toy_init(&t);
  char dir[300], path[512];
  snprintf(dir, sizeof dir, "%s/torn", tmp);
  ft_ckpt_state st = {.step = 3,
                      .total_steps = 9,
                      .best_metric = NAN,
                      .last_train_loss = 1,
                      .last_valid_loss = NAN,
                      .best_step = 2};
  ft_error e = {0};
  CHECK_EQ_INT(ckpt_save(dir, &st, t.o, path, sizeof path, &e), 0);
  CHECK_EQ_INT(ckpt_verify(path, &e), 0);
  static const char *files[] = {"trainer_state.bin", "trainable.safetensors",
                                "optimizer.safetensors"};
  for (int f = 0; f < 3; f++) {
    char p[700], keep[700];
    snprintf(p, sizeof p, "%s/%s", path, files[f]);
    snprintf(keep, sizeof keep, "%s/saved", tmp);
    CHECK_EQ_INT(copy(p, keep), 0);
    long n = file_size(p);
    int refused = 0, tried = 0;
    for (long len = 0; len < n; len += 1 + len / 4) { /* many torn lengths */
      CHECK_EQ_INT(truncate(p, len), 0);
      tried++;
      float w0 = t.w[0] = 42.0f;
      ft_ckpt_state got;
      int rv = ckpt_verify(path, &e), rl = ckpt_load(path, &got, t.o, &e);
      refused += rv == FT_EFORMAT && rl == FT_EFORMAT && t.w[0] == w0;
      CHECK_EQ_INT(copy(keep, p), 0);
    }
    CHECK_EQ_INT(refused, tried);
    CHECK_EQ_INT(ckpt_verify(path, &e), 0);
  }
  optim_free(t.o);
}

/* A version-1 state file: the same fields without best_step. */
static void test_version1(void) {
  toy t;
  toy_init(&t);
  char dir[300], path[512], p[700];
  snprintf(dir, sizeof dir, "%s/v1", tmp);
  ft_ckpt_state st = {.step = 4,
                      .total_steps = 9,
                      .best_metric = 0.5,
                      .best_step = 3,
                      .last_train_loss = 1,
                      .last_valid_loss = 2,
                      .fingerprint = 5};
  ft_error e = {0};
  CHECK_EQ_INT(ckpt_save(dir, &st, t.o, path, sizeof path, &e), 0);
  snprintf(p, sizeof p, "%s/trainer_state.bin", path);
  unsigned char buf[512];
  FILE *f = fopen(p, "rb");
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  /* header 16, F fields of 8, CRC 4: drop the last field, say version 1 */
  size_t nf = (n - 20) / 8, n1 = 16 + 8 * (nf - 1) + 4;
  buf[8] = 1, buf[9] = buf[10] = buf[11] = 0;
  buf[12] = (unsigned char)(nf - 1), buf[13] = buf[14] = buf[15] = 0;
  uint32_t crc = ckpt_crc32(0, buf, n1 - 4);
  for (int i = 0; i < 4; i++) buf[n1 - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
  f = fopen(p, "wb");
  fwrite(buf, 1, n1, f);
  fclose(f);
  ft_ckpt_state got;
  CHECK_EQ_INT(ckpt_load(path, &got, t.o, &e), 0);
  CHECK(got.step == 4 && got.fingerprint == 5 && got.best_metric == 0.5);
  CHECK_EQ_INT(got.best_step, 0);
  buf[8] = 7; /* an unknown version */
  f = fopen(p, "wb");
  fwrite(buf, 1, n1, f);
  fclose(f);
  CHECK_EQ_INT(ckpt_read_state(path, &got, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "version") != NULL);
  optim_free(t.o);
}

static void test_weights_latest_prune(void) {
  toy t;
  toy_init(&t);
  char dir[300], path[512];
  snprintf(dir, sizeof dir, "%s/lp", tmp);
  ft_error e = {0};
  ft_ckpt_state st = {.total_steps = 9, .best_metric = NAN, .last_valid_loss = NAN};
  float saved_w[6];
  for (long s = 1; s <= 5; s++) {
    st.step = s;
    if (s == 2) memcpy(saved_w, t.w, sizeof saved_w);
    CHECK_EQ_INT(ckpt_save(dir, &st, t.o, path, sizeof path, &e), 0);
    optim_step(t.o, 0.1f);
  }
  /* an older checkpoint gives back its own weights */
  char p2[600];
  snprintf(p2, sizeof p2, "%s/ckpt-2", dir);
  for (int i = 0; i < 6; i++) t.w[i] = 0;
  ft_ckpt_state got;
  CHECK_EQ_INT(ckpt_load(p2, &got, t.o, &e), 0);
  CHECK(memcmp(t.w, saved_w, sizeof saved_w) == 0);
  /* newest broken in two ways: the previous intact one is the latest */
  char p[700];
  snprintf(p, sizeof p, "%s/ckpt-5/trainer_state.bin", dir);
  CHECK_EQ_INT(unlink(p), 0);
  snprintf(p, sizeof p, "%s/ckpt-4/optimizer.safetensors", dir);
  FILE *f = fopen(p, "r+b");
  fseek(f, -1, SEEK_END);
  int c = fgetc(f);
  fseek(f, -1, SEEK_END);
  fputc(c ^ 1, f);
  fclose(f);
  CHECK_EQ_INT(ckpt_latest(dir, path, sizeof path, &e), 0);
  CHECK(strstr(path, "/ckpt-3") != NULL);
  /* prune: the newest 1 and the best (2) */
  CHECK_EQ_INT(ckpt_prune(dir, 1, 2, &e), 0);
  long *steps = NULL;
  size_t n = 0;
  CHECK_EQ_INT(ckpt_list(dir, &steps, &n, &e), 0);
  CHECK(n == 2 && steps[0] == 5 && steps[1] == 2);
  free(steps);
  CHECK_EQ_INT(ckpt_prune(dir, 1, 0, &e), 0);
  CHECK_EQ_INT(ckpt_list(dir, &steps, &n, &e), 0);
  CHECK(n == 1 && steps[0] == 5);
  free(steps);
  snprintf(p, sizeof p, "%s/empty", tmp);
  CHECK_EQ_INT(ckpt_latest(p, path, sizeof path, &e), FT_ENOT_FOUND);
  optim_free(t.o);
}

int main(void) {
  if (!mkdtemp(tmp)) return 1;
  RUN(test_torn_lengths);
  RUN(test_version1);
  RUN(test_weights_latest_prune);
  if (ft_rmtree(tmp, NULL)) fprintf(stderr, "cannot remove %s\n", tmp);
  return test_report();
}
