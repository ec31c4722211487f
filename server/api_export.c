/* Model export API: a model directory as one tar archive
 * (GET /v1/models/{model}/content) and as a GGUF file for llama.cpp / Ollama
 * (GET /v1/models/{model}/gguf?type=f16|f32[&adapter=true]). Model files run
 * to gigabytes, so the tar is written on the fly (POSIX ustar headers built
 * here, file bytes read with pread as MHD asks for them; a sharded model's
 * index and shards go in as they are; the files are opened before the
 * reply starts, so a deletion mid-download changes nothing), and
 * the GGUF export is cached beside the weights (written atomically by
 * gguf.c) and sent from its descriptor. Thread-per-connection MHD: an export
 * runs in the requesting connection's thread and holds nobody else up. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "ft_fs.h"
#include "ft_log.h"
#include "formats/gguf.h"
#include "http.h"
#include "model_id.h"
#include "store.h"

/* What goes into the archive, in this order; adapter files come from
 * adapter/ (the layout of a LoRA job's model). */
static const char *const tar_files[] = {"config.json",
                                        "generation_config.json",
                                        "model.safetensors",
                                        "tokenizer.json",
                                        "vocab.json",
                                        "merges.txt",
                                        "tokenizer_config.json",
                                        "special_tokens_map.json",
                                        "added_tokens.json",
                                        "tokenizer.model",
                                        NULL};
static const char *const tar_adapter_files[] = {"adapter_config.json", "adapter_model.safetensors",
                                                NULL};

#define TAR_BLOCK 512
#define TAR_MAX_SHARDS 64 /* weights in more files than this are refused, not cut short */
#define TAR_MAX_ENTRIES (16 + TAR_MAX_SHARDS)

typedef struct {
  unsigned char hdr[TAR_BLOCK];
  int fd; /* -1 for a directory */
  uint64_t size;
  uint64_t start; /* offset of the header in the archive */
} tar_entry;

typedef struct {
  tar_entry e[TAR_MAX_ENTRIES];
  int n;
  uint64_t total;
} tar_stream;

static uint64_t pad512(uint64_t n) { return (n + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK; }

/* An octal field of width w (w-1 digits and a NUL); for a size beyond it, the
 * base-256 form GNU tar and libarchive read (top bit of the first byte). */
static void tar_num(unsigned char *f, size_t w, uint64_t v) {
  if (v < (1ull << (3 * (w - 1)))) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%0*llo", (int)(w - 1), (unsigned long long)v);
    memcpy(f, tmp, w - 1);
    f[w - 1] = 0;
    return;
  }
  memset(f, 0, w);
  f[0] = 0x80;
  for (size_t i = w - 1; i > 0 && v; i--, v >>= 8) f[i] = (unsigned char)(v & 0xff);
}

static void tar_header(unsigned char *h, const char *name, int dir, uint64_t size, time_t mtime) {
  memset(h, 0, TAR_BLOCK);
  snprintf((char *)h, 100, "%s", name); /* names here are short and fixed */
  tar_num(h + 100, 8, dir ? 0755 : 0644);
  tar_num(h + 108, 8, 0);
  tar_num(h + 116, 8, 0);
  tar_num(h + 124, 12, size);
  tar_num(h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
  h[156] = dir ? '5' : '0';
  memcpy(h + 257, "ustar", 6); /* magic "ustar\0", version "00" */
  memcpy(h + 263, "00", 2);
  memcpy(h + 265, "finetuned", 9);
  memcpy(h + 297, "finetuned", 9);
  memset(h + 148, ' ', 8); /* the checksum counts its own field as spaces */
  unsigned sum = 0;
  for (int i = 0; i < TAR_BLOCK; i++) sum += h[i];
  char ck[8];
  snprintf(ck, sizeof ck, "%06o", sum);
  memcpy(h + 148, ck, 6);
  h[154] = 0;
  h[155] = ' ';
}

static void tar_free(void *cls) {
  tar_stream *t = cls;
  for (int i = 0; i < t->n; i++)
    if (t->e[i].fd >= 0) close(t->e[i].fd);
  free(t);
}

/* Adds dir/name as arcname if it is a regular file (0 if absent). */
static int tar_add_file(tar_stream *t, const char *dir, const char *name, const char *arcname) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || t->n == TAR_MAX_ENTRIES) {
    close(fd);
    return 0;
  }
  tar_entry *e = &t->e[t->n++];
  e->fd = fd;
  e->size = (uint64_t)sb.st_size;
  tar_header(e->hdr, arcname, 0, e->size, sb.st_mtime);
  return 0;
}

/* A sharded model's weights (no model.safetensors): its index and every
 * shard the index names, in name order without repeats. 0, or -1 with errno;
 * FT_ERANGE when there are more shards than an archive takes. */
