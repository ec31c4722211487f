/* Chat templates: how a list of messages becomes the model's text, for
 * training (with which pieces carry loss) and for serving (with the prompt
 * for the assistant's next turn). We do not run Jinja: the template family
 * is recognised from tokenizer_config.json's "chat_template" and rendered by
 * hand, exactly as the documented templates do:
 *   CHATML   (Qwen2.5, SmolLM) "<|im_start|>{role}\n{content}<|im_end|>\n"
 *   QWEN3    ChatML with Qwen3's think blocks (below)
 *   LLAMA3   "<|begin_of_text|>" then
 *            "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
 *   LLAMA31  (Llama 3.1, 3.2, 3.3) LLAMA3 after a system turn that always
 *            holds "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul
 *            2024\n\n" then the system text (or nothing)
 *   GEMMA3   "<bos>" then "<start_of_turn>{user|model}\n{content}<end_of_turn>\n",
 *            the system text + "\n\n" at the start of the first user turn
 *   LLAMA2   "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>"
 *   PLAIN    (base models without a template) "{role}: {content}\n", EOS at the end
 * The trained pieces of an assistant message with weight 1 are what the
 * model writes after the role header: its content and its end marker
 * (<|im_end|>, <|eot_id|>, <end_of_turn>, " </s>", or the plain "\n" and
 * EOS; QWEN3 also the think block), never the header.
 *
 * Whitespace, as the real templates (Python's jinja2, as transformers runs
 * them; "strip" is Python's str.strip(): \t \n \v \f \r, U+001C-U+001F,
 * space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028/9, U+202F, U+205F,
 * U+3000, at both ends; not U+200B or U+FEFF):
 *   CHATML   content verbatim; the "\n" after <|im_end|> is untrained markup.
 *   QWEN3    as CHATML, except assistant turns: a content holding "</think>"
 *            is cut there (the text after the last "</think>", without its
 *            leading "\n"s, is the answer; the text before the first, after
 *            its last "<think>", without "\n"s at its ends, the reasoning;
 *            the rest is dropped, as the template drops it). Turns before
 *            the last user message (one that is not a <tool_response>) keep
 *            only the answer; a turn after it gets "<think>\n{reasoning}\n
 *            </think>\n\n{answer without leading \n}" when it is the last
 *            message or has reasoning, so a final answer without reasoning
 *            gets the empty block "<think>\n\n</think>\n\n". The generation
 *            prompt is the template's enable_thinking=false one,
 *            "<|im_start|>assistant\n<think>\n\n</think>\n\n": served answers
 *            come without reasoning, as a model fine-tuned on plain answers
 *            writes them (it learned them after that empty block). Thinking
 *            mode (the bare "<|im_start|>assistant\n" prompt) is not served.
 *   LLAMA3   content stripped (the template's "message['content'] | trim");
 *            an all-whitespace content leaves header then <|eot_id|>.
 *   LLAMA31  as LLAMA3; the system text stripped too.
 *   GEMMA3   user and assistant content stripped; the system text verbatim.
 *   LLAMA2   system text verbatim; strip() covers "<<SYS>>\n{system}\n<</SYS>>
 *            \n\n{first user}" as one string, so that user text keeps its
 *            leading whitespace after a system block (and an all-whitespace
 *            one takes the block's "\n\n" with it); other user and assistant
 *            texts are stripped. " [/INST]" ends a user turn; an assistant
 *            turn is " " (untrained) + content + " </s>" (trained). No
 *            generation prompt: a prompt ends with " [/INST]".
 *   PLAIN    content verbatim; add_generation_prompt ends with "assistant: ".
 *
 * Deliberate differences from some real templates (tests/tok/
 * test_chat_templates.mjs applies them when comparing):
 *   - Qwen2/2.5 and SmolLM2 add a default system prompt when there is none:
 *     not rendered (what you train on is what you wrote).
 *   - The first Meta-Llama-3-8B-Instruct template always ended with the
 *     assistant header; we write it only with add_generation_prompt (Meta's
 *     fix).
 *   - Llama 3.2's template dates the system turn with today's date
 *     (strftime_now); we always write 26 Jul 2024, its fallback and 3.1's
 *     default, so that a dataset renders the same tokens every day (the
 *     daemon and the worker prepare it separately; resume is bit-identical).
 *   - A later system message where an assistant turn is due passes the
 *     role check of Llama 2's and Gemma 3's templates: Llama 2's drops it
 *     silently, Gemma 3's writes a "system" turn; we refuse it (FT_EINVALID),
 *     as the templates refuse it anywhere else. Gemma 1 and 2 templates
 *     refuse any system message; we fold it as Gemma 3 does.
 * Only the roles system, user and assistant are rendered: tool calls, tool
 * results ("tool", "ipython"), tool lists, Qwen3's reasoning_content field
 * and images are not representable here and are refused (FT_EINVALID for a
 * role) rather than rendered wrongly.
 *
 * Tokenizing: Hugging Face tokenizes the rendered text as a whole, so the
 * text between two special tokens is one run (markup text plus content).
 * Tokenizing each piece on its own gives other ids for SentencePiece
 * tokenizers (Llama 2 prepends "\u2581" to every piece) and for byte-level
 * ones where content starts with whitespace that merges with the header's
 * "\n". chat_tokenize does it the whole-run way; tests/tok/
 * test_chat_templates.mjs checks its ids against HF's and its mask against
 * one found by decoding. */
