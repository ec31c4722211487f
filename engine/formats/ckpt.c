/* Checkpoints (see ckpt.h). A checkpoint is small next to the model (the
 * trained tensors and two moments each) and written every few hundred steps,
 * so it is written plainly, read back once to checksum it, and made visible
 * by one rename. The state file is the commit record: it holds the sizes and
 * CRC-32s of the tensor files, so a torn or edited checkpoint is refused. */
#include "formats/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "ft_fs.h"

static const char CKPT_MAGIC[8] = {'F', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};

enum {
  F_STEP,
  F_TOTAL,
  F_EPOCH,
  F_BATCH,
  F_RNG,
  F_TOKENS,
  F_SKIPPED,
  F_NONFINITE,
  F_BEST,
  F_BAD,
  F_LAST_TRAIN,
  F_LAST_VALID,
  F_FINGERPRINT,
  F_OPT_STEP,
  F_NUMEL,
  F_W_SIZE,
  F_W_CRC,
  F_O_SIZE,
  F_O_CRC,
  F_BEST_STEP, /* version 2 */
  F_COUNT
};
#define F_COUNT_V1 F_BEST_STEP
#define STATE_BYTES (8 + 4 + 4 + 8 * F_COUNT + 4)

uint32_t ckpt_crc32(uint32_t crc, const void *buf, size_t n) {
  static uint32_t table[256];
  static int ready;
  if (!ready) { /* idempotent, so a race only repeats the same writes */
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  const uint8_t *p = buf;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}
static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}

/* Size and CRC-32 of a whole file. */
static int file_crc(const char *path, uint64_t *size, uint32_t *crc) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  static const size_t CH = 1 << 20;
  char *buf = malloc(CH);
  if (!buf) {
    close(fd);
    return -1;
  }
  uint32_t c = 0;
  uint64_t n = 0;
  int rc = 0;
  for (;;) {
    ssize_t r = read(fd, buf, CH);
    if (r < 0) {
      if (errno == EINTR) continue;
      rc = -1;
      break;
    }
    if (r == 0) break;
    c = ckpt_crc32(c, buf, (size_t)r);
    n += (uint64_t)r;
  }
  free(buf);
  close(fd);
  *size = n;
  *crc = c;
  return rc;
}

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* ---- save ---- */

static int write_tensors(const char *dir, const optim *o, ft_error *err) {
  size_t np = optim_count(o), numel = optim_numel(o);
  st_out *t = calloc(np ? 2 * np : 1, sizeof *t);
  char(*names)[FT_NAME_MAX + 16] = calloc(np ? 2 * np : 1, sizeof *names);
  char path[PATH_MAX];
  int rc = 0;
  if (!t || !names) {
    rc = ft_error_set(err, FT_ENOMEM, NULL, "checkpoint: out of memory");
    goto out;
  }
  for (size_t i = 0; i < np; i++) {
    const ft_param *p = optim_param(o, i);
    t[i].name = p->name;
    t[i].data = p->w;
    t[i].ndim = p->ndim;
    for (int k = 0; k < p->ndim; k++) t[i].shape[k] = p->shape[k];
  }
  if (ft_path_join(path, sizeof path, dir, "trainable.safetensors", NULL) ||
      (rc = st_write_f32(path, t, np, NULL, err)))
    goto out_path;
  const float *mom = optim_moments(o);
  size_t off = 0;
  for (size_t i = 0; i < np; i++) {
    const ft_param *p = optim_param(o, i);
    for (int s = 0; s < 2; s++) {
      st_out *q = &t[2 * i + (size_t)s];
      snprintf(names[2 * i + (size_t)s], sizeof *names, "%s.%s", p->name,
               s ? "exp_avg_sq" : "exp_avg");
      q->name = names[2 * i + (size_t)s];
      q->data = mom + (s ? numel : 0) + off;
      q->ndim = p->ndim;
      for (int k = 0; k < p->ndim; k++) q->shape[k] = p->shape[k];
    }
    off += p->numel;
  }
  json_t *meta = json_object();
  char stepbuf[32];
  snprintf(stepbuf, sizeof stepbuf, "%ld", optim_step_count(o));
  json_object_set_new(meta, "step", json_string(stepbuf));
  if (ft_path_join(path, sizeof path, dir, "optimizer.safetensors", NULL)) {
    json_decref(meta);
    goto out_path;
  }
  rc = st_write_f32(path, t, 2 * np, meta, err);
  json_decref(meta);
  goto out;
out_path:
  if (!rc) rc = ft_error_set(err, FT_EIO, NULL, "checkpoint: path too long under %s", dir);
out:
  free(t);
  free(names);
  return rc;
}

