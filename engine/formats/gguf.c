/* GGUF v3 writer, bounds-checked reader, and the export of a model directory
 * or PEFT adapter to the layout llama.cpp loads (see gguf.h). Export holds
 * the model in float32 once (model.c's table, loaded by hfdir.c), so memory
 * is about the size of the F32 weights; the writer converts to F16 in small
 * chunks as it writes. The reader maps the file and copies only names and
 * string values. */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/hfdir.h"
#include "ft_fs.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "formats/safetensors.h"

/* ---- element types -------------------------------------------------------- */

typedef struct {
  uint32_t type;
  const char *name;
  uint32_t blck;  /* elements per block */
  uint32_t bytes; /* bytes per block */
} ggml_tinfo;

static const ggml_tinfo tinfo[] = {
    {GGML_T_F32, "F32", 1, 4},       {GGML_T_F16, "F16", 1, 2},
    {GGML_T_Q4_0, "Q4_0", 32, 18},   {GGML_T_Q4_1, "Q4_1", 32, 20},
    {GGML_T_Q5_0, "Q5_0", 32, 22},   {GGML_T_Q5_1, "Q5_1", 32, 24},
    {GGML_T_Q8_0, "Q8_0", 32, 34},   {GGML_T_Q8_1, "Q8_1", 32, 36},
    {GGML_T_Q2_K, "Q2_K", 256, 84},  {GGML_T_Q3_K, "Q3_K", 256, 110},
    {GGML_T_Q4_K, "Q4_K", 256, 144}, {GGML_T_Q5_K, "Q5_K", 256, 176},
    {GGML_T_Q6_K, "Q6_K", 256, 210}, {GGML_T_Q8_K, "Q8_K", 256, 292},
    {GGML_T_I8, "I8", 1, 1},         {GGML_T_I16, "I16", 1, 2},
    {GGML_T_I32, "I32", 1, 4},       {GGML_T_I64, "I64", 1, 8},
    {GGML_T_F64, "F64", 1, 8},       {GGML_T_BF16, "BF16", 1, 2},
};

static const ggml_tinfo *tinfo_of(uint32_t t) {
  for (size_t i = 0; i < sizeof tinfo / sizeof *tinfo; i++)
    if (tinfo[i].type == t) return &tinfo[i];
  return NULL;
}

const char *gguf_ggml_type_name(uint32_t t) {
  const ggml_tinfo *ti = tinfo_of(t);
  return ti ? ti->name : NULL;
}

/* Size of one metadata value of a fixed-size type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t) {
  switch (t) {
    case GGUF_UINT8:
    case GGUF_INT8:
    case GGUF_BOOL:
      return 1;
    case GGUF_UINT16:
    case GGUF_INT16:
      return 2;
    case GGUF_UINT32:
    case GGUF_INT32:
    case GGUF_FLOAT32:
      return 4;
    case GGUF_UINT64:
    case GGUF_INT64:
    case GGUF_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

static float bf16_to_f32(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

/* ---- writer --------------------------------------------------------------- */

typedef struct {
  char *key;
  uint32_t type;
  unsigned char *blob; /* the value's bytes as in the file */
  size_t len;
} wkv;

typedef struct {
  char *name;
  int ndim;
  int64_t ne[GGUF_MAX_DIMS];
  uint32_t type;
  float *data;
  int own;
  size_t numel;
  uint64_t offset;
} wtensor;

struct gguf_writer {
  wkv *kv;
  size_t nkv, capkv;
  wtensor *t;
  size_t nt, capt;
};

int gguf_writer_new(gguf_writer **out, ft_error *err) {
  *out = calloc(1, sizeof **out);
  return *out ? 0 : ft_error_set(err, FT_ENOMEM, NULL, NULL);
}

void gguf_writer_free(gguf_writer *w) {
  if (!w) return;
  for (size_t i = 0; i < w->nkv; i++) {
    free(w->kv[i].key);
    free(w->kv[i].blob);
  }
  for (size_t i = 0; i < w->nt; i++) {
    free(w->t[i].name);
    if (w->t[i].own) free(w->t[i].data);
  }
  free(w->kv);
  free(w->t);
  free(w);
}

typedef struct {
  unsigned char *p;
  size_t len, cap;
  int oom;
} bbuf;

static void bb_put(bbuf *b, const void *src, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n) cap *= 2;
    unsigned char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
}
static void bb_u32(bbuf *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bbuf *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bbuf *b, const char *s, size_t n) {
  bb_u64(b, n);
  bb_put(b, s, n);
}

static int add_kv(gguf_writer *w, const char *key, uint32_t type, bbuf *b, ft_error *err) {
  if (b->oom) {
    free(b->p);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  for (size_t i = 0; i < w->nkv; i++)
    if (!strcmp(w->kv[i].key, key)) {
      free(b->p);
      return ft_error_set(err, FT_EINVALID, key, "metadata key %s added twice", key);
    }
  if (w->nkv == w->capkv) {
    size_t cap = w->capkv ? w->capkv * 2 : 32;
    wkv *nk = realloc(w->kv, cap * sizeof *nk);
    if (!nk) {
      free(b->p);
      return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    }
    w->kv = nk;
    w->capkv = cap;
  }
  char *k = strdup(key);
  if (!k) {
    free(b->p);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  w->kv[w->nkv++] = (wkv){k, type, b->p, b->len};
  return 0;
}

static int set_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n,
                      ft_error *err) {
  bbuf b = {0};
  bb_put(&b, v, n);
  return add_kv(w, key, type, &b, err);
}

int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v, ft_error *err) {
  return set_scalar(w, key, GGUF_UINT32, &v, 4, err);
}
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v, ft_error *err) {
  return set_scalar(w, key, GGUF_INT32, &v, 4, err);
}
int gguf_set_f32(gguf_writer *w, const char *key, float v, ft_error *err) {
  return set_scalar(w, key, GGUF_FLOAT32, &v, 4, err);
}
int gguf_set_bool(gguf_writer *w, const char *key, int v, ft_error *err) {
  uint8_t b = v ? 1 : 0;
  return set_scalar(w, key, GGUF_BOOL, &b, 1, err);
}
int gguf_set_str(gguf_writer *w, const char *key, const char *v, ft_error *err) {
  bbuf b = {0};
  bb_str(&b, v, strlen(v));
  return add_kv(w, key, GGUF_STRING, &b, err);
}
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n,
                     ft_error *err) {
  bbuf b = {0};
  bb_u32(&b, GGUF_STRING);
  bb_u64(&b, n);
  for (size_t i = 0; i < n; i++) bb_str(&b, v[i], strlen(v[i]));
  return add_kv(w, key, GGUF_ARRAY, &b, err);
}
static int set_arr_fixed(gguf_writer *w, const char *key, uint32_t et, const void *v, size_t n,
                         ft_error *err) {
  bbuf b = {0};
  bb_u32(&b, et);
  bb_u64(&b, n);
  bb_put(&b, v, n * 4);
  return add_kv(w, key, GGUF_ARRAY, &b, err);
}
int gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n, ft_error *err) {
  return set_arr_fixed(w, key, GGUF_INT32, v, n, err);
}
int gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n, ft_error *err) {
  return set_arr_fixed(w, key, GGUF_FLOAT32, v, n, err);
}