static int tar_add_shards(tar_stream *t, const char *dir) {
  char path[PATH_MAX];
  struct stat sb;
  if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path ||
      !stat(path, &sb))
    return 0;
  if (snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >= (int)sizeof path)
    return 0;
  json_t *idx = json_load_file(path, 0, NULL);
  if (!idx) return 0; /* none (or unreadable: the model does not load either) */
  const char *names[TAR_MAX_SHARDS];
  int n = 0, rc = 0;
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(idx, "weight_map"), k, v) {
    const char *fn = json_string_value(v);
    int seen = 0;
    if (!fn || strchr(fn, '/') || fn[0] == '.') continue; /* the loader refuses these too */
    for (int i = 0; i < n && !seen; i++) seen = !strcmp(names[i], fn);
    if (seen) continue;
    if (n == TAR_MAX_SHARDS) {
      rc = FT_ERANGE;
      break;
    }
    int at = n++; /* insertion sort: shard order */
    for (; at > 0 && strcmp(names[at - 1], fn) > 0; at--) names[at] = names[at - 1];
    names[at] = fn;
  }
  static const char index_name[] = "model.safetensors.index.json";
  if (!rc) rc = tar_add_file(t, dir, index_name, index_name);
  for (int i = 0; !rc && i < n; i++) rc = tar_add_file(t, dir, names[i], names[i]);
  json_decref(idx);
  return rc;
}

static ssize_t tar_read(void *cls, uint64_t pos, char *buf, size_t max) {
  tar_stream *t = cls;
  if (pos >= t->total) return MHD_CONTENT_READER_END_OF_STREAM;
  for (int i = 0; i < t->n; i++) {
    tar_entry *e = &t->e[i];
    uint64_t data = e->start + TAR_BLOCK, end = data + pad512(e->size);
    if (pos >= end) continue;
    if (pos < data) { /* the header */
      size_t n = (size_t)(data - pos) < max ? (size_t)(data - pos) : max;
      memcpy(buf, e->hdr + (pos - e->start), n);
      return (ssize_t)n;
    }
    uint64_t off = pos - data;
    if (off < e->size) { /* file bytes */
      size_t n = e->size - off < max ? (size_t)(e->size - off) : max;
      ssize_t got = pread(e->fd, buf, n, (off_t)off);
      if (got <= 0) return MHD_CONTENT_READER_END_WITH_ERROR; /* the file shrank */
      return got;
    }
    size_t n = (size_t)(end - pos) < max ? (size_t)(end - pos) : max; /* padding */
    memset(buf, 0, n);
    return (ssize_t)n;
  }
  size_t n = (size_t)(t->total - pos) < max ? (size_t)(t->total - pos) : max; /* end blocks */
  memset(buf, 0, n);
  return (ssize_t)n;
}

/* models/<id> when id names a model directory (with a config.json; a
 * checkpoint id is exported there first, as serving does), else replies
 * (404, or 409 while its job runs) and returns -1. */
static int model_dir_or_reply(http_req *r, const char *id, char *dir, size_t size) {
  ft_error e = {0};
  if (model_id_resolve(r->app->store, r->app->data_dir, auth_tenant(r), "model", id, dir, size,
                       &e)) {
    http_fail_err(r, &e);
    return -1;
  }
  return 0;
}

/* A file name for Content-Disposition: the id with anything unusual as '_'. */
static void safe_name(char *out, size_t size, const char *id, const char *suffix) {
  size_t n = 0;
  for (; id[n] && n + 1 < size && n < 200; n++) {
    char c = id[n];
    out[n] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '-' || c == '_'
                 ? c
                 : '_';
  }
  out[n] = 0;
  strncat(out, suffix, size - n - 1);
}

enum MHD_Result api_models_content(http_req *r) {
  const char *id = r->params[0];
  char dir[PATH_MAX], adir[PATH_MAX];
  if (model_dir_or_reply(r, id, dir, sizeof dir)) return MHD_YES;
  tar_stream *t = calloc(1, sizeof *t);
  if (!t) return http_fail(r, FT_ENOMEM, NULL, NULL);
  int rc = 0;
  for (int i = 0; !rc && tar_files[i]; i++) rc = tar_add_file(t, dir, tar_files[i], tar_files[i]);
  if (!rc) rc = tar_add_shards(t, dir);
  if (rc == FT_ERANGE) {
    tar_free(t);
    return http_fail(r, FT_EUNSUPPORTED, NULL,
                     "%s has its weights in more than %d files: too many to archive", id,
                     TAR_MAX_SHARDS);
  }
  struct stat sb;
  if (!rc && !ft_pathf(adir, sizeof adir, "%s/adapter", dir) && !lstat(adir, &sb) &&
      S_ISDIR(sb.st_mode)) {
    tar_entry *e = &t->e[t->n++];
    e->fd = -1;
    tar_header(e->hdr, "adapter/", 1, 0, sb.st_mtime);
    for (int i = 0; !rc && tar_adapter_files[i]; i++) {
      char arc[64];
      snprintf(arc, sizeof arc, "adapter/%s", tar_adapter_files[i]);
      rc = tar_add_file(t, adir, tar_adapter_files[i], arc);
    }
  }
  if (rc) {
    tar_free(t);
    return http_fail(r, FT_EIO, NULL, "cannot read the files of %s: %s", id, strerror(errno));
  }
  uint64_t off = 0;
  for (int i = 0; i < t->n; i++) {
    t->e[i].start = off;
    off += TAR_BLOCK + pad512(t->e[i].size);
  }
  t->total = off + 2 * TAR_BLOCK;
  struct MHD_Response *resp =
      MHD_create_response_from_callback(t->total, 64 * 1024, tar_read, t, tar_free);
  if (!resp) {
    tar_free(t);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  char fname[256], disp[300];
  safe_name(fname, sizeof fname, id, ".tar");
  snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", fname);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-tar");
  MHD_add_response_header(resp, "Content-Disposition", disp);
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}

