/* Inference over a model directory (a base model, a fine-tuned model, or an
 * exported checkpoint; LoRA results are served from their merged weights):
 * incremental decoding with a KV cache, so each new token costs one position
 * rather than the whole prefix, sampling (greedy, temperature, top-p, seeded),
 * stop strings, per-token log-probabilities (the prompt's own too, for
 * scoring), and classification probabilities.
 *
 * An ft_infer is one loaded model with its tokenizer, chat family and one
 * sequence's KV cache: not thread-safe, one request at a time (the server
 * keeps a pool of them). Weights are read-only after infer_load. */
#ifndef FT_INFER_H
#define FT_INFER_H
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "ft_err.h"
#include "model.h"
#include "tok.h"

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
#endif
