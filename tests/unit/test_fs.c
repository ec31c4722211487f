/* The file-system helpers (common/ft_fs.c): nested and refused mkdir, a tree
 * removal that must not follow links out of the tree, path-length caps, and
 * atomic replacement that leaves no temp file behind. Everything happens in
 * a private directory under /tmp. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ft_fs.h"
#include "test.h"

static char root[] = "/tmp/ft_test_fs_XXXXXX";

static const char *at(const char *rel) {
  static char buf[4][PATH_MAX];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, PATH_MAX, "%s/%s", root, rel);
  return b;
}

static int is_dir(const char *p) {
  struct stat sb;
  return lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int exists(const char *p) {
  struct stat sb;
  return lstat(p, &sb) == 0;
}
static void put(const char *p, const char *text) {
  FILE *f = fopen(p, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}
static int entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return d ? n : -1;
}

static void test_mkdir_p(void) {
  ft_error e = {0};
  mode_t um = umask(0);
  umask(um);
  CHECK_EQ_INT(ft_mkdir_p(at("m/a/b/c"), 0750, &e), 0);
  CHECK(is_dir(at("m/a/b/c")));
  struct stat sb;
  CHECK(stat(at("m/a"), &sb) == 0 && (sb.st_mode & 0777) == (0750 & ~um));
  /* existing, trailing and doubled slashes */
  CHECK_EQ_INT(ft_mkdir_p(at("m/a/b/c"), 0755, NULL), 0);
  CHECK_EQ_INT(ft_mkdir_p(at("m/a//b2///"), 0755, NULL), 0);
  CHECK(is_dir(at("m/a/b2")));
  /* over a file, at the end or in the middle: refused, errno kept */
  put(at("m/file"), "x");
  errno = 0;
  CHECK_EQ_INT(ft_mkdir_p(at("m/file"), 0755, &e), FT_EIO);
  CHECK_EQ_INT(errno, ENOTDIR);
  CHECK(strstr(e.message, "cannot create") && strstr(e.message, "m/file"));
  CHECK_EQ_INT(ft_mkdir_p(at("m/file/sub"), 0755, NULL), FT_EIO);
  CHECK_EQ_INT(errno, ENOTDIR);
  /* a link to a directory is a directory */
  CHECK_EQ_INT(symlink(at("m/a"), at("m/link")), 0);
  CHECK_EQ_INT(ft_mkdir_p(at("m/link/new"), 0755, NULL), 0);
  CHECK(is_dir(at("m/a/new")));
  CHECK_EQ_INT(ft_mkdir_p("", 0755, NULL), FT_EIO);
  char lng[PATH_MAX + 10];
  memset(lng, 'a', sizeof lng - 1);
  lng[sizeof lng - 1] = 0;
  CHECK_EQ_INT(ft_mkdir_p(lng, 0755, NULL), FT_EIO);
  CHECK_EQ_INT(errno, ENAMETOOLONG);
}

static void test_rmtree(void) {
  /* outside the tree: a directory with a file, and a lone file */
  CHECK_EQ_INT(ft_mkdir_p(at("outside/keep"), 0755, NULL), 0);
  put(at("outside/keep/precious"), "x");
  put(at("outside/lone"), "y");
  /* the tree: nested dirs, files, links to the outside (dir and file), a
   * dangling link, and a link to a directory inside the tree */
  CHECK_EQ_INT(ft_mkdir_p(at("t/a/b/c"), 0755, NULL), 0);
  put(at("t/f1"), "1");
  put(at("t/a/b/c/f2"), "2");
  CHECK_EQ_INT(symlink(at("outside/keep"), at("t/a/to_dir")), 0);
  CHECK_EQ_INT(symlink(at("outside/lone"), at("t/a/b/to_file")), 0);
  CHECK_EQ_INT(symlink(at("nowhere"), at("t/dangling")), 0);
  CHECK_EQ_INT(symlink("a/b", at("t/inner")), 0);
  for (int i = 0; i < 200; i++) { /* enough entries to span several readdir buffers */
    char n[32];
    snprintf(n, sizeof n, "t/a/b/many%03d", i);
    put(at(n), "m");
  }
  ft_error e = {0};
  CHECK_EQ_INT(ft_rmtree(at("t"), &e), 0);
  CHECK(!exists(at("t")));
  CHECK(exists(at("outside/keep/precious")));
  CHECK(exists(at("outside/lone")));
  /* a missing path is done already; a file is removed */
  CHECK_EQ_INT(ft_rmtree(at("t"), NULL), 0);
  put(at("single"), "s");
  CHECK_EQ_INT(ft_rmtree(at("single"), NULL), 0);
  CHECK(!exists(at("single")));
  /* the top is a link to a directory (with or without a trailing slash):
   * the link goes, the directory stays whole */
  CHECK_EQ_INT(symlink(at("outside/keep"), at("toplink")), 0);
  char slash[PATH_MAX];
  snprintf(slash, sizeof slash, "%s/", at("toplink"));
  CHECK_EQ_INT(ft_rmtree(slash, NULL), 0);
  CHECK(!exists(at("toplink")));
  CHECK(exists(at("outside/keep/precious")));
}

