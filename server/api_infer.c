/* Serving API: text completions, chat completions (OpenAI's shapes, with
 * Server-Sent Events streaming) and our classifications, over the models in
 * <data>/models: base models, fine-tuned ones ("ft:…") and checkpoints
 * ("…:ckpt-step-N", exported into models/ on first use: model_id.h).
 *
 * Each request reads top to bottom: parse and check the body, take an
 * inference slot (infer_pool.c: bounded concurrency, short queue, 429 with
 * Retry-After beyond it), resolve and check out the model, tokenize, run,
 * reply. MHD gives every connection its own thread, so a non-streamed
 * generation simply runs in the handler; no store lock or global lock is held
 * while it runs. A streamed one runs on a thread of its own that appends
 * SSE chunks to a buffer the response's content reader drains; the reader
 * ends the stream after "data: [DONE]", and a client that goes away cancels
 * the generation at its next token. A non-streamed generation or a
 * classification looks at its socket every few tokens or texts, and stops
 * when the client has hung up. Streamed and non-streamed answers are
 * the same tokens: one generation routine, the same seed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "tok/chat.h"
#include "ft_buf.h"
#include "ft_log.h"
#include "http.h"
#include "infer/infer.h"
#include "infer_pool.h"
#include "model_id.h"
#include "obs.h"
#include "train/spec.h"
#include "store.h"
#include "train/train.h"

#define CLASSIFY_MAX_INPUTS 64
#define CLASSIFY_MAX_MODELS 8
#define STREAM_WAIT_MS 1000
#define GEN_CANCELLED 1 /* the token callback's "stop" */

/* ---- body parsing helpers ------------------------------------------------ */

/* Refuses a body field not in keys (NULL-terminated). */
static int only_keys(json_t *body, const char *const *keys, ft_error *err) {
  const char *k;
  json_t *v;
  json_object_foreach(body, k, v) {
    int known = 0;
    for (int i = 0; keys[i] && !known; i++) known = !strcmp(k, keys[i]);
    if (!known) return ft_error_set(err, FT_EUNKNOWN_FIELD, k, "unknown field \"%.100s\"", k);
  }
  return 0;
}

/* The field, or NULL when absent or null. */
static json_t *field(json_t *body, const char *k) {
  json_t *v = json_object_get(body, k);
  return json_is_null(v) ? NULL : v;
}

static int get_bool(json_t *body, const char *k, int *out, ft_error *err) {
  json_t *v = field(body, k);
  if (!v) return 0;
  if (!json_is_boolean(v)) return ft_error_set(err, FT_ETYPE, k, "%s must be true or false", k);
  *out = json_is_true(v);
  return 0;
}

/* An integer in [lo, hi]; *present says whether it was given. */
static int get_int(json_t *body, const char *k, long long lo, long long hi, long long *out,
                   int *present, ft_error *err) {
  json_t *v = field(body, k);
  if (present) *present = v != NULL;
  if (!v) return 0;
  if (!json_is_integer(v)) return ft_error_set(err, FT_ETYPE, k, "%s must be an integer", k);
  long long x = json_integer_value(v);
  if (x < lo || x > hi)
    return ft_error_set(err, FT_ERANGE, k, "%s must be between %lld and %lld, got %lld", k, lo, hi,
                        x);
  *out = x;
  return 0;
}

static int get_number(json_t *body, const char *k, double *out, ft_error *err) {
  json_t *v = field(body, k);
  if (!v) return 0;
  if (!json_is_number(v)) return ft_error_set(err, FT_ETYPE, k, "%s must be a number", k);
  *out = json_number_value(v);
  return 0;
}

static uint64_t random_seed(void) {
  uint64_t s = 0;
  if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint64_t)time(NULL) ^ (uint64_t)clock();
  return s;
}

/* The sampling fields both completion kinds share: temperature, top_p,
 * seed, stop, n (must be 1), stream (+ stream_options.include_usage). */
typedef struct {
  ft_gen_opts o;
  int stream, include_usage;
  long long max_tokens; /* -1: not given */
} gen_req;

static int parse_sampling(json_t *body, gen_req *g, ft_error *err) {
  double temperature = 1.0, top_p = 1.0;
  long long seed = 0, n = 1;
  int has_seed = 0, rc;
  if ((rc = get_number(body, "temperature", &temperature, err))) return rc;
  if (!(temperature >= 0 && temperature <= 2))
    return ft_error_set(err, FT_ERANGE, "temperature", "temperature must be between 0 and 2");
  if ((rc = get_number(body, "top_p", &top_p, err))) return rc;
  if (!(top_p > 0 && top_p <= 1))
    return ft_error_set(err, FT_ERANGE, "top_p", "top_p must be in (0, 1]");
  if ((rc = get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, &has_seed, err))) return rc;
  if ((rc = get_int(body, "n", 1, 1, &n, NULL, err)))
    return ft_error_set(err, rc, "n", "n must be 1: one choice per request");
  if ((rc = get_bool(body, "stream", &g->stream, err))) return rc;
  json_t *so = field(body, "stream_options");
  if (so) {
    static const char *const so_keys[] = {"include_usage", NULL};
    if (!json_is_object(so))
      return ft_error_set(err, FT_ETYPE, "stream_options", "stream_options must be an object");
    if (!g->stream)
      return ft_error_set(err, FT_EINVALID, "stream_options",
                          "stream_options is only allowed with stream: true");
    if (only_keys(so, so_keys, err))
      return ft_error_set(err, FT_EUNKNOWN_FIELD, "stream_options",
                          "stream_options knows only include_usage");
    if (get_bool(so, "include_usage", &g->include_usage, err))
      return ft_error_set(err, FT_ETYPE, "stream_options.include_usage",
                          "stream_options.include_usage must be true or false");
  }
  json_t *stop = field(body, "stop");
  if (json_is_string(stop)) {
    if (json_string_length(stop) == 0)
      return ft_error_set(err, FT_EINVALID, "stop", "stop must not be an empty string");
    g->o.stop[g->o.n_stop++] = json_string_value(stop);
  } else if (json_is_array(stop)) {
    if (json_array_size(stop) > FT_MAX_STOP)
      return ft_error_set(err, FT_ERANGE, "stop", "stop takes at most %d strings", FT_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(stop, i, s) {
      if (!json_is_string(s) || json_string_length(s) == 0)
        return ft_error_set(err, FT_ETYPE, "stop", "stop[%zu] must be a non-empty string", i);
      g->o.stop[g->o.n_stop++] = json_string_value(s);
    }
  } else if (stop) {
    return ft_error_set(err, FT_ETYPE, "stop", "stop must be a string or a list of strings");
  }
  g->o.temperature = (float)temperature;
  g->o.top_p = (float)top_p;
  g->o.seed = has_seed ? (uint64_t)seed : random_seed();
  g->o.stop_eos = 1;
  g->o.logprobs = -1;
  return 0;
}

