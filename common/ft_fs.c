/* The file-system helpers of ft_fs.h. Their callers are model, checkpoint
 * and upload writers and the daemon's start-up and clean-up: a few files or
 * small trees at a time, where durability and not following a link out of a
 * tree matter more than speed. Every error keeps errno for the caller. */
#include "ft_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ft_error_set with errno kept as the cause; returns code. */
static int fail(ft_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ft_error *err, int code, const char *fmt, ...) {
  int e = errno;
  if (err) {
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ft_error_set(err, code, NULL, "%s", msg);
  }
  errno = e;
  return code;
}

static int io_code(void) { return errno == ENOMEM ? FT_ENOMEM : FT_EIO; }

/* ---- paths ---- */

int ft_pathf(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  if (k >= 0 && (size_t)k < cap) return 0;
  if (cap) out[0] = 0;
  errno = ENAMETOOLONG;
  return FT_EIO;
}

int ft_path_join(char *out, size_t cap, const char *dir, const char *name, ft_error *err) {
  if (ft_pathf(out, cap, "%s/%s", dir, name) == 0) return 0;
  return fail(err, FT_EIO, "path too long: %s/%s", dir, name);
}

/* Copies path without its trailing slashes ("/" stays) into buf[PATH_MAX]. */
static int trimmed(char *buf, const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  if (n >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, n);
  buf[n] = 0;
  return 0;
}

/* ---- directories ---- */

/* mkdir that accepts an existing directory (or a link to one). */
static int mkdir_one(const char *dir, mode_t mode) {
  if (mkdir(dir, mode) == 0) return 0;
  if (errno != EEXIST) return -1;
  struct stat sb;
  if (stat(dir, &sb) != 0) return -1;
  if (!S_ISDIR(sb.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int ft_mkdir_p(const char *dir, mode_t mode, ft_error *err) {
  char buf[PATH_MAX];
  if (!dir[0]) {
    errno = ENOENT;
    return fail(err, FT_EIO, "cannot create \"\": %s", strerror(errno));
  }
  if (trimmed(buf, dir) != 0) return fail(err, FT_EIO, "path too long: %s", dir);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/' || p[-1] == '/') continue;
    *p = 0;
    int rc = mkdir_one(buf, mode);
    *p = '/';
    if (rc) return fail(err, FT_EIO, "cannot create %s: %s", dir, strerror(errno));
  }
  if (mkdir_one(buf, mode) != 0)
    return fail(err, FT_EIO, "cannot create %s: %s", dir, strerror(errno));
  return 0;
}

typedef struct {
  char path[PATH_MAX]; /* the entry being removed, for the message */
  char bad[PATH_MAX];  /* the first that could not be removed */
  int err;             /* its errno, or 0 */
} rm_ctx;

static void rm_failed(rm_ctx *c, int e) {
  if (c->err) return;
  c->err = e ? e : EIO;
  memcpy(c->bad, c->path, sizeof c->bad);
}

/* Removes name in the directory dfd (c->path names it); 0 or -1. A
 * directory is opened with O_NOFOLLOW relative to its parent's descriptor,
 * so neither a link nor a rename under us can lead the walk elsewhere. */
static int rm_at(rm_ctx *c, int dfd, const char *name) {
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
  int e = errno;
  if (e != EISDIR && e != EPERM) { /* (POSIX says EPERM for a directory) */
    rm_failed(c, e);
    return -1;
  }
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    rm_failed(c, errno == ENOTDIR || errno == ELOOP ? e : errno);
    return -1;
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    rm_failed(c, errno);
    close(fd);
    return -1;
  }
  size_t len = strlen(c->path);
  int failed = 0;
  /* Entries removed while reading may make readdir skip others on some
   * file systems: read again until a pass finds nothing or fails. */
  for (int seen = 1; seen && !failed;) {
    seen = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
      if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
      seen = 1;
      snprintf(c->path + len, sizeof c->path - len, "/%s", ent->d_name);
      if (rm_at(c, dirfd(d), ent->d_name)) failed = 1;
      c->path[len] = 0;
    }
    rewinddir(d);
  }
  closedir(d);
  if (failed) return -1;
  if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    rm_failed(c, errno);
    return -1;
  }
  return 0;
}

int ft_rmtree(const char *path, ft_error *err) {
  rm_ctx *c = malloc(sizeof *c);
  if (!c) return fail(err, FT_ENOMEM, "cannot remove %s: out of memory", path);
  c->err = 0;
  /* (a trailing slash would make the kernel follow a link to a directory) */
  if (trimmed(c->path, path) != 0) {
    free(c);
    return fail(err, FT_EIO, "path too long: %s", path);
  }
  if (rm_at(c, AT_FDCWD, c->path) == 0) {
    free(c);
    return 0;
  }
  int e = c->err;
  errno = e;
  fail(err, FT_EIO, "cannot remove %s: %s", c->bad, strerror(e));
  free(c);
  errno = e;
  return FT_EIO;
}

int ft_fsync_dir(const char *dir, ft_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(err, FT_EIO, "cannot fsync directory %s: %s", dir, strerror(errno));
  int rc = fsync(fd), e = errno;
  close(fd);
  errno = e;
  if (rc) return fail(err, FT_EIO, "cannot fsync directory %s: %s", dir, strerror(errno));
  return 0;
}