static int write_state(const char *dir, const ft_ckpt_state *st, const optim *o, ft_error *err) {
  uint64_t f[F_COUNT] = {0};
  uint32_t crc;
  char path[PATH_MAX];
  f[F_STEP] = (uint64_t)st->step;
  f[F_TOTAL] = (uint64_t)st->total_steps;
  f[F_EPOCH] = (uint64_t)st->epoch;
  f[F_BATCH] = (uint64_t)st->batch_index;
  f[F_RNG] = st->rng;
  f[F_TOKENS] = (uint64_t)st->trained_tokens;
  f[F_SKIPPED] = (uint64_t)st->skipped_steps;
  f[F_NONFINITE] = (uint64_t)st->nonfinite_run;
  f[F_BEST] = dbits(st->best_metric);
  f[F_BAD] = (uint64_t)st->bad_evals;
  f[F_LAST_TRAIN] = dbits(st->last_train_loss);
  f[F_LAST_VALID] = dbits(st->last_valid_loss);
  f[F_FINGERPRINT] = st->fingerprint;
  f[F_OPT_STEP] = (uint64_t)optim_step_count(o);
  f[F_NUMEL] = (uint64_t)optim_numel(o);
  f[F_BEST_STEP] = (uint64_t)st->best_step;
  if (ft_path_join(path, sizeof path, dir, "trainable.safetensors", NULL) ||
      file_crc(path, &f[F_W_SIZE], &crc))
    return ft_error_set(err, FT_EIO, NULL, "checkpoint: cannot read back %s", path);
  f[F_W_CRC] = crc;
  if (ft_path_join(path, sizeof path, dir, "optimizer.safetensors", NULL) ||
      file_crc(path, &f[F_O_SIZE], &crc))
    return ft_error_set(err, FT_EIO, NULL, "checkpoint: cannot read back %s", path);
  f[F_O_CRC] = crc;

  uint8_t buf[STATE_BYTES];
  memcpy(buf, CKPT_MAGIC, 8);
  put_u32(buf + 8, CKPT_VERSION);
  put_u32(buf + 12, F_COUNT);
  for (int i = 0; i < F_COUNT; i++) put_u64(buf + 16 + 8 * i, f[i]);
  put_u32(buf + STATE_BYTES - 4, ckpt_crc32(0, buf, STATE_BYTES - 4));
  if (ft_path_join(path, sizeof path, dir, "trainer_state.bin", NULL) ||
      ft_write_atomic(path, buf, sizeof buf, 0644, NULL))
    return ft_error_set(err, FT_EIO, NULL, "checkpoint: cannot write %s: %s", path,
                        strerror(errno));

  /* For people and the API; load never trusts it. JSON has no NaN/Inf. */
  json_t *j = json_object();
  if (j && st->info) json_object_update(j, (json_t *)st->info);
  json_t *core =
      json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I}", "version", CKPT_VERSION, "step",
                (json_int_t)st->step, "total_steps", (json_int_t)st->total_steps, "epoch",
                (json_int_t)st->epoch, "batch_index", (json_int_t)st->batch_index, "trained_tokens",
                (json_int_t)st->trained_tokens, "skipped_steps", (json_int_t)st->skipped_steps);
  if (j && core) json_object_update(j, core);
  json_decref(core);
  if (j && st->best_step > 0) json_object_set_new(j, "best_step", json_integer(st->best_step));
  if (j && isfinite(st->last_train_loss))
    json_object_set_new(j, "train_loss", json_real(st->last_train_loss));
  if (j && isfinite(st->last_valid_loss))
    json_object_set_new(j, "valid_loss", json_real(st->last_valid_loss));
  if (j && st->best_step > 0 && isfinite(st->best_metric))
    json_object_set_new(j, "best_metric", json_real(st->best_metric));
  char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  int bad = !s || ft_path_join(path, sizeof path, dir, "trainer_state.json", NULL) ||
            ft_write_atomic(path, s, strlen(s), 0644, NULL);
  free(s);
  if (bad) return ft_error_set(err, FT_EIO, NULL, "checkpoint: cannot write trainer_state.json");
  return 0;
}

