/* engine/tok/bpe_train.c: merges on toy corpora equal hand-computed ones (pair
 * counts, overlapping pairs, the tie-break to smaller ids, min_frequency),
 * the same input gives the same tokenizer, a written directory loads in
 * engine/tok/tok.c and round-trips arbitrary UTF-8 (special tokens included),
 * ChatML is detected, and bad input gets errors naming the field or line.
 * Base ids (GPT-2's byte order): '!'..'~' are 0..93, so 'a' = 64, 'x' = 87;
 * the space byte is 'Ġ' = 220; merges get 256, 257, ... */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok/bpe_train.h"
#include "tok/chat.h"
#include "test.h"
#include "tok/tok.h"

/* Trains on text; the merges as "a b" strings joined by '|'. */
static int train_text(const char *text, int vocab, int minf, char *out, size_t cap,
                      bpe_trainer **keep) {
  bpe_trainer *t;
  ft_error err = {0};
  int rc = bpe_trainer_new(&t, &err);
  if (!rc) rc = bpe_trainer_add_text(t, text, strlen(text), &err);
  bpe_train_opts o = {.vocab_size = vocab, .min_frequency = minf};
  if (!rc) rc = bpe_trainer_train(t, &o, &err);
  out[0] = 0;
  for (size_t i = 0; !rc && i < bpe_trainer_num_merges(t); i++) {
    const char *r, *l = bpe_trainer_merge(t, i, &r);
    snprintf(out + strlen(out), cap - strlen(out), "%s%s %s", i ? "|" : "", l, r);
  }
  if (keep && !rc)
    *keep = t;
  else
    bpe_trainer_free(t);
  if (rc) fprintf(stderr, "train: %s\n", err.message);
  return rc;
}