int gguf_add_tensor(gguf_writer *w, const char *name, int ndim, const int64_t *ne, uint32_t type,
                    float *data, int own, ft_error *err) {
  int rc = 0;
  size_t numel = 1;
  if (strlen(name) == 0 || strlen(name) >= GGUF_MAX_NAME)
    rc = ft_error_set(err, FT_EINVALID, name, "tensor name \"%s\" is empty or too long", name);
  else if (ndim < 1 || ndim > GGUF_MAX_DIMS)
    rc = ft_error_set(err, FT_EINVALID, name, "tensor %s has %d dimensions", name, ndim);
  else if (type != GGML_T_F32 && type != GGML_T_F16)
    rc =
        ft_error_set(err, FT_EINVALID, name, "tensor %s: the writer writes F32 and F16 only", name);
  for (int d = 0; !rc && d < ndim; d++) {
    if (ne[d] < 1) rc = ft_error_set(err, FT_EINVALID, name, "tensor %s: bad dimension", name);
    numel *= (size_t)ne[d];
  }
  for (size_t i = 0; !rc && i < w->nt; i++)
    if (!strcmp(w->t[i].name, name))
      rc = ft_error_set(err, FT_EINVALID, name, "tensor %s added twice", name);
  if (!rc && w->nt == w->capt) {
    size_t cap = w->capt ? w->capt * 2 : 64;
    wtensor *nt = realloc(w->t, cap * sizeof *nt);
    if (!nt)
      rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
    else {
      w->t = nt;
      w->capt = cap;
    }
  }
  char *nm = rc ? NULL : strdup(name);
  if (!rc && !nm) rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
  if (rc) {
    if (own) free(data);
    return rc;
  }
  wtensor *t = &w->t[w->nt++];
  memset(t, 0, sizeof *t);
  t->name = nm;
  t->ndim = ndim;
  for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < ndim ? ne[d] : 1;
  t->type = type;
  t->data = data;
  t->own = own;
  t->numel = numel;
  return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int write_all(FILE *f, const void *p, size_t n, uint64_t *pos) {
  if (n && fwrite(p, 1, n, f) != n) return -1;
  *pos += n;
  return 0;
}

static int write_pad(FILE *f, uint64_t *pos, uint64_t a) {
  static const unsigned char zero[64];
  size_t pad = (size_t)(align_up(*pos, a) - *pos);
  return write_all(f, zero, pad, pos);
}

static int write_body(gguf_writer *w, FILE *f) {
  uint64_t pos = 0;
  bbuf h = {0};
  bb_u32(&h, GGUF_MAGIC);
  bb_u32(&h, GGUF_VERSION);
  bb_u64(&h, w->nt);
  bb_u64(&h, w->nkv);
  for (size_t i = 0; i < w->nkv; i++) {
    bb_str(&h, w->kv[i].key, strlen(w->kv[i].key));
    bb_u32(&h, w->kv[i].type);
    bb_put(&h, w->kv[i].blob, w->kv[i].len);
  }
  uint64_t off = 0;
  for (size_t i = 0; i < w->nt; i++) {
    wtensor *t = &w->t[i];
    off = align_up(off, GGUF_DEFAULT_ALIGNMENT);
    t->offset = off;
    off += t->numel * (t->type == GGML_T_F16 ? 2 : 4);
    bb_str(&h, t->name, strlen(t->name));
    bb_u32(&h, (uint32_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) bb_u64(&h, (uint64_t)t->ne[d]);
    bb_u32(&h, t->type);
    bb_u64(&h, t->offset);
  }
  if (h.oom) return -ENOMEM;
  int rc = write_all(f, h.p, h.len, &pos) || write_pad(f, &pos, GGUF_DEFAULT_ALIGNMENT);
  free(h.p);
  if (rc) return -1;
  uint64_t data0 = pos;
  uint16_t buf[4096];
  for (size_t i = 0; i < w->nt; i++) {
    wtensor *t = &w->t[i];
    if (write_pad(f, &pos, GGUF_DEFAULT_ALIGNMENT) || pos - data0 != t->offset) return -1;
    if (t->type == GGML_T_F32) {
      if (write_all(f, t->data, t->numel * 4, &pos)) return -1;
      continue;
    }
    for (size_t j = 0; j < t->numel; j += 4096) {
      size_t n = t->numel - j < 4096 ? t->numel - j : 4096;
      for (size_t k = 0; k < n; k++) buf[k] = st_f32_to_f16(t->data[j + k]);
      if (write_all(f, buf, n * 2, &pos)) return -1;
    }
  }
  return 0;
}

int gguf_write_file(gguf_writer *w, const char *path, ft_error *err) {
  ft_atomic a;
  int rc = ft_atomic_open(&a, path, 0644, err);
  if (rc) return rc;
  if ((rc = write_body(w, a.f))) {
    int saved = errno;
    ft_atomic_abort(&a);
    if (rc == -ENOMEM) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    return ft_error_set(err, FT_EIO, "path", "cannot write %s: %s", path, strerror(saved));
  }
  return ft_atomic_commit(&a, err);
}

/* ---- reader --------------------------------------------------------------- */

struct gguf_file {
  const unsigned char *buf;
  size_t len;
  void *map;
  uint32_t version, alignment;
  size_t data_off;
  gguf_kv *kv;
  size_t nkv;
  gguf_tensor *t;
  size_t nt;
};

typedef struct {
  const unsigned char *p;
  size_t len, pos;
  ft_error *err;
} cur;

static int bad(cur *c, const char *fmt, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  return ft_error_set(c->err, FT_EFORMAT, "gguf", "not a valid GGUF file: %s (at byte %zu)", msg,
                      c->pos);
}

static int need(cur *c, size_t n, const char *what) {
  if (n > c->len - c->pos) return bad(c, "%s runs past the end of the file", what);
  return 0;
}

static int rd(cur *c, void *dst, size_t n, const char *what) {
  int rc = need(c, n, what);
  if (rc) return rc;
  memcpy(dst, c->p + c->pos, n);
  c->pos += n;
  return 0;
}

/* A string: its bytes stay in the buffer; *s points at them. */
static int rd_str(cur *c, const unsigned char **s, uint64_t *n, const char *what) {
  int rc = rd(c, n, 8, what);
  if (rc) return rc;
  if ((rc = need(c, *n > SIZE_MAX ? SIZE_MAX : (size_t)*n, what))) return rc;
  *s = c->p + c->pos;
  c->pos += (size_t)*n;
  return 0;
}

static char *dup_bytes(const unsigned char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 if two of the n names (each at base + i*stride, a const char *) are
 * equal, -1 when out of memory. Sorting keeps it O(n log n) on hostile
 * counts. */
static int has_dup(const void *base, size_t n, size_t stride) {
  if (n < 2) return 0;
  const char **v = malloc(n * sizeof *v);
  if (!v) return -1;
  for (size_t i = 0; i < n; i++) v[i] = *(const char *const *)((const char *)base + i * stride);
  qsort(v, n, sizeof *v, cmp_name);
  int dup = 0;
  for (size_t i = 1; i < n && !dup; i++) dup = !strcmp(v[i - 1], v[i]);
  free(v);
  return dup;
}

typedef struct {
  uint64_t off, nbytes;
  const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

static int parse_value(cur *c, gguf_kv *kv) {
  int rc;
  uint32_t t = kv->type;
  size_t sz = scalar_size(t);
  if (sz) {
    unsigned char b[8] = {0};
    if ((rc = rd(c, b, sz, "metadata value"))) return rc;
    switch (t) {
      case GGUF_UINT8:
        kv->u = b[0];
        kv->i = b[0];
        break;
      case GGUF_INT8:
        kv->i = (int8_t)b[0];
        break;
      case GGUF_BOOL:
        if (b[0] > 1) return bad(c, "bool value of %s is neither 0 nor 1", kv->key);
        kv->u = kv->i = b[0];
        break;
      case GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, b, 2);
        kv->u = v;
        kv->i = v;
        break;
      }
      case GGUF_INT16: {
        int16_t v;
        memcpy(&v, b, 2);
        kv->i = v;
        break;
      }
      case GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, b, 4);
        kv->u = v;
        kv->i = v;
        break;
      }
      case GGUF_INT32: {
        int32_t v;
        memcpy(&v, b, 4);
        kv->i = v;
        break;
      }
      case GGUF_FLOAT32: {
        float v;
        memcpy(&v, b, 4);
        kv->f = v;
        break;
      }
      case GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, b, 8);
        kv->u = v;
        kv->i = (int64_t)v;
        kv->f = (double)v;
        break;
      }
      case GGUF_INT64: {
        int64_t v;
        memcpy(&v, b, 8);
        kv->i = v;
        break;
      }
      case GGUF_FLOAT64: {
        double v;
        memcpy(&v, b, 8);
        kv->f = v;
        break;
      }
    }
    if (t != GGUF_FLOAT32 && t != GGUF_FLOAT64 && t != GGUF_UINT64) kv->f = (double)kv->i;
    if (kv->i >= 0 && t != GGUF_UINT64) kv->u = (uint64_t)kv->i;
    return 0;
  }
  if (t == GGUF_STRING) {
    const unsigned char *s;
    uint64_t n;
    if ((rc = rd_str(c, &s, &n, "string value"))) return rc;
    if (!(kv->str = dup_bytes(s, (size_t)n))) return ft_error_set(c->err, FT_ENOMEM, NULL, NULL);
    kv->str_len = (size_t)n;
    return 0;
  }
  if (t != GGUF_ARRAY) return bad(c, "metadata %s has an unknown value type", kv->key);
  uint32_t et;
  uint64_t n;
  if ((rc = rd(c, &et, 4, "array type")) || (rc = rd(c, &n, 8, "array length"))) return rc;
  kv->arr_type = (gguf_type)et;
  kv->n = n;
  size_t esz = scalar_size(et);
  if (esz) {
    if (n > (c->len - c->pos) / esz)
      return bad(c, "array %s runs past the end of the file", kv->key);
    kv->arr_data = c->p + c->pos;
    c->pos += (size_t)n * esz;
    if (et == GGUF_BOOL)
      for (uint64_t i = 0; i < n; i++)
        if (kv->arr_data[i] > 1)
          return bad(c, "bool array %s holds a value other than 0/1", kv->key);
    return 0;
  }
  if (et != GGUF_STRING)
    return bad(c, "array %s has an unsupported element type (nested arrays are refused)", kv->key);
  if (n > (c->len - c->pos) / 8) return bad(c, "array %s runs past the end of the file", kv->key);
  kv->arr_data = c->p + c->pos;
  kv->arr_str_off = malloc((n ? (size_t)n : 1) * sizeof *kv->arr_str_off);
  if (!kv->arr_str_off) return ft_error_set(c->err, FT_ENOMEM, NULL, NULL);
  for (uint64_t i = 0; i < n; i++) {
    kv->arr_str_off[i] = c->pos;
    const unsigned char *s;
    uint64_t sl;
    if ((rc = rd_str(c, &s, &sl, "string in an array"))) return rc;
  }
  return 0;
}

