/* libFuzzer target: the worker protocol decoder (common/wire.c) as the
 * daemon runs it on a connection: the first byte picks the frame limit (the
 * pre-hello 64 KiB or the full one) and the size of the reads the bytes
 * arrive in; every message taken must be a JSON object with a string "type"
 * that encodes back to a frame the decoder gives back unchanged. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void roundtrip(const json_t *msg) {
  char *buf;
  size_t len;
  int rc = wire_encode(msg, &buf, &len);
  if (rc) return; /* e.g. a string with \u0000 jansson will not encode */
  wire_decoder d;
  wire_decoder_init(&d);
  json_t *back = NULL;
  ft_error err = {0};
  if (wire_feed(&d, buf, len) || wire_next(&d, &back, &err) || !back) abort();
  if (!json_equal(msg, back)) abort();
  json_decref(back);
  wire_decoder_free(&d);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint32_t limit = (data[0] & 1) ? (64u << 10) : 0;
  size_t chunk = 1 + (data[0] >> 1);
  data++, size--;
  wire_decoder d;
  wire_decoder_init(&d);
  wire_decoder_set_limit(&d, limit);
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (wire_feed(&d, (const char *)data + off, n)) break; /* the daemon closes */
    for (;;) {
      json_t *msg = NULL;
      ft_error err = {0};
      int rc = wire_next(&d, &msg, &err);
      if (rc) {
        if (!err.message[0]) abort();
        goto out; /* the daemon closes the connection */
      }
      if (!msg) break;
      if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "type"))) abort();
      roundtrip(msg);
      json_decref(msg);
    }
  }
out:
  wire_decoder_free(&d);
  return 0;
}
