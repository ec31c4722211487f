/* safetensors reader and writer (see safetensors.h). The reader maps the
 * whole file read-only and keeps the parsed header (the tensor names point
 * into it); nothing is copied until st_read_f32 converts one tensor into a
 * caller's float buffer. Inputs are untrusted: every size is checked for
 * overflow and every span against the mapping before it is used. Model files
 * hold a few hundred tensors, so the by-name index is a sorted array. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ft_fs.h"

struct st_file {
  void *map; /* mmap'd file, or NULL when the caller owns the buffer */
  size_t map_len;
  const uint8_t *data; /* start of the data section */
  size_t data_len;
  json_t *header; /* owns the tensor names */
  st_tensor *t;   /* sorted by name */
  size_t n;
};

static const char *dtype_name[] = {"F32", "F16", "BF16"};
static const size_t dtype_size[] = {4, 2, 2};

float st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign; /* +-0 */
  } else {       /* subnormal: normalise */
    int e = -1;
    do {
      e++;
      man <<= 1;
    } while (!(man & 0x400));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

float st_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Round to nearest even, with subnormals, inf and NaN (a NaN stays a NaN). */
uint16_t st_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t exp = (x >> 23) & 0xffu, man = x & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
  int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    man |= 0x800000u;
    int shift = 14 - e;
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into inf: correct */
  return (uint16_t)(sign | h);
}

uint16_t st_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}
static int by_offset(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes; /* empty tensors first */
}

static int get_u64(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* Fills t from one header entry; the errors name the tensor. */
static int parse_entry(st_tensor *t, const char *name, const json_t *v, size_t data_len,
                       const char *what, ft_error *err) {
  if (!json_is_object(v))
    return ft_error_set(err, FT_EFORMAT, name, "%s: header entry '%s' is not an object", what,
                        name);
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
      return ft_error_set(err, FT_EFORMAT, name, "%s: tensor '%s' has an unknown header field '%s'",
                          what, name, key);
  }
  const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
               *off = json_object_get(v, "data_offsets");
  if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off))
    return ft_error_set(err, FT_EFORMAT, name,
                        "%s: tensor '%s' needs string dtype, array shape and array data_offsets",
                        what, name);
  const char *d = json_string_value(dt);
  int found = 0;
  for (int i = 0; i < 3; i++)
    if (strcmp(d, dtype_name[i]) == 0) t->dtype = (st_dtype)i, found = 1;
  if (!found)
    return ft_error_set(err, FT_EFORMAT, name,
                        "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", what,
                        name, d);
  size_t nd = json_array_size(sh);
  if (nd > ST_MAX_DIMS)
    return ft_error_set(err, FT_EFORMAT, name, "%s: tensor '%s' has %zu dimensions (max %d)", what,
                        name, nd, ST_MAX_DIMS);
  t->ndim = (int)nd;
  size_t numel = 1;
  for (size_t i = 0; i < nd; i++) {
    uint64_t dim;
    if (get_u64(json_array_get(sh, i), &dim) || dim > SIZE_MAX ||
        __builtin_mul_overflow(numel, (size_t)dim, &numel))
      return ft_error_set(err, FT_EFORMAT, name, "%s: tensor '%s' has an invalid shape", what,
                          name);
    t->shape[i] = (int64_t)dim;
  }
  t->numel = numel;
  uint64_t b, e;
  if (json_array_size(off) != 2 || get_u64(json_array_get(off, 0), &b) ||
      get_u64(json_array_get(off, 1), &e) || b > e)
    return ft_error_set(
        err, FT_EFORMAT, name,
        "%s: tensor '%s' has invalid data_offsets (need [begin, end], begin <= end)", what, name);
  size_t bytes;
  if (__builtin_mul_overflow(numel, dtype_size[t->dtype], &bytes) || bytes != e - b)
    return ft_error_set(err, FT_EFORMAT, name,
                        "%s: tensor '%s': shape and dtype %s need %zu bytes but data_offsets span "
                        "%llu",
                        what, name, d, bytes, (unsigned long long)(e - b));
  if (e > data_len)
    return ft_error_set(err, FT_EFORMAT, name,
                        "%s: truncated or corrupt: tensor '%s' ends at data byte %llu but the file "
                        "holds only %zu data bytes",
                        what, name, (unsigned long long)e, data_len);
  t->offset = (size_t)b;
  t->nbytes = bytes;
  return 0;
}