/* ---- replies ------------------------------------------------------------- */

/* 429 with Retry-After and the usual error envelope. */
static enum MHD_Result reply_busy(http_req *r, const ft_error *e, int retry_after_s) {
  char ra[16];
  snprintf(ra, sizeof ra, "%d", retry_after_s);
  const char *const headers[] = {MHD_HTTP_HEADER_RETRY_AFTER, ra, NULL};
  return http_fail_hdrs(r, e, headers);
}

/* A token's own text as a JSON string (a piece that is not valid UTF-8 on
 * its own, such as part of a multi-byte character, as "bytes:\xNN…"), and
 * its bytes when bytes_out is not NULL. */
static json_t *token_json(const tok *t, int32_t id, json_t **bytes_out) {
  char *s = NULL;
  size_t n = 0;
  if (tok_decode_len(t, &id, 1, 0, &s, &n)) {
    free(s);
    s = NULL, n = 0;
  }
  if (bytes_out) {
    *bytes_out = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(*bytes_out, json_integer((unsigned char)s[i]));
  }
  json_t *j = json_stringn(s ? s : "", n);
  if (!j) {
    char *b = malloc(6 + 4 * n + 1);
    if (b) {
      size_t k = (size_t)sprintf(b, "bytes:");
      for (size_t i = 0; i < n; i++) k += (size_t)sprintf(b + k, "\\x%02x", (unsigned char)s[i]);
      j = json_string(b);
      free(b);
    }
  }
  free(s);
  return j ? j : json_string("");
}

static json_t *logprob_json(float lp) { return isfinite(lp) ? json_real(lp) : json_null(); }

static json_t *usage_json(const ft_gen_result *res) {
  return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)res->prompt_tokens,
                   "completion_tokens", (json_int_t)res->completion_tokens, "total_tokens",
                   (json_int_t)(res->prompt_tokens + res->completion_tokens));
}

/* ---- one generation ------------------------------------------------------ */

enum { KIND_COMPLETION, KIND_CHAT };

/* One request's generation, streamed or not. For a stream it is shared by
 * the generating thread and the response's content reader: out/off/done
 * under mu. */
typedef struct {
  ft_app *app;
  int kind;
  json_t *body; /* holds the stop strings */
  char id[64], model[256];
  int64_t created;
  gen_req g;
  int want_logprobs; /* chat: logprobs true */
  ft_infer *m;
  int32_t *prompt;
  size_t n_prompt;
  /* non-streamed: the answer as it grows */
  char *text;
  size_t text_len, text_cap;
  json_t *lp_tokens, *lp_values, *lp_top, *lp_offsets; /* completions logprobs */
  json_t *lp_content;                                  /* chat logprobs */
  size_t offset;                                       /* text_offset */
  int chunks_sent;                                     /* chat: the role chunk went out */
  /* streamed */
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ft_buf out; /* streams: formatted events not yet read by MHD */
  size_t off; /* how much of out MHD has read */
  int done;
  atomic_int cancel;
  int client_fd;   /* non-streamed: the connection's socket, watched for a hang-up */
  int client_gone; /* the client left: the generation was stopped */
  long n_seen;     /* tokens reported so far */
  ft_gen_result res;
  ft_error err;
  int rc;
} gen_state;

