/* File-system helpers shared by the daemon, the worker and the engine: the
 * one home of making directories, removing trees, directory fsync, path
 * joining, atomic file replacement and whole-file reads (STYLE.md 14).
 *
 * Contract of every function here: 0 on success, else a negative FT_E* code
 * (FT_EIO, or FT_ENOMEM when memory ran out), errno left at the cause, and,
 * when err is not NULL, a message naming the path ("cannot create DIR: No
 * such file or directory"). A caller that words its own message passes NULL
 * and reads errno. Paths longer than PATH_MAX are refused (ENAMETOOLONG). */
#ifndef FT_FS_H
#define FT_FS_H
#include <limits.h>
#include <stdio.h>
#include <sys/types.h>

#include "ft_err.h"

/* snprintf for paths: 0, or FT_EIO with errno ENAMETOOLONG when the result
 * does not fit in cap bytes; out is then "" (never a cut path, which could
 * name another file). */
int ft_pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* dir + "/" + name into out, as ft_pathf; err: "path too long: DIR/NAME". */
int ft_path_join(char *out, size_t cap, const char *dir, const char *name, ft_error *err);

/* Creates dir and its missing parents, each with mode (less the umask).
 * Directories that exist are fine; a component that exists and is not a
 * directory (or a link to one) is ENOTDIR. */
int ft_mkdir_p(const char *dir, mode_t mode, ft_error *err);

/* Removes path and everything below it, as `rm -rf`: a symbolic link is
 * removed, never followed, so the walk cannot leave the tree; a missing path
 * is success. Goes on past what it cannot remove and reports the first
 * ("cannot remove PATH: ..."). Holds one descriptor per level of depth. */
int ft_rmtree(const char *path, ft_error *err);

/* fsync of a directory, which makes a rename or a new entry in it durable. */
int ft_fsync_dir(const char *dir, ft_error *err);
/* ft_fsync_dir of the directory that holds path ("." for a bare name). */
int ft_fsync_parent(const char *path, ft_error *err);

/* Replacing a file atomically (STYLE.md 12): readers see the old content or
 * the new one, never a part. ft_atomic_open creates a temp file beside path
 * (path.tmp.XXXXXX, with mode); the caller writes the content to f; then
 * ft_atomic_commit flushes, fsyncs, closes, renames it over path and fsyncs
 * the directory, or ft_atomic_abort closes and removes it. Commit removes the
 * temp file itself when it fails; either call ends the use of a. */
typedef struct {
  FILE *f; /* write the content here; NULL once committed or aborted */
  char path[PATH_MAX], tmp[PATH_MAX];
} ft_atomic;
int ft_atomic_open(ft_atomic *a, const char *path, mode_t mode, ft_error *err);
int ft_atomic_commit(ft_atomic *a, ft_error *err);
void ft_atomic_abort(ft_atomic *a);

/* buf[0..len) as the new content of path, through ft_atomic. */
int ft_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, ft_error *err);
/* A copy of src as the new content of dst (following links), through ft_atomic. */
int ft_copy_file(const char *src, const char *dst, mode_t mode, ft_error *err);

/* The whole of path in *out (malloc'd, NUL-terminated, caller frees) and its
 * length in *len (may be NULL). A file over max bytes is refused with EFBIG
 * (max 0: no limit). */
int ft_read_file(const char *path, size_t max, char **out, size_t *len, ft_error *err);
#endif