int ckpt_save(const char *ckpt_dir, const ft_ckpt_state *st, const optim *o, char *out_path,
              size_t cap, ft_error *err) {
  char fin[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(fin, sizeof fin, "%s/ckpt-%ld", ckpt_dir, st->step) >= (int)sizeof fin ||
      snprintf(tmp, sizeof tmp, "%s.tmp", fin) >= (int)sizeof tmp)
    return ft_error_set(err, FT_EIO, NULL, "checkpoint: path too long under %s", ckpt_dir);
  if (ft_mkdir_p(ckpt_dir, 0755, NULL) != 0)
    return ft_error_set(err, FT_EIO, NULL, "cannot create %s: %s", ckpt_dir, strerror(errno));
  if (ft_rmtree(tmp, NULL) != 0 || mkdir(tmp, 0755) != 0)
    return ft_error_set(err, FT_EIO, NULL, "cannot create %s: %s", tmp, strerror(errno));
  int rc = write_tensors(tmp, o, err);
  if (!rc) rc = write_state(tmp, st, o, err);
  if (!rc && ft_fsync_dir(tmp, NULL) != 0)
    rc = ft_error_set(err, FT_EIO, NULL, "cannot fsync %s: %s", tmp, strerror(errno));
  /* An older attempt of the job may have left a ckpt-<step>: ours replaces it. */
  if (!rc && (ft_rmtree(fin, NULL) != 0 || rename(tmp, fin) != 0))
    rc = ft_error_set(err, FT_EIO, NULL, "cannot rename %s: %s", tmp, strerror(errno));
  if (!rc && ft_fsync_dir(ckpt_dir, NULL) != 0)
    rc = ft_error_set(err, FT_EIO, NULL, "cannot fsync %s: %s", ckpt_dir, strerror(errno));
  if (rc) {
    ft_rmtree(tmp, NULL);
    return rc;
  }
  if (out_path) snprintf(out_path, cap, "%s", fin);
  return 0;
}

/* ---- load ---- */

static int read_state(const char *dir, uint64_t f[F_COUNT], ft_error *err) {
  char path[PATH_MAX];
  if (ft_path_join(path, sizeof path, dir, "trainer_state.bin", NULL))
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint path too long");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s: no trainer_state.bin (%s)", dir,
                        strerror(errno));
  uint8_t buf[STATE_BYTES + 1];
  ssize_t n = 0, r;
  while ((size_t)n < sizeof buf && (r = read(fd, buf + n, sizeof buf - (size_t)n)) > 0) n += r;
  close(fd);
  if (n < 16 || memcmp(buf, CKPT_MAGIC, 8) != 0)
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s: not a checkpoint state file", dir);
  uint32_t ver = get_u32(buf + 8), count = get_u32(buf + 12);
  if (!(ver == CKPT_VERSION && count == F_COUNT) && !(ver == 1 && count == F_COUNT_V1))
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s: unsupported version %u", dir, ver);
  size_t bytes = 8 + 4 + 4 + 8 * (size_t)count + 4;
  if ((size_t)n != bytes || get_u32(buf + bytes - 4) != ckpt_crc32(0, buf, bytes - 4))
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s: state file is torn or corrupt", dir);
  memset(f, 0, F_COUNT * sizeof *f);
  for (uint32_t i = 0; i < count; i++) f[i] = get_u64(buf + 16 + 8 * i);
  return 0;
}

static void to_state(const uint64_t f[F_COUNT], ft_ckpt_state *st) {
  st->step = (long)f[F_STEP];
  st->total_steps = (long)f[F_TOTAL];
  st->epoch = (long)f[F_EPOCH];
  st->batch_index = (long)f[F_BATCH];
  st->rng = f[F_RNG];
  st->trained_tokens = (long)f[F_TOKENS];
  st->skipped_steps = (long)f[F_SKIPPED];
  st->nonfinite_run = (long)f[F_NONFINITE];
  st->best_metric = bitsd(f[F_BEST]);
  st->bad_evals = (long)f[F_BAD];
  st->best_step = (long)f[F_BEST_STEP];
  st->last_train_loss = bitsd(f[F_LAST_TRAIN]);
  st->last_valid_loss = bitsd(f[F_LAST_VALID]);
  st->fingerprint = f[F_FINGERPRINT];
  st->info = NULL;
}

int ckpt_read_state(const char *dir, ft_ckpt_state *st, ft_error *err) {
  uint64_t f[F_COUNT];
  int rc = read_state(dir, f, err);
  if (rc) return rc;
  to_state(f, st);
  return 0;
}

