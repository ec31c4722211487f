/* GGUF v3 files (ggml's docs/gguf.md), the format llama.cpp and Ollama load:
 * a writer, a reader, and the export of a model directory (or its PEFT LoRA
 * adapter) with the metadata keys and tensor names llama.cpp's
 * convert_hf_to_gguf.py / convert_lora_to_gguf.py write. Layout: magic
 * "GGUF", version 3, tensor count, KV count, the KV pairs, the tensor infos,
 * padding to general.alignment (32), then the tensor data, each tensor
 * aligned. Little-endian hosts only (as safetensors.c).
 *
 * The reader is a parser of untrusted input: it maps the file read-only and
 * checks every length, count, type and offset against the bytes that are
 * there before reading them; anything wrong is FT_EFORMAT with a message
 * saying what and where. Nothing it returns points outside the mapping.
 *
 * Dimensions are in ggml order: ne[0] is the fastest-varying (the row
 * length), so an HF [out,in] matrix is ne = {in, out}. */
#ifndef FT_GGUF_H
#define FT_GGUF_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64 /* tensor names, as ggml's GGML_MAX_NAME */

/* Metadata value types (gguf_metadata_value_type). */
typedef enum {
  GGUF_UINT8 = 0,
  GGUF_INT8 = 1,
  GGUF_UINT16 = 2,
  GGUF_INT16 = 3,
  GGUF_UINT32 = 4,
  GGUF_INT32 = 5,
  GGUF_FLOAT32 = 6,
  GGUF_BOOL = 7,
  GGUF_STRING = 8,
  GGUF_ARRAY = 9,
  GGUF_UINT64 = 10,
  GGUF_INT64 = 11,
  GGUF_FLOAT64 = 12,
} gguf_type;

/* Tensor element types the reader knows the size of (ggml_type numbers).
 * The writer writes F32 and F16 only. */
enum {
  GGML_T_F32 = 0,
  GGML_T_F16 = 1,
  GGML_T_Q4_0 = 2,
  GGML_T_Q4_1 = 3,
  GGML_T_Q5_0 = 6,
  GGML_T_Q5_1 = 7,
  GGML_T_Q8_0 = 8,
  GGML_T_Q8_1 = 9,
  GGML_T_Q2_K = 10,
  GGML_T_Q3_K = 11,
  GGML_T_Q4_K = 12,
  GGML_T_Q5_K = 13,
  GGML_T_Q6_K = 14,
  GGML_T_Q8_K = 15,
  GGML_T_I8 = 24,
  GGML_T_I16 = 25,
  GGML_T_I32 = 26,
  GGML_T_I64 = 27,
  GGML_T_F64 = 28,
  GGML_T_BF16 = 30,
};
const char *gguf_ggml_type_name(uint32_t t); /* "F32", "F16", ...; NULL if unknown */

/* ---- writer --------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;

int gguf_writer_new(gguf_writer **out, ft_error *err);
void gguf_writer_free(gguf_writer *w);

/* Metadata, written in the order added. A key added twice is FT_EINVALID.
 * Strings and arrays are copied. */
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, ft_error *err);
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v, ft_error *err);
int gguf_set_f32(gguf_writer *w, const char *key, float v, ft_error *err);
int gguf_set_bool(gguf_writer *w, const char *key, int v, ft_error *err);
int gguf_set_str(gguf_writer *w, const char *key, const char *v, ft_error *err);
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n,
                     ft_error *err);
int gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n, ft_error *err);
int gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n, ft_error *err);

/* A tensor of float32 data (ne in ggml order, ndim 1..4) stored as type
 * GGML_T_F32 or GGML_T_F16. data is borrowed (it must live until
 * gguf_write_file), or owned when own is 1 (freed by the writer, also on
 * error). Names must be unique and shorter than GGUF_MAX_NAME. */
int gguf_add_tensor(gguf_writer *w, const char *name, int ndim, const int64_t *ne, uint32_t type,
                    float *data, int own, ft_error *err);

/* Writes the file atomically (temp file in the same directory, fsync,
 * rename, fsync of the directory). */