/* An entry that cannot be removed: reported by its path, and the walk goes
 * on with the rest. Permissions do not stop root, so as root this runs in
 * a child that has become nobody, in a directory of its own. */
static void rmtree_failure_body(void) {
  char dir[] = "/tmp/ft_test_fs_ro_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  char locked[64], f[80], other[64];
  snprintf(locked, sizeof locked, "%s/locked", dir);
  snprintf(f, sizeof f, "%s/f", locked);
  snprintf(other, sizeof other, "%s/other", dir);
  CHECK_EQ_INT(ft_mkdir_p(locked, 0755, NULL), 0);
  put(f, "x");
  put(other, "y");
  CHECK_EQ_INT(chmod(locked, 0555), 0);
  ft_error e = {0};
  CHECK_EQ_INT(ft_rmtree(dir, &e), FT_EIO);
  CHECK_EQ_INT(errno, EACCES);
  CHECK(strstr(e.message, f) != NULL);
  CHECK(!exists(other)); /* it went on past the failure */
  CHECK(exists(f));
  chmod(locked, 0755);
  CHECK_EQ_INT(ft_rmtree(dir, NULL), 0);
  CHECK(!exists(dir));
}

static void test_rmtree_failure(void) {
  if (geteuid() != 0) {
    rmtree_failure_body();
    return;
  }
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) || setuid(65534)) _exit(3);
    rmtree_failure_body();
    _exit(test_cur_failed_ ? 1 : 0);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_paths(void) {
  char buf[8];
  ft_error e = {0};
  CHECK_EQ_INT(ft_path_join(buf, sizeof buf, "ab", "cde", &e), 0);
  CHECK_EQ_STR(buf, "ab/cde");
  /* "ab/cdef" needs 8 bytes with the NUL: fits; one more does not */
  CHECK_EQ_INT(ft_path_join(buf, sizeof buf, "ab", "cdef", NULL), 0);
  errno = 0;
  CHECK_EQ_INT(ft_path_join(buf, sizeof buf, "ab", "cdefg", &e), FT_EIO);
  CHECK_EQ_INT(errno, ENAMETOOLONG);
  CHECK_EQ_STR(buf, ""); /* never a cut path */
  CHECK_EQ_STR(e.message, "path too long: ab/cdefg");
  CHECK_EQ_INT(ft_pathf(buf, sizeof buf, "%s.%d", "x", 12345), 0);
  CHECK_EQ_STR(buf, "x.12345");
  CHECK_EQ_INT(ft_pathf(buf, sizeof buf, "%s.%d", "x", 123456), FT_EIO);
  CHECK_EQ_STR(buf, "");
}