static void gen_state_free(gen_state *s) {
  if (!s) return;
  json_decref(s->body);
  free(s->prompt);
  free(s->text);
  ft_buf_free(&s->out);
  json_decref(s->lp_tokens), json_decref(s->lp_values), json_decref(s->lp_top);
  json_decref(s->lp_offsets), json_decref(s->lp_content);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

static int text_append(gen_state *s, const char *p, size_t n) {
  if (s->text_len + n + 1 > s->text_cap) {
    size_t cap = s->text_cap ? s->text_cap * 2 : 256;
    while (cap < s->text_len + n + 1) cap *= 2;
    char *t = realloc(s->text, cap);
    if (!t) return FT_ENOMEM;
    s->text = t, s->text_cap = cap;
  }
  memcpy(s->text + s->text_len, p, n);
  s->text_len += n;
  s->text[s->text_len] = 0;
  return 0;
}

/* The top alternatives of t: {token: logprob} (completions) or
 * [{token, logprob, bytes}] (chat). */
static json_t *top_json(gen_state *s, const ft_gen_token *t) {
  const tok *tk = infer_tok(s->m);
  json_t *out = s->kind == KIND_CHAT ? json_array() : json_object();
  for (int i = 0; i < t->n_top; i++) {
    json_t *bytes = NULL;
    json_t *str = token_json(tk, t->top_id[i], s->kind == KIND_CHAT ? &bytes : NULL);
    if (s->kind == KIND_CHAT)
      json_array_append_new(out, json_pack("{s:o, s:o, s:o}", "token", str, "logprob",
                                           logprob_json(t->top_logprob[i]), "bytes", bytes));
    else {
      json_object_set_new(out, json_string_value(str), logprob_json(t->top_logprob[i]));
      json_decref(str);
    }
  }
  return out;
}

/* Appends t to the logprobs of the answer (or of one streamed chunk). */
static void logprobs_add(gen_state *s, const ft_gen_token *t) {
  const tok *tk = infer_tok(s->m);
  if (s->kind == KIND_CHAT) {
    json_t *bytes = NULL;
    json_t *str = token_json(tk, t->id, &bytes);
    json_array_append_new(s->lp_content, json_pack("{s:o, s:o, s:o, s:o}", "token", str, "logprob",
                                                   logprob_json(t->logprob), "bytes", bytes,
                                                   "top_logprobs", top_json(s, t)));
    return;
  }
  json_array_append_new(s->lp_tokens, token_json(tk, t->id, NULL));
  json_array_append_new(s->lp_values, logprob_json(t->logprob));
  json_array_append_new(s->lp_top, isfinite(t->logprob) ? top_json(s, t) : json_null());
  json_array_append_new(s->lp_offsets, json_integer((json_int_t)s->offset));
}

static int logprobs_wanted(const gen_state *s) {
  return s->kind == KIND_CHAT ? s->want_logprobs : s->g.o.logprobs >= 0;
}

static void logprobs_reset(gen_state *s) {
  json_decref(s->lp_tokens), json_decref(s->lp_values), json_decref(s->lp_top);
  json_decref(s->lp_offsets), json_decref(s->lp_content);
  s->lp_tokens = s->lp_values = s->lp_top = s->lp_offsets = s->lp_content = NULL;
  if (!logprobs_wanted(s)) return;
  if (s->kind == KIND_CHAT)
    s->lp_content = json_array();
  else {
    s->lp_tokens = json_array(), s->lp_values = json_array();
    s->lp_top = json_array(), s->lp_offsets = json_array();
  }
}

/* The logprobs object of what was gathered since logprobs_reset, or null. */
static json_t *logprobs_take(gen_state *s) {
  if (!logprobs_wanted(s)) return json_null();
  if (s->kind == KIND_CHAT) return json_pack("{s:O}", "content", s->lp_content);
  return json_pack("{s:O, s:O, s:O, s:O}", "tokens", s->lp_tokens, "token_logprobs", s->lp_values,
                   "top_logprobs", s->lp_top, "text_offset", s->lp_offsets);
}

/* One choice: the text so far (or this chunk's), its logprobs, and the
 * finish reason (NULL: null). */
static json_t *choice_json(gen_state *s, const char *text, size_t n, const char *finish, int stream,
                           int first, int with_lp) {
  json_t *lp = with_lp ? logprobs_take(s) : json_null();
  json_t *fr = finish ? json_string(finish) : json_null();
  json_t *txt = json_stringn(text ? text : "", n);
  if (!txt) txt = json_string("");
  if (s->kind == KIND_COMPLETION)
    return json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", txt, "logprobs", lp,
                     "finish_reason", fr);
  json_t *msg; /* streamed: the role in the first chunk only, {} in the closing one */
  if (!stream || first)
    msg = json_pack("{s:s, s:o}", "role", "assistant", "content", txt);
  else if (finish && n == 0)
    msg = json_object(), json_decref(txt);
  else
    msg = json_pack("{s:o}", "content", txt);
  return json_pack("{s:i, s:o, s:o, s:o}", "index", 0, stream ? "delta" : "message", msg,
                   "logprobs", lp, "finish_reason", fr);
}

static json_t *envelope_json(gen_state *s, int stream, json_t *choices) {
  const char *object = s->kind == KIND_CHAT ? (stream ? "chat.completion.chunk" : "chat.completion")
                                            : "text_completion";
  return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", s->id, "object", object, "created",
                   (json_int_t)s->created, "model", s->model, "choices", choices);
}

/* Streams: appends one "data: …" event to the pending buffer, wakes the reader. */
static void stream_push(gen_state *s, json_t *obj) {
  char *txt = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  pthread_mutex_lock(&s->mu);
  if (txt) ft_buf_printf(&s->out, "data: %s\n\n", txt);
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  free(txt);
}

/* Whether the peer of fd closed its side: a non-streamed generation has
 * nothing to write until it ends, so a client that gave up is only seen by
 * looking. (A client that half-closes after its request counts as gone.) */
