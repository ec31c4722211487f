/* ggufcli FILE: dumps a GGUF file's header, metadata and tensor list as one
 * JSON object on stdout, for the scripted tests (tests/api/test_export.sh):
 *   {"version", "alignment", "data_offset",
 *    "metadata": {key: value | {"array": TYPE, "n": N, "head": [first 16]}},
 *    "tensors": [{"name", "ne": [...], "type": "F16", "offset", "nbytes"}]}
 * Exit 1 with the reader's message on stderr if the file is refused. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "formats/gguf.h"

static const char *type_name(gguf_type t) {
  static const char *const n[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                  "int32",  "float32", "bool",   "string", "array",
                                  "uint64", "int64",   "float64"};
  return (unsigned)t < sizeof n / sizeof *n ? n[t] : "?";
}

static json_t *elem(const gguf_kv *kv, uint64_t i) {
  if (kv->arr_type == GGUF_STRING) {
    size_t len = 0;
    const char *s = gguf_arr_str(kv, i, &len);
    return json_stringn_nocheck(s, len);
  }
  if (kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64)
    return json_real(gguf_arr_num(kv, i));
  if (kv->arr_type == GGUF_BOOL) return json_boolean(gguf_arr_int(kv, i));
  return json_integer(gguf_arr_int(kv, i));
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ggufcli FILE.gguf\n");
    return 2;
  }
  gguf_file *f = NULL;
  ft_error err = {0};
  if (gguf_open(&f, argv[1], &err)) {
    fprintf(stderr, "ggufcli: %s\n", err.message);
    return 1;
  }
  json_t *md = json_object(), *ts = json_array();
  for (size_t i = 0; i < gguf_n_kv(f); i++) {
    const gguf_kv *kv = gguf_kv_at(f, i);
    json_t *v;
    switch (kv->type) {
      case GGUF_STRING:
        v = json_stringn_nocheck(kv->str, kv->str_len);
        break;
      case GGUF_FLOAT32:
      case GGUF_FLOAT64:
        v = json_real(kv->f);
        break;
      case GGUF_BOOL:
        v = json_boolean(kv->i);
        break;
      case GGUF_UINT64:
        v = json_integer((json_int_t)kv->u);
        break;
      case GGUF_ARRAY: {
        json_t *head = json_array();
        for (uint64_t j = 0; j < kv->n && j < 16; j++) json_array_append_new(head, elem(kv, j));
        v = json_pack("{s:s, s:I, s:o}", "array", type_name(kv->arr_type), "n", (json_int_t)kv->n,
                      "head", head);
        break;
      }
      default:
        v = json_integer(kv->i);
    }
    json_object_set_new(md, kv->key, v);
  }
  for (size_t i = 0; i < gguf_n_tensors(f); i++) {
    const gguf_tensor *t = gguf_tensor_at(f, i);
    json_t *ne = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(ne, json_integer(t->ne[d]));
    const char *tn = gguf_ggml_type_name(t->type);
    json_array_append_new(
        ts, json_pack("{s:s, s:o, s:s, s:I, s:I}", "name", t->name, "ne", ne, "type", tn ? tn : "?",
                      "offset", (json_int_t)t->offset, "nbytes", (json_int_t)t->nbytes));
  }
  json_t *out = json_pack("{s:i, s:i, s:I, s:o, s:o}", "version", (int)gguf_version(f), "alignment",
                          (int)gguf_alignment(f), "data_offset", (json_int_t)gguf_data_offset(f),
                          "metadata", md, "tensors", ts);
  char *s = json_dumps(out, JSON_INDENT(1) | JSON_ENSURE_ASCII);
  puts(s ? s : "{}");
  free(s);
  json_decref(out);
  gguf_close(f);
  return 0;
}
