/* libFuzzer target: the tokenizer.json loader (engine/tok/tok.c tok_load_json,
 * which takes a path: the input is written to a temporary file). A tokenizer
 * that loads then encodes and decodes a fixed text with special tokens on,
 * so the tables the loader built are exercised too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write("tokenizer.json", data, size);
  tok *t = NULL;
  ft_error err = {0};
  if (tok_load_json(&t, path, &err)) {
    if (!err.message[0]) abort();
    return 0;
  }
  static const char text[] = "Hello world, ab ab <s>zz\xC3\xA9 \xE2\x96\x81x  \t\n12345 <|endoftext|>";
  int32_t *ids = NULL;
  size_t n = 0;
  if (tok_encode(t, text, sizeof text - 1, 1, &ids, &n) == 0) {
    char *back = NULL;
    tok_decode(t, ids, n, 0, &back);
    free(back);
    back = NULL;
    tok_decode(t, ids, n, 1, &back);
    free(back);
    free(ids);
  }
  int v = tok_vocab_size(t);
  for (int id = -1; id <= v && id < 300; id++) tok_token_str(t, id);
  tok_bos_id(t);
  tok_eos_id(t);
  tok_pad_id(t);
  tok_free(t);
  return 0;
}
