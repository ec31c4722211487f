/* The framed protocol between the daemon and its workers: each message is a
 * 4-byte big-endian length followed by that many bytes of one JSON object
 * with a "type" field, one of the table WIRE_TYPES below. Frames over
 * WIRE_MAX_FRAME are a protocol error, and so is a type the receiver does not
 * know or does not take from that sender: both ends dispatch with a switch
 * over wire_type_of, never on strings.
 * The decoder is incremental: feed it whatever arrived, take whole messages. */
#ifndef FT_WIRE_H
#define FT_WIRE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ft_err.h"

#define WIRE_MAX_FRAME (16u << 20)

/* Who sends a message type. */
#define WIRE_FROM_WORKER 1
#define WIRE_FROM_DAEMON 2

/* X(NAME, "type", sender, fields). Every message about a job carries
 * "job_id" and "attempt" besides the fields listed. */
#define WIRE_TYPES(X)                                                                \
  X(HELLO, "hello", WIRE_FROM_WORKER, "worker_id, token?, pid")                      \
  X(CLAIM, "claim", WIRE_FROM_WORKER, "(none): give me a job")                       \
  X(HEARTBEAT, "heartbeat", WIRE_FROM_WORKER, "(job)")                               \
  X(METRICS, "metrics", WIRE_FROM_WORKER, "(job) metrics:{ft_step_metrics}")         \
  X(EVENT, "event", WIRE_FROM_WORKER, "(job) level, message, data?")                 \
  X(CHECKPOINT, "checkpoint", WIRE_FROM_WORKER, "(job) step, path, metrics, kept?")  \
  X(DONE, "done", WIRE_FROM_WORKER, "(job) result")                                  \
  X(FAILED, "failed", WIRE_FROM_WORKER, "(job) error:{code, message, param}")        \
  X(PAUSED, "paused", WIRE_FROM_WORKER, "(job) step: a pause ended at a checkpoint") \
  X(CANCELLED, "cancelled", WIRE_FROM_WORKER, "(job): acknowledges a cancel")        \
  X(WELCOME, "welcome", WIRE_FROM_DAEMON, "heartbeat_ms, lease_ms, worker_id")       \
  X(JOB, "job", WIRE_FROM_DAEMON, "job:{...}: the claimed job with its paths")       \
  X(CANCEL, "cancel", WIRE_FROM_DAEMON, "(job)")                                     \
  X(PAUSE, "pause", WIRE_FROM_DAEMON, "(job)")                                       \
  X(LEASE_LOST, "lease_lost", WIRE_FROM_DAEMON, "(job): stop, the attempt is stale") \
  X(ERROR, "error", WIRE_FROM_DAEMON, "error:{code, message, param}: the daemon refused")

typedef enum {
  WIRE_UNKNOWN = 0, /* not in the table, or not from that sender */
#define WIRE_TYPE_ENUM_(name, str, from, fields) WIRE_##name,
  WIRE_TYPES(WIRE_TYPE_ENUM_)
#undef WIRE_TYPE_ENUM_
  WIRE_TYPE_COUNT /* (not a type: the table's length plus one) */
} wire_type;

/* The type of a decoded message sent by from (WIRE_FROM_WORKER when the
 * daemon reads, WIRE_FROM_DAEMON when a worker reads). */
wire_type wire_type_of(const json_t *msg, int from);
/* The "type" string of t ("?" for WIRE_UNKNOWN). */
const char *wire_type_name(wire_type t);

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