static void test_counts(void) {
  char m[1024];
  /* words "ab", " ab" x2, " abc": (a,b) 4, (Ġ,a) 3, (b,c) 1 */
  CHECK_EQ_INT(train_text("ab ab ab abc", 1000, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "a b|Ġ ab|Ġab c");
  /* min_frequency 2 stops before the pair seen once */
  CHECK_EQ_INT(train_text("ab ab ab abc", 1000, 2, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "a b|Ġ ab");
  /* the vocabulary size caps the merges: 256 + 1 merge + 3 specials */
  CHECK_EQ_INT(train_text("ab ab ab abc", 260, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "a b");
  /* a word's count weighs its pairs: " the" x3 gives (Ġ,t) (t,h) (h,e) 3 each,
   * which beat (a,b) 2 although a (64) is the smallest id; among the three,
   * h (71) < t (83) < Ġ (220) */
  CHECK_EQ_INT(train_text("ab the ab the the", 260, 2, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "h e");
}

static void test_ties(void) {
  char m[1024];
  /* every pair once: (x,y) left 87 < (y,x) left 88 < (Ġ,y) left 220;
   * then (Ġ,yx) */
  CHECK_EQ_INT(train_text("xy yx", 1000, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "x y|y x|Ġ yx");
}

static void test_overlap(void) {
  char m[1024];
  /* "aaaa" + " aaa": (a,a) 3 + 2 = 5 -> aa; words [aa,aa], [Ġ,aa,a];
   * (aa,aa) 1, (Ġ,aa) 1, (aa,a) 1: Ġ (220) < aa (256) -> "Ġ aa"; then
   * (aa,aa) 1 and (Ġaa,a) 1: 256 < 257 */
  CHECK_EQ_INT(train_text("aaaa aaa", 1000, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "a a|Ġ aa|aa aa|Ġaa a");
}

static void test_specials_not_learned(void) {
  char m[1024];
  /* the special tokens are cut out of the text before counting */
  CHECK_EQ_INT(train_text("<|endoftext|><|endoftext|><|im_start|>", 1000, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "");
  CHECK_EQ_INT(train_text("q<|im_end|>q<|im_end|>", 1000, 1, m, sizeof m, NULL), 0);
  CHECK_EQ_STR(m, "");
}

static const char *corpus(void) {
  static char buf[1 << 16];
  if (buf[0]) return buf;
  for (int i = 0; i < 200; i++)
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
             "Line %d: the cat's %d hats — naïve café 日本語 %s\n\t  x%d\n", i, i * 17,
             i % 3 ? "<|endoftext|>" : "😀", i % 9);
  return buf;
}

static void test_determinism(void) {
  static char a[1 << 16], b[1 << 16];
  bpe_trainer *t1 = NULL, *t2 = NULL;
  CHECK_EQ_INT(train_text(corpus(), 400, 2, a, sizeof a, &t1), 0);
  CHECK_EQ_INT(train_text(corpus(), 400, 2, b, sizeof b, &t2), 0);
  CHECK_EQ_STR(a, b);
  CHECK_EQ_INT(bpe_trainer_num_merges(t1), 400 - 259);
  char d1[] = "/tmp/ft-bpe-XXXXXX", d2[] = "/tmp/ft-bpe-XXXXXX";
  CHECK(mkdtemp(d1) && mkdtemp(d2));
  ft_error err = {0};
  CHECK_EQ_INT(bpe_trainer_write(t1, d1, &err), 0);
  CHECK_EQ_INT(bpe_trainer_write(t2, d2, &err), 0);
  char p1[256], p2[256];
  for (int k = 0; k < 2; k++) {
    const char *name = k ? "tokenizer_config.json" : "tokenizer.json";
    snprintf(p1, sizeof p1, "%s/%s", d1, name);
    snprintf(p2, sizeof p2, "%s/%s", d2, name);
    FILE *f1 = fopen(p1, "rb"), *f2 = fopen(p2, "rb");
    CHECK(f1 && f2);
    int same = f1 && f2, c1, c2;
    while (same && ((c1 = fgetc(f1)) != EOF || 1)) {
      c2 = fgetc(f2);
      if (c1 != c2) same = 0;
      if (c1 == EOF) break;
    }
    CHECK(same);
    if (f1) fclose(f1);
    if (f2) fclose(f2);
    unlink(p1);
    unlink(p2);
  }
  rmdir(d1);
  rmdir(d2);
  bpe_trainer_free(t1);
  bpe_trainer_free(t2);
}

/* Random well-formed UTF-8 of n code points from all planes. */
static size_t rand_utf8(char *out, int n, uint64_t *s) {
  size_t len = 0;
  for (int i = 0; i < n; i++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t r = (uint32_t)(*s >> 33), cp;
    switch (r % 5) {
      case 0: cp = r % 128 / 1; break;                  /* ASCII, controls and NUL included */
      case 1: cp = 0x80 + (r >> 3) % 0x780; break;      /* 2 bytes */
      case 2: cp = 0x800 + (r >> 3) % 0xF800; break;    /* 3 bytes */
      case 3: cp = 0x10000 + (r >> 3) % 0x100000; break; /* 4 bytes */
      default: cp = " \n\t0123456789ab"[(r >> 3) % 15]; break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'z';
    if (cp < 0x80) {
      out[len++] = (char)cp;
    } else if (cp < 0x800) {
      out[len++] = (char)(0xC0 | cp >> 6);
      out[len++] = (char)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
      out[len++] = (char)(0xE0 | cp >> 12);
      out[len++] = (char)(0x80 | (cp >> 6 & 63));
      out[len++] = (char)(0x80 | (cp & 63));
    } else {
      out[len++] = (char)(0xF0 | cp >> 18);
      out[len++] = (char)(0x80 | (cp >> 12 & 63));
      out[len++] = (char)(0x80 | (cp >> 6 & 63));
      out[len++] = (char)(0x80 | (cp & 63));
    }
  }
  return len;
}

static void test_round_trip(void) {
  char dir[] = "/tmp/ft-bpe-XXXXXX", path[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/train.txt", dir);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  fputs(corpus(), f);
  fclose(f);
  char out[256];
  snprintf(out, sizeof out, "%s/tok", dir);
  const char *files[] = {path};
  bpe_train_opts o = {.vocab_size = 500};
  ft_error err = {0};
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), 0);
  tok *t = NULL;
  CHECK_EQ_INT(tok_load(&t, out, &err), 0);
  if (!t) return;
  /* the corpus runs out of pairs seen twice before 500: the specials follow the merges */
  int V = tok_vocab_size(t);
  CHECK(V > 300 && V <= 500);
  CHECK_EQ_INT(tok_token_id(t, "<|endoftext|>"), V - 3);
  CHECK_EQ_INT(tok_token_id(t, "<|im_start|>"), V - 2);
  CHECK_EQ_INT(tok_token_id(t, "<|im_end|>"), V - 1);
  CHECK_EQ_INT(tok_eos_id(t), V - 3);
  CHECK_EQ_INT(tok_bos_id(t), V - 3);
  CHECK_EQ_INT(tok_pad_id(t), V - 3);
  CHECK(tok_token_id(t, "Ġthe") >= 256); /* frequent: learned */
  ft_chat_family fam;
  CHECK_EQ_INT(chat_detect(out, t, &fam, &err), 0);
  CHECK_EQ_STR(chat_family_name(fam), "chatml");

  /* the specials are one token each, and text round-trips */
  static const char *fixed[] = {"<|im_start|>user\nhi<|im_end|>\n", "Line 3: the cat's 51 hats",
                                "   \n\n\t x", "", "naïve café 日本語 😀<|endoftext|>"};
  for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    CHECK_EQ_INT(tok_encode(t, fixed[k], strlen(fixed[k]), 1, &ids, &n), 0);
    if (k == 0) {
      CHECK(n > 2 && ids[0] == V - 2 && ids[n - 2] == V - 1);
    }
    CHECK_EQ_INT(tok_decode(t, ids, n, 0, &back), 0);
    CHECK_EQ_STR(back, fixed[k]);
    free(ids);
    free(back);
  }
  uint64_t s = 7;
  static char buf[4096];
  int bad = 0;
  for (int k = 0; k < 300; k++) {
    size_t len = rand_utf8(buf, 1 + k % 200, &s);
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    size_t blen = 0;
    if (tok_encode(t, buf, len, 1, &ids, &n) || tok_decode_len(t, ids, n, 0, &back, &blen) ||
        blen != len || memcmp(back, buf, len))
      bad++;
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= V) bad++;
    free(ids);
    free(back);
  }
  CHECK_EQ_INT(bad, 0);
  tok_free(t);
  char p[300];
  snprintf(p, sizeof p, "%s/tokenizer.json", out);
  unlink(p);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", out);
  unlink(p);
  rmdir(out);
  unlink(path);
  rmdir(dir);
}

static void write_file(const char *path, const char *s, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(s, 1, n, f);
    fclose(f);
  }
}

static void test_files_and_errors(void) {
  char dir[] = "/tmp/ft-bpe-XXXXXX", p[256], out[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(p, sizeof p, "%s/a.jsonl", dir);
  snprintf(out, sizeof out, "%s/tok", dir);
  const char *files[] = {p};
  ft_error err = {0};
  bpe_train_opts o = {.vocab_size = 300, .min_frequency = 1};

  /* JSONL: text, prompt/completion and messages content all count */
  const char *ok = "{\"text\":\"zq zq\"}\n\n{\"prompt\":\"zq\",\"completion\":\"zq\"}\n"
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"zq\"}]}\n";
  write_file(p, ok, strlen(ok));
  bpe_trainer *t;
  CHECK_EQ_INT(bpe_trainer_new(&t, &err), 0);
  CHECK_EQ_INT(bpe_trainer_add_file(t, p, &err), 0);
  CHECK_EQ_INT(bpe_trainer_num_words(t), 2); /* "zq", " zq" */
  CHECK_EQ_INT(bpe_trainer_train(t, &o, &err), 0);
  const char *r, *l = bpe_trainer_merge(t, 0, &r);
  CHECK(l && !strcmp(l, "z") && !strcmp(r, "q")); /* (z,q) 5 times */
  bpe_trainer_free(t);

  const char *badline = "{\"text\":\"a\"}\n{\"text\": 3}\n";
  write_file(p, badline, strlen(badline));
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_EBAD_FILE);
  CHECK(strstr(err.message, "a.jsonl:2") != NULL);
  const char *notjson = "{\"text\":\"a\"}\n{\"text\":\n";
  write_file(p, notjson, strlen(notjson));
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_EBAD_FILE);
  CHECK(strstr(err.message, "a.jsonl:2") != NULL);
  const char *nofield = "{\"label\":\"x\"}\n";
  write_file(p, nofield, strlen(nofield));
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_EBAD_FILE);
  CHECK(strstr(err.message, "a.jsonl:1") != NULL);

  snprintf(p, sizeof p, "%s/b.txt", dir);
  write_file(p, "good line\nbad \xff line\n", 20);
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_EUTF8);
  CHECK(strstr(err.message, "b.txt:2") != NULL);

  write_file(p, "hello", 5);
  o.vocab_size = 100;
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_ERANGE);
  CHECK_EQ_STR(err.param, "vocab_size");
  o.vocab_size = 300;
  CHECK_EQ_INT(bpe_train_files(files, 0, &o, out, &err), FT_EMISSING);
  snprintf(p, sizeof p, "%s/missing.txt", dir);
  CHECK_EQ_INT(bpe_train_files(files, 1, &o, out, &err), FT_EIO);
  CHECK(access(out, F_OK) != 0); /* nothing written on errors */

  snprintf(p, sizeof p, "%s/a.jsonl", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/b.txt", dir);
  unlink(p);
  rmdir(dir);
}

int main(void) {
  RUN(test_counts);
  RUN(test_ties);
  RUN(test_overlap);
  RUN(test_specials_not_learned);
  RUN(test_determinism);
  RUN(test_round_trip);
  RUN(test_files_and_errors);
  return test_report();
}