static int parse(gguf_file *f, ft_error *err) {
  cur c = {f->buf, f->len, 0, err};
  cur *cp = &c;
  uint32_t magic, version;
  uint64_t nt, nkv;
  int rc;
  if ((rc = rd(cp, &magic, 4, "magic"))) return rc;
  if (magic != GGUF_MAGIC) return bad(cp, "%s", "bad magic (not \"GGUF\")");
  if ((rc = rd(cp, &version, 4, "version"))) return rc;
  if (version != 2 && version != 3)
    return bad(cp, "%s",
               "unsupported version (2 and 3 are read; a big-endian file also lands here)");
  f->version = version;
  if ((rc = rd(cp, &nt, 8, "tensor count")) || (rc = rd(cp, &nkv, 8, "metadata count"))) return rc;
  /* each KV takes at least 13 bytes, each tensor info at least 25 */
  if (nkv > (c.len - c.pos) / 13) return bad(cp, "%s", "metadata count larger than the file");
  if (nt > (c.len - c.pos) / 25) return bad(cp, "%s", "tensor count larger than the file");
  f->kv = calloc(nkv ? (size_t)nkv : 1, sizeof *f->kv);
  f->t = calloc(nt ? (size_t)nt : 1, sizeof *f->t);
  if (!f->kv || !f->t) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  f->alignment = GGUF_DEFAULT_ALIGNMENT;
  for (uint64_t i = 0; i < nkv; i++) {
    gguf_kv *kv = &f->kv[i];
    const unsigned char *k;
    uint64_t kl;
    uint32_t type;
    if ((rc = rd_str(cp, &k, &kl, "metadata key"))) return rc;
    if (kl == 0) return bad(cp, "%s", "empty metadata key");
    if (!(kv->key = dup_bytes(k, (size_t)kl))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    f->nkv++;
    if (strlen(kv->key) != kl) return bad(cp, "%s", "metadata key holds a NUL byte");
    if ((rc = rd(cp, &type, 4, "value type"))) return rc;
    kv->type = (gguf_type)type;
    if ((rc = parse_value(cp, kv))) return rc;
    if (!strcmp(kv->key, "general.alignment")) {
      if (kv->type != GGUF_UINT32 || kv->u == 0 || (kv->u & (kv->u - 1)))
        return bad(cp, "%s", "general.alignment is not a power-of-two uint32");
      f->alignment = (uint32_t)kv->u;
    }
  }
  int d = has_dup(f->kv, f->nkv, sizeof *f->kv);
  if (d < 0) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  if (d) return bad(cp, "%s", "a metadata key appears twice");
  for (uint64_t i = 0; i < nt; i++) {
    gguf_tensor *t = &f->t[i];
    const unsigned char *s;
    uint64_t sl;
    uint32_t nd, type;
    if ((rc = rd_str(cp, &s, &sl, "tensor name"))) return rc;
    if (sl == 0 || sl >= GGUF_MAX_NAME) return bad(cp, "%s", "tensor name empty or too long");
    if (!(t->name = dup_bytes(s, (size_t)sl))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    f->nt++;
    if (strlen(t->name) != sl) return bad(cp, "%s", "tensor name holds a NUL byte");
    if ((rc = rd(cp, &nd, 4, "tensor dimension count"))) return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
      return bad(cp, "tensor %s has a bad dimension count", t->name);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (int j = 0; j < GGUF_MAX_DIMS; j++) {
      uint64_t ne = 1;
      if (j < t->ndim && (rc = rd(cp, &ne, 8, "tensor dimension"))) return rc;
      if (ne > INT64_MAX || (ne && numel > (uint64_t)INT64_MAX / ne))
        return bad(cp, "tensor %s is too large", t->name);
      t->ne[j] = (int64_t)ne;
      numel *= ne;
    }
    t->numel = numel;
    if ((rc = rd(cp, &type, 4, "tensor type")) || (rc = rd(cp, &t->offset, 8, "tensor offset")))
      return rc;
    const ggml_tinfo *ti = tinfo_of(type);
    if (!ti) return bad(cp, "tensor %s has an unknown type", t->name);
    t->type = type;
    if (t->ne[0] % ti->blck) return bad(cp, "tensor %s: row not a whole number of blocks", t->name);
    uint64_t nb = numel / ti->blck;
    if (nb > SIZE_MAX / ti->bytes) return bad(cp, "tensor %s is too large", t->name);
    t->nbytes = (size_t)nb * ti->bytes;
    if (t->offset % f->alignment) return bad(cp, "tensor %s offset is not aligned", t->name);
  }
  if ((d = has_dup(f->t, f->nt, sizeof *f->t)) < 0) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  if (d) return bad(cp, "%s", "a tensor name appears twice");
  size_t data_off = c.pos + (f->alignment - c.pos % f->alignment) % f->alignment;
  if (data_off < c.pos) return bad(cp, "%s", "data offset overflows");
  f->data_off = data_off;
  if (nt && data_off > c.len) return bad(cp, "%s", "the data section is missing");
  size_t dlen = data_off <= c.len ? c.len - data_off : 0;
  /* inside the data, and no two tensors overlap (sorted by offset) */
  span *sp = malloc((nt ? (size_t)nt : 1) * sizeof *sp);
  if (!sp) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  for (size_t i = 0; i < f->nt; i++) {
    gguf_tensor *t = &f->t[i];
    if (t->offset > dlen || t->nbytes > dlen - t->offset) {
      free(sp);
      c.pos = c.len;
      return bad(cp, "tensor %s data runs past the end of the file", t->name);
    }
    t->data = f->buf + data_off + t->offset;
    sp[i] = (span){t->offset, t->nbytes, t->name};
  }
  if (f->nt > 1) qsort(sp, f->nt, sizeof *sp, cmp_span);
  for (size_t i = 1; i < f->nt; i++)
    if (sp[i - 1].off + sp[i - 1].nbytes > sp[i].off) {
      rc = bad(cp, "tensor %s overlaps another", sp[i].name);
      free(sp);
      return rc;
    }
  free(sp);
  return 0;
}

int gguf_open_buffer(gguf_file **out, const void *buf, size_t len, ft_error *err) {
  *out = NULL;
  gguf_file *f = calloc(1, sizeof *f);
  if (!f) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  f->buf = buf;
  f->len = len;
  int rc = parse(f, err);
  if (rc) {
    gguf_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int gguf_open(gguf_file **out, const char *path, ft_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ft_error_set(err, FT_EIO, "path", "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    return ft_error_set(err, FT_EIO, "path", "%s is not a regular file", path);
  }
  if (sb.st_size == 0) {
    close(fd);
    return ft_error_set(err, FT_EFORMAT, "gguf", "not a valid GGUF file: %s is empty", path);
  }
  void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED)
    return ft_error_set(err, FT_EIO, "path", "cannot map %s: %s", path, strerror(errno));
  int rc = gguf_open_buffer(out, map, (size_t)sb.st_size, err);
  if (rc) {
    munmap(map, (size_t)sb.st_size);
    return rc;
  }
  (*out)->map = map;
  return 0;
}

void gguf_close(gguf_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->nkv; i++) {
    free((char *)f->kv[i].key);
    free((char *)f->kv[i].str);
    free(f->kv[i].arr_str_off);
  }
  for (size_t i = 0; i < f->nt; i++) free((char *)f->t[i].name);
  free(f->kv);
  free(f->t);
  if (f->map) munmap(f->map, f->len);
  free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
size_t gguf_data_offset(const gguf_file *f) { return f->data_off; }
size_t gguf_n_kv(const gguf_file *f) { return f->nkv; }
const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i) { return i < f->nkv ? &f->kv[i] : NULL; }
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
  for (size_t i = 0; i < f->nkv; i++)
    if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
  return NULL;
}
size_t gguf_n_tensors(const gguf_file *f) { return f->nt; }
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i) {
  return i < f->nt ? &f->t[i] : NULL;
}
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
  for (size_t i = 0; i < f->nt; i++)
    if (!strcmp(f->t[i].name, name)) return &f->t[i];
  return NULL;
}

