/* Files API: uploads of training and validation data, and their listing,
 * download and deletion.
 *
 * Uploads can be hundreds of MiB, so they stream: each chunk MHD hands over
 * is written straight to <data>/files/.tmp-<id> and fed to the dataset
 * validator as it goes. Only a complete upload becomes a file: fsync, rename to
 * <data>/files/<id>, fsync of the directory, then the database row, so an
 * acknowledged file survives a crash and a crash never leaves a row without
 * its bytes. Whatever way a request ends, the completion callback removes a
 * temp file that was not committed. The same chunks feed the dataset
 * validator (engine/data/dsval.h): a file that fails it is still stored, with
 * status "error", status_details naming the first bad line and the report in
 * "validation", so the user sees every problem; jobs refuse such a file.
 * Content that is not UTF-8 is one of those problems (invalid_utf8, per
 * line), not a refused request; the file NAME must be UTF-8 (400).
 * Two body forms: multipart/form-data
 * (fields "file" and "purpose", as OpenAI clients send) and a raw JSONL/CSV
 * body with ?filename= and ?purpose=.
 * Tenants (auth.h): a file belongs to the uploading key's tenant; another
 * tenant's file answers 404 like an unknown one. The client's file name is
 * only ever data (a column): paths are built from the id alone. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "data/dsval.h"
#include "ft_fs.h"
#include "ft_log.h"
#include "ft_utf8.h"
#include "http.h"
#include "store.h"

#define MULTIPART_SLACK (64u << 10) /* boundaries and headers around the file */

/* A file name as given by the client: 1..255 bytes of UTF-8, no path
 * separators, no control characters, not "." or "..". */
static int filename_ok(const char *f) {
  size_t n = strlen(f);
  if (n == 0 || n > 255 || !strcmp(f, ".") || !strcmp(f, "..")) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)f[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return 0;
  }
  return ft_utf8_valid(f, n, NULL);
}

