/* safetensors files (https://huggingface.co/docs/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON {"name": {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the raw
 * tensor bytes. Files come from users and the Hub, so the reader maps the file
 * read-only and validates everything before any tensor is touched: header
 * length, JSON shape, dtype (F32, F16, BF16 read; anything else refused),
 * shape x element size == byte span, spans inside the data, contiguous and
 * non-overlapping (what the reference Rust reader demands). The writer writes
 * F32, F16 or BF16 (rounded to nearest even), atomically (temp file in the same directory, fsync, rename, fsync
 * of the directory). Little-endian hosts only (x86-64, aarch64). */
#ifndef FT_SAFETENSORS_H
#define FT_SAFETENSORS_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* the reference reader's limit */

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } st_dtype;

typedef struct {
  const char *name; /* owned by the st_file */
  st_dtype dtype;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  size_t numel;
  size_t offset, nbytes; /* span inside the data section */
} st_tensor;

typedef struct st_file st_file;

/* Maps and validates a file. Errors: FT_EIO (cannot open/map), FT_EFORMAT
 * (corrupt or unsupported; param = tensor name when one is at fault, message
 * says what is wrong), FT_ENOMEM. Caller frees with st_close. */
int st_open(st_file **out, const char *path, ft_error *err);
/* The same over a buffer the caller keeps alive until st_close (not copied). */
int st_open_buffer(st_file **out, const void *buf, size_t len, ft_error *err);
void st_close(st_file *f);

size_t st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, size_t i);           /* file order is unspecified */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
size_t st_index(const st_file *f, const st_tensor *t);        /* 0..st_count-1 */
const char *st_metadata(const st_file *f, const char *key);   /* NULL if absent */

/* Copies tensor t into dst (n floats, n must equal t->numel) converting to
 * float32. FT_ESHAPE if n differs. */
int st_read_f32(const st_file *f, const st_tensor *t, float *dst, size_t n, ft_error *err);

/* One tensor to write: numel = product of shape (1 for ndim 0). */
typedef struct {
  const char *name;
  const float *data;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
} st_out;

/* Writes n F32 tensors to path atomically. metadata is NULL or an object of
 * string values added to "__metadata__" (which always has "format": "pt").
 * Names must be unique and not "__metadata__" (FT_EINVALID). */
int st_write_f32(const char *path, const st_out *t, size_t n, const json_t *metadata,
                 ft_error *err);

/* The same, storing every tensor as dtype (converted from float32). */
int st_write(const char *path, const st_out *t, size_t n, const json_t *metadata, st_dtype dtype,
             ft_error *err);

/* Rewrites the safetensors file src as dst with every tensor stored as dtype
 * (names, shapes and string metadata kept). Reads the whole file into memory. */
int st_convert(const char *src, const char *dst, st_dtype dtype, ft_error *err);

/* Element conversions (to half precision: round to nearest even). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
uint16_t st_f32_to_bf16(float f);
#endif
