/* The data directory every command resolves the same way (server/datadir.c):
 * an option wins, then systemd's $STATE_DIRECTORY (its first entry), then
 * ./var; missing parents are created; the result is absolute; a path longer
 * than DATADIR_MAX is refused with an error instead of truncated. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datadir.h"
#include "test.h"

static char g_tmp[64];

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_option_with_parents(void) {
  char want[256];
  snprintf(want, sizeof want, "%s/a/b/c", g_tmp);
  ft_error e = {0};
  char *d = datadir_resolve(want, &e);
  CHECK(d != NULL);
  CHECK(d && d[0] == '/');
  CHECK(is_dir(want));
  free(d);
}

static void test_state_directory_first_entry(void) {
  char sd[400], first[256];
  snprintf(first, sizeof first, "%s/state", g_tmp);
  snprintf(sd, sizeof sd, "%s:%s/other", first, g_tmp);
  setenv("STATE_DIRECTORY", sd, 1);
  ft_error e = {0};
  char *d = datadir_resolve(NULL, &e);
  CHECK(d && strstr(d, "/state") && !strchr(d, ':'));
  CHECK(is_dir(first));
  free(d);
  /* an option wins over the environment */
  char opt[256];
  snprintf(opt, sizeof opt, "%s/opt", g_tmp);
  d = datadir_resolve(opt, &e);
  CHECK(d && strstr(d, "/opt"));
  free(d);
  unsetenv("STATE_DIRECTORY");
}

static void test_too_long_refused(void) {
  /* nested 100-byte components, so each mkdir is legal but the whole is not */
  char path[4000];
  size_t n = (size_t)snprintf(path, sizeof path, "%s", g_tmp);
  while (n + 101 < DATADIR_MAX + 200) {
    path[n++] = '/';
    memset(path + n, 'x', 99);
    n += 99;
    path[n] = 0;
  }
  ft_error e = {0};
  char *d = datadir_resolve(path, &e);
  CHECK(d == NULL);
  CHECK_EQ_INT(e.code, FT_EINVALID);
  CHECK(strstr(e.message, "too long") != NULL);
  free(d);
}

static void test_not_a_directory(void) {
  char file[256], under[300];
  snprintf(file, sizeof file, "%s/plain", g_tmp);
  FILE *f = fopen(file, "w");
  if (f) fclose(f);
  snprintf(under, sizeof under, "%s/sub", file);
  ft_error e = {0};
  char *d = datadir_resolve(under, &e);
  CHECK(d == NULL);
  CHECK_EQ_INT(e.code, FT_EIO);
  CHECK(strstr(e.message, "cannot create data dir") != NULL);
  CHECK(strstr(e.message, "Not a directory") != NULL);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ftdatadir.XXXXXX");
  if (!mkdtemp(g_tmp)) return 1;
  RUN(test_option_with_parents);
  RUN(test_state_directory_first_entry);
  RUN(test_too_long_refused);
  RUN(test_not_a_directory);
  int rc = test_report();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd)) {
  }
  return rc;
}