static int peer_closed(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  if (fd < 0 || poll(&p, 1, 0) != 1) return 0;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return 1;
  char c;
  return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int on_token(void *ud, const ft_gen_token *t) {
  gen_state *s = ud;
  if (atomic_load(&s->cancel) || atomic_load(&s->app->stopping)) return GEN_CANCELLED;
  if (!s->g.stream && s->n_seen++ % 8 == 0 && peer_closed(s->client_fd)) {
    s->client_gone = 1;
    return GEN_CANCELLED;
  }
  int lp = logprobs_wanted(s);
  if (lp) logprobs_add(s, t);
  s->offset += t->text_len;
  if (!s->g.stream) /* out of memory is a 500, not "generation stopped" */
    return text_append(s, t->text, t->text_len) ? ft_error_set(&s->err, FT_ENOMEM, NULL, NULL) : 0;
  if (t->text_len == 0 && !lp) return 0;
  int first = !s->chunks_sent;
  s->chunks_sent = 1;
  json_t *choices = json_array();
  json_array_append_new(choices, choice_json(s, t->text, t->text_len, NULL, 1, first, 1));
  stream_push(s, envelope_json(s, 1, choices));
  logprobs_reset(s);
  return 0;
}

/* Runs the generation; for a stream, also the closing chunks and [DONE]. */
static void generate(gen_state *s) {
  logprobs_reset(s);
  s->rc = infer_generate(s->m, s->prompt, s->n_prompt, &s->g.o, on_token, s, &s->res, &s->err);
  if (!s->g.stream) return;
  if (s->rc && s->rc != GEN_CANCELLED) {
    FT_WARN("msg=\"streamed generation failed\" id=%s err=\"%s\"", s->id, s->err.message);
    ft_error e = s->err;
    e.code = s->rc;
    stream_push(s, http_error_json(&e));
  } else if (!s->rc) {
    json_t *choices = json_array();
    int first = !s->chunks_sent;
    s->chunks_sent = 1;
    json_array_append_new(choices, choice_json(s, "", 0, s->res.finish_reason, 1, first, 0));
    stream_push(s, envelope_json(s, 1, choices));
    if (s->g.include_usage) {
      json_t *u = envelope_json(s, 1, json_array());
      json_object_set_new(u, "usage", usage_json(&s->res));
      stream_push(s, u);
    }
  }
  pthread_mutex_lock(&s->mu);
  ft_buf_printf(&s->out, "data: [DONE]\n\n");
  pthread_mutex_unlock(&s->mu);
}

static void *gen_thread(void *arg) {
  gen_state *s = arg;
  generate(s);
  infer_pool_release(s->app->infer, s->m);
  s->m = NULL;
  infer_pool_leave(s->app->infer);
  pthread_mutex_lock(&s->mu);
  s->done = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
  gen_state *s = cls;
  (void)pos;
  pthread_mutex_lock(&s->mu);
  while (s->off == s->out.len && !s->done) {
    if (atomic_load(&s->app->stopping)) atomic_store(&s->cancel, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STREAM_WAIT_MS / 1000;
    pthread_cond_timedwait(&s->cv, &s->mu, &until);
  }
  ssize_t n;
  if (s->off < s->out.len) {
    size_t k = s->out.len - s->off < max ? s->out.len - s->off : max;
    memcpy(out, s->out.data + s->off, k);
    s->off += k;
    if (s->off == s->out.len) {
      s->off = 0;
      ft_buf_clear(&s->out);
    }
    n = (ssize_t)k;
  } else {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* The response is done (sent, or the client left): stop the generation at
 * its next token, wait for the thread, free. */
static void stream_free(void *cls) {
  gen_state *s = cls;
  atomic_store(&s->cancel, 1);
  if (s->thread_started) pthread_join(s->thread, NULL);
  gen_state_free(s);
}

/* ---- the two completion endpoints ---------------------------------------- */

/* Checks a prompt's ids against the vocabulary and the context. */
static int check_lengths(gen_state *s, const char *prompt_param, ft_error *err) {
  int vocab = infer_config(s->m)->vocab_size, ctx = infer_max_ctx(s->m);
  for (size_t i = 0; i < s->n_prompt; i++)
    if (s->prompt[i] < 0 || s->prompt[i] >= vocab)
      return ft_error_set(err, FT_ERANGE, prompt_param,
                          "%s[%zu] = %d is not a token id of this model (0..%d)", prompt_param, i,
                          (int)s->prompt[i], vocab - 1);
  if ((long long)s->n_prompt > ctx)
    return ft_error_set(err, FT_ERANGE, prompt_param,
                        "the prompt is %zu tokens; the model's context is %d", s->n_prompt, ctx);
  long long room = ctx - (long long)s->n_prompt;
  if (s->g.max_tokens < 0) { /* not given: 16 (chat: the rest of the context), what fits */
    if (room == 0)
      return ft_error_set(err, FT_ERANGE, prompt_param,
                          "the prompt's %zu tokens fill the model's context of %d: no room "
                          "for an answer",
                          s->n_prompt, ctx);
    s->g.max_tokens = s->kind == KIND_CHAT || room < 16 ? room : 16;
  }
  if (s->g.max_tokens > room)
    return ft_error_set(
        err, FT_ERANGE,
        field(s->body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
        "max_tokens %lld plus the prompt's %zu tokens exceeds the model's "
        "context of %d tokens",
        s->g.max_tokens, s->n_prompt, ctx);
  s->g.o.max_tokens = (int)s->g.max_tokens;
  return 0;
}

/* The model needs a BOS first (training's rule, data.c): Llama-family
 * models, unless a chat template writes its own. */
static int prepend_bos(gen_state *s, int chat) {
  int bos = tok_bos_id(infer_tok(s->m));
  ft_chat_family f = infer_chat(s->m);
  if (!infer_config(s->m)->arch->add_bos || bos < 0) return 0;
  if (chat && chat_writes_bos(f)) return 0;
  if (s->n_prompt && s->prompt[0] == bos) return 0;
  int32_t *p = realloc(s->prompt, (s->n_prompt + 1) * sizeof *p);
  if (!p) return FT_ENOMEM;
  memmove(p + 1, p, s->n_prompt * sizeof *p);
  p[0] = bos;
  s->prompt = p;
  s->n_prompt++;
  return 0;
}

/* An empty prompt starts from BOS, or EOS (GPT-2's <|endoftext|>). */
static int nonempty_prompt(gen_state *s, const char *param, ft_error *err) {
  if (s->n_prompt) return 0;
  const tok *t = infer_tok(s->m);
  int id = tok_bos_id(t) >= 0 ? tok_bos_id(t) : tok_eos_id(t);
  if (id < 0) return ft_error_set(err, FT_EINVALID, param, "%s is empty", param);
  s->prompt = malloc(sizeof *s->prompt);
  if (!s->prompt) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  s->prompt[0] = id;
  s->n_prompt = 1;
  return 0;
}

/* Completion prompt: a string, a list of token ids, or a list of one string. */
static int completion_prompt(gen_state *s, ft_error *err) {
  json_t *p = field(s->body, "prompt");
  if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
    p = json_array_get(p, 0);
  if (json_is_string(p)) {
    int rc = tok_encode(infer_tok(s->m), json_string_value(p), json_string_length(p), 0, &s->prompt,
                        &s->n_prompt);
    if (rc)
      return ft_error_set(err, rc, "prompt", "cannot tokenize the prompt: %s", ft_err_message(rc));
    if (prepend_bos(s, 0)) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    return nonempty_prompt(s, "prompt", err);
  }
  size_t i;
  json_t *v;
  s->n_prompt = json_array_size(p);
  s->prompt = malloc((s->n_prompt ? s->n_prompt : 1) * sizeof *s->prompt);
  if (!s->prompt) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  json_array_foreach(p, i, v) s->prompt[i] = (int32_t)json_integer_value(v);
  return nonempty_prompt(s, "prompt", err);
}

/* Messages through the model's chat template, with the assistant's header
 * at the end. */
static int chat_prompt(gen_state *s, ft_error *err) {
  json_t *msgs = field(s->body, "messages");
  size_t n = json_array_size(msgs), i;
  ft_chat_msg *cm = calloc(n ? n : 1, sizeof *cm);
  if (!cm) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  json_t *v;
  json_array_foreach(msgs, i, v) {
    json_t *c = json_object_get(v, "content");
    cm[i].role = json_string_value(json_object_get(v, "role"));
    cm[i].content = json_string_value(c);
    cm[i].content_len = json_string_length(c);
    cm[i].weight = 1;
  }
  uint8_t *mask = NULL;
  int rc =
      chat_tokenize(infer_chat(s->m), infer_tok(s->m), cm, n, 1, &s->prompt, &mask, &s->n_prompt);
  free(mask);
  free(cm);
  if (rc == FT_EINVALID)
    return ft_error_set(err, rc, "messages",
                        "the model's chat template (%s) cannot render these roles in this order",
                        chat_family_name(infer_chat(s->m)));
  if (rc)
    return ft_error_set(err, rc, "messages", "cannot render the messages: %s", ft_err_message(rc));
  if (prepend_bos(s, 1)) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  return nonempty_prompt(s, "messages", err);
}

static const char *const completion_keys[] = {
    "model",  "prompt",         "max_tokens", "temperature", "top_p", "stop", "seed",
    "stream", "stream_options", "logprobs",   "echo",        "n",     "user", NULL};
static const char *const chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "stop",  "seed",     "stream",     "stream_options",        "logprobs",    "top_logprobs",
    "n",     "user",     NULL};

static int parse_completion(gen_state *s, ft_error *err) {
  json_t *b = s->body;
  int rc;
  long long lp = -1;
  int lp_given = 0;
  if ((rc = only_keys(b, completion_keys, err)) || (rc = parse_sampling(b, &s->g, err))) return rc;
  if ((rc = get_int(b, "max_tokens", 0, INT32_MAX, &s->g.max_tokens, NULL, err))) return rc;
  if ((rc = get_int(b, "logprobs", 0, FT_MAX_TOP_LOGPROBS, &lp, &lp_given, err))) return rc;
  s->g.o.logprobs = lp_given ? (int)lp : -1;
  if ((rc = get_bool(b, "echo", &s->g.o.echo, err))) return rc;
  json_t *p = field(b, "prompt");
  if (!p) return ft_error_set(err, FT_EMISSING, "prompt", "prompt is required");
  if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) return 0;
  if (json_is_array(p)) {
    size_t i;
    json_t *v;
    json_array_foreach(p, i, v) {
      if (!json_is_integer(v))
        return ft_error_set(err, FT_ETYPE, "prompt",
                            "prompt must be a string or a list of token ids (one prompt per "
                            "request); prompt[%zu] is not an integer",
                            i);
      if (json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return ft_error_set(err, FT_ERANGE, "prompt", "prompt[%zu] is not a token id", i);
    }
    return 0;
  }
  if (!json_is_string(p))
    return ft_error_set(err, FT_ETYPE, "prompt", "prompt must be a string or a list of token ids");
  return 0;
}

static int parse_chat(gen_state *s, ft_error *err) {
  json_t *b = s->body;
  int rc, has_top = 0;
  long long top = 0, mct = -1;
  if ((rc = only_keys(b, chat_keys, err)) || (rc = parse_sampling(b, &s->g, err))) return rc;
  if ((rc = get_int(b, "max_tokens", 1, INT32_MAX, &s->g.max_tokens, NULL, err))) return rc;
  if ((rc = get_int(b, "max_completion_tokens", 1, INT32_MAX, &mct, NULL, err))) return rc;
  if (mct >= 0) s->g.max_tokens = mct;
  if ((rc = get_bool(b, "logprobs", &s->want_logprobs, err))) return rc;
  if ((rc = get_int(b, "top_logprobs", 0, FT_MAX_TOP_LOGPROBS, &top, &has_top, err))) return rc;
  if (has_top && !s->want_logprobs)
    return ft_error_set(err, FT_EINVALID, "top_logprobs", "top_logprobs needs logprobs: true");
  s->g.o.logprobs = s->want_logprobs ? (int)top : -1;
  json_t *msgs = field(b, "messages");
  if (!msgs) return ft_error_set(err, FT_EMISSING, "messages", "messages is required");
  if (!json_is_array(msgs) || json_array_size(msgs) == 0)
    return ft_error_set(err, FT_ETYPE, "messages", "messages must be a non-empty list");
  size_t i;
  json_t *m;
  json_array_foreach(msgs, i, m) {
    char pm[64];
    snprintf(pm, sizeof pm, "messages[%zu]", i);
    if (!json_is_object(m))
      return ft_error_set(err, FT_ETYPE, pm, "%s must be an object {role, content}", pm);
    static const char *const msg_keys[] = {"role", "content", "name", NULL};
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *c = json_object_get(m, "content");
    if (only_keys(m, msg_keys, err)) {
      char k[128];
      snprintf(k, sizeof k, "%s", err->param);
      return ft_error_set(err, FT_EUNKNOWN_FIELD, pm, "%s has an unknown field \"%s\"", pm, k);
    }
    if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")))
      return ft_error_set(err, role ? FT_ERANGE : FT_EMISSING, pm,
                          "%s.role must be system, user or assistant", pm);
    if (!json_is_string(c))
      return ft_error_set(err, c ? FT_ETYPE : FT_EMISSING, pm, "%s.content must be a string", pm);
  }
  return 0;
}

static enum MHD_Result completion(http_req *r, int kind) {
  json_t *body = NULL;
  if (http_json_body_or_reply(r, &body)) return MHD_YES;
  gen_state *s = calloc(1, sizeof *s);
  if (!s) {
    json_decref(body);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  s->client_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->app = r->app;
  s->kind = kind;
  s->body = body;
  s->g.max_tokens = -1;
  s->created = store_now();
  store_new_id(kind == KIND_CHAT ? "chatcmpl" : "cmpl", s->id, sizeof s->id);
  ft_error err = {0};
  int rc, retry = 1, entered = 0;
  char dir[PATH_MAX];
  /* parse, validate */
  const char *model = json_string_value(field(body, "model"));
  if (!field(body, "model"))
    rc = ft_error_set(&err, FT_EMISSING, "model", "model is required");
  else if (!model)
    rc = ft_error_set(&err, FT_ETYPE, "model", "model must be a string");
  else
    rc = kind == KIND_CHAT ? parse_chat(s, &err) : parse_completion(s, &err);
  if (!rc && !r->app->infer) rc = ft_error_set(&err, FT_EUNAVAILABLE, NULL, "serving is off");
  if (rc) goto fail;
  snprintf(s->model, sizeof s->model, "%s", model);
  /* a slot, the model, the prompt */
  if ((rc = infer_pool_enter(r->app->infer, &retry, &err))) {
    enum MHD_Result res = reply_busy(r, &err, retry);
    gen_state_free(s);
    return res;
  }
  entered = 1;
  if ((rc = model_id_resolve(r->app->store, r->app->data_dir, auth_tenant(r), "model", model, dir,
                             sizeof dir, &err)))
    goto fail;
  if ((rc = infer_pool_acquire(r->app->infer, dir, &s->m, &err))) {
    snprintf(err.param, sizeof err.param, "model");
    goto fail;
  }
  if (infer_task(s->m) == FT_TASK_CLASSIFY) {
    rc = ft_error_set(&err, FT_EINVALID, "model",
                      "%.200s is a classifier: use POST /v1/classifications", model);
    goto fail;
  }
  if ((rc = kind == KIND_CHAT ? chat_prompt(s, &err) : completion_prompt(s, &err)) ||
      (rc = check_lengths(s, kind == KIND_CHAT ? "messages" : "prompt", &err)))
    goto fail;
  /* act, reply */
  if (s->g.stream) {
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!resp) {
      rc = ft_error_set(&err, FT_ENOMEM, NULL, NULL);
      goto fail;
    }
    if (pthread_create(&s->thread, NULL, gen_thread, s)) {
      /* the response owns s now: it frees it */
      infer_pool_release(r->app->infer, s->m);
      s->m = NULL;
      infer_pool_leave(r->app->infer);
      s->done = 1;
      MHD_destroy_response(resp);
      return http_fail(r, FT_EINTERNAL, NULL, "cannot start the generation thread");
    }
    s->thread_started = 1;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->replied = 1;
    return http_queue(r->conn, 200, resp);
  }
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  s->client_fd = ci ? ci->connect_fd : -1;
  generate(s);
  infer_pool_release(r->app->infer, s->m);
  s->m = NULL;
  infer_pool_leave(r->app->infer);
  entered = 0;
  if (s->client_gone) {
    FT_INFO("msg=\"client gone; generation stopped\" id=%s model=%s tokens=%ld", s->id, s->model,
            s->n_seen);
    obs_reject(OBS_REJECT_CLIENT_GONE);
  }
  if (s->rc) {
    rc = s->rc == GEN_CANCELLED ? ft_error_set(&err, FT_EUNAVAILABLE, NULL, "generation stopped")
                                : s->rc;
    if (s->rc != GEN_CANCELLED) err = s->err;
    goto fail;
  }
  json_t *choices = json_array();
  json_array_append_new(choices,
                        choice_json(s, s->text, s->text_len, s->res.finish_reason, 0, 1, 1));
  json_t *out = envelope_json(s, 0, choices);
  if (out) json_object_set_new(out, "usage", usage_json(&s->res));
  gen_state_free(s);
  return http_reply_json(r, 200, out);
fail:
  if (s->m) infer_pool_release(r->app->infer, s->m);
  if (entered) infer_pool_leave(r->app->infer);
  gen_state_free(s);
  if (!err.code) err.code = rc;
  return http_fail_err(r, &err);
}

enum MHD_Result api_completions(http_req *r) { return completion(r, KIND_COMPLETION); }
enum MHD_Result api_chat_completions(http_req *r) { return completion(r, KIND_CHAT); }

/* ---- classifications ----------------------------------------------------- */

/* One member of the ensemble: its model checked out, and where each of its
 * labels sits in the first member's label order. */
typedef struct {
  const char *id;
  ft_infer *m;
  int map[FT_MAX_LABELS];
} member;

static const char *const classify_keys[] = {"model", "models", "input", "user", NULL};

/* model or models into ids[] (borrowed from body); input into a list. */
static int parse_classify(json_t *b, const char **ids, int *n_ids, json_t **inputs, ft_error *err) {
  int rc;
  if ((rc = only_keys(b, classify_keys, err))) return rc;
  json_t *m = field(b, "model"), *ms = field(b, "models"), *in = field(b, "input");
  *n_ids = 0;
  if (m && ms) return ft_error_set(err, FT_EINVALID, "models", "give model or models, not both");
  if (!m && !ms) return ft_error_set(err, FT_EMISSING, "model", "model (or models) is required");
  if (m) {
    if (!json_is_string(m)) return ft_error_set(err, FT_ETYPE, "model", "model must be a string");
    ids[(*n_ids)++] = json_string_value(m);
  } else {
    if (!json_is_array(ms) || json_array_size(ms) == 0)
      return ft_error_set(err, FT_ETYPE, "models", "models must be a non-empty list of model ids");
    if (json_array_size(ms) > CLASSIFY_MAX_MODELS)
      return ft_error_set(err, FT_ERANGE, "models", "models takes at most %d models",
                          CLASSIFY_MAX_MODELS);
    size_t i;
    json_t *v;
    json_array_foreach(ms, i, v) {
      if (!json_is_string(v))
        return ft_error_set(err, FT_ETYPE, "models", "models[%zu] must be a string", i);
      for (int k = 0; k < *n_ids; k++)
        if (!strcmp(ids[k], json_string_value(v)))
          return ft_error_set(err, FT_EINVALID, "models", "models[%zu] repeats %.200s", i, ids[k]);
      ids[(*n_ids)++] = json_string_value(v);
    }
  }
  if (!in) return ft_error_set(err, FT_EMISSING, "input", "input is required");
  if (json_is_string(in)) {
    *inputs = json_pack("[O]", in);
    return *inputs ? 0 : ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  if (!json_is_array(in) || json_array_size(in) == 0)
    return ft_error_set(err, FT_ETYPE, "input", "input must be a string or a non-empty list");
  if (json_array_size(in) > CLASSIFY_MAX_INPUTS)
    return ft_error_set(err, FT_ERANGE, "input",
                        "input takes at most %d texts per request, got %zu", CLASSIFY_MAX_INPUTS,
                        json_array_size(in));
  size_t i;
  json_t *v;
  json_array_foreach(in, i, v) if (!json_is_string(v)) return ft_error_set(
      err, FT_ETYPE, "input", "input[%zu] must be a string", i);
  *inputs = json_incref(in);
  return 0;
}

/* Checks member k against member 0 (same label names) and fills its map. */
static int map_labels(member *mb, int k, const char *param, ft_error *err) {
  const ft_config *c0 = infer_config(mb[0].m), *ck = infer_config(mb[k].m);
  if (ck->num_labels != c0->num_labels)
    return ft_error_set(err, FT_EINVALID, param,
                        "%.200s has %d labels but %.200s has %d: an ensemble needs one label set",
                        mb[k].id, ck->num_labels, mb[0].id, c0->num_labels);
  for (int j = 0; j < ck->num_labels; j++) {
    mb[k].map[j] = -1;
    for (int i = 0; i < c0->num_labels; i++)
      if (!strcmp(ck->id2label[j], c0->id2label[i])) mb[k].map[j] = i;
    if (mb[k].map[j] < 0)
      return ft_error_set(err, FT_EINVALID, param,
                          "%.200s has the label \"%s\" that %.200s lacks: an ensemble needs one "
                          "label set",
                          mb[k].id, ck->id2label[j], mb[0].id);
  }
  return 0;
}

/* Probabilities of one text under one member, added into acc (first
 * member's label order); *n_tokens gets the text's length in tokens. */
static int classify_one(member *mb, const char *text, size_t len, double *acc, long *n_tokens,
                        const char *param, ft_error *err) {
  const tok *t = infer_tok(mb->m);
  const ft_config *c = infer_config(mb->m);
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = tok_encode(t, text, len, 0, &ids, &n);
  if (rc) return ft_error_set(err, rc, param, "cannot tokenize %s: %s", param, ft_err_message(rc));
  int bos = c->arch->add_bos ? tok_bos_id(t) : -1;
  size_t ctx = (size_t)infer_max_ctx(mb->m), lead = bos >= 0 || n == 0 ? 1 : 0;
  int32_t *seq = malloc((n + 1) * sizeof *seq);
  if (!seq) {
    free(ids);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  if (lead) seq[0] = bos >= 0 ? bos : tok_eos_id(t) >= 0 ? tok_eos_id(t) : 0;
  memcpy(seq + lead, ids, n * sizeof *ids);
  free(ids);
  n += lead;
  if (n > ctx) n = ctx; /* as training truncates: the start of the text */
  float probs[FT_MAX_LABELS];
  rc = infer_classify(mb->m, seq, n, probs, err);
  free(seq);
  if (rc) return rc;
  for (int j = 0; j < c->num_labels; j++) acc[mb->map[j]] += probs[j];
  *n_tokens = (long)n;
  return 0;
}

/* Whether the client of a classification hung up (after `texts` texts):
 * then logged, counted and an error, so the slot and models are freed. */
static int client_left(int fd, const char *model, size_t texts, ft_error *err) {
  if (!peer_closed(fd)) return 0;
  FT_INFO("msg=\"client gone; classification stopped\" model=%.200s texts=%zu", model, texts);
  obs_reject(OBS_REJECT_CLIENT_GONE);
  return ft_error_set(err, FT_EUNAVAILABLE, NULL, "classification stopped: the client left");
}

enum MHD_Result api_classifications(http_req *r) {
  json_t *body = NULL, *inputs = NULL, *data = NULL;
  if (http_json_body_or_reply(r, &body)) return MHD_YES;
  const char *ids[CLASSIFY_MAX_MODELS];
  member mb[CLASSIFY_MAX_MODELS];
  memset(mb, 0, sizeof mb);
  int n_ids = 0, rc, retry = 1, entered = 0;
  ft_error err = {0};
  double *acc = NULL;
  long total_tokens = 0;
  int ensemble = field(body, "models") != NULL;
  /* parse, validate */
  if ((rc = parse_classify(body, ids, &n_ids, &inputs, &err))) goto fail;
  if (!r->app->infer) {
    rc = ft_error_set(&err, FT_EUNAVAILABLE, NULL, "serving is off");
    goto fail;
  }
  /* a slot, the models */
  if ((rc = infer_pool_enter(r->app->infer, &retry, &err))) {
    json_decref(body), json_decref(inputs);
    return reply_busy(r, &err, retry);
  }
  entered = 1;
  /* the client's socket, watched between models and texts as completions
   * watch it between tokens */
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  int client_fd = ci ? ci->connect_fd : -1;
  for (int k = 0; k < n_ids; k++) {
    char dir[PATH_MAX], param[32];
    if ((rc = client_left(client_fd, ids[0], 0, &err))) goto fail;
    snprintf(param, sizeof param, ensemble ? "models[%d]" : "model", k);
    mb[k].id = ids[k];
    if ((rc = model_id_resolve(r->app->store, r->app->data_dir, auth_tenant(r), param, ids[k], dir,
                               sizeof dir, &err)))
      goto fail;
    if ((rc = infer_pool_acquire(r->app->infer, dir, &mb[k].m, &err))) {
      snprintf(err.param, sizeof err.param, "%s", param);
      goto fail;
    }
    if (infer_task(mb[k].m) != FT_TASK_CLASSIFY) {
      rc = ft_error_set(&err, FT_EINVALID, param,
                        "%.200s is a causal language model, not a classifier: use "
                        "POST /v1/completions",
                        ids[k]);
      goto fail;
    }
    if (k == 0)
      for (int j = 0; j < infer_config(mb[0].m)->num_labels; j++) mb[0].map[j] = j;
    else if ((rc = map_labels(mb, k, param, &err)))
      goto fail;
  }
  /* act */
  const ft_config *c0 = infer_config(mb[0].m);
  int L = c0->num_labels;
  size_t n_in = json_array_size(inputs);
  acc = calloc(n_in * (size_t)L + 1, sizeof *acc);
  data = json_array();
  if (!acc || !data) {
    rc = ft_error_set(&err, FT_ENOMEM, NULL, NULL);
    goto fail;
  }
  for (int k = 0; k < n_ids; k++)
    for (size_t i = 0; i < n_in; i++) {
      json_t *v = json_array_get(inputs, i);
      char param[32];
      long nt = 0;
      if ((rc = client_left(client_fd, ids[0], (size_t)k * n_in + i, &err))) goto fail;
      if (json_is_array(field(body, "input")))
        snprintf(param, sizeof param, "input[%zu]", i);
      else
        snprintf(param, sizeof param, "input");
      if ((rc = classify_one(&mb[k], json_string_value(v), json_string_length(v),
                             acc + i * (size_t)L, &nt, param, &err)))
        goto fail;
      total_tokens += nt;
    }
  for (int k = 0; k < n_ids; k++) {
    infer_pool_release(r->app->infer, mb[k].m);
    mb[k].m = NULL;
  }
  infer_pool_leave(r->app->infer);
  entered = 0;
  /* reply: per input the label with the highest mean probability */
  for (size_t i = 0; i < n_in; i++) {
    json_t *probs = json_object();
    int best = 0;
    for (int j = 0; j < L; j++) {
      double p = acc[i * (size_t)L + j] / n_ids;
      json_object_set_new(probs, c0->id2label[j], json_real(p));
      if (p > acc[i * (size_t)L + best] / n_ids) best = j;
    }
    json_array_append_new(
        data, json_pack("{s:s, s:I, s:s, s:o}", "object", "classification", "index", (json_int_t)i,
                        "label", c0->id2label[best], "probabilities", probs));
  }
  json_t *models = json_array(), *labels = json_array();
  for (int k = 0; k < n_ids; k++) json_array_append_new(models, json_string(ids[k]));
  for (int j = 0; j < L; j++) json_array_append_new(labels, json_string(c0->id2label[j]));
  char id[64];
  store_new_id("clf", id, sizeof id);
  json_t *out =
      json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:o, s:{s:I, s:I}}", "id", id, "object",
                "classification.list", "created", (json_int_t)store_now(), "model", ids[0],
                "models", models, "labels", labels, "data", data, "usage", "prompt_tokens",
                (json_int_t)total_tokens, "total_tokens", (json_int_t)total_tokens);
  free(acc);
  json_decref(body), json_decref(inputs);
  return http_reply_json(r, 200, out);
fail:
  for (int k = 0; k < n_ids; k++)
    if (mb[k].m) infer_pool_release(r->app->infer, mb[k].m);
  if (entered) infer_pool_leave(r->app->infer);
  free(acc);
  json_decref(data), json_decref(body), json_decref(inputs);
  if (!err.code) err.code = rc;
  return http_fail_err(r, &err);
}
