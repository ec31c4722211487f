/* Chat templates: how a list of messages becomes the model's text, for
 * training (with which pieces carry loss) and for serving (with the prompt
 * for the assistant's next turn). We do not run Jinja: the template family
 * is recognised from tokenizer_config.json's "chat_template" and rendered by
 * hand, exactly as the documented templates do:
 *   CHATML  (Qwen, SmolLM)  "<|im_start|>{role}\n{content}<|im_end|>\n"
 *   LLAMA3  "<|begin_of_text|>" then
 *           "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
 *   LLAMA2  "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>"
 *   PLAIN   (base models without a template) "{role}: {content}\n", EOS at the end
 * The trained pieces of an assistant message with weight 1 are its content
 * and its end marker (<|im_end|>, <|eot_id|>, " </s>", or the plain "\n"
 * and EOS), never the role header. */
#ifndef FT_CHAT_H
#define FT_CHAT_H
#include <stddef.h>

#include "ft_err.h"
#include "tok.h"

typedef enum {
  FT_CHAT_PLAIN = 0,
  FT_CHAT_CHATML = 1,
  FT_CHAT_LLAMA3 = 2,
  FT_CHAT_LLAMA2 = 3,
} ft_chat_family;

typedef struct {
  const char *role; /* "system", "user", "assistant" (others: FT_EINVALID) */
  const char *content;
  size_t content_len;
  int weight; /* assistant only: 1 trained, 0 not */
} ft_chat_msg;

/* The family of a model: from <model_dir>/tokenizer_config.json's
 * chat_template (a string, or a list of {name, template} where "default" is
 * used); without one, ChatML if the vocabulary has <|im_start|>, Llama 3 if
 * it has <|start_header_id|>, else PLAIN. Never fails for a missing file:
 * only for unreadable JSON (FT_EFORMAT, naming the file). */
int chat_detect(const char *model_dir, const tok *t, ft_chat_family *out, ft_error *err);
const char *chat_family_name(ft_chat_family f); /* "chatml", "llama3", "llama2", "plain" */

/* Called for each piece of the rendered text, in order. special: the piece
 * is template markup whose special tokens must be recognised (tokenize with
 * parse_special); 0 for message content (user text is never parsed for
 * special tokens). trained: the piece's tokens carry loss. eos: the piece is
 * the tokenizer's EOS token itself (PLAIN's end; s and n are then empty).
 * Return nonzero to stop rendering with that value. */
typedef int (*chat_emit_fn)(void *ud, const char *s, size_t n, int special, int trained, int eos);

/* Renders msgs[0..n) in family f. add_generation_prompt: end with the header
 * of an assistant turn (serving), and emit no EOS. Returns 0, the first
 * nonzero value of emit, or FT_EINVALID for a role the family cannot render
 * (LLAMA2: system only first, then user/assistant alternating). */
int chat_render(ft_chat_family f, const ft_chat_msg *msgs, size_t n, int add_generation_prompt,
                chat_emit_fn emit, void *ud);
#endif