#ifndef FT_CHAT_H
#define FT_CHAT_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"
#include "tok/tok.h"

typedef enum {
  FT_CHAT_PLAIN = 0,
  FT_CHAT_CHATML = 1,
  FT_CHAT_LLAMA3 = 2,
  FT_CHAT_LLAMA2 = 3,
  FT_CHAT_GEMMA3 = 4,
  FT_CHAT_QWEN3 = 5,
  FT_CHAT_LLAMA31 = 6,
  FT_CHAT_COUNT
} ft_chat_family;

typedef struct {
  const char *role; /* "system", "user", "assistant" (others: FT_EINVALID) */
  const char *content;
  size_t content_len;
  int weight; /* assistant only: 1 trained, 0 not */
} ft_chat_msg;

/* The family of a model: from <model_dir>/tokenizer_config.json's
 * chat_template (a string, or a list of {name, template} where "default" is
 * used; a list without one counts as no template), else from
 * <model_dir>/chat_template.jinja (newer transformers), recognised by its
 * markers: <|im_start|> ChatML (Qwen3 when it also has "</think>" and
 * "last_query_index"), <|start_header_id|> Llama 3 (Llama 3.1 when it also
 * has "Cutting Knowledge Date"), <start_of_turn> Gemma 3, [INST] together
 * with <<SYS>> Llama 2 (Mistral's [INST] template is not Llama 2's). Without
 * a template we recognise, ChatML if the vocabulary has <|im_start|> and
 * <|im_end|>, Llama 3 if it has <|start_header_id|> and <|eot_id|>, Gemma 3
 * if it has <start_of_turn> and <end_of_turn>, else PLAIN. t and model_dir
 * may be NULL. Never fails for a missing file: only for unreadable JSON or a
 * chat_template of the wrong type (FT_EFORMAT, naming the file). */
int chat_detect(const char *model_dir, const tok *t, ft_chat_family *out, ft_error *err);

/* What callers need to know of a family (one table in chat.c): */
/* "plain", "chatml", "llama3", "llama2", "gemma3", "qwen3", "llama3.1" */
const char *chat_family_name(ft_chat_family f);
/* The family of a name above: 0, or FT_EINVALID. */
int chat_family_parse(const char *name, ft_chat_family *out);
/* 1 when the rendered text begins with the BOS token (Llama 2, 3, 3.1,
 * Gemma 3): the caller must not add another. */
int chat_writes_bos(ft_chat_family f);
/* The special token that ends an assistant turn, where generation stops
 * ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"); NULL when it is EOS. */
const char *chat_turn_end(ft_chat_family f);
/* The role order the family renders, for error messages; NULL when any
 * order of system, user and assistant is rendered. */
const char *chat_role_rule(ft_chat_family f);

/* Called for each piece of the rendered text, in order. special: the piece
 * is template markup whose special tokens must be recognised (tokenize with
 * parse_special); 0 for message content (user text is never parsed for
 * special tokens). trained: the piece's tokens carry loss. eos: the piece is
 * the tokenizer's EOS token itself (PLAIN's end; s and n are then empty).
 * Return nonzero to stop rendering with that value. */
typedef int (*chat_emit_fn)(void *ud, const char *s, size_t n, int special, int trained, int eos);

/* Renders msgs[0..n) in family f. add_generation_prompt: end with the header
 * of an assistant turn (serving; QWEN3: with the empty think block), and
 * emit no EOS. Returns 0, the first nonzero value of emit, or FT_EINVALID
 * for a role the family cannot render (LLAMA2, GEMMA3: system only first,
 * then user/assistant alternating, starting with user). */
int chat_render(ft_chat_family f, const ft_chat_msg *msgs, size_t n, int add_generation_prompt,
                chat_emit_fn emit, void *ud);

/* chat_render, tokenized as Hugging Face tokenizes the rendered text (ids
 * equal to apply_chat_template(tokenize=True)): special tokens come only
 * from the template's markup (never from message text), the text between
 * two of them is tokenized as one run, and EOS pieces are tok_eos_id (none
 * when the tokenizer has no EOS). mask[i] is 1 when token i holds a byte of
 * a trained piece (Llama 2's "\u2581Paris" for " Paris" is trained). *ids and
 * *mask are malloc'd (never NULL on success), caller frees both. Returns 0,
 * FT_EINVALID (roles, as chat_render), FT_EUTF8 (content is not UTF-8),
 * FT_ENOMEM. */
int chat_tokenize(ft_chat_family f, const tok *t, const ft_chat_msg *msgs, size_t n,
                  int add_generation_prompt, int32_t **ids, uint8_t **mask, size_t *len);
#endif
