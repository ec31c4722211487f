/* Training and validation data: reads a dataset file, tokenizes every example
 * and serves padded batches in a seeded shuffled order.
 *
 * Formats (one per file, detected from the first record):
 *   JSONL, one object per line: {"text"}; {"prompt","completion"};
 *   {"messages":[{"role","content","weight"?}, ...]}; {"text","label"}
 *   (classification; a label is a string or an integer).
 *   CSV with a header row (RFC 4180 quoting), columns "text" and "label"
 *   (or "text" alone, or "prompt" and "completion"); other columns ignored.
 * A file whose first non-blank byte is '{' is JSONL, anything else CSV.
 * Errors name the (1-based, physical) line: "line 7: ...".
 *
 * Causal LM examples become tokens and targets (targets[i] = tokens[i+1]
 * where that token is trained, else -1): BOS first if the tokenizer has one
 * and the arch is llama, EOS after text and completions; prompts are not
 * trained (unless train_on_inputs); chat is rendered as ChatML
 * "<|im_start|>role\ncontent<|im_end|>\n" when the tokenizer has
 * <|im_start|>, else as "role: content\n" followed by EOS, and only the
 * content of assistant messages with weight != 0 plus its end marker
 * (<|im_end|>, or "\n") is trained. Sequences are cut at max_seq_len; an LM
 * example left with nothing to train is dropped (counted).
 * All examples share one token array and one target array indexed by offsets.
 * Classification labels: the strcmp-sorted set of distinct training label
 * strings gives the class ids; validation labels must be in that set. */
#ifndef FT_DATA_H
#define FT_DATA_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"
#include "model.h"
#include "tok.h"

typedef enum {
  FT_DATA_TEXT = 1,
  FT_DATA_PROMPT = 2, /* prompt/completion */
  FT_DATA_CHAT = 3,
  FT_DATA_CLASSIFY = 4, /* text/label */
} ft_data_format;

typedef struct ft_dataset ft_dataset;

typedef struct {
  ft_task task;             /* CAUSAL_LM accepts text/prompt/chat; CLASSIFY text/label */
  ft_arch arch;             /* BOS is added for FT_ARCH_LLAMA only */
  int max_seq_len;          /* > 0 */
  int train_on_inputs;      /* prompt/completion: train the prompt too */
  int err_code;             /* FT_ETRAIN_FILE (when 0) or FT_EVALID_FILE */
  const ft_dataset *labels; /* validation: the training set whose labels apply; else NULL */
} ft_data_opts;

/* Read-only after data_load. */
struct ft_dataset {
  ft_data_format format;
  size_t n;                /* examples kept */
  size_t *off;             /* (n+1) example i is tokens[off[i] .. off[i+1]) */
  int32_t *tokens;         /* (off[n]) */
  int32_t *targets;        /* (off[n]) next token or -1; NULL for classification */
  int32_t *labels;         /* (n) class ids; NULL for causal LM */
  int max_len;             /* longest example */
  long n_lines;            /* records read */
  long n_truncated;        /* examples cut at max_seq_len */
  long n_dropped;          /* LM examples with no trained token after the cut */
  long n_target_tokens;    /* targets != -1 over all examples (LM) */
  int num_labels;          /* classification */
  char (*label_names)[64]; /* (num_labels) sorted; NULL for causal LM */
};

/* Loads and tokenizes path. On failure *out is NULL and err says which line
 * (code o->err_code, param "training_file" or "validation_file"); FT_EIO if
 * the file cannot be read, FT_ENOMEM. Caller frees with data_free. */
int data_load(ft_dataset **out, const char *path, const tok *t, const ft_data_opts *o,
              ft_error *err);
/* The same over a buffer (tests; the file path form reads the file into one). */
int data_load_buffer(ft_dataset **out, const char *buf, size_t len, const tok *t,
                     const ft_data_opts *o, ft_error *err);
void data_free(ft_dataset *d);
static inline int data_len(const ft_dataset *d, size_t i) {
  return (int)(d->off[i + 1] - d->off[i]);
}

#endif
