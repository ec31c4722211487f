/* Tokenizers from Hugging Face files: tokenizer.json (byte-level BPE as in
 * GPT-2, Llama 3, Qwen; SentencePiece-style BPE with byte fallback as in
 * Llama 2), or GPT-2's vocab.json + merges.txt. Token ids equal Hugging
 * Face's. Thread-safe after tok_load (encode/decode take const). */
#ifndef FT_TOK_H
#define FT_TOK_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"

typedef struct tok tok;

/* Loads from a model directory: tokenizer.json if present, else vocab.json +
 * merges.txt; reads tokenizer_config.json (bos/eos/pad, chat_template) when
 * there. Caller frees with tok_free. */
int tok_load(tok **out, const char *dir, ft_error *err);
/* Loads one tokenizer.json file. */
int tok_load_json(tok **out, const char *path, ft_error *err);
void tok_free(tok *t);

/* Encodes UTF-8 text (no BOS/EOS added; special tokens written in the text
 * are recognised when parse_special). *ids is malloc'd, caller frees. Invalid
 * UTF-8 is FT_EUTF8. */
int tok_encode(const tok *t, const char *text, size_t len, int parse_special, int32_t **ids,
               size_t *n);
/* Decodes ids to UTF-8; *text is malloc'd and NUL-terminated, caller frees.
 * skip_special drops special/added-control tokens. */
int tok_decode(const tok *t, const int32_t *ids, size_t n, int skip_special, char **text);
/* tok_decode that also gives the byte length, for text holding NUL bytes. An
 * id outside the vocabulary is FT_ERANGE. */
int tok_decode_len(const tok *t, const int32_t *ids, size_t n, int skip_special, char **text,
                   size_t *len);

int tok_vocab_size(const tok *t);             /* largest id + 1 */
int tok_token_id(const tok *t, const char *s); /* id of a token string (incl. specials), -1 if none */
const char *tok_token_str(const tok *t, int id);
int tok_bos_id(const tok *t); /* -1 when none */
int tok_eos_id(const tok *t);
int tok_pad_id(const tok *t);
const char *tok_chat_template(const tok *t); /* raw Jinja text from tokenizer_config.json, or NULL */
#endif