const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len) {
  if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || i >= kv->n || !kv->arr_str_off)
    return NULL;
  /* arr_str_off holds offsets from the buffer start; arr_data is the array start */
  const unsigned char *base = kv->arr_data - kv->arr_str_off[0];
  uint64_t n;
  memcpy(&n, base + kv->arr_str_off[i], 8);
  if (len) *len = (size_t)n;
  return (const char *)base + kv->arr_str_off[i] + 8;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) {
  if (kv->type != GGUF_ARRAY || i >= kv->n) return 0;
  const unsigned char *p = kv->arr_data + i * scalar_size(kv->arr_type);
  switch (kv->arr_type) {
    case GGUF_UINT8:
    case GGUF_BOOL:
      return *p;
    case GGUF_INT8:
      return (int8_t)*p;
    case GGUF_UINT16: {
      uint16_t v;
      memcpy(&v, p, 2);
      return v;
    }
    case GGUF_INT16: {
      int16_t v;
      memcpy(&v, p, 2);
      return v;
    }
    case GGUF_UINT32: {
      uint32_t v;
      memcpy(&v, p, 4);
      return v;
    }
    case GGUF_INT32: {
      int32_t v;
      memcpy(&v, p, 4);
      return v;
    }
    case GGUF_UINT64: {
      uint64_t v;
      memcpy(&v, p, 8);
      return (int64_t)v;
    }
    case GGUF_INT64: {
      int64_t v;
      memcpy(&v, p, 8);
      return v;
    }
    default:
      return 0;
  }
}

double gguf_arr_num(const gguf_kv *kv, uint64_t i) {
  if (kv->type != GGUF_ARRAY || i >= kv->n) return 0;
  const unsigned char *p = kv->arr_data + i * scalar_size(kv->arr_type);
  if (kv->arr_type == GGUF_FLOAT32) {
    float v;
    memcpy(&v, p, 4);
    return v;
  }
  if (kv->arr_type == GGUF_FLOAT64) {
    double v;
    memcpy(&v, p, 8);
    return v;
  }
  return (double)gguf_arr_int(kv, i);
}

int gguf_tensor_read_f32(const gguf_tensor *t, float *dst, size_t n, ft_error *err) {
  if (n != t->numel)
    return ft_error_set(err, FT_ESHAPE, t->name, "tensor %s has %llu elements, not %zu", t->name,
                        (unsigned long long)t->numel, n);
  const unsigned char *p = t->data;
  if (t->type == GGML_T_F32) {
    memcpy(dst, p, n * 4);
  } else if (t->type == GGML_T_F16 || t->type == GGML_T_BF16) {
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = t->type == GGML_T_F16 ? st_f16_to_f32(h) : bf16_to_f32(h);
    }
  } else {
    return ft_error_set(err, FT_EUNSUPPORTED, t->name, "tensor %s is %s; F32/F16/BF16 are read",
                        t->name, gguf_ggml_type_name(t->type));
  }
  return 0;
}

/* ---- names and layouts ---------------------------------------------------- */

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* Maps hf_name by the family's names (nn/arch.c); *conv1d set for a Conv1D
 * weight, *permute_heads for Q/K rows llama.cpp permutes. */
static int map_name(const ft_arch *a, const char *hf_name, int n_head, int n_kv_head, char *out,
                    size_t size, int *permute_heads, int *conv1d) {
  const char *s = hf_name;
  if (starts(s, "base_model.model.")) s += 17;
  if (permute_heads) *permute_heads = 0;
  if (conv1d) *conv1d = 0;
  const char *dot = strrchr(s, '.');
  if (!a || !dot || (strcmp(dot, ".weight") && strcmp(dot, ".bias"))) return FT_EUNSUPPORTED;
  char mod[FT_NAME_MAX];
  size_t ml = (size_t)(dot - s);
  if (ml >= sizeof mod / 2) return FT_EUNSUPPORTED;
  /* names of a bare trunk ("h.0.ln_1") get the trunk's prefix */
  int bare = strcmp(s, "lm_head.weight") && !starts(s, a->trunk);
  snprintf(mod, sizeof mod, "%s%.*s", bare ? a->trunk : "", (int)ml, s);
  const char *g = NULL;
  int layer = -1, perm = 0, conv = 0;
  size_t ll = strlen(a->layers);
  if (!strcmp(mod, "lm_head")) {
    g = "output";
  } else if (!strncmp(mod, a->layers, ll) && mod[ll] == '.') {
    const char *m = mod + ll + 1;
    char *end;
    long l = strtol(m, &end, 10);
    if (end == m || *end != '.' || l < 0 || l > 100000) return FT_EUNSUPPORTED;
    layer = (int)l;
    m = end + 1;
    if (!strcmp(m, a->norm1)) g = a->gguf_norm1;
    if (!strcmp(m, a->norm2)) g = a->gguf_norm2;
    if (a->has_qk_norm && !strcmp(m, a->q_norm)) g = a->gguf_q_norm;
    if (a->has_qk_norm && !strcmp(m, a->k_norm)) g = a->gguf_k_norm;
    if (a->post_norms && !strcmp(m, a->norm_attn_out)) g = a->gguf_norm_attn_out;
    if (a->post_norms && !strcmp(m, a->norm_mlp_out)) g = a->gguf_norm_mlp_out;
    for (int i = 0; i < FT_MOD_N && !g; i++)
      if (a->mods[i].path && !strcmp(m, a->mods[i].path)) {
        g = a->mods[i].gguf;
        perm = a->gguf_permute_qk ? a->mods[i].gguf_permute : 0;
        conv = a->conv1d;
      }
  } else {
    if (!strcmp(mod, a->embed)) g = a->gguf_embed;
    if (a->pos_embed && !strcmp(mod, a->pos_embed)) g = a->gguf_pos_embed;
    if (!strcmp(mod, a->final_norm)) g = a->gguf_final_norm;
  }
  if (!g) return FT_EUNSUPPORTED;
  int n = layer >= 0 ? snprintf(out, size, "blk.%d.%s%s", layer, g, dot)
                     : snprintf(out, size, "%s%s", g, dot);
  if (n >= (int)size) return FT_EUNSUPPORTED;
  if (permute_heads && perm) *permute_heads = perm == 1 ? n_head : n_kv_head;
  if (conv1d) *conv1d = conv && !strcmp(dot, ".weight");
  return 0;
}

