/* The systemd watchdog ping (server/obs.c, obs_watchdog_tick): against a fake
 * NOTIFY_SOCKET it sends WATCHDOG=1 while the store answers, and withholds it
 * when the database no longer answers (here: its schema_migrations table is
 * gone), so systemd restarts a daemon whose database is broken rather than
 * keep a live loop in front of it. Without WATCHDOG_USEC nothing is sent. */
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ft_log.h"
#include "obs.h"
#include "store.h"
#include "test.h"

static char dir[] = "/tmp/ft_test_wd_XXXXXX";
static int sock = -1;

/* What arrived on the fake notify socket within ms, or "" (static buffer). */
static const char *received(int ms) {
  static char buf[256];
  buf[0] = 0;
  struct pollfd p = {.fd = sock, .events = POLLIN};
  if (poll(&p, 1, ms) == 1) {
    ssize_t n = recv(sock, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
  }
  return buf;
}

static void test_watchdog(void) {
  char path[64], db[64];
  snprintf(path, sizeof path, "%s/notify.sock", dir);
  snprintf(db, sizeof db, "%s/finetuned.db", dir);
  sock = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  CHECK_EQ_INT(bind(sock, (struct sockaddr *)&a, sizeof a), 0);
  setenv("NOTIFY_SOCKET", path, 1);
  unsetenv("WATCHDOG_PID");

  store *s = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(store_open(&s, db, &e), 0);
  if (!s) return;

  unsetenv("WATCHDOG_USEC"); /* not under a watchdog: silent */
  obs_watchdog_tick(s);
  CHECK_EQ_STR(received(200), "");

  setenv("WATCHDOG_USEC", "3000000", 1);
  obs_watchdog_tick(s);
  CHECK_EQ_STR(received(2000), "WATCHDOG=1");
  obs_watchdog_tick(s);
  CHECK_EQ_STR(received(2000), "WATCHDOG=1");

  /* break the database under the daemon's feet */
  sqlite3 *other = NULL;
  CHECK_EQ_INT(sqlite3_open(db, &other), SQLITE_OK);
  CHECK_EQ_INT(sqlite3_exec(other, "DROP TABLE schema_migrations", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  CHECK(store_ping(s) != 0);
  obs_watchdog_tick(s);
  CHECK_EQ_STR(received(500), ""); /* withheld */

  store_close(s);
  close(sock);
  unlink(path);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  ft_log_set_level(FT_LOG_ERROR); /* the expected "does not answer" warning */
  RUN(test_watchdog);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) return 1;
  return test_report();
}