static int verify_file(const char *dir, const char *name, uint64_t size, uint64_t crc,
                       ft_error *err) {
  char path[PATH_MAX];
  uint64_t n;
  uint32_t c;
  if (ft_path_join(path, sizeof path, dir, name, NULL) || file_crc(path, &n, &c))
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint %s: cannot read %s", dir, name);
  if (n != size || c != (uint32_t)crc)
    return ft_error_set(err, FT_EFORMAT, NULL,
                        "checkpoint %s: %s is torn or corrupt (size or CRC-32 differs)", dir, name);
  return 0;
}

/* Checks that t matches p by shape, then reads it into dst. */
static int read_tensor(const st_file *f, const char *name, const ft_param *p, float *dst,
                       ft_error *err) {
  const st_tensor *t = st_find(f, name);
  if (!t) return ft_error_set(err, FT_ESHAPE, name, "checkpoint has no tensor %s", name);
  int same = t->ndim == p->ndim && t->dtype == ST_F32;
  for (int k = 0; same && k < p->ndim; k++) same = t->shape[k] == p->shape[k];
  if (!same)
    return ft_error_set(err, FT_ESHAPE, name, "checkpoint tensor %s has another shape or type",
                        name);
  return st_read_f32(f, t, dst, p->numel, err);
}

static int verify_all(const char *dir, uint64_t f[F_COUNT], ft_error *err) {
  int rc = read_state(dir, f, err);
  if (rc) return rc;
  if ((rc = verify_file(dir, "trainable.safetensors", f[F_W_SIZE], f[F_W_CRC], err)) ||
      (rc = verify_file(dir, "optimizer.safetensors", f[F_O_SIZE], f[F_O_CRC], err)))
    return rc;
  return 0;
}

int ckpt_verify(const char *dir, ft_error *err) {
  uint64_t f[F_COUNT];
  return verify_all(dir, f, err);
}

int ckpt_load_weights(const char *dir, ft_model *m, ft_error *err) {
  uint64_t f[F_COUNT];
  int rc = verify_all(dir, f, err);
  if (rc) return rc;
  char path[PATH_MAX];
  st_file *w = NULL;
  if (ft_path_join(path, sizeof path, dir, "trainable.safetensors", NULL))
    return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint path too long");
  if ((rc = st_open(&w, path, err))) {
    if (err) err->code = FT_EFORMAT;
    return FT_EFORMAT;
  }
  size_t np, nt = 0;
  ft_param *ps = model_params(m, &np);
  for (size_t i = 0; i < np; i++) nt += ps[i].trainable != 0;
  if (st_count(w) != nt) {
    st_close(w);
    return ft_error_set(err, FT_ESHAPE, NULL,
                        "checkpoint %s holds other tensors than the model trains", dir);
  }
  for (size_t i = 0; i < np && !rc; i++)
    if (ps[i].trainable) rc = read_tensor(w, ps[i].name, &ps[i], ps[i].w, err);
  st_close(w);
  return rc;
}

json_t *ckpt_read_info(const char *dir) {
  char path[PATH_MAX];
  if (ft_path_join(path, sizeof path, dir, "trainer_state.json", NULL)) return NULL;
  return json_load_file(path, 0, NULL);
}

int ckpt_load(const char *dir, ft_ckpt_state *st, optim *o, ft_error *err) {
  uint64_t f[F_COUNT];
  int rc = verify_all(dir, f, err);
  if (rc) return rc;
  size_t np = optim_count(o), numel = optim_numel(o);
  if (f[F_NUMEL] != numel)
    return ft_error_set(err, FT_ESHAPE, NULL,
                        "checkpoint %s holds %llu trained values, the model trains %zu", dir,
                        (unsigned long long)f[F_NUMEL], numel);
  char path[PATH_MAX];
  st_file *w = NULL, *m = NULL;
  if (ft_path_join(path, sizeof path, dir, "trainable.safetensors", NULL) ||
      (rc = st_open(&w, path, err)) ||
      ft_path_join(path, sizeof path, dir, "optimizer.safetensors", NULL) ||
      (rc = st_open(&m, path, err))) {
    st_close(w);
    if (!rc) return ft_error_set(err, FT_EFORMAT, NULL, "checkpoint path too long");
    if (err) err->code = FT_EFORMAT; /* st_open's message says what is wrong */
    return FT_EFORMAT;
  }
  if (st_count(w) != np || st_count(m) != 2 * np) {
    rc = ft_error_set(err, FT_ESHAPE, NULL,
                      "checkpoint %s holds other tensors than the model trains", dir);
    goto out;
  }
  /* Everything is verified: from here on the model and optimizer change. */
  float *mom = optim_moments_rw(o);
  size_t off = 0;
  char name[FT_NAME_MAX + 16];
  for (size_t i = 0; i < np && !rc; i++) {
    ft_param *p = (ft_param *)optim_param(o, i);
    rc = read_tensor(w, p->name, p, p->w, err);
    snprintf(name, sizeof name, "%s.exp_avg", p->name);
    if (!rc) rc = read_tensor(m, name, p, mom + off, err);
    snprintf(name, sizeof name, "%s.exp_avg_sq", p->name);
    if (!rc) rc = read_tensor(m, name, p, mom + numel + off, err);
    off += p->numel;
  }
  if (!rc) {
    optim_set_step_count(o, (long)f[F_OPT_STEP]);
    to_state(f, st);
  }
out:
  st_close(w);
  st_close(m);
  return rc;
}