/* 1 if path exists and is at least as new as every source (so the cache is valid). */
static int fresh(const char *path, const char *const *src, int nsrc) {
  struct stat c, s;
  if (stat(path, &c) || !S_ISREG(c.st_mode)) return 0;
  for (int i = 0; i < nsrc; i++)
    if (!stat(src[i], &s) &&
        (s.st_mtim.tv_sec > c.st_mtim.tv_sec ||
         (s.st_mtim.tv_sec == c.st_mtim.tv_sec && s.st_mtim.tv_nsec > c.st_mtim.tv_nsec)))
      return 0;
  return 1;
}

static int do_export(const char *dir, const char *adir, const char *out, int f16, const char *id,
                     int adapter, ft_error *err) {
  return adapter ? gguf_export_adapter(dir, adir, out, f16, id, err)
                 : gguf_export_model(dir, out, f16, id, err);
}

enum MHD_Result api_models_gguf(http_req *r) {
  const char *id = r->params[0];
  const char *type = http_query(r, "type"), *ad = http_query(r, "adapter");
  if (!type) type = "f16";
  if (strcmp(type, "f16") && strcmp(type, "f32"))
    return http_fail(r, FT_ERANGE, "type", "type must be f16 or f32, not \"%s\"", type);
  if (ad && strcmp(ad, "true") && strcmp(ad, "false"))
    return http_fail(r, FT_ERANGE, "adapter", "adapter must be true or false, not \"%s\"", ad);
  int adapter = ad && !strcmp(ad, "true"), f16 = !strcmp(type, "f16");
  char dir[PATH_MAX], adir[PATH_MAX], cache[PATH_MAX], s0[PATH_MAX], s1[PATH_MAX];
  if (model_dir_or_reply(r, id, dir, sizeof dir)) return MHD_YES;
  struct stat sb;
  if (ft_pathf(adir, sizeof adir, "%s/adapter", dir) ||
      ft_pathf(s0, sizeof s0, "%s/%s", adapter ? adir : dir,
                 adapter ? "adapter_model.safetensors" : "model.safetensors") ||
      ft_pathf(s1, sizeof s1, "%s/%s", adapter ? adir : dir,
                 adapter ? "adapter_config.json" : "config.json") ||
      ft_pathf(cache, sizeof cache, "%s/%s-%s.gguf", dir, adapter ? "adapter" : "model", type))
    return http_fail(r, FT_EIO, NULL, "path too long");
  if (adapter && (stat(s1, &sb) || !S_ISREG(sb.st_mode)))
    return http_fail(r, FT_ENOT_FOUND, "adapter", "model %s has no LoRA adapter", id);
  const char *srcs[] = {s0, s1};
  ft_error err = {0};
  int fd = -1;
  if (!fresh(cache, srcs, 2)) {
    int rc = do_export(dir, adir, cache, f16, id, adapter, &err);
    if (rc == FT_EIO) { /* a read-only model directory: export to a private temp file */
      char tmp[PATH_MAX];
      char tag[64];
      store_new_id(".gguf", tag, sizeof tag);
      if (ft_pathf(tmp, sizeof tmp, "%s/models/%s", r->app->data_dir, tag))
        return http_fail(r, FT_EIO, NULL, "path too long");
      FT_WARN("msg=\"gguf cache not writable, exporting to a temp file\" model=%s err=\"%s\"", id,
              err.message);
      rc = do_export(dir, adir, tmp, f16, id, adapter, &err);
      if (!rc) {
        fd = open(tmp, O_RDONLY | O_CLOEXEC);
        unlink(tmp);
      }
    }
    if (rc) return http_fail_err(r, &err);
    FT_INFO("msg=\"gguf exported\" model=%s type=%s adapter=%d", id, type, adapter);
  }
  if (fd < 0) fd = open(cache, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    if (fd >= 0) close(fd);
    return http_fail(r, FT_EIO, NULL, "cannot open the GGUF export of %s", id);
  }
  struct MHD_Response *resp = MHD_create_response_from_fd((size_t)sb.st_size, fd);
  if (!resp) {
    close(fd);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  char fname[256], disp[300], suffix[32];
  snprintf(suffix, sizeof suffix, "%s-%s.gguf", adapter ? "-lora" : "", type);
  safe_name(fname, sizeof fname, id, suffix);
  snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", fname);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
  MHD_add_response_header(resp, "Content-Disposition", disp);
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}
