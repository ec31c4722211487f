/* The framed protocol between the daemon and its workers (wire.h): a 4-byte
 * big-endian length and one compact JSON object with a string "type".
 * Workload: a handful of small messages per training step per worker (metrics,
 * heartbeats), so the decoder favours simplicity: one growing buffer that whole
 * frames are taken off the front of. A peer is never trusted: every announced
 * length is checked against WIRE_MAX_FRAME before anything is buffered for it,
 * and a frame that is not a JSON object with a "type" string is an error.
 * A type is found by a linear scan of the table's 16 names, cheap next to
 * the JSON parse of the frame it came in. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

static const struct {
  const char *name;
  int from;
} types[] = {{"?", 0},
#define WIRE_TYPE_ROW_(name, str, from, fields) {str, from},
             WIRE_TYPES(WIRE_TYPE_ROW_)
#undef WIRE_TYPE_ROW_
};
#define NTYPES (sizeof types / sizeof types[0])
_Static_assert(NTYPES == WIRE_TYPE_COUNT, "one row per wire_type");

wire_type wire_type_of(const json_t *msg, int from) {
  const char *s = json_string_value(json_object_get(msg, "type"));
  for (size_t i = 1; s && i < NTYPES; i++)
    if (!strcmp(s, types[i].name)) return types[i].from == from ? (wire_type)i : WIRE_UNKNOWN;
  return WIRE_UNKNOWN;
}

const char *wire_type_name(wire_type t) {
  return (size_t)t < NTYPES ? types[t].name : types[0].name;
}

static uint32_t get_be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | (uint32_t)u[3];
}

int wire_encode(const json_t *msg, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "type"))) return FT_EPROTO;
  size_t n = json_dumpb(msg, NULL, 0, JSON_COMPACT);
  if (n == 0) return FT_EPROTO; /* not encodable (e.g. invalid UTF-8 in a string) */
  if (n > WIRE_MAX_FRAME) return FT_ETOO_LARGE;
  char *b = malloc(4 + n);
  if (!b) return FT_ENOMEM;
  if (json_dumpb(msg, b + 4, n, JSON_COMPACT) != n) {
    free(b);
    return FT_EINTERNAL;
  }
  b[0] = (char)(n >> 24 & 0xff);
  b[1] = (char)(n >> 16 & 0xff);
  b[2] = (char)(n >> 8 & 0xff);
  b[3] = (char)(n & 0xff);
  *buf = b;
  *len = 4 + n;
  return 0;
}

typedef struct {
  uv_write_t req;
  char *buf;
} wire_wreq;

static void on_written(uv_write_t *r, int status) {
  wire_wreq *w = (wire_wreq *)r;
  free(w->buf);
  free(w);
}

int wire_write(uv_stream_t *s, json_t *msg) {
  char *buf;
  size_t len;
  int rc = wire_encode(msg, &buf, &len);
  json_decref(msg);
  if (rc) return rc;
  wire_wreq *w = malloc(sizeof *w);
  if (!w) {
    free(buf);
    return FT_EIO;
  }
  w->buf = buf;
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  if (uv_write(&w->req, s, &b, 1, on_written)) {
    free(buf);
    free(w);
    return FT_EIO;
  }
  return 0;
}

void wire_decoder_init(wire_decoder *d) { memset(d, 0, sizeof *d); }

void wire_decoder_free(wire_decoder *d) {
  free(d->buf);
  memset(d, 0, sizeof *d);
}

void wire_decoder_set_limit(wire_decoder *d, uint32_t limit) {
  d->limit = limit > WIRE_MAX_FRAME ? 0 : limit;
}

uint32_t wire_decoder_limit(const wire_decoder *d) { return d->limit ? d->limit : WIRE_MAX_FRAME; }

/* Checks every frame header that is completely buffered. */
static int check_headers(const wire_decoder *d) {
  size_t off = 0;
  while (d->len - off >= 4) {
    uint32_t n = get_be32(d->buf + off);
    if (n > wire_decoder_limit(d)) return FT_EPROTO;
    if (d->len - off - 4 < n) break;
    off += 4 + (size_t)n;
  }
  return 0;
}

int wire_feed(wire_decoder *d, const char *data, size_t n) {
  if (n == 0) return check_headers(d);
  if (d->len + n > d->cap) {
    /* doubling, but never past what arrived plus what one whole frame of
     * the limit could still need, so a peer cannot make us reserve memory
     * for bytes it has not sent */
    size_t want = d->len + n, cap = d->cap ? d->cap * 2 : 4096;
    size_t most = want + (size_t)wire_decoder_limit(d) + 4;
    if (cap > most) cap = most;
    if (cap < want) cap = want;
    char *b = realloc(d->buf, cap);
    if (!b) return FT_ENOMEM;
    d->buf = b;
    d->cap = cap;
  }
  memcpy(d->buf + d->len, data, n);
  d->len += n;
  return check_headers(d);
}

int wire_next(wire_decoder *d, json_t **msg, ft_error *err) {
  *msg = NULL;
  if (d->len < 4) return 0;
  uint32_t n = get_be32(d->buf);
  if (n > wire_decoder_limit(d))
    return ft_error_set(err, FT_EPROTO, NULL, "frame of %lu bytes exceeds the %u byte limit",
                        (unsigned long)n, wire_decoder_limit(d));
  if (d->len - 4 < n) return 0;
  json_error_t jerr;
  json_t *j = json_loadb(d->buf + 4, n, JSON_REJECT_DUPLICATES, &jerr);
  /* The frame is consumed whatever it held, so the buffer stays aligned. */
  memmove(d->buf, d->buf + 4 + n, d->len - 4 - n);
  d->len -= 4 + (size_t)n;
  if (d->len == 0 && d->cap > (64u << 10)) { /* give a large frame's buffer back */
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
  }
  if (!j) return ft_error_set(err, FT_EPROTO, NULL, "frame is not valid JSON: %s", jerr.text);
  if (!json_is_object(j)) {
    json_decref(j);
    return ft_error_set(err, FT_EPROTO, NULL, "frame is not a JSON object");
  }
  if (!json_is_string(json_object_get(j, "type"))) {
    json_decref(j);
    return ft_error_set(err, FT_EPROTO, "type", "message has no string \"type\"");
  }
  *msg = j;
  return 0;
}
