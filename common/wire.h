/* The framed protocol between the daemon and its workers: each message is a
 * 4-byte big-endian length followed by that many bytes of one JSON object
 * with a "type" field. Frames over WIRE_MAX_FRAME are a protocol error.
 * Messages (every worker message about a job carries "job_id" and "attempt"):
 *   worker -> daemon: hello {worker_id, token?, pid}, claim {},
 *     heartbeat, metrics {metrics:{…ft_step_metrics…}}, event {level,message,data?},
 *     checkpoint {step, path, metrics}, done {result}, failed {error:{code,message,param}},
 *     paused {step}, cancelled {}
 *   daemon -> worker: welcome {heartbeat_ms}, job {job:{…}}, cancel, pause,
 *     lease_lost, error {error:{…}}
 * The decoder is incremental: feed it whatever arrived, take whole messages. */
#ifndef FT_WIRE_H
#define FT_WIRE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ft_err.h"

#define WIRE_MAX_FRAME (16u << 20)

/* Encodes msg into a malloc'd frame (*buf, *len); caller frees *buf. */
int wire_encode(const json_t *msg, char **buf, size_t *len);

/* Encodes msg (reference stolen) and queues the frame on a libuv stream; the
 * frame is freed when the write completes. Returns 0, the wire_encode error
 * when msg cannot be encoded (the stream is still usable), or FT_EIO when the
 * frame could not be queued (the caller should close the stream). */
int wire_write(uv_stream_t *s, json_t *msg);

typedef struct {
  char *buf;
  size_t len, cap;
  uint32_t limit; /* largest frame accepted; 0: WIRE_MAX_FRAME */
} wire_decoder;

void wire_decoder_init(wire_decoder *d);
void wire_decoder_free(wire_decoder *d);
/* Lowers (or restores, with 0) the largest frame accepted, e.g. for a peer
 * that has not authenticated yet. Values over WIRE_MAX_FRAME mean that. */
void wire_decoder_set_limit(wire_decoder *d, uint32_t limit);
/* The largest frame d accepts now. */
uint32_t wire_decoder_limit(const wire_decoder *d);
/* Appends bytes; the buffer grows only with what arrived. FT_EPROTO if a
 * frame header announces more than the limit. */
int wire_feed(wire_decoder *d, const char *data, size_t n);
/* Takes the next whole message: 0 with *msg set (new reference), 0 with *msg
 * NULL when no whole frame is buffered, FT_EPROTO for a frame that is not a
 * JSON object with a string "type" (the connection should be closed). */
int wire_next(wire_decoder *d, json_t **msg, ft_error *err);
#endif