int gguf_tensor_name(const char *model_type, const char *hf_name, int n_head, int n_kv_head,
                     char *out, size_t size, int *permute_heads) {
  return map_name(arch_find(model_type), hf_name, n_head, n_kv_head, out, size, permute_heads,
                  NULL);
}

/* llama.cpp's permute(): rows viewed as (n_heads, 2, hd/2) get their last two
 * axes swapped, i.e. HF's rotate-half order [x0..x(h/2-1), y0..] becomes
 * GGML's interleaved pairs [x0, y0, x1, y1, ...] within each head. */
int gguf_permute_rows(float *w, int rows, int cols, int n_heads, int inverse) {
  if (n_heads < 1 || rows % n_heads || (rows / n_heads) % 2) return FT_ESHAPE;
  int hd = rows / n_heads, half = hd / 2;
  float *tmp = malloc((size_t)hd * (size_t)cols * sizeof *tmp);
  if (!tmp) return FT_ENOMEM;
  for (int h = 0; h < n_heads; h++) {
    float *blk = w + (size_t)h * hd * cols;
    for (int i = 0; i < half; i++)
      for (int j = 0; j < 2; j++) {
        int src = j * half + i, dst = 2 * i + j; /* forward: dst row gets src row */
        if (inverse) {
          int t = src;
          src = dst;
          dst = t;
        }
        memcpy(tmp + (size_t)dst * cols, blk + (size_t)src * cols, (size_t)cols * sizeof *tmp);
      }
    memcpy(blk, tmp, (size_t)hd * cols * sizeof *tmp);
  }
  free(tmp);
  return 0;
}

/* ---- export: metadata ----------------------------------------------------- */

static const char *arch_of(const ft_config *cfg) { return cfg->arch->gguf_arch; }

static int set_kf(gguf_writer *w, const char *arch, const char *key, float v, ft_error *err) {
  char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  return gguf_set_f32(w, k, v, err);
}
static int set_ku(gguf_writer *w, const char *arch, const char *key, uint32_t v, ft_error *err) {
  char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  return gguf_set_u32(w, k, v, err);
}

/* Sliding layers as llama.cpp's gemma3 reads them: the window, one flag per
 * layer (attention.sliding_window_pattern as an array; without it llama.cpp
 * assumes 5 sliding : 1 global) and the local RoPE base
 * (rope.freq_base_swa). llama.cpp scales Gemma 3's scores by head_dim^-0.5
 * (hidden / heads for its 62-layer 27B), not by query_pre_attn_scalar, so
 * another scalar is refused rather than exported wrong. */
static int add_sliding(gguf_writer *w, const ft_config *c, const char *arch, ft_error *err) {
  float want = c->n_layer == 62 ? (float)(c->hidden_size / c->n_head) : (float)c->head_dim;
  if (c->attn_scalar > 0.0f && c->attn_scalar != want)
    return ft_error_set(err, FT_EUNSUPPORTED, "query_pre_attn_scalar",
                        "llama.cpp scales attention by %g^-0.5; query_pre_attn_scalar %g cannot be "
                        "exported to GGUF",
                        (double)want, (double)c->attn_scalar);
  int any = 0;
  for (int l = 0; l < c->n_layer; l++) any |= c->sliding[l];
  if (!any) return 0; /* llama.cpp asserts a sliding layer wherever a window is given */
  int32_t *pat = malloc(sizeof *pat * (size_t)c->n_layer);
  if (!pat) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  for (int l = 0; l < c->n_layer; l++) pat[l] = c->sliding[l];
  char k[128];
  snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", arch);
  int rc = set_ku(w, arch, "attention.sliding_window", (uint32_t)c->sliding_window, err);
  if (!rc) rc = gguf_set_arr_i32(w, k, pat, (size_t)c->n_layer, err);
  if (!rc) rc = set_kf(w, arch, "rope.freq_base_swa", c->rope_local_theta, err);
  free(pat);
  return rc;
}

static int add_hparams(gguf_writer *w, const ft_config *c, const char *arch, ft_error *err) {
  int rc;
  if ((rc = set_ku(w, arch, "context_length", (uint32_t)c->max_position, err)) ||
      (rc = set_ku(w, arch, "embedding_length", (uint32_t)c->hidden_size, err)) ||
      (rc = set_ku(w, arch, "feed_forward_length", (uint32_t)c->intermediate_size, err)) ||
      (rc = set_ku(w, arch, "block_count", (uint32_t)c->n_layer, err)) ||
      (rc = set_ku(w, arch, "attention.head_count", (uint32_t)c->n_head, err)))
    return rc;
  if (c->arch->norm == FT_NORM_LAYER)
    return set_kf(w, arch, "attention.layer_norm_epsilon", c->norm_eps, err);
  if ((rc = set_ku(w, arch, "attention.head_count_kv", (uint32_t)c->n_kv_head, err)) ||
      (rc = set_kf(w, arch, "rope.freq_base", c->rope_theta, err)) ||
      (rc = set_kf(w, arch, "attention.layer_norm_rms_epsilon", c->norm_eps, err)) ||
      (rc = set_ku(w, arch, "rope.dimension_count", (uint32_t)c->head_dim, err)) ||
      (rc = set_ku(w, arch, "vocab_size", (uint32_t)c->vocab_size, err)))
    return rc;
  /* rope_scaling: linear as metadata; llama3 as convert_hf_to_gguf.py
   * writes it, a rope_freqs.weight tensor (add_rope_freqs) */
  if (c->rope_scaling.kind == FT_ROPE_LINEAR) {
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    if ((rc = gguf_set_str(w, k, "linear", err)) ||
        (rc = set_kf(w, arch, "rope.scaling.factor", c->rope_scaling.factor, err)))
      return rc;
  }
  if (c->head_dim * c->n_head != c->hidden_size &&
      ((rc = set_ku(w, arch, "attention.key_length", (uint32_t)c->head_dim, err)) ||
       (rc = set_ku(w, arch, "attention.value_length", (uint32_t)c->head_dim, err))))
    return rc;
  if (c->arch->sliding_layers) return add_sliding(w, c, arch, err);
  return 0;
}

static json_t *load_json(const char *dir, const char *name, size_t flags) {
  char path[PATH_MAX];
  if (ft_path_join(path, sizeof path, dir, name, NULL)) return NULL;
  return json_load_file(path, flags, NULL);
}

/* llama.cpp token types */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
  char **tok; /* [V], NULL = hole */
  int32_t *type;
  float *score;
  int V;
  char **merges;
  size_t n_merges, cap_merges;
  int spm; /* SentencePiece-style (byte fallback / Unigram): ggml model "llama" */
  int has_scores;
} vocab;

