/* tokcli: drives engine/tok/tok.c for the scripted tokenizer tests (the HF
 * oracle in tests/tok/test_tok_hf.mjs) and for throughput figures.
 *   tokcli encode PATH [--no-special]   stdin: one JSON string per line;
 *       stdout: one JSON object per line, {"ids":[..],"text":decode(ids)}
 *       or {"error":"<code>"}
 *   tokcli info PATH                     vocab size, bos/eos/pad ids
 *   tokcli bench PATH FILE [REPEAT]      encode FILE, print MB/s
 * PATH is a model directory or a tokenizer.json file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ft_fs.h"
#include "tok/tok.h"

static int load(tok **t, const char *path) {
  ft_error err = {0};
  size_t n = strlen(path);
  int rc = (n > 5 && !strcmp(path + n - 5, ".json")) ? tok_load_json(t, path, &err)
                                                     : tok_load(t, path, &err);
  if (rc) fprintf(stderr, "tokcli: %s (%s)\n", err.message, ft_err_code(rc));
  return rc;
}

static int cmd_encode(tok *t, int parse_special) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) > 0) {
    json_error_t je;
    json_t *in = json_loadb(line, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    json_t *out = json_object();
    if (!json_is_string(in)) {
      json_object_set_new(out, "error", json_string("bad_input_line"));
    } else {
      int32_t *ids = NULL;
      size_t n = 0;
      int rc =
          tok_encode(t, json_string_value(in), json_string_length(in), parse_special, &ids, &n);
      if (rc) {
        json_object_set_new(out, "error", json_string(ft_err_code(rc)));
      } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
        json_object_set_new(out, "ids", arr);
        char *text = NULL;
        size_t tl;
        rc = tok_decode_len(t, ids, n, 0, &text, &tl);
        if (rc)
          json_object_set_new(out, "decode_error", json_string(ft_err_code(rc)));
        else
          json_object_set_new(out, "text", json_stringn(text, tl));
        free(text);
        rc = tok_decode_len(t, ids, n, 1, &text, &tl);
        if (!rc) json_object_set_new(out, "text_skip", json_stringn(text, tl));
        free(text);
      }
      free(ids);
    }
    char *s = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII);
    puts(s ? s : "{\"error\":\"dump\"}");
    free(s);
    json_decref(out);
    json_decref(in);
  }
  free(line);
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmd_bench(tok *t, const char *file, int repeat) {
  char *buf;
  size_t sz;
  if (ft_read_file(file, 0, &buf, &sz, NULL)) {
    perror(file);
    return 1;
  }
  double best = 1e30;
  size_t n = 0;
  for (int r = 0; r < repeat; r++) {
    int32_t *ids;
    double t0 = now();
    int rc = tok_encode(t, buf, sz, 1, &ids, &n);
    double dt = now() - t0;
    if (rc) {
      fprintf(stderr, "tokcli: encode failed: %s\n", ft_err_code(rc));
      free(buf);
      return 1;
    }
    free(ids);
    if (dt < best) best = dt;
  }
  printf("%zu bytes -> %zu tokens in %.3f s: %.2f MB/s\n", sz, n, best, (double)sz / best / 1e6);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tokcli encode|info|bench PATH [...]\n");
    return 2;
  }
  tok *t;
  if (load(&t, argv[2])) return 1;
  int rc = 0;
  if (!strcmp(argv[1], "encode")) {
    rc = cmd_encode(t, !(argc > 3 && !strcmp(argv[3], "--no-special")));
  } else if (!strcmp(argv[1], "info")) {
    printf("{\"vocab_size\":%d,\"bos\":%d,\"eos\":%d,\"pad\":%d,\"chat_template\":%s}\n",
           tok_vocab_size(t), tok_bos_id(t), tok_eos_id(t), tok_pad_id(t),
           tok_chat_template(t) ? "true" : "false");
  } else if (!strcmp(argv[1], "bench") && argc > 3) {
    rc = cmd_bench(t, argv[3], argc > 4 ? atoi(argv[4]) : 3);
  } else {
    fprintf(stderr, "tokcli: unknown command %s\n", argv[1]);
    rc = 2;
  }
  tok_free(t);
  return rc;
}
