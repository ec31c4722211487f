/* libFuzzer target: the upload validator (engine/data/dsval.c). The first byte
 * chooses CSV or JSONL, a small line cap or the default, and the chunk size
 * the file is fed in (lines spanning chunks are the tricky part); the rest is
 * the file. The report must always be produced and summarised. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/dsval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int csv = data[0] & 1;
  size_t max_line = (data[0] & 2) ? 64 : 0;
  size_t chunk = 1 + (data[0] >> 2) * 3; /* 1..190 */
  data++, size--;
  dsval *v = NULL;
  if (dsval_new(&v, csv, max_line)) return 0;
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (dsval_feed(v, data + off, n)) abort();
  }
  json_t *report = NULL;
  if (dsval_finish(v, &report) || !report) abort();
  char buf[256];
  long nerr = dsval_summary(report, buf, sizeof buf);
  if (nerr < 0) abort();
  json_decref(report);
  dsval_free(v);
  return 0;
}
