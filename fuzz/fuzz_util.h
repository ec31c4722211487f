/* Helpers shared by the libFuzzer targets in fuzz/: a private temporary
 * directory per process, for the parsers that take a path. */
#ifndef FT_FUZZ_UTIL_H
#define FT_FUZZ_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft_fs.h"

static char fuzz_dir[64];

static void fuzz_cleanup(void) { ft_rmtree(fuzz_dir, NULL); }

/* A directory made once per process, removed at exit with what is in it. */
static const char *fuzz_tmpdir(void) {
  if (!fuzz_dir[0]) {
    snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/ft-fuzz.XXXXXX");
    if (!mkdtemp(fuzz_dir)) abort();
    atexit(fuzz_cleanup);
  }
  return fuzz_dir;
}

/* Writes data to dir/name and returns the path (static buffer). */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  return path;
}

static inline void fuzz_remove(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
  unlink(path);
}
#endif
