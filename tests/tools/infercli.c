/* infercli: drives engine/infer/infer.c for the PyTorch parity test of inference
 * (tests/parity/test_infer_parity.py). Prints one JSON object.
 *   infercli generate DIR --ids 1,2,3 [--max-tokens N] [--temperature T]
 *       [--top-p P] [--seed S] [--logprobs K] [--echo] [--stop STR]...
 *       [--stop-eos] [--max-ctx N] [--text STR (instead of --ids)]
 *     -> {"prompt_tokens","completion_tokens","finish_reason","text",
 *         "ids":[new ids],"logprobs":[..],"top_ids":[[..]],
 *         "prompt_ids":[..],"prompt_logprobs":[.. (null first)],"prompt_text"}
 *   infercli classify DIR --ids 1,2,3  -> {"probs":[..],"labels":[..]}
 *   infercli info DIR -> {"task","chat","max_ctx","bytes","vocab_size"}
 * Errors: {"error": code, "param", "message"} and exit status 1. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

typedef struct {
  json_t *ids, *lps, *tops, *pids, *plps;
  char *text, *ptext;
  size_t len, plen;
} sink;

static void append(char **buf, size_t *len, const char *s, size_t n) {
  *buf = realloc(*buf, *len + n + 1);
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = 0;
}

static int on_token(void *ud, const ft_gen_token *t) {
  sink *s = ud;
  json_t *lp = isnan(t->logprob) ? json_null() : json_real(t->logprob);
  if (t->is_prompt) {
    json_array_append_new(s->pids, json_integer(t->id));
    json_array_append_new(s->plps, lp);
    append(&s->ptext, &s->plen, t->text, t->text_len);
    return 0;
  }
  json_array_append_new(s->ids, json_integer(t->id));
  json_array_append_new(s->lps, lp);
  json_t *top = json_array();
  for (int i = 0; i < t->n_top; i++)
    json_array_append_new(top, json_pack("[if]", (json_int_t)t->top_id[i], t->top_logprob[i]));
  json_array_append_new(s->tops, top);
  append(&s->text, &s->len, t->text, t->text_len);
  return 0;
}

static int fail(int rc, const ft_error *e) {
  json_t *o = json_pack("{ssssss}", "error", ft_err_code(rc), "param", e->param, "message",
                        e->message);
  json_dumpf(o, stdout, JSON_COMPACT);
  printf("\n");
  json_decref(o);
  return 1;
}

static int32_t *parse_ids(const char *s, size_t *n) {
  size_t cap = 16;
  int32_t *ids = malloc(cap * sizeof *ids);
  *n = 0;
  while (*s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    if (*n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
    ids[(*n)++] = (int32_t)v;
    s = *end == ',' ? end + 1 : end;
  }
  return ids;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: infercli generate|classify|info DIR [options]\n");
    return 2;
  }
  const char *cmd = argv[1], *dir = argv[2], *text = NULL;
  ft_gen_opts o = {.max_tokens = 16, .temperature = 0.f, .top_p = 1.f, .logprobs = 0};
  int max_ctx = 0;
  int32_t *ids = NULL;
  size_t n = 0;
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--echo")) {
      o.echo = 1;
      continue;
    }
    if (!strcmp(a, "--stop-eos")) {
      o.stop_eos = 1;
      continue;
    }
    i++;
    if (!strcmp(a, "--ids")) {
      free(ids);
      ids = parse_ids(v, &n);
    } else if (!strcmp(a, "--text")) {
      text = v;
    } else if (!strcmp(a, "--max-tokens")) {
      o.max_tokens = atoi(v);
    } else if (!strcmp(a, "--temperature")) {
      o.temperature = strtof(v, NULL);
    } else if (!strcmp(a, "--top-p")) {
      o.top_p = strtof(v, NULL);
    } else if (!strcmp(a, "--seed")) {
      o.seed = strtoull(v, NULL, 10);
    } else if (!strcmp(a, "--logprobs")) {
      o.logprobs = atoi(v);
    } else if (!strcmp(a, "--max-ctx")) {
      max_ctx = atoi(v);
    } else if (!strcmp(a, "--stop") && o.n_stop < FT_MAX_STOP) {
      o.stop[o.n_stop++] = v;
    } else {
      fprintf(stderr, "infercli: unknown option %s\n", a);
      return 2;
    }
  }
  ft_error e = {0};
  ft_infer *m = NULL;
  int rc = infer_load(&m, dir, max_ctx, &e);
  if (rc) return fail(rc, &e);
  if (text) {
    free(ids);
    ids = NULL;
    rc = tok_encode(infer_tok(m), text, strlen(text), 1, &ids, &n);
    if (rc) return fail(rc, &e);
  }
  json_t *out = NULL;
  if (!strcmp(cmd, "info")) {
    out = json_pack("{sssssisIsi}", "task", infer_task(m) == FT_TASK_CLASSIFY ? "classify" : "lm",
                    "chat", chat_family_name(infer_chat(m)), "max_ctx", infer_max_ctx(m), "bytes",
                    (json_int_t)infer_bytes(m), "vocab_size", infer_config(m)->vocab_size);
  } else if (!strcmp(cmd, "classify")) {
    int nl = infer_config(m)->num_labels;
    float *p = calloc(nl > 0 ? nl : 1, sizeof *p);
    rc = infer_classify(m, ids, n, p, &e);
    if (!rc) {
      out = json_pack("{s[]s[]}", "probs", "labels");
      for (int i = 0; i < nl; i++) {
        json_array_append_new(json_object_get(out, "probs"), json_real(p[i]));
        json_array_append_new(json_object_get(out, "labels"),
                              json_string(infer_config(m)->id2label[i]));
      }
    }
    free(p);
  } else {
    sink s = {json_array(), json_array(), json_array(), json_array(), json_array(), NULL, NULL,
              0, 0};
    append(&s.text, &s.len, "", 0);
    append(&s.ptext, &s.plen, "", 0);
    ft_gen_result r = {0};
    rc = infer_generate(m, ids, n, &o, on_token, &s, &r, &e);
    if (!rc) {
      out = json_object();
      json_object_set_new(out, "prompt_tokens", json_integer(r.prompt_tokens));
      json_object_set_new(out, "completion_tokens", json_integer(r.completion_tokens));
      json_object_set_new(out, "finish_reason", json_string(r.finish_reason));
      json_object_set_new(out, "text", json_stringn(s.text, s.len));
      json_object_set_new(out, "ids", s.ids);
      json_object_set_new(out, "logprobs", s.lps);
      json_object_set_new(out, "top_ids", s.tops);
      json_object_set_new(out, "prompt_ids", s.pids);
      json_object_set_new(out, "prompt_logprobs", s.plps);
      json_object_set_new(out, "prompt_text", json_stringn(s.ptext, s.plen));
    }
    else {
      json_decref(s.ids);
      json_decref(s.lps);
      json_decref(s.tops);
      json_decref(s.pids);
      json_decref(s.plps);
    }
    free(s.text);
    free(s.ptext);
  }
  free(ids);
  if (rc) {
    infer_free(m);
    return fail(rc, &e);
  }
  json_dumpf(out, stdout, JSON_COMPACT);
  printf("\n");
  json_decref(out);
  infer_free(m);
  return 0;
}
