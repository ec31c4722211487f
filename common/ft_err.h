/* The one error model of finetuned, end to end (STYLE.md 4).
 * Every error is a line of FT_ERR_MAP: its enum name, HTTP status, the
 * OpenAI-style error "type", the machine code string and a default message.
 * 0 is success and a negative FT_E* value is an error everywhere, the engine
 * included; the HTTP layer turns one into the JSON envelope through
 * http_reply_error(), the worker into a job's error {code,message,param}. */
#ifndef FT_ERR_H
#define FT_ERR_H
#include <stddef.h>

/* X(NAME, http_status, type, code, message) */
#define FT_ERR_MAP(X)                                                                         \
  X(INVALID, 400, "invalid_request_error", "invalid_request", "invalid request")              \
  X(JSON, 400, "invalid_request_error", "invalid_json", "request body is not valid JSON")      \
  X(UNKNOWN_FIELD, 400, "invalid_request_error", "unknown_parameter", "unknown field")        \
  X(TYPE, 400, "invalid_request_error", "invalid_type", "field has the wrong type")           \
  X(RANGE, 400, "invalid_request_error", "invalid_value", "field value out of range")         \
  X(MISSING, 400, "invalid_request_error", "missing_required_parameter", "required field missing") \
  X(UTF8, 400, "invalid_request_error", "invalid_utf8", "text is not valid UTF-8")            \
  X(BAD_FILE, 400, "invalid_request_error", "invalid_file", "invalid file")                   \
  X(BAD_STATE, 409, "invalid_request_error", "invalid_state", "operation not allowed in this state") \
  X(UNAUTHORIZED, 401, "authentication_error", "invalid_api_key", "missing or invalid API key") \
  X(FORBIDDEN, 403, "permission_error", "forbidden", "not allowed")                           \
  X(NOT_FOUND, 404, "invalid_request_error", "not_found", "no such object")                   \
  X(NO_ROUTE, 404, "invalid_request_error", "unknown_url", "unknown URL")                     \
  X(METHOD, 405, "invalid_request_error", "method_not_allowed", "method not allowed")         \
  X(TOO_LARGE, 413, "invalid_request_error", "request_too_large", "request body too large")   \
  X(MEDIA_TYPE, 415, "invalid_request_error", "unsupported_media_type", "unsupported Content-Type") \
  X(RATE, 429, "rate_limit_error", "rate_limit_exceeded", "too many requests")                \
  X(NOMEM, 500, "server_error", "out_of_memory", "out of memory")                             \
  X(IO, 500, "server_error", "io_error", "input/output error")                                \
  X(DB, 500, "server_error", "database_error", "database error")                              \
  X(INTERNAL, 500, "server_error", "internal_error", "internal error")                        \
  X(UNAVAILABLE, 503, "server_error", "unavailable", "service unavailable")                   \
  X(FORMAT, 422, "invalid_request_error", "invalid_format", "unsupported or corrupt file format") \
  X(UNSUPPORTED, 422, "invalid_request_error", "unsupported", "unsupported configuration")    \
  X(TRAIN_FILE, 400, "invalid_request_error", "invalid_training_file", "invalid training file") \
  X(VALID_FILE, 400, "invalid_request_error", "invalid_validation_file", "invalid validation file") \
  X(NONFINITE, 500, "server_error", "nonfinite_loss", "loss or gradient is not finite")       \
  X(CANCELLED, 409, "invalid_request_error", "cancelled", "cancelled")                        \
  X(PAUSED, 409, "invalid_request_error", "paused", "paused")                                 \
  X(WORKER_LOST, 500, "server_error", "worker_lost", "the worker running the job was lost")   \
  X(SHAPE, 500, "server_error", "shape_mismatch", "tensor shape mismatch")                    \
  X(PROTO, 400, "invalid_request_error", "protocol_error", "malformed worker message")       \
  X(QUEUE_FULL, 429, "rate_limit_error", "too_many_waiting_jobs", "too many jobs waiting to run")

typedef enum {
  FT_OK = 0,
#define FT_ERR_ENUM_(name, status, type, code, msg) FT_E##name,
  FT_ERR_FIRST_ = -1000,
  FT_ERR_MAP(FT_ERR_ENUM_)
#undef FT_ERR_ENUM_
  FT_ERR_LAST_
} ft_err;

int ft_err_status(int err);          /* HTTP status; 500 for unknown codes */
const char *ft_err_type(int err);    /* "invalid_request_error", ... */
const char *ft_err_code(int err);    /* "invalid_value", ... */
const char *ft_err_message(int err); /* default human message */
int ft_err_from_code(const char *code); /* inverse of ft_err_code; FT_EINTERNAL if unknown */

/* An error with its details, filled by functions that can say more than a
 * code: which field/param, which line, and a message. Fixed size, no heap. */
typedef struct {
  int code;          /* FT_E* or 0 */
  char param[128];   /* offending field ("method.supervised.hyperparameters.n_epochs") or "" */
  char message[512]; /* human message naming the field or line */
} ft_error;

/* Sets e (if not NULL) and returns code, so a callee can `return ft_error_set(...)`. */
int ft_error_set(ft_error *e, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#endif
