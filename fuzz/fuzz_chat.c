/* libFuzzer target: the chat template detector (engine/tok/chat.c chat_detect,
 * which reads <model_dir>/tokenizer_config.json or chat_template.jinja: the
 * input is written to one of them, the first byte says which), then the
 * renderer of the family found over messages cut from the same bytes (roles
 * from a byte, contents from the text), as training renders a chat record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat.h"
#include "fuzz_util.h"

static int emit(void *ud, const char *s, size_t n, int special, int trained, int eos) {
  size_t *total = ud;
  if (n && !s) abort();
  *total += n;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int jinja = data[0] & 1;
  data++, size--;
  fuzz_remove("tokenizer_config.json");
  fuzz_remove("chat_template.jinja");
  fuzz_write(jinja ? "chat_template.jinja" : "tokenizer_config.json", data, size);
  ft_chat_family fam = FT_CHAT_PLAIN;
  ft_error err = {0};
  if (chat_detect(fuzz_tmpdir(), NULL, &fam, &err)) {
    if (!err.message[0]) abort();
    return 0;
  }
  if (!chat_family_name(fam)) abort();
  /* up to 8 messages: a role byte, then content up to the next 0xff byte */
  static const char *const roles[] = {"system", "user", "assistant", "tool"};
  ft_chat_msg msgs[8];
  size_t nm = 0, i = 0;
  while (i < size && nm < 8) {
    uint8_t r = data[i++];
    size_t start = i;
    while (i < size && data[i] != 0xff) i++;
    msgs[nm].role = roles[r & 3];
    msgs[nm].content = (const char *)data + start;
    msgs[nm].content_len = i - start;
    msgs[nm].weight = (r >> 2) & 1;
    nm++;
    i++;
  }
  for (int gen = 0; gen < 2; gen++) {
    size_t total = 0;
    chat_render(fam, msgs, nm, gen, emit, &total);
  }
  return 0;
}