/* Ids we hand out: prefix + "-" + 24 lowercase hex digits. */
static int id_ok(const char *id, const char *prefix) {
  size_t pl = strlen(prefix);
  if (strncmp(id, prefix, pl) || id[pl] != '-' || strlen(id + pl + 1) != 24) return 0;
  for (const char *p = id + pl + 1; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

/* Content-Type without parameters, compared case-insensitively. */
static int media_is(const char *ct, const char *want) {
  size_t n = strlen(want);
  return ct && !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* ---- one upload ----------------------------------------------------------- */

typedef struct {
  ft_app *app;
  char id[64];
  char dir[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
  int fd; /* temp file, -1 until opened */
  int multipart;
  struct MHD_PostProcessor *pp;
  uint64_t bytes;
  dsval *dv; /* the validator, made with the temp file */
  char filename[256];
  char purpose[32];
  size_t purpose_n;
  int purpose_seen, file_seen, committed;
  int last_key;          /* the field of the previous part callback: K_FILE, K_PURPOSE or 0 */
  uint64_t file_next;    /* offset the file part's next chunk continues at */
  int purpose_zero_call; /* the purpose part's last call was (off 0, size 0) */
  int file_zero_call;    /* likewise for the file part */
  ft_error err;          /* the first error (code 0: none) */
} upload;

static void upload_free(void *ctx, int completed_ok) {
  upload *u = ctx;
  if (!u) return;
  if (u->pp) MHD_destroy_post_processor(u->pp);
  if (u->fd >= 0) close(u->fd);
  if (!u->committed && u->tmp[0]) unlink(u->tmp);
  dsval_free(u->dv);
  free(u);
}

/* csv: validate as CSV (a text/csv body or part, or a .csv name). */
static int upload_open(upload *u, int csv) {
  if (dsval_new(&u->dv, csv || dsval_name_is_csv(u->filename), 0))
    return ft_error_set(&u->err, FT_ENOMEM, NULL, NULL);
  u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (u->fd < 0)
    return ft_error_set(&u->err, FT_EIO, NULL, "cannot create upload file: %s", strerror(errno));
  return 0;
}

/* Appends file bytes: cap, write, validate (bad UTF-8 is the validator's
 * invalid_utf8, reported per line). */
static int upload_write(upload *u, const char *data, size_t n) {
  if (u->err.code) return u->err.code;
  if (u->bytes + n > u->app->max_upload_bytes)
    return ft_error_set(&u->err, FT_ETOO_LARGE, "file", "file larger than %llu bytes",
                        (unsigned long long)u->app->max_upload_bytes);
  for (size_t off = 0; off < n;) {
    ssize_t k = write(u->fd, data + off, n - off);
    if (k < 0) {
      if (errno == EINTR) continue;
      return ft_error_set(&u->err, FT_EIO, NULL, "writing the upload: %s", strerror(errno));
    }
    off += (size_t)k;
  }
  u->bytes += n;
  if (dsval_feed(u->dv, data, n)) return ft_error_set(&u->err, FT_ENOMEM, NULL, NULL);
  return 0;
}

static int purpose_ok(upload *u) {
  if (strcmp(u->purpose, "fine-tune"))
    return ft_error_set(&u->err, FT_ERANGE, "purpose", "purpose must be \"fine-tune\", not \"%s\"",
                        u->purpose);
  return 0;
}

enum { K_FILE = 1, K_PURPOSE = 2 };

/* Whether this callback for key starts a second part of that field. MHD
 * calls once or more per part with the offset of the data in the part: a
 * part starts at offset 0, possibly with an empty first call (then its data
 * comes at offset 0 too). So offset 0 starts a new part unless the previous
 * call was this field's empty first one; and any call for a field seen
 * before, after another field's part, is a new part. (One case cannot be
 * told apart: an empty part directly followed by a non-empty part of the
 * same field reads as one part.) */
static int part_repeats(upload *u, int key, uint64_t off, size_t size, int seen, uint64_t next,
                        int zero_call) {
  if (!seen) return 0;
  if (u->last_key != key) return 1;
  if (off != 0) return 0;
  return size == 0 || next > 0 || !zero_call;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
  upload *u = cls;
  if (u->err.code) return MHD_NO;
  /* hostile input: a part whose Content-Disposition has no name= reaches
   * us with key NULL (strcmp(NULL) crashed the daemon) */
  if (!key) {
    ft_error_set(&u->err, FT_EINVALID, NULL, "a form part has no name");
    return MHD_NO;
  }
  if (!strcmp(key, "file")) {
    int again = part_repeats(u, K_FILE, off, size, u->file_seen, u->file_next, u->file_zero_call);
    u->last_key = K_FILE;
    u->file_zero_call = off == 0 && size == 0;
    u->file_next = off + size;
    if (again) {
      ft_error_set(&u->err, FT_EINVALID, "file", "only one \"file\" field per upload");
      return MHD_NO;
    }
    if (!u->file_seen) {
      u->file_seen = 1;
      const char *name = filename ? filename : "upload.jsonl";
      if (!filename_ok(name)) {
        ft_error_set(&u->err, FT_EINVALID, "file",
                     "file name must be a plain name (no '/', '..' or control characters)");
        return MHD_NO;
      }
      snprintf(u->filename, sizeof u->filename, "%s", name);
      if (upload_open(u, media_is(content_type, "text/csv"))) return MHD_NO;
    }
    return upload_write(u, data, size) ? MHD_NO : MHD_YES;
  }
  if (!strcmp(key, "purpose")) {
    int again =
        part_repeats(u, K_PURPOSE, off, size, u->purpose_seen, u->purpose_n, u->purpose_zero_call);
    u->last_key = K_PURPOSE;
    u->purpose_zero_call = off == 0 && size == 0;
    if (again) {
      ft_error_set(&u->err, FT_EINVALID, "purpose", "only one \"purpose\" field per upload");
      return MHD_NO;
    }
    u->purpose_seen = 1;
    if (u->purpose_n + size >= sizeof u->purpose) {
      ft_error_set(&u->err, FT_ERANGE, "purpose", "purpose must be \"fine-tune\"");
      return MHD_NO;
    }
    memcpy(u->purpose + u->purpose_n, data, size);
    u->purpose_n += size;
    u->purpose[u->purpose_n] = 0;
    return MHD_YES;
  }
  ft_error_set(&u->err, FT_EUNKNOWN_FIELD, key, "unknown form field \"%.100s\"", key);
  return MHD_NO;
}

static enum MHD_Result upload_first(http_req *r) {
  upload *u = calloc(1, sizeof *u);
  if (!u) return http_fail(r, FT_ENOMEM, NULL, NULL);
  u->fd = -1;
  u->app = r->app;
  r->ctx = u;
  r->ctx_free = upload_free;
  const char *ct = http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
  u->multipart = media_is(ct, "multipart/form-data");
  int raw = media_is(ct, "application/jsonl") || media_is(ct, "application/x-ndjson") ||
            media_is(ct, "application/x-jsonlines") || media_is(ct, "text/csv");
  if (!u->multipart && !raw)
    return http_fail(r, FT_EMEDIA_TYPE, NULL,
                     "Content-Type must be multipart/form-data, application/jsonl, "
                     "application/x-ndjson or text/csv");
  const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
  uint64_t cap = r->app->max_upload_bytes + (u->multipart ? MULTIPART_SLACK : 0);
  if (cl && strtoull(cl, NULL, 10) > cap)
    return http_fail(r, FT_ETOO_LARGE, "file", "file larger than %llu bytes",
                     (unsigned long long)r->app->max_upload_bytes);
  store_new_id("file", u->id, sizeof u->id);
  if (ft_pathf(u->dir, sizeof u->dir, "%s/files", r->app->data_dir) ||
      ft_pathf(u->tmp, sizeof u->tmp, "%s/.tmp-%s", u->dir, u->id) ||
      ft_pathf(u->final, sizeof u->final, "%s/%s", u->dir, u->id))
    return http_fail(r, FT_EIO, NULL, "data directory path too long");
  if (u->multipart) {
    u->pp = MHD_create_post_processor(r->conn, 64 * 1024, on_part, u);
    if (!u->pp)
      return http_fail(r, FT_EINVALID, "file", "malformed multipart/form-data Content-Type");
    return MHD_YES;
  }
  const char *name = http_query(r, "filename");
  if (!name) name = media_is(ct, "text/csv") ? "upload.csv" : "upload.jsonl";
  if (!filename_ok(name))
    return http_fail(r, FT_EINVALID, "filename",
                     "filename must be a plain name (no '/', '..' or control characters)");
  snprintf(u->filename, sizeof u->filename, "%s", name);
  const char *purpose = http_query(r, "purpose");
  snprintf(u->purpose, sizeof u->purpose, "%s", purpose ? purpose : "fine-tune");
  if (purpose_ok(u)) return http_fail_err(r, &u->err);
  u->file_seen = u->purpose_seen = 1;
  if (upload_open(u, media_is(ct, "text/csv"))) return http_fail_err(r, &u->err);
  return MHD_YES;
}

static enum MHD_Result upload_last(http_req *r, upload *u) {
  if (u->pp) {
    MHD_destroy_post_processor(u->pp);
    u->pp = NULL;
    if (u->err.code) return http_fail_err(r, &u->err);
    if (!u->file_seen) return http_fail(r, FT_EMISSING, "file", "form field \"file\" is missing");
    if (!u->purpose_seen)
      return http_fail(r, FT_EMISSING, "purpose", "form field \"purpose\" is missing");
    if (purpose_ok(u)) return http_fail_err(r, &u->err);
  }
  if (u->bytes == 0) return http_fail(r, FT_EBAD_FILE, "file", "file is empty");
  json_t *report = NULL;
  if (dsval_finish(u->dv, &report)) return http_fail(r, FT_ENOMEM, NULL, NULL);
  char details[640];
  long n_err = dsval_summary(report, details, sizeof details);
  /* the fd is closed whatever fsync says */
  int bad = fsync(u->fd), eno = bad ? errno : 0;
  if (close(u->fd) && !bad) bad = 1, eno = errno;
  u->fd = -1;
  if (bad) {
    json_decref(report);
    return http_fail(r, FT_EIO, NULL, "storing the upload: %s", strerror(eno));
  }
  if (rename(u->tmp, u->final) || ft_fsync_dir(u->dir, NULL)) {
    json_decref(report);
    return http_fail(r, FT_EIO, NULL, "storing the upload: %s", strerror(errno));
  }
  json_t *file = NULL;
  int rc = store_file_insert_tenant(r->app->store, r->tenant, u->id, (int64_t)u->bytes, u->filename,
                                    u->purpose, n_err ? "error" : "processed",
                                    n_err ? details : NULL, report, &file);
  json_decref(report);
  if (rc) {
    unlink(u->final);
    return http_fail(r, rc, NULL, NULL);
  }
  u->committed = 1;
  u->tmp[0] = 0;
  FT_INFO("msg=\"file uploaded\" id=%s bytes=%llu errors=%ld", u->id, (unsigned long long)u->bytes,
          n_err);
  return http_reply_json(r, 200, file);
}

enum MHD_Result api_files_create(http_req *r) {
  if (r->phase == HTTP_PHASE_FIRST) return upload_first(r);
  upload *u = r->ctx;
  if (r->phase == HTTP_PHASE_LAST) return upload_last(r, u);
  /* a chunk */
  if (!u->err.code) {
    if (u->pp) {
      if (MHD_post_process(u->pp, r->upload, r->upload_n) != MHD_YES && !u->err.code)
        ft_error_set(&u->err, FT_EINVALID, "file", "malformed multipart/form-data body");
    } else {
      upload_write(u, r->upload, r->upload_n);
    }
  }
  if (u->err.code) { /* stop storing at once; answer once the body is in */
    if (u->fd >= 0) close(u->fd);
    u->fd = -1;
    if (u->tmp[0]) unlink(u->tmp);
    u->tmp[0] = 0;
    return http_fail_later(r, &u->err);
  }
  return MHD_YES;
}

/* ---- the rest of the files API -------------------------------------------- */

enum MHD_Result api_files_list(http_req *r) {
  const char *after;
  int limit;
  if (http_page_or_reply(r, &after, &limit)) return MHD_YES;
  json_t *list;
  int rc = store_file_list_tenant(r->app->store, auth_tenant(r), after, limit, &list);
  if (rc == FT_ENOT_FOUND) return http_fail(r, rc, "after", "no such file: %s", after);
  if (rc) return http_fail(r, rc, NULL, NULL);
  return http_reply_json(r, 200, list);
}

/* Looks the file up; on failure replies (404) and returns NULL. */
static json_t *file_or_reply(http_req *r) {
  const char *id = r->params[0];
  json_t *file = NULL;
  if (id_ok(id, "file") && auth_file_or_reply(r, id, "file_id")) return NULL;
  int rc = id_ok(id, "file") ? store_file_get(r->app->store, id, &file) : FT_ENOT_FOUND;
  if (rc == FT_ENOT_FOUND)
    http_fail(r, rc, "file_id", "no such file: %s", id);
  else if (rc)
    http_fail(r, rc, NULL, NULL);
  return file;
}

enum MHD_Result api_files_get(http_req *r) {
  json_t *file = file_or_reply(r);
  return file ? http_reply_json(r, 200, file) : MHD_YES;
}

enum MHD_Result api_files_content(http_req *r) {
  json_t *file = file_or_reply(r);
  if (!file) return MHD_YES;
  json_decref(file);
  char path[PATH_MAX];
  ft_pathf(path, sizeof path, "%s/files/%s", r->app->data_dir, r->params[0]);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0 && errno == ENOENT) /* (deleted between the lookup and the open) */
    return http_fail(r, FT_ENOT_FOUND, "file_id", "no such file: %s", r->params[0]);
  if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    if (fd >= 0) close(fd);
    return http_fail(r, FT_EIO, NULL, "the content of %s is missing on disk", r->params[0]);
  }
  struct MHD_Response *resp = MHD_create_response_from_fd((size_t)sb.st_size, fd);
  if (!resp) {
    close(fd);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}

enum MHD_Result api_files_delete(http_req *r) {
  const char *id = r->params[0];
  if (!id_ok(id, "file")) return http_fail(r, FT_ENOT_FOUND, "file_id", "no such file: %s", id);
  if (auth_file_or_reply(r, id, "file_id")) return MHD_YES;
  ft_error err = {0};
  int rc = store_file_delete(r->app->store, id, &err);
  if (rc) return http_fail_err(r, &err);
  char path[PATH_MAX], dir[PATH_MAX];
  ft_pathf(dir, sizeof dir, "%s/files", r->app->data_dir);
  ft_pathf(path, sizeof path, "%s/%s", dir, id);
  if (unlink(path) && errno != ENOENT)
    FT_WARN("msg=\"cannot remove file content\" id=%s err=\"%s\"", id, strerror(errno));
  ft_fsync_dir(dir, NULL);
  return http_reply_json(r, 200,
                         json_pack("{s:s, s:s, s:b}", "id", id, "object", "file", "deleted", 1));
}
