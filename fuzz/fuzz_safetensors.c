/* libFuzzer target: the safetensors reader (engine/formats/safetensors.c) over a
 * buffer, as the daemon and worker read a model or checkpoint from a user:
 * open (which validates everything), then look up and convert every tensor. */
#include <stdint.h>
#include <stdlib.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  st_file *f = NULL;
  ft_error err = {0};
  if (st_open_buffer(&f, data, size, &err)) {
    if (!err.message[0]) abort();
    return 0;
  }
  st_metadata(f, "format");
  for (size_t i = 0; i < st_count(f); i++) {
    const st_tensor *t = st_at(f, i);
    if (!t || st_find(f, t->name) != t || st_index(f, t) != i) abort();
    if (t->numel > (1u << 20)) continue;
    float *dst = malloc((t->numel ? t->numel : 1) * sizeof *dst);
    if (!dst) continue;
    if (st_read_f32(f, t, dst, t->numel, &err)) abort(); /* validated spans read */
    free(dst);
  }
  st_close(f);
  return 0;
}