static void vocab_free(vocab *v) {
  if (v->tok)
    for (int i = 0; i < v->V; i++) free(v->tok[i]);
  for (size_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
  free(v->tok);
  free(v->type);
  free(v->score);
  free(v->merges);
}

static int vocab_set(vocab *v, long id, const char *s, int type, ft_error *err) {
  if (id < 0 || id >= v->V)
    return ft_error_set(err, FT_EFORMAT, "tokenizer",
                        "token \"%s\" has id %ld, outside the model's vocab_size %d", s, id, v->V);
  free(v->tok[id]);
  if (!(v->tok[id] = strdup(s))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  v->type[id] = type;
  return 0;
}

static int merge_add(vocab *v, const char *a, const char *b, ft_error *err) {
  if (v->n_merges == v->cap_merges) {
    size_t cap = v->cap_merges ? v->cap_merges * 2 : 1024;
    char **nm = realloc(v->merges, cap * sizeof *nm);
    if (!nm) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    v->merges = nm;
    v->cap_merges = cap;
  }
  size_t la = strlen(a), lb = b ? strlen(b) + 1 : 0;
  char *m = malloc(la + lb + 1);
  if (!m) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  memcpy(m, a, la);
  if (b) {
    m[la] = ' ';
    memcpy(m + la + 1, b, lb - 1);
  }
  m[la + lb] = 0;
  v->merges[v->n_merges++] = m;
  return 0;
}

typedef struct {
  const char *s;
  int id;
} tok_ref;

static int cmp_tok_ref(const void *a, const void *b) {
  return strcmp(((const tok_ref *)a)->s, ((const tok_ref *)b)->s);
}

/* SentencePiece scores for a byte-fallback BPE given as merges: llama.cpp's
 * "llama" tokenizer merges the adjacent pair whose joined piece scores
 * highest, so a piece scores minus the rank of the first merge that makes it
 * (HF's converters order merges by those scores). Pieces no merge makes
 * (characters, bytes) score below every merge. Ranking by id instead would
 * put Llama 2's "▁▁" (id 259, merged last) first. */
static int spm_scores_from_merges(vocab *v, ft_error *err) {
  tok_ref *ord = malloc((size_t)v->V * sizeof *ord);
  if (!ord) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  size_t n_ord = 0;
  for (int i = 0; i < v->V; i++) {
    v->score[i] = -(float)v->n_merges - (float)i;
    if (v->tok[i]) ord[n_ord++] = (tok_ref){v->tok[i], i};
  }
  qsort(ord, n_ord, sizeof *ord, cmp_tok_ref);
  char *joined = NULL;
  size_t cap = 0;
  for (size_t r = v->n_merges; r-- > 0;) { /* last to first: the first merge wins */
    const char *m = v->merges[r], *sp = strchr(m, ' ');
    size_t n = strlen(m);
    if (!sp) continue;
    if (n > cap) {
      char *nj = realloc(joined, n);
      if (!nj) {
        free(joined);
        free(ord);
        return ft_error_set(err, FT_ENOMEM, NULL, NULL);
      }
      joined = nj;
      cap = n;
    }
    size_t la = (size_t)(sp - m);
    memcpy(joined, m, la);
    memcpy(joined + la, sp + 1, n - la); /* with the NUL */
    tok_ref key = {joined, -1}, *hit = bsearch(&key, ord, n_ord, sizeof *ord, cmp_tok_ref);
    if (hit) v->score[hit->id] = -(float)r;
  }
  free(joined);
  free(ord);
  return 0;
}

static int is_byte_token(const char *s) {
  return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>';
}

static int vocab_from_tokenizer_json(vocab *v, json_t *tj, ft_error *err) {
  json_t *model = json_object_get(tj, "model");
  const char *mt = json_string_value(json_object_get(model, "type"));
  json_t *vj = json_object_get(model, "vocab");
  int rc;
  if (mt && !strcmp(mt, "Unigram") && json_is_array(vj)) {
    v->spm = v->has_scores = 1;
    size_t i;
    json_t *e;
    json_array_foreach(vj, i, e) {
      const char *s = json_string_value(json_array_get(e, 0));
      json_t *sc = json_array_get(e, 1);
      if (!s || !json_is_number(sc))
        return ft_error_set(err, FT_EFORMAT, "tokenizer.json",
                            "model.vocab[%zu] is not [piece, score]", i);
      if ((rc = vocab_set(v, (long)i, s, is_byte_token(s) ? TT_BYTE : TT_NORMAL, err))) return rc;
      v->score[i] = (float)json_number_value(sc);
    }
  } else if ((!mt || !strcmp(mt, "BPE")) && json_is_object(vj)) {
    v->spm = json_is_true(json_object_get(model, "byte_fallback"));
    const char *k;
    json_t *e;
    json_object_foreach(vj, k, e) {
      if (!json_is_integer(e))
        return ft_error_set(err, FT_EFORMAT, "tokenizer.json", "model.vocab[\"%s\"] is not an id",
                            k);
      long id = (long)json_integer_value(e);
      if ((rc = vocab_set(v, id, k, v->spm && is_byte_token(k) ? TT_BYTE : TT_NORMAL, err)))
        return rc;
    }
    v->has_scores = v->spm;
    json_t *mj = json_object_get(model, "merges");
    size_t i;
    json_array_foreach(mj, i, e) {
      if (json_is_string(e))
        rc = merge_add(v, json_string_value(e), NULL, err);
      else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1)))
        rc = merge_add(v, json_string_value(json_array_get(e, 0)),
                       json_string_value(json_array_get(e, 1)), err);
      else
        return ft_error_set(err, FT_EFORMAT, "tokenizer.json", "model.merges[%zu] is not a merge",
                            i);
      if (rc) return rc;
    }
    if (v->spm && (rc = spm_scores_from_merges(v, err))) return rc;
  } else {
    return ft_error_set(err, FT_EUNSUPPORTED, "tokenizer.json",
                        "tokenizer model type %s cannot be exported", mt ? mt : "(none)");
  }
  json_t *unk = json_object_get(model, "unk_token");
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(tj, "added_tokens"), i, e) {
    const char *s = json_string_value(json_object_get(e, "content"));
    json_t *id = json_object_get(e, "id");
    if (!s || !json_is_integer(id))
      return ft_error_set(err, FT_EFORMAT, "tokenizer.json", "added_tokens[%zu] lacks content/id",
                          i);
    int type = json_is_true(json_object_get(e, "special")) ? TT_CONTROL : TT_USER;
    if (json_is_string(unk) && !strcmp(s, json_string_value(unk))) type = TT_UNKNOWN;
    char *sp = NULL;
    if (v->spm && type == TT_USER && strstr(s, "\xe2\x96\x81")) {
      /* llama.cpp copies a user-defined SentencePiece token's text verbatim
       * (and matches it in raw text): "\u2581" becomes a space, as
       * convert_hf_to_gguf.py pre-normalizes them (Gemma's whitespace runs) */
      size_t n = strlen(s), o = 0;
      if (!(sp = malloc(n + 1))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
      for (size_t k = 0; k < n; k++) {
        if (k + 3 <= n && !memcmp(s + k, "\xe2\x96\x81", 3)) {
          sp[o++] = ' ';
          k += 2;
        } else {
          sp[o++] = s[k];
        }
      }
      sp[o] = 0;
    }
    rc = vocab_set(v, (long)json_integer_value(id), sp ? sp : s, type, err);
    free(sp);
    if (rc) return rc;
    if (v->has_scores) v->score[json_integer_value(id)] = 0;
  }
  return 0;
}

static int vocab_from_gpt2_files(vocab *v, const char *dir, ft_error *err) {
  json_t *vj = load_json(dir, "vocab.json", 0);
  if (!json_is_object(vj)) {
    json_decref(vj);
    return ft_error_set(err, FT_EFORMAT, "tokenizer",
                        "the model has no readable tokenizer.json or vocab.json");
  }
  const char *k;
  json_t *e;
  int rc = 0;
  json_object_foreach(vj, k, e) {
    if (!json_is_integer(e)) {
      rc = ft_error_set(err, FT_EFORMAT, "vocab.json", "vocab.json[\"%s\"] is not an id", k);
      break;
    }
    if ((rc = vocab_set(v, (long)json_integer_value(e), k, TT_NORMAL, err))) break;
  }
  json_decref(vj);
  if (rc) return rc;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  FILE *f = fopen(path, "r");
  if (!f) return ft_error_set(err, FT_EFORMAT, "merges.txt", "cannot open %s", path);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while (!rc && (n = getline(&line, &cap, f)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n == 0 || starts(line, "#version")) continue;
    rc = merge_add(v, line, NULL, err);
  }
  free(line);
  fclose(f);
  return rc;
}

/* The id of a special token named in tokenizer_config.json (a string or an
 * AddedToken object), -1 if none. */
static int special_id(const vocab *v, json_t *tc, const char *key) {
  json_t *x = json_object_get(tc, key);
  const char *s =
      json_is_object(x) ? json_string_value(json_object_get(x, "content")) : json_string_value(x);
  if (!s) return -1;
  for (int i = 0; i < v->V; i++)
    if (v->tok[i] && !strcmp(v->tok[i], s)) return i;
  return -1;
}

