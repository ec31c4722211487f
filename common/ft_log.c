/* ft_log: a line per event on stderr, with an ISO time and the level. */
#include "ft_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static ft_log_level min_level = FT_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void ft_log_set_level(ft_log_level l) { min_level = l; }

void ft_log(ft_log_level l, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (l < min_level) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&log_mu);
  fprintf(stderr, "%s.%03ldZ level=%s ", when, ts.tv_nsec / 1000000, names[l]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  pthread_mutex_unlock(&log_mu);
  va_end(ap);
}

const char *ft_log_esc(char *out, size_t n, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (!n) return out;
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      if (o + 2 >= n) break;
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      if (o + 4 >= n) break;
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    } else {
      if (o + 1 >= n) break;
      out[o++] = (char)ch;
    }
  }
  out[o] = 0;
  return out;
}
