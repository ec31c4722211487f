/* Inference over a model directory (a base model, a fine-tuned model, or an
 * exported checkpoint; LoRA results are served from their merged weights):
 * incremental decoding with a KV cache, so each new token costs one position
 * rather than the whole prefix, sampling (greedy, temperature, top-p, seeded),
 * stop strings, per-token log-probabilities (the prompt's own too, for
 * scoring), and classification probabilities.
 *
 * An ft_infer is one loaded model with its tokenizer, chat family and one
 * sequence's KV cache: not thread-safe, one request at a time (the server
 * keeps a pool of them). Weights are read-only after infer_load.
 *
 * Changes since the first commit: additions only (infer_eval, infer_is_eos);
 * every declaration the serving code uses is unchanged. */
#ifndef FT_INFER_H
#define FT_INFER_H
#include <stddef.h>
#include <stdint.h>

#include "tok/chat.h"
#include "ft_err.h"
#include "nn/model.h"
#include "tok/tok.h"

typedef struct ft_infer ft_infer;

/* Loads model_dir (config.json, model.safetensors, tokenizer files).
 * max_ctx: KV-cache length in tokens (0: the model's max_position; capped
 * at it). Caller frees with infer_free. */
int infer_load(ft_infer **out, const char *model_dir, int max_ctx, ft_error *err);
void infer_free(ft_infer *m);

const ft_config *infer_config(const ft_infer *m);
ft_task infer_task(const ft_infer *m); /* CLASSIFY when config.json has a score head/num_labels */
const tok *infer_tok(const ft_infer *m);
ft_chat_family infer_chat(const ft_infer *m);
int infer_max_ctx(const ft_infer *m);
size_t infer_bytes(const ft_infer *m); /* memory held (weights + cache + scratch) */

#define FT_MAX_TOP_LOGPROBS 5
#define FT_MAX_STOP 4

typedef struct {
  int max_tokens;    /* new tokens, >= 0; prompt + max_tokens <= max_ctx */
  float temperature; /* 0: greedy (argmax), else softmax(logits / temperature) */
  float top_p;       /* (0, 1]: nucleus sampling */
  uint64_t seed;     /* the sampler's RNG seed: same seed, same tokens */
  const char *stop[FT_MAX_STOP]; /* stop strings (NULL-terminated list or n_stop) */
  int n_stop;
  int logprobs;  /* 0..FT_MAX_TOP_LOGPROBS alternatives per token; < 0: none at all */
  int echo;      /* also report the prompt's tokens with their log-probabilities */
  int stop_eos;  /* 1: end at the tokenizer's EOS (and chat end markers) */
} ft_gen_opts;

/* One token as reported: its text is the UTF-8 that became final with it
 * (possibly empty while a multi-byte character or a possible stop string is
 * held back; text never includes a stop string). logprob is log p(token |
 * prefix) (NaN for the first prompt token). */
/* Exact semantics (infer.c):
 * - text points into the engine's buffer, valid during the callback only;
 *   the concatenated texts of the new tokens are the completion: the decode
 *   of the new ids (special tokens skipped; decoded after the last few
 *   prompt tokens so a SentencePiece leading space is kept), cut before the
 *   earliest stop string. Held back: a trailing U+FFFD run (an unfinished
 *   character) and the longest tail that is a proper prefix of a stop
 *   string; both are released by the token that ends the completion
 *   (max_tokens or EOS), never past a stop string. Echoed prompt tokens carry
 *   the prompt's text the same way (special tokens kept, no stop strings).
 * - logprob, top_logprob: log-softmax of the model's raw logits (the
 *   model's distribution, independent of temperature/top_p), equal to the
 *   training-time per-token log-probabilities; always filled; top_id holds
 *   min(logprobs, 5) alternatives, most likely first (ties: lower id).
 * - Under stop_eos the ending token (EOS or chat end marker) is reported,
 *   with empty text plus whatever held-back text became final, and counts in
 *   completion_tokens; finish_reason "stop". Without stop_eos it is an
 *   ordinary token whose text is skipped (special).
 * - A stop string ends generation at the token whose decode completes it
 *   (that token is reported, with the text before the stop string);
 *   finish_reason "stop". At most FT_MAX_STOP, non-empty (else FT_EINVALID
 *   "stop").
 * - temperature 0: argmax (ties: lower id), the seed unused. Else one
 *   rng_uniform draw per token from the seed: same seed, options and prompt,
 *   same tokens. top_p < 1 keeps the most probable tokens whose mass first
 *   reaches top_p.
 * - max_tokens 0 without echo runs nothing ("length", no tokens); with echo
 *   it scores the prompt. */
typedef struct {
  int32_t id;
  const char *text;
  size_t text_len;
  float logprob;
  int n_top;
  int32_t top_id[FT_MAX_TOP_LOGPROBS];
  float top_logprob[FT_MAX_TOP_LOGPROBS];
  int is_prompt; /* echo: a prompt token */
} ft_gen_token;

/* Called for every reported token in order; nonzero stops generation
 * (finish_reason "cancelled") and is returned. */
typedef int (*infer_token_fn)(void *ud, const ft_gen_token *t);

typedef struct {
  long prompt_tokens, completion_tokens;
  const char *finish_reason; /* "stop" (EOS or a stop string), "length", "cancelled" */
} ft_gen_result;

/* Generates from prompt[0..n). FT_ERANGE (err names "max_tokens" or
 * "prompt") when n + max_tokens exceeds the context, FT_EINVALID for a
 * classification model or bad options (err names the field). */
int infer_generate(ft_infer *m, const int32_t *prompt, size_t n, const ft_gen_opts *o,
                   infer_token_fn cb, void *ud, ft_gen_result *res, ft_error *err);

/* Classification: probs[0..num_labels) = softmax of the score head on the
 * last token of ids[0..n). FT_EINVALID for a causal LM. */
int infer_classify(ft_infer *m, const int32_t *ids, size_t n, float *probs, ft_error *err);

/* True for the ids that end a completion under stop_eos: the tokenizer's and
 * config's EOS, and <|im_end|> (ChatML) or <|eot_id|> (Llama 3). */
int infer_is_eos(const ft_infer *m, int32_t id);

/* Low level (tests, benchmarks): runs ids[0..n) at positions start..start+n
 * on the cache (which must hold the positions before start from earlier
 * calls) and, if logits is not NULL, writes every row's logits there
 * (n x vocab_size; num_labels for a classifier). FT_ERANGE ("prompt") past
 * the context or for an id outside the vocabulary. */
int infer_eval(ft_infer *m, const int32_t *ids, size_t n, size_t start, float *logits,
               ft_error *err);
#endif