/* ---- listing ---- */

/* step of "ckpt-<digits>" (tmp: "ckpt-<digits>.tmp"), else -1. */
static long ckpt_step_of(const char *name, int *tmp) {
  if (strncmp(name, "ckpt-", 5) != 0) return -1;
  const char *p = name + 5;
  if (*p < '0' || *p > '9') return -1;
  char *e;
  errno = 0;
  long s = strtol(p, &e, 10);
  if (errno) return -1;
  *tmp = strcmp(e, ".tmp") == 0;
  if (*e && !*tmp) return -1;
  return s;
}

static int cmp_long_desc(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of complete checkpoints, newest first; removes *.tmp when clean. */
static int list_ckpts(const char *ckpt_dir, long **steps, size_t *n, int clean) {
  *steps = NULL;
  *n = 0;
  DIR *d = opendir(ckpt_dir);
  if (!d) return errno == ENOENT ? 0 : -1;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    int tmp = 0;
    long s = ckpt_step_of(e->d_name, &tmp);
    if (s < 0) continue;
    if (tmp) {
      char p[PATH_MAX];
      if (clean && ft_path_join(p, sizeof p, ckpt_dir, e->d_name, NULL) == 0) ft_rmtree(p, NULL);
      continue;
    }
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      long *q = realloc(*steps, cap * sizeof *q);
      if (!q) {
        free(*steps); /* the caller gets nothing to free on failure */
        *steps = NULL;
        *n = 0;
        closedir(d);
        errno = ENOMEM;
        return -1;
      }
      *steps = q;
    }
    (*steps)[(*n)++] = s;
  }
  closedir(d);
  if (*n) qsort(*steps, *n, sizeof **steps, cmp_long_desc);
  return 0;
}

int ckpt_list(const char *ckpt_dir, long **steps, size_t *n, ft_error *err) {
  if (list_ckpts(ckpt_dir, steps, n, 0) != 0)
    return ft_error_set(err, FT_EIO, NULL, "cannot list %s: %s", ckpt_dir, strerror(errno));
  return 0;
}

int ckpt_prune(const char *ckpt_dir, int keep, long keep_step, ft_error *err) {
  long *steps;
  size_t n;
  if (list_ckpts(ckpt_dir, &steps, &n, 1) != 0)
    return ft_error_set(err, FT_EIO, NULL, "cannot list %s: %s", ckpt_dir, strerror(errno));
  int rc = 0;
  for (size_t i = keep > 0 ? (size_t)keep : n; i < n; i++) {
    if (keep_step > 0 && steps[i] == keep_step) continue;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/ckpt-%ld", ckpt_dir, steps[i]);
    if (ft_rmtree(p, NULL) != 0) rc = ft_error_set(err, FT_EIO, NULL, "cannot remove %s", p);
  }
  free(steps);
  if (!rc) ft_fsync_dir(ckpt_dir, NULL);
  return rc;
}

int ckpt_latest(const char *ckpt_dir, char *path, size_t cap, ft_error *err) {
  long *steps;
  size_t n;
  if (list_ckpts(ckpt_dir, &steps, &n, 0) != 0)
    return ft_error_set(err, FT_EIO, NULL, "cannot list %s: %s", ckpt_dir, strerror(errno));
  int rc = FT_ENOT_FOUND;
  for (size_t i = 0; i < n && rc; i++) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/ckpt-%ld", ckpt_dir, steps[i]);
    if (ckpt_verify(p, NULL) == 0) {
      snprintf(path, cap, "%s", p);
      rc = 0;
    }
  }
  free(steps);
  if (rc) return ft_error_set(err, rc, NULL, "no checkpoint in %s", ckpt_dir);
  return 0;
}