static int add_tokenizer(gguf_writer *w, const char *dir, const ft_config *c, ft_error *err) {
  vocab v = {0};
  v.V = c->vocab_size;
  int rc = 0;
  if (v.V < 1) return ft_error_set(err, FT_EFORMAT, "vocab_size", "vocab_size must be positive");
  v.tok = calloc((size_t)v.V, sizeof *v.tok);
  v.type = calloc((size_t)v.V, sizeof *v.type);
  v.score = calloc((size_t)v.V, sizeof *v.score);
  json_t *tj = NULL, *tc = load_json(dir, "tokenizer_config.json", JSON_DECODE_INT_AS_REAL);
  if (!v.tok || !v.type || !v.score) rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
  if (!rc) {
    if ((tj = load_json(dir, "tokenizer.json", 0)) != NULL)
      rc = vocab_from_tokenizer_json(&v, tj, err);
    else
      rc = vocab_from_gpt2_files(&v, dir, err);
  }
  int ids[3] = {c->bos_token_id, c->eos_token_id, c->pad_token_id};
  static const char *const idkeys[3] = {"bos_token", "eos_token", "pad_token"};
  for (int i = 0; !rc && i < 3; i++) {
    if (ids[i] < 0 || ids[i] >= v.V) ids[i] = special_id(&v, tc, idkeys[i]);
    if (ids[i] >= 0 && v.tok[ids[i]] && v.type[ids[i]] == TT_NORMAL) v.type[ids[i]] = TT_CONTROL;
  }
  for (int i = 0; !rc && i < v.V; i++) /* holes and padding up to vocab_size, as convert does */
    if (!v.tok[i]) {
      char pad[32];
      snprintf(pad, sizeof pad, "[PAD%d]", i);
      rc = vocab_set(&v, i, pad, TT_UNUSED, err);
    }
  const char *pre = "gpt-2";
  json_t *pt = json_object_get(tj, "pre_tokenizer");
  char *pts = pt ? json_dumps(pt, JSON_COMPACT) : NULL;
  /* llama.cpp names pre-tokenizers by their regex: GPT-2's (a ByteLevel
   * pre-tokenizer or vocab.json + merges.txt), Llama 3's (digits in threes),
   * Qwen2's (single digits) */
  if (pts && strstr(pts, "\\\\p{N}{1,3}"))
    pre = "llama-bpe";
  else if (pts && strstr(pts, "\\\\p{N}|"))
    pre = "qwen2";
  free(pts);
  if (!rc && v.spm) {
    rc = gguf_set_str(w, "tokenizer.ggml.model", "llama", err);
    if (!rc) rc = gguf_set_str(w, "tokenizer.ggml.pre", "default", err);
    /* llama.cpp puts a space before SentencePiece text unless told not to:
     * only where the tokenizer does (a Prepend normalizer, or a Metaspace
     * pre-tokenizer that prepends; Gemma's does neither) */
    json_t *nz = json_object_get(tj, "normalizer");
    char *ns = nz ? json_dumps(nz, JSON_COMPACT) : NULL,
         *ps = pt ? json_dumps(pt, JSON_COMPACT) : NULL;
    int prefix = (ns && strstr(ns, "\"Prepend\"")) ||
                 (ps && strstr(ps, "\"Metaspace\"") && !strstr(ps, "\"never\"") &&
                  !strstr(ps, "\"add_prefix_space\":false"));
    free(ns);
    free(ps);
    if (!rc) rc = gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", prefix, err);
  } else if (!rc) {
    rc = gguf_set_str(w, "tokenizer.ggml.model", "gpt2", err);
    if (!rc) rc = gguf_set_str(w, "tokenizer.ggml.pre", pre, err);
  }
  if (!rc)
    rc = gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, (size_t)v.V, err);
  if (!rc && v.spm) rc = gguf_set_arr_f32(w, "tokenizer.ggml.scores", v.score, (size_t)v.V, err);
  if (!rc) rc = gguf_set_arr_i32(w, "tokenizer.ggml.token_type", v.type, (size_t)v.V, err);
  if (!rc && v.n_merges)
    rc = gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, v.n_merges,
                          err);
  if (!rc && ids[0] >= 0)
    rc = gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)ids[0], err);
  if (!rc && ids[1] >= 0)
    rc = gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)ids[1], err);
  if (!rc && ids[2] >= 0)
    rc = gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)ids[2], err);
  json_t *x;
  if (!rc && json_is_boolean(x = json_object_get(tc, "add_bos_token")))
    rc = gguf_set_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(x), err);
  if (!rc && json_is_boolean(x = json_object_get(tc, "add_eos_token")))
    rc = gguf_set_bool(w, "tokenizer.ggml.add_eos_token", json_is_true(x), err);
  x = json_object_get(tc, "chat_template");
  if (json_is_array(x)) { /* [{name, template}]: the "default" one */
    size_t i;
    json_t *e, *def = NULL;
    json_array_foreach(x, i, e) {
      const char *nm = json_string_value(json_object_get(e, "name"));
      if (nm && !strcmp(nm, "default")) def = json_object_get(e, "template");
    }
    x = def;
  }
  if (!rc && json_is_string(x))
    rc = gguf_set_str(w, "tokenizer.chat_template", json_string_value(x), err);
  json_decref(tj);
  json_decref(tc);
  vocab_free(&v);
  return rc;
}

static int add_general(gguf_writer *w, const char *arch, const char *dir, const char *name, int f16,
                       ft_error *err) {
  char base[PATH_MAX];
  if (!name) {
    snprintf(base, sizeof base, "%s", dir);
    size_t n = strlen(base);
    while (n > 1 && base[n - 1] == '/') base[--n] = 0;
    name = basename(base);
  }
  int rc;
  if ((rc = gguf_set_str(w, "general.architecture", arch, err)) ||
      (rc = gguf_set_str(w, "general.name", name, err)) ||
      (rc = gguf_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT, err)) ||
      (rc = gguf_set_u32(w, "general.file_type", f16 ? 1 : 0, err))) /* ALL_F32 / MOSTLY_F16 */
    return rc;
  return 0;
}

/* ---- export: tensors ------------------------------------------------------ */

/* As convert_hf_to_gguf.py: 1-D tensors, norms, biases and the position
 * embedding stay F32; other 2-D weights take the file's type. */
static uint32_t tensor_type(const char *gname, int ndim, int f16) {
  size_t n = strlen(gname);
  int weight = n > 7 && (!strcmp(gname + n - 7, ".weight") || !strcmp(gname + n - 7, ".lora_a") ||
                         !strcmp(gname + n - 7, ".lora_b"));
  if (!f16 || ndim < 2 || !weight || strstr(gname, "_norm.weight") ||
      !strcmp(gname, "position_embd.weight"))
    return GGML_T_F32;
  return GGML_T_F16;
}

/* Adds one HF tensor (row-major, shape[0..ndim)) under its GGUF name,
 * transposing GPT-2's Conv1D weights and permuting llama's Q/K rows into new
 * buffers; other data is borrowed. suffix is appended to the name. */
