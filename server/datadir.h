/* Where the daemon keeps its state: the one place that picks the data
 * directory for every command that opens it (`finetuned serve`, `keys`,
 * `import-model`), so they agree on the default, create it the same way and
 * refuse the same over-long paths. */
#ifndef FT_DATADIR_H
#define FT_DATADIR_H
#include "ft_err.h"

/* Longest data dir accepted (bytes, once absolute), so that every path the
 * daemon builds below it (models/<255-byte id>/…) fits in PATH_MAX. */
#define DATADIR_MAX 3000

/* The data dir: opt, else systemd's $STATE_DIRECTORY (its first entry),
 * else ./var; created with its parents (mode 0750), then made absolute.
 * Returns a malloc'd path the caller frees, or NULL with err set. */
char *datadir_resolve(const char *opt, ft_error *err);
#endif