/* Parses and validates buf; what names the file in messages. */
static int parse(st_file *f, const uint8_t *buf, size_t len, const char *what, ft_error *err) {
  if (len < 8)
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "%s: truncated: %zu bytes, shorter than the 8-byte header length", what,
                        len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen < 2 || hlen > ST_MAX_HEADER)
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "%s: not a safetensors file: header length %llu out of range", what,
                        (unsigned long long)hlen);
  if (hlen > len - 8)
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "%s: truncated: header says %llu bytes but only %zu follow", what,
                        (unsigned long long)hlen, len - 8);
  if (buf[8] != '{')
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "%s: not a safetensors file: header is not a JSON object", what);
  json_error_t je;
  f->header = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  if (!f->header || !json_is_object(f->header))
    return ft_error_set(err, FT_EFORMAT, NULL, "%s: header JSON is invalid: %s", what,
                        f->header ? "not an object" : je.text);
  f->data = buf + 8 + hlen;
  f->data_len = len - 8 - (size_t)hlen;

  size_t n = json_object_size(f->header);
  f->t = calloc(n ? n : 1, sizeof *f->t);
  if (!f->t) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  const char *key;
  json_t *v;
  json_object_foreach(f->header, key, v) {
    if (strcmp(key, "__metadata__") == 0) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(v))
        return ft_error_set(err, FT_EFORMAT, "__metadata__", "%s: __metadata__ is not an object",
                            what);
      json_object_foreach(v, mk, mv) {
        if (!json_is_string(mv))
          return ft_error_set(err, FT_EFORMAT, "__metadata__",
                              "%s: __metadata__ value '%s' is not a string", what, mk);
      }
      continue;
    }
    st_tensor *t = &f->t[f->n];
    t->name = key;
    int rc = parse_entry(t, key, v, f->data_len, what, err);
    if (rc) return rc;
    f->n++;
  }

  /* Spans must tile the data section exactly: sorted by offset, each starts
   * where the previous ended, the last ends at the end of the file. */
  const st_tensor **ord = malloc((f->n ? f->n : 1) * sizeof *ord);
  if (!ord) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  for (size_t i = 0; i < f->n; i++) ord[i] = &f->t[i];
  qsort(ord, f->n, sizeof *ord, by_offset);
  size_t end = 0;
  int rc = 0;
  for (size_t i = 0; i < f->n && !rc; i++) {
    if (ord[i]->offset < end)
      rc = ft_error_set(err, FT_EFORMAT, ord[i]->name,
                        "%s: tensor '%s' overlaps tensor '%s' in the data section", what,
                        ord[i]->name, ord[i - 1]->name);
    else if (ord[i]->offset > end)
      rc = ft_error_set(err, FT_EFORMAT, ord[i]->name,
                        "%s: gap before tensor '%s' in the data section (bytes %zu..%zu unused)",
                        what, ord[i]->name, end, ord[i]->offset);
    end = ord[i]->offset + ord[i]->nbytes;
  }
  free(ord);
  if (rc) return rc;
  if (end != f->data_len)
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "%s: %zu bytes of data after the last tensor (tensors end at %zu)", what,
                        f->data_len - end, end);
  qsort(f->t, f->n, sizeof *f->t, by_name);
  return 0;
}

