/* Training a byte-level BPE tokenizer (GPT-2 style) on text, written as a
 * Hugging Face tokenizer directory: tokenizer.json (model BPE with vocab and
 * merges, ByteLevel pre-tokenizer and decoder, the special tokens
 * <|endoftext|>, <|im_start|>, <|im_end|> as added tokens) and
 * tokenizer_config.json (bos/eos/pad <|endoftext|>, a ChatML chat_template).
 * The text is cut at the special tokens, split by GPT-2's pre-tokenizer
 * regex, mapped bytes -> unicode as GPT-2 does; merges are then learned by
 * pair frequency over the distinct words (weighted by their counts), with
 * incremental pair counts. Ties go to the pair of smaller ids (left, then
 * right); the 256 byte tokens have ids 0..255 in the order of their mapped
 * code points (GPT-2's order), merges get 256.. in the order learned and the
 * special tokens come last. The same input gives the same tokenizer. */
#ifndef FT_BPE_TRAIN_H
#define FT_BPE_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"

typedef struct {
  int vocab_size;    /* total, with the 256 bytes and the 3 special tokens; 259..1<<20 */
  int min_frequency; /* a pair is merged only if it occurs at least this often; >= 1 (0: 2) */
} bpe_train_opts;

typedef struct bpe_trainer bpe_trainer;

int bpe_trainer_new(bpe_trainer **out, ft_error *err);
void bpe_trainer_free(bpe_trainer *t);
/* Counts the pre-tokenized words of UTF-8 text (FT_EUTF8 when invalid). */
int bpe_trainer_add_text(bpe_trainer *t, const char *text, size_t len, ft_error *err);
/* A file of training text: JSONL (first non-blank byte '{') whose lines hold
 * "text", "prompt"/"completion" or "messages"[].content strings (each one a
 * document), or else plain UTF-8 text. Errors name the file and line. */
int bpe_trainer_add_file(bpe_trainer *t, const char *path, ft_error *err);
/* Learns the merges. Called once, after the text is added. */
int bpe_trainer_train(bpe_trainer *t, const bpe_train_opts *o, ft_error *err);
size_t bpe_trainer_num_words(const bpe_trainer *t); /* distinct pre-tokenized words */
size_t bpe_trainer_num_merges(const bpe_trainer *t);
/* Merge i (0-based, in rank order) as its two token strings (byte-level
 * unicode form, e.g. "Ġ" for a space); NULL when out of range. */
const char *bpe_trainer_merge(const bpe_trainer *t, size_t i, const char **right);
/* Writes tokenizer.json and tokenizer_config.json into out_dir (created if
 * missing; existing files of those names are replaced). */
int bpe_trainer_write(const bpe_trainer *t, const char *out_dir, ft_error *err);

/* The whole run: add files, train, write. */
int bpe_train_files(const char *const *files, size_t n, const bpe_train_opts *o,
                    const char *out_dir, ft_error *err);
#endif
