/* Monotonic condition variables and deadlines (ft_sync.h). */
#include "ft_sync.h"

#include <stdint.h>

int ft_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc) return rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (!rc) rc = pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
  return rc;
}

void ft_deadline_ms(struct timespec *d, long timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, d);
  int64_t ns = (int64_t)d->tv_nsec + (int64_t)timeout_ms * 1000000;
  d->tv_sec += (time_t)(ns / 1000000000);
  d->tv_nsec = (long)(ns % 1000000000);
}
