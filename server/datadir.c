/* The data directory (datadir.h). Runs once per command, before anything
 * else touches the disk: plain system calls, and an error returned rather
 * than printed (the command prints it). The length cap is checked on the
 * absolute path, after symlinks are resolved. */
#include "datadir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft_fs.h"

char *datadir_resolve(const char *opt, ft_error *err) {
  char buf[PATH_MAX];
  const char *dir = opt;
  if (!dir) {
    const char *sd = getenv("STATE_DIRECTORY");
    snprintf(buf, sizeof buf, "%s", sd && *sd ? sd : "./var");
    char *colon = strchr(buf, ':'); /* (several directories: the first) */
    if (colon) *colon = 0;
    dir = buf;
  }
  if (ft_mkdir_p(dir, 0750, NULL)) {
    ft_error_set(err, FT_EIO, "data-dir", "cannot create data dir %s: %s", dir, strerror(errno));
    return NULL;
  }
  char *abs = realpath(dir, NULL);
  if (!abs) {
    ft_error_set(err, FT_EIO, "data-dir", "data dir %s: %s", dir, strerror(errno));
  } else if (strlen(abs) > DATADIR_MAX) {
    ft_error_set(err, FT_EINVALID, "data-dir", "data dir path too long (over %d bytes)",
                 DATADIR_MAX);
    free(abs);
    abs = NULL;
  }
  return abs;
}