static void test_write_atomic(void) {
  ft_error e = {0};
  const char *p = at("w/file.json");
  CHECK_EQ_INT(ft_mkdir_p(at("w"), 0755, NULL), 0);
  CHECK_EQ_INT(ft_write_atomic(p, "first", 5, 0640, &e), 0);
  char *s = NULL;
  size_t n = 0;
  CHECK_EQ_INT(ft_read_file(p, 0, &s, &n, &e), 0);
  CHECK_EQ_STR(s, "first");
  CHECK_EQ_INT(n, 5);
  free(s);
  struct stat sb;
  CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0640);
  /* a reader holding the old file keeps the old content: it was replaced
   * by a rename, not rewritten in place */
  FILE *old = fopen(p, "r");
  ino_t ino = sb.st_ino;
  CHECK_EQ_INT(ft_write_atomic(p, "second, longer", 14, 0644, NULL), 0);
  char got[32] = {0};
  CHECK(old && fread(got, 1, sizeof got - 1, old) == 5);
  CHECK_EQ_STR(got, "first");
  if (old) fclose(old);
  CHECK(stat(p, &sb) == 0 && sb.st_ino != ino && sb.st_size == 14);
  CHECK_EQ_INT(entries(at("w")), 1); /* no temp file left */
  /* an empty file */
  CHECK_EQ_INT(ft_write_atomic(p, NULL, 0, 0644, NULL), 0);
  CHECK(stat(p, &sb) == 0 && sb.st_size == 0);
  /* abort: nothing changes, no temp file */
  ft_atomic a;
  CHECK_EQ_INT(ft_atomic_open(&a, p, 0644, NULL), 0);
  fputs("never", a.f);
  ft_atomic_abort(&a);
  CHECK(a.f == NULL);
  CHECK(stat(p, &sb) == 0 && sb.st_size == 0);
  CHECK_EQ_INT(entries(at("w")), 1);
  /* into a directory that does not exist: an error naming the temp file */
  CHECK_EQ_INT(ft_write_atomic(at("w/no/such"), "x", 1, 0644, &e), FT_EIO);
  CHECK_EQ_INT(errno, ENOENT);
  CHECK(strstr(e.message, "cannot create") != NULL);
  /* the target is a directory: rename fails, the temp file is removed */
  CHECK_EQ_INT(ft_mkdir_p(at("w/adir/x"), 0755, NULL), 0);
  CHECK_EQ_INT(ft_write_atomic(at("w/adir"), "x", 1, 0644, &e), FT_EIO);
  CHECK(strstr(e.message, "cannot write") != NULL);
  CHECK_EQ_INT(entries(at("w")), 2);
}

static void test_copy_and_read(void) {
  ft_error e = {0};
  /* a file larger than one copy chunk */
  size_t big = (1 << 16) * 3 + 7;
  char *data = malloc(big);
  for (size_t i = 0; i < big; i++) data[i] = (char)(i * 31 + 7);
  CHECK_EQ_INT(ft_write_atomic(at("src.bin"), data, big, 0644, NULL), 0);
  CHECK_EQ_INT(ft_copy_file(at("src.bin"), at("dst.bin"), 0600, &e), 0);
  char *s = NULL;
  size_t n = 0;
  CHECK_EQ_INT(ft_read_file(at("dst.bin"), 0, &s, &n, NULL), 0);
  CHECK(n == big && s && memcmp(s, data, big) == 0 && s[n] == 0);
  free(s);
  /* a cap: exactly max bytes is fine, one more is EFBIG */
  CHECK_EQ_INT(ft_read_file(at("dst.bin"), big, &s, &n, NULL), 0);
  free(s);
  CHECK_EQ_INT(ft_read_file(at("dst.bin"), big - 1, &s, &n, &e), FT_EIO);
  CHECK_EQ_INT(errno, EFBIG);
  CHECK(s == NULL);
  /* not a regular file: a pipe-like source of unknown size reads whole */
  CHECK_EQ_INT(ft_read_file("/proc/self/status", 0, &s, &n, NULL), 0);
  CHECK(s && n > 10 && strlen(s) == n);
  free(s);
  CHECK_EQ_INT(ft_read_file(at("missing"), 0, &s, &n, &e), FT_EIO);
  CHECK_EQ_INT(errno, ENOENT);
  CHECK_EQ_INT(ft_copy_file(at("missing"), at("dst2"), 0644, &e), FT_EIO);
  CHECK(strstr(e.message, "cannot open") && !exists(at("dst2")));
  free(data);
}

static void test_fsync(void) {
  CHECK_EQ_INT(ft_fsync_dir(root, NULL), 0);
  CHECK_EQ_INT(ft_fsync_parent(at("anything"), NULL), 0);
  CHECK_EQ_INT(ft_fsync_parent("bare-name", NULL), 0);
  CHECK_EQ_INT(ft_fsync_parent("/etc", NULL), 0); /* its parent is the root */
  ft_error e = {0};
  CHECK_EQ_INT(ft_fsync_dir(at("missing"), &e), FT_EIO);
  CHECK_EQ_INT(errno, ENOENT);
  put(at("plain"), "p");
  CHECK_EQ_INT(ft_fsync_dir(at("plain"), NULL), FT_EIO);
  CHECK_EQ_INT(errno, ENOTDIR);
}

int main(void) {
  if (!mkdtemp(root)) return 1;
  RUN(test_mkdir_p);
  RUN(test_rmtree);
  RUN(test_rmtree_failure);
  RUN(test_paths);
  RUN(test_write_atomic);
  RUN(test_copy_and_read);
  RUN(test_fsync);
  if (ft_rmtree(root, NULL)) fprintf(stderr, "cannot remove %s\n", root);
  return test_report();
}