static int add_hf_tensor(gguf_writer *w, const ft_config *c, const char *arch, const char *hf_name,
                         const char *suffix, const float *data, int ndim, const int *shape, int f16,
                         int permute_b, ft_error *err) {
  char g[GGUF_MAX_NAME + 16];
  int heads = 0, conv = 0;
  (void)arch;
  if (map_name(c->arch, hf_name, c->n_head, c->n_kv_head, g, sizeof g, &heads, &conv))
    return ft_error_set(err, FT_EUNSUPPORTED, hf_name, "tensor %s has no GGUF name", hf_name);
  strncat(g, suffix, sizeof g - strlen(g) - 1);
  if (strlen(g) >= GGUF_MAX_NAME)
    return ft_error_set(err, FT_EUNSUPPORTED, hf_name, "GGUF name %s is too long", g);
  int64_t ne[GGUF_MAX_DIMS];
  for (int d = 0; d < ndim; d++) ne[d] = shape[ndim - 1 - d];
  size_t numel = 1;
  for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
  float *buf = NULL;
  size_t hl = strlen(hf_name);
  if (c->arch->gguf_norm_shift && hl > 11 && !strcmp(hf_name + hl - 11, "norm.weight")) {
    /* Gemma's x * (1 + w): llama.cpp's norm is x * w, so convert_hf_to_gguf
     * writes 1 + w */
    if (!(buf = malloc(numel * sizeof *buf))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    for (size_t i = 0; i < numel; i++) buf[i] = 1.0f + data[i];
  } else if ((conv && !*suffix) || (heads && (!*suffix || permute_b))) {
    if (!(buf = malloc(numel * sizeof *buf))) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
    if (conv && !*suffix && ndim == 2) { /* Conv1D [in,out] -> [out,in] */
      int in = shape[0], out = shape[1];
      for (int i = 0; i < in; i++)
        for (int o = 0; o < out; o++) buf[(size_t)o * in + i] = data[(size_t)i * out + o];
      ne[0] = in;
      ne[1] = out;
    } else {
      memcpy(buf, data, numel * sizeof *buf);
      int rows = shape[0], cols = ndim == 2 ? shape[1] : 1;
      int rc = gguf_permute_rows(buf, rows, cols, heads, 0);
      if (rc) {
        free(buf);
        return ft_error_set(err, rc, hf_name, "cannot permute %s for %d heads", hf_name, heads);
      }
    }
  }
  uint32_t type = tensor_type(g, ndim, f16);
  return gguf_add_tensor(w, g, ndim, ne, type, buf ? buf : (float *)data, buf != NULL, err);
}

/* Llama 3.1's rope_scaling for llama.cpp: per frequency the factor its
 * plain frequency is divided by (1 kept, factor scaled, the interpolated
 * band between), as convert_hf_to_gguf.py's rope_freqs.weight (F32, HD/2).
 * The ratio of layers.c's own frequencies, so both read one formula. */
static int add_rope_freqs(gguf_writer *w, const ft_config *c, ft_error *err) {
  int h = c->head_dim / 2;
  float *f = malloc((size_t)h * sizeof *f);
  if (!f) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  for (int i = 0; i < h; i++)
    f[i] = rope_inv_freq(i, c->head_dim, c->rope_theta, NULL) /
           rope_inv_freq(i, c->head_dim, c->rope_theta, &c->rope_scaling);
  int64_t ne[1] = {h};
  return gguf_add_tensor(w, "rope_freqs.weight", 1, ne, GGML_T_F32, f, 1, err);
}

int gguf_export_model(const char *model_dir, const char *out_path, int f16, const char *name,
                      ft_error *err) {
  ft_config cfg;
  ft_model *m = NULL;
  gguf_writer *w = NULL;
  int rc = hf_config_load(&cfg, model_dir, err);
  if (rc) return rc;
  if (cfg.num_labels > 0)
    return ft_error_set(err, FT_EUNSUPPORTED, "architectures",
                        "a sequence classifier cannot be exported to GGUF (causal LMs only)");
  const char *arch = arch_of(&cfg);
  if ((rc = model_new(&m, &cfg, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 1, 1, 0, err)) ||
      (rc = hf_load_weights(m, model_dir, NULL, err)) || (rc = gguf_writer_new(&w, err)) ||
      (rc = add_general(w, arch, model_dir, name, f16, err)) ||
      (rc = add_hparams(w, &cfg, arch, err)) || (rc = add_tokenizer(w, model_dir, &cfg, err)))
    goto done;
  size_t n;
  ft_param *p = model_params(m, &n);
  char emb_name[FT_NAME_MAX];
  snprintf(emb_name, sizeof emb_name, "%s.weight", cfg.arch->embed);
  for (size_t i = 0; i < n && !rc; i++) {
    if (!p[i].saved || strstr(p[i].name, ".lora_")) continue;
    rc = add_hf_tensor(w, &cfg, arch, p[i].name, "", p[i].w, p[i].ndim, p[i].shape, f16, 0, err);
    /* a tied lm_head is the embedding; for GPT-2 convert_hf_to_gguf writes it as output.weight */
    if (!rc && cfg.arch->gguf_tied_output && cfg.tie_embeddings &&
        !strcmp(p[i].name, emb_name))
      rc = add_hf_tensor(w, &cfg, arch, "lm_head.weight", "", p[i].w, 2, p[i].shape, f16, 0, err);
  }
  if (!rc && cfg.rope_scaling.kind == FT_ROPE_LLAMA3) rc = add_rope_freqs(w, &cfg, err);
  if (!rc) rc = gguf_write_file(w, out_path, err);
done:
  gguf_writer_free(w);
  model_free(m);
  return rc;
}

/* ---- export: LoRA adapter ------------------------------------------------- */

int gguf_export_adapter(const char *model_dir, const char *adapter_dir, const char *out_path,
                        int f16, const char *name, ft_error *err) {
  ft_config cfg;
  int rc = hf_config_load(&cfg, model_dir, err);
  if (rc) return rc;
  const char *arch = arch_of(&cfg);
  json_t *ac = load_json(adapter_dir, "adapter_config.json", 0);
  json_t *alpha = json_object_get(ac, "lora_alpha"), *r = json_object_get(ac, "r");
  if (!json_is_object(ac)) {
    json_decref(ac);
    return ft_error_set(err, FT_EFORMAT, "adapter_config.json",
                        "%s/adapter_config.json is missing or not a JSON object", adapter_dir);
  }
  if (!json_is_number(alpha) || !json_is_integer(r) || json_integer_value(r) < 1) {
    json_decref(ac);
    return ft_error_set(err, FT_EFORMAT, "adapter_config.json",
                        "adapter_config.json needs a numeric lora_alpha and an integer r >= 1");
  }
  float a = (float)json_number_value(alpha);
  long rank = (long)json_integer_value(r);
  json_decref(ac);
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter_dir) >= (int)sizeof path)
    return ft_error_set(err, FT_EIO, "path", "path too long");
  st_file *st = NULL;
  gguf_writer *w = NULL;
  float **bufs = NULL;
  size_t nt = 0;
  if ((rc = st_open(&st, path, err)) || (rc = gguf_writer_new(&w, err)) ||
      (rc = add_general(w, arch, adapter_dir, name, f16, err)) ||
      (rc = gguf_set_str(w, "general.type", "adapter", err)) ||
      (rc = gguf_set_str(w, "adapter.type", "lora", err)) ||
      (rc = gguf_set_f32(w, "adapter.lora.alpha", a, err)))
    goto done;
  nt = st_count(st);
  if (!(bufs = calloc(nt ? nt : 1, sizeof *bufs))) {
    rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
    goto done;
  }
  int pairs = 0;
  for (size_t i = 0; i < nt && !rc; i++) {
    const st_tensor *t = st_at(st, i);
    const char *nm = t->name, *suf = NULL;
    size_t l = strlen(nm);
    int is_a = l > 14 && !strcmp(nm + l - 14, ".lora_A.weight");
    int is_b = l > 14 && !strcmp(nm + l - 14, ".lora_B.weight");
    if (!is_a && !is_b) {
      rc = ft_error_set(err, FT_EUNSUPPORTED, nm,
                        "adapter tensor %s is not a LoRA A/B matrix (modules_to_save such as a "
                        "classifier head cannot be exported)",
                        nm);
      break;
    }
    if (t->ndim != 2 || (is_a && t->shape[0] != rank) || (is_b && t->shape[1] != rank)) {
      rc = ft_error_set(err, FT_ESHAPE, nm, "adapter tensor %s does not have rank %ld", nm, rank);
      break;
    }
    char other[FT_NAME_MAX * 2], base[FT_NAME_MAX * 2];
    snprintf(other, sizeof other, "%.*s.lora_%c.weight", (int)(l - 14), nm, is_a ? 'B' : 'A');
    if (!st_find(st, other)) {
      rc = ft_error_set(err, FT_EFORMAT, nm, "adapter tensor %s has no %s", nm, other);
      break;
    }
    snprintf(base, sizeof base, "%.*s.weight", (int)(l - 14), nm);
    suf = is_a ? ".lora_a" : ".lora_b";
    if (!(bufs[i] = malloc(t->numel * sizeof(float)))) {
      rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
      break;
    }
    if ((rc = st_read_f32(st, t, bufs[i], t->numel, err))) break;
    int shape[2] = {(int)t->shape[0], (int)t->shape[1]};
    /* A [r,in] -> ne {in,r}; B [out,r] -> ne {r,out}, its rows permuted for llama Q/K */
    rc = add_hf_tensor(w, &cfg, arch, base, suf, bufs[i], 2, shape, f16, is_b, err);
    pairs += is_a;
  }
  if (!rc && pairs == 0)
    rc = ft_error_set(err, FT_EFORMAT, "adapter_model.safetensors",
                      "the adapter has no LoRA tensors");
  if (!rc) rc = gguf_write_file(w, out_path, err);
done:
  gguf_writer_free(w);
  for (size_t i = 0; bufs && i < nt; i++) free(bufs[i]);
  free(bufs);
  st_close(st);
  return rc;
}
