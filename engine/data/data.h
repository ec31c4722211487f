/* Training, validation and test data: reads a dataset file, checks every
 * record exactly as the upload validator does (record.h, the same codes),
 * cleans, deduplicates and tokenizes it, and splits a file by content hash.
 *
 * Formats (one per file, detected from the first record):
 *   JSONL, one object per line: {"text"}; {"prompt","completion"};
 *   {"messages":[{"role","content","name"?,"weight"?}, ...]} (roles system,
 *   user, assistant); {"text","label"} (classification; a label is a string
 *   or an integer).
 *   CSV with a header row (RFC 4180 quoting, quoted newlines, CRLF), columns
 *   text and label, or prompt and completion, or text alone (names matched
 *   case-insensitively); other columns ignored.
 * A file whose first non-blank byte is '{' is JSONL, anything else CSV.
 * Errors name the (1-based, physical) line and the validator's code:
 * "line 7: missing_content: messages[1].content must be a non-empty string".
 * Invalid UTF-8 is an error (invalid_utf8), never replaced.
 *
 * Cleaning (on unless opts.no_clean), per record, after it passed the check:
 *   - in every string field CRLF and lone CR become LF;
 *   - text, message contents and string labels: leading and trailing
 *     whitespace (space, \t, \n, \r, \f, \v) removed;
 *   - prompt: leading whitespace removed, trailing kept (it separates the
 *     prompt from the completion);
 *   - completion: trailing whitespace removed; leading whitespace removed,
 *     except that one space is kept when it began with a space;
 *   - an example empty afterwards is dropped and counted (n_empty): text (or
 *     classification text or label) empty, completion empty, or no assistant
 *     message with weight 1 left with content;
 *   - an example whose cleaned content equals an earlier kept example's is
 *     dropped and counted (n_duplicates); content is compared byte for byte
 *     (format, every field; chat: role, content, weight of each message;
 *     classification: text and label), not only by hash.
 * An example's hash (the split key) is rec_hash of that content key, so
 * equal content always has an equal hash. With no_clean nothing is changed
 * or dropped and the hash is of the content as given.
 *
 * Causal LM examples become tokens and targets (targets[i] = tokens[i+1]
 * where that token is trained, else -1): BOS first if the tokenizer has one
 * and opts.add_bos (not for chat in the LLAMA3/LLAMA2 templates, which
 * write their own), EOS after text and completions; prompts are not trained
 * (unless train_on_inputs); chat is rendered by chat_render(opts.chat) and
 * exactly its trained pieces carry loss (markup tokenized with special tokens
 * recognised, content without; an eos piece is the tokenizer's EOS). A
 * sequence longer than max_seq_len is cut (n_truncated) or, with drop_long,
 * dropped (n_too_long); an LM example left with nothing to train is dropped
 * (n_dropped). All examples share one token array and one target array.
 * Classification labels: the strcmp-sorted set of distinct training label
 * strings gives the class ids; validation/test labels must be in that set. */
#ifndef FT_DATA_H
#define FT_DATA_H
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tok/chat.h"
#include "ft_err.h"
#include "nn/model.h"
#include "tok/tok.h"

typedef enum {
  FT_DATA_TEXT = 1,
  FT_DATA_PROMPT = 2, /* prompt/completion */
  FT_DATA_CHAT = 3,
  FT_DATA_CLASSIFY = 4, /* text/label */
} ft_data_format;

typedef struct ft_dataset ft_dataset;

typedef struct {
  ft_task task;             /* CAUSAL_LM accepts text/prompt/chat; CLASSIFY text/label */
  int add_bos;              /* the tokenizer's BOS first (the family's add_bos, nn/arch.h) */
  int max_seq_len;          /* > 0 */
  int train_on_inputs;      /* prompt/completion: train the prompt too */
  int err_code;             /* FT_ETRAIN_FILE (when 0) or FT_EVALID_FILE */
  const ft_dataset *labels; /* validation: the training set whose labels apply; else NULL */
  ft_chat_family chat;      /* how chat examples are rendered (chat.h) */
  int drop_long;            /* 1: drop examples longer than max_seq_len (counted), 0: cut them */
  int no_clean;             /* 1: keep duplicates, empty examples and whitespace as given */
  const char *param;        /* the error's param; NULL: from err_code ("training_file" or
                               "validation_file"); data_prepare says "test_file" for a test file */
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
  long *line;              /* (n) 1-based source line of each example */
  uint64_t *hash;          /* (n) hash of each example's cleaned content (split key) */
  long n_duplicates;       /* cleaning: exact duplicates dropped */
  long n_empty;            /* cleaning: examples empty after whitespace normalisation */
  long n_too_long;         /* examples dropped for max_seq_len (drop_long) */
  long min_len;            /* tokens of the shortest kept example; mean is off[n]/n */
  uint8_t *cut;            /* (n) 1 if the example was cut at max_seq_len */
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

/* Everything a job trains and evaluates on, prepared the one way both the
 * daemon (at job creation, status validating_files) and the worker use:
 * training file cleaned and tokenized; a validation set from valid_path or,
 * without one, the valid_split share of the training file; a test set from
 * test_path or the test_split share. Splits are by each example's content
 * hash with the seed, so the same file and seed give the same split and
 * duplicates never straddle two sets. Fewer than min_examples training
 * examples, a format the task cannot use, or a validation/test label the
 * training set lacks is an error naming the file's field and the line. */
typedef struct {
  const char *train_path;
  const char *valid_path; /* or NULL: split off valid_split of the training file */
  const char *test_path;  /* or NULL: split off test_split of the training file */
  float valid_split;      /* [0, 0.5] */
  float test_split;       /* [0, 0.5] */
  uint64_t seed;
  int min_examples;       /* 10 for jobs */
  ft_data_opts opts;      /* shared options; err_code and labels are set per set */
} ft_data_job;

typedef struct {
  ft_dataset *train, *valid, *test; /* valid, test: NULL when there is none */
  int valid_from_split, test_from_split;
} ft_data_sets;

int data_prepare(ft_data_sets *out, const ft_data_job *j, const tok *t, ft_error *err);
void data_sets_free(ft_data_sets *s);
/* Where an example goes: u in [0,1) from its hash and the seed (a splitmix64
 * of hash ^ f(seed)); u < test_split: test, u < test_split + valid_split:
 * validation, else training. */
double data_split_u(uint64_t hash, uint64_t seed);
/* The numbers a job reports for one set (NULL d: JSON null):
 * {"examples", "lines", "format", "source": "file"|"split",
 *  "tokens": {"total","min","mean","max"}, "truncated", "dropped_too_long",
 *  "dropped_no_target", "duplicates", "empty", "label_counts"?}. */
json_t *data_stats_json(const ft_dataset *d, int from_split);
static inline int data_len(const ft_dataset *d, size_t i) {
  return (int)(d->off[i + 1] - d->off[i]);
}

#endif