int ft_fsync_parent(const char *path, ft_error *err) {
  char dir[PATH_MAX];
  if (trimmed(dir, path) != 0) return fail(err, FT_EIO, "path too long: %s", path);
  char *s = strrchr(dir, '/');
  if (!s) return ft_fsync_dir(".", err);
  while (s > dir && s[-1] == '/') s--;
  if (s == dir) s++; /* the root */
  *s = 0;
  return ft_fsync_dir(dir, err);
}

/* ---- files ---- */

int ft_atomic_open(ft_atomic *a, const char *path, mode_t mode, ft_error *err) {
  a->f = NULL;
  if (ft_pathf(a->path, sizeof a->path, "%s", path) ||
      ft_pathf(a->tmp, sizeof a->tmp, "%s.tmp.XXXXXX", path))
    return fail(err, FT_EIO, "path too long: %s", path);
  int fd = mkstemp(a->tmp);
  if (fd < 0) return fail(err, FT_EIO, "cannot create %s: %s", a->tmp, strerror(errno));
  if (fchmod(fd, mode) != 0 || !(a->f = fdopen(fd, "wb"))) {
    int e = errno;
    close(fd);
    unlink(a->tmp);
    errno = e;
    return fail(err, io_code(), "cannot create %s: %s", a->tmp, strerror(errno));
  }
  return 0;
}

void ft_atomic_abort(ft_atomic *a) {
  if (!a->f) return;
  int e = errno;
  fclose(a->f);
  a->f = NULL;
  unlink(a->tmp);
  errno = e;
}

int ft_atomic_commit(ft_atomic *a, ft_error *err) {
  FILE *f = a->f;
  a->f = NULL;
  if (!f) {
    errno = EBADF;
    return fail(err, FT_EIO, "cannot write %s: %s", a->path, strerror(errno));
  }
  int ok = !ferror(f) && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int e = ok ? 0 : errno ? errno : EIO;
  if (fclose(f) != 0 && ok) ok = 0, e = errno;
  if (ok && rename(a->tmp, a->path) != 0) ok = 0, e = errno;
  if (!ok) {
    unlink(a->tmp);
    errno = e;
    return fail(err, FT_EIO, "cannot write %s: %s", a->path, strerror(e));
  }
  return ft_fsync_parent(a->path, err);
}

int ft_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, ft_error *err) {
  ft_atomic a;
  int rc = ft_atomic_open(&a, path, mode, err);
  if (rc) return rc;
  if (len && fwrite(buf, 1, len, a.f) != len) {
    int e = errno ? errno : EIO;
    ft_atomic_abort(&a);
    errno = e;
    return fail(err, FT_EIO, "cannot write %s: %s", path, strerror(e));
  }
  return ft_atomic_commit(&a, err);
}

int ft_copy_file(const char *src, const char *dst, mode_t mode, ft_error *err) {
  FILE *in = fopen(src, "rbe");
  if (!in) return fail(err, FT_EIO, "cannot open %s: %s", src, strerror(errno));
  ft_atomic a;
  int rc = ft_atomic_open(&a, dst, mode, err);
  if (rc) {
    fclose(in);
    return rc;
  }
  char *buf = malloc(1 << 16);
  if (!buf) rc = fail(err, FT_ENOMEM, "cannot copy %s: out of memory", src);
  size_t n;
  while (!rc && (n = fread(buf, 1, 1 << 16, in)) > 0)
    if (fwrite(buf, 1, n, a.f) != n) rc = fail(err, FT_EIO, "cannot write %s: %s", dst, strerror(errno));
  if (!rc && ferror(in)) rc = fail(err, FT_EIO, "cannot read %s: %s", src, strerror(errno));
  free(buf);
  fclose(in);
  if (rc) {
    ft_atomic_abort(&a);
    return rc;
  }
  return ft_atomic_commit(&a, err);
}

int ft_read_file(const char *path, size_t max, char **out, size_t *len, ft_error *err) {
  *out = NULL;
  if (len) *len = 0;
  FILE *f = fopen(path, "rbe");
  if (!f) return fail(err, FT_EIO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  size_t cap = 1 << 16, n = 0, limit = max ? max : (size_t)-2;
  if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < limit)
    cap = (size_t)sb.st_size + 1; /* room to see the end of the file at once */
  if (cap > limit) cap = limit + 1;
  char *buf = malloc(cap + 1);
  int rc = 0;
  for (;;) {
    if (!buf) {
      errno = ENOMEM;
      rc = fail(err, FT_ENOMEM, "cannot read %s: out of memory", path);
      break;
    }
    n += fread(buf + n, 1, cap - n, f);
    if (n > limit) {
      errno = EFBIG;
      rc = fail(err, FT_EIO, "cannot read %s: larger than %zu bytes", path, limit);
      break;
    }
    if (n < cap) break;
    size_t ncap = cap > limit / 2 ? limit + 1 : 2 * cap;
    char *nb = realloc(buf, ncap + 1);
    if (!nb) free(buf);
    buf = nb, cap = ncap;
  }
  if (!rc && ferror(f)) rc = fail(err, FT_EIO, "cannot read %s: %s", path, strerror(errno ? errno : EIO));
  int e = errno;
  fclose(f);
  errno = e;
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}