static int open_common(st_file **out, st_file *f, const uint8_t *buf, size_t len, const char *what,
                       ft_error *err) {
  int rc = parse(f, buf, len, what, err);
  if (rc) {
    st_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int st_open_buffer(st_file **out, const void *buf, size_t len, ft_error *err) {
  *out = NULL;
  st_file *f = calloc(1, sizeof *f);
  if (!f) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  return open_common(out, f, buf, len, "safetensors", err);
}

int st_open(st_file **out, const char *path, ft_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ft_error_set(err, errno == ENOENT ? FT_ENOT_FOUND : FT_EIO, NULL, "cannot open %s: %s",
                        path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return ft_error_set(err, FT_EIO, NULL, "%s is not a regular file", path);
  }
  st_file *f = calloc(1, sizeof *f);
  if (!f) {
    close(fd);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  size_t len = (size_t)sb.st_size;
  const uint8_t *buf = (const uint8_t *)"";
  if (len > 0) {
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(f);
      return ft_error_set(err, FT_EIO, NULL, "cannot map %s: %s", path, strerror(e));
    }
    f->map = p;
    f->map_len = len;
    buf = p;
  }
  close(fd);
  /* messages name the file by its base name (paths stay out of API errors) */
  const char *slash = strrchr(path, '/');
  return open_common(out, f, buf, len, slash ? slash + 1 : path, err);
}

void st_close(st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  json_decref(f->header);
  free(f->t);
  free(f);
}

size_t st_count(const st_file *f) { return f->n; }
const st_tensor *st_at(const st_file *f, size_t i) { return i < f->n ? &f->t[i] : NULL; }
size_t st_index(const st_file *f, const st_tensor *t) { return (size_t)(t - f->t); }

const st_tensor *st_find(const st_file *f, const char *name) {
  st_tensor key = {.name = name};
  return bsearch(&key, f->t, f->n, sizeof *f->t, by_name);
}

const char *st_metadata(const st_file *f, const char *key) {
  return json_string_value(json_object_get(json_object_get(f->header, "__metadata__"), key));
}

int st_read_f32(const st_file *f, const st_tensor *t, float *dst, size_t n, ft_error *err) {
  if (n != t->numel)
    return ft_error_set(err, FT_ESHAPE, t->name, "tensor '%s' has %zu elements, expected %zu",
                        t->name, t->numel, n);
  const uint8_t *src = f->data + t->offset; /* may be unaligned: read through memcpy */
  switch (t->dtype) {
    case ST_F32:
      memcpy(dst, src, n * 4);
      break;
    case ST_F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = st_f16_to_f32(h);
      }
      break;
    case ST_BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = st_bf16_to_f32(h);
      }
      break;
  }
  return 0;
}

/* ---- writer ---- */

static int build_header(json_t **out, const st_out *t, size_t n, const json_t *metadata,
                        st_dtype dtype, ft_error *err) {
  int rc = FT_ENOMEM;
  json_t *h = json_object(), *meta = json_object();
  *out = NULL;
  if (!h || !meta) goto nomem;
  if (metadata) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)metadata, k, v) {
      if (!json_is_string(v)) {
        rc =
            ft_error_set(err, FT_EINVALID, k, "safetensors metadata value '%s' is not a string", k);
        goto fail;
      }
      json_object_set(meta, k, v);
    }
  }
  if (!json_object_get(meta, "format")) json_object_set_new(meta, "format", json_string("pt"));
  json_object_set_new(h, "__metadata__", meta);
  meta = NULL;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(t[i].name, "__metadata__") == 0 || json_object_get(h, t[i].name) || t[i].ndim < 0 ||
        t[i].ndim > ST_MAX_DIMS) {
      rc = ft_error_set(err, FT_EINVALID, t[i].name,
                        "cannot write tensor '%s': duplicate or bad name/ndim", t[i].name);
      goto fail;
    }
    json_t *shape = json_array();
    size_t numel = 1;
    for (int d = 0; d < t[i].ndim; d++) {
      json_array_append_new(shape, json_integer(t[i].shape[d]));
      numel *= (size_t)t[i].shape[d];
    }
    size_t nbytes = dtype_size[dtype] * numel;
    json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_name[dtype], "shape", shape,
                          "data_offsets", (json_int_t)off, (json_int_t)(off + nbytes));
    if (!e || json_object_set_new(h, t[i].name, e)) goto nomem;
    off += nbytes;
  }
  *out = h;
  return 0;