int gguf_write_file(gguf_writer *w, const char *path, ft_error *err);

/* ---- reader --------------------------------------------------------------- */

typedef struct {
  const char *key; /* NUL-terminated copy */
  gguf_type type;
  /* scalars: the value widened; strings: str (NUL-terminated copy, may hold
   * NUL bytes: str_len is the length) */
  uint64_t u;
  int64_t i;
  double f;
  const char *str;
  size_t str_len;
  /* arrays: element type and count (read them with gguf_arr_*) */
  gguf_type arr_type;
  uint64_t n;
  /* private */
  const unsigned char *arr_data;
  size_t *arr_str_off;
} gguf_kv;

typedef struct {
  const char *name; /* NUL-terminated copy */
  int ndim;
  int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
  uint32_t type;
  uint64_t numel;
  uint64_t offset; /* from the start of the data section */
  size_t nbytes;
  const void *data; /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and parses a file / parses a buffer the caller keeps alive until
 * gguf_close. FT_EIO if it cannot be opened, FT_EFORMAT if it is not a
 * well-formed GGUF v2/v3 file, FT_ENOMEM. */
int gguf_open(gguf_file **out, const char *path, ft_error *err);
int gguf_open_buffer(gguf_file **out, const void *buf, size_t len, ft_error *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
size_t gguf_data_offset(const gguf_file *f); /* file offset of the data section */
size_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i); /* file order */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
size_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i); /* file order */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Array elements; i must be < kv->n and the element type must fit (a string
 * for _str, an integer or bool type for _int, a float or integer type for
 * _num), else NULL / 0. */
const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len);
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);
double gguf_arr_num(const gguf_kv *kv, uint64_t i);

/* Copies tensor t (F32, F16 or BF16) into dst as float32; n must equal
 * t->numel (FT_ESHAPE), other types FT_EUNSUPPORTED. */
int gguf_tensor_read_f32(const gguf_tensor *t, float *dst, size_t n, ft_error *err);

/* ---- export --------------------------------------------------------------- */

/* Writes the model of an HF directory (config.json, model.safetensors,
 * tokenizer.json or vocab.json + merges.txt, tokenizer_config.json) as a
 * llama.cpp GGUF: architecture "gpt2", "llama" (llama, mistral), "qwen2" or
 * "qwen3" (the family's gguf_arch, nn/arch.c). rope_scaling linear is
 * written as rope.scaling.type/factor, llama3 as convert_hf_to_gguf.py
 * does: a rope_freqs.weight tensor of per-frequency factors.
 * f16: 2-D weights as F16, norms, biases and position embeddings F32 (as
 * convert_hf_to_gguf.py). Classifiers are FT_EUNSUPPORTED. name is
 * general.name (NULL: the directory's base name). */
int gguf_export_model(const char *model_dir, const char *out_path, int f16, const char *name,
                      ft_error *err);

/* Writes the PEFT adapter found in adapter_dir (adapter_config.json +
 * adapter_model.safetensors) as a llama.cpp LoRA adapter GGUF, using the base
 * model's config.json in model_dir: general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha, tensors "<base>.lora_a" ne {in, r} and
 * "<base>.lora_b" ne {r, out} (llama: lora_b rows permuted as the base). */
int gguf_export_adapter(const char *model_dir, const char *adapter_dir, const char *out_path,
                        int f16, const char *name, ft_error *err);

/* The GGUF tensor name of an HF (or PEFT, without its .lora_A/.lora_B
 * suffix) tensor name, into out; FT_EUNSUPPORTED if it has none. *permute_heads
 * (if not NULL) gets the head count of the Q/K row permutation llama.cpp
 * applies for architecture "llama" (0: none). Exposed for tests. */
int gguf_tensor_name(const char *arch, const char *hf_name, int n_head, int n_kv_head, char *out,
                     size_t size, int *permute_heads);
/* llama.cpp's Q/K permutation of a [rows, cols] row-major matrix (rows =
 * n_heads * head_dim; cols 1 for a bias), in place; inverse undoes it. */
int gguf_permute_rows(float *w, int rows, int cols, int n_heads, int inverse);
#endif