nomem:
  rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
fail:
  json_decref(h);
  json_decref(meta);
  return rc;
}

static size_t out_numel(const st_out *t) {
  size_t numel = 1;
  for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
  return numel;
}

/* Writes numel floats of src as dtype, converting a block at a time. */
static int write_as(FILE *fp, const float *src, size_t numel, st_dtype dtype) {
  if (dtype == ST_F32) return fwrite(src, sizeof(float), numel, fp) == numel;
  uint16_t buf[4096];
  for (size_t i = 0; i < numel;) {
    size_t k = numel - i < 4096 ? numel - i : 4096;
    for (size_t j = 0; j < k; j++)
      buf[j] = dtype == ST_F16 ? st_f32_to_f16(src[i + j]) : st_f32_to_bf16(src[i + j]);
    if (fwrite(buf, 2, k, fp) != k) return 0;
    i += k;
  }
  return 1;
}

int st_write_f32(const char *path, const st_out *t, size_t n, const json_t *metadata,
                 ft_error *err) {
  return st_write(path, t, n, metadata, ST_F32, err);
}

int st_write(const char *path, const st_out *t, size_t n, const json_t *metadata, st_dtype dtype,
             ft_error *err) {
  if ((unsigned)dtype > ST_BF16)
    return ft_error_set(err, FT_EINVALID, "dtype", "unknown safetensors dtype %d", (int)dtype);
  json_t *h;
  int rc = build_header(&h, t, n, metadata, dtype, err);
  if (rc) return rc;
  char *js = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(h);
  if (!js) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  size_t jlen = strlen(js), hlen = (jlen + 7) & ~(size_t)7; /* pad with spaces to 8 bytes */

  ft_atomic a;
  if ((rc = ft_atomic_open(&a, path, 0644, err))) {
    free(js);
    return rc;
  }
  FILE *fp = a.f;
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(js, 1, jlen, fp) == jlen;
  for (size_t i = jlen; ok && i < hlen; i++) ok = fputc(' ', fp) != EOF;
  free(js);
  for (size_t i = 0; ok && i < n; i++) {
    size_t numel = out_numel(&t[i]);
    if (numel) ok = write_as(fp, t[i].data, numel, dtype);
  }
  if (!ok) {
    int e = errno;
    ft_atomic_abort(&a);
    return ft_error_set(err, FT_EIO, NULL, "cannot write %s: %s", path, strerror(e));
  }
  return ft_atomic_commit(&a, err);
}

int st_convert(const char *src, const char *dst, st_dtype dtype, ft_error *err) {
  st_file *f;
  int rc = st_open(&f, src, err);
  if (rc) return rc;
  size_t n = st_count(f);
  st_out *o = calloc(n ? n : 1, sizeof *o);
  float **bufs = calloc(n ? n : 1, sizeof *bufs);
  json_t *meta = json_object();
  if (!o || !bufs || !meta) rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
  for (size_t i = 0; !rc && i < n; i++) {
    const st_tensor *t = st_at(f, i);
    o[i].name = t->name;
    o[i].ndim = t->ndim;
    memcpy(o[i].shape, t->shape, sizeof o[i].shape);
    if (!(bufs[i] = malloc((t->numel ? t->numel : 1) * sizeof(float))))
      rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
    else
      rc = st_read_f32(f, t, bufs[i], t->numel, err);
    o[i].data = bufs[i];
  }
  const char *k;
  json_t *v;
  json_t *fm = json_object_get(f->header, "__metadata__");
  if (!rc && json_is_object(fm))
    json_object_foreach(fm, k, v) if (json_is_string(v)) json_object_set(meta, k, v);
  if (!rc) rc = st_write(dst, o, n, meta, dtype, err);
  for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
  free(bufs);
  free(o);
  json_decref(meta);
  st_close(f);
  return rc;
}
