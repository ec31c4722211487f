/* Waiting with a deadline: condition variables that time out on the
 * monotonic clock (a wall-clock step never shortens or stretches a wait),
 * and the absolute deadline such a wait takes. Used by the store's event
 * waits and the inference pool's queue. */
#ifndef FT_SYNC_H
#define FT_SYNC_H
#include <pthread.h>
#include <time.h>

/* pthread_cond_init with CLOCK_MONOTONIC: 0 or the pthread error number. */
int ft_cond_init_monotonic(pthread_cond_t *cv);
/* *d = now (CLOCK_MONOTONIC) + timeout_ms, for pthread_cond_timedwait on a
 * condition variable made by ft_cond_init_monotonic. */
void ft_deadline_ms(struct timespec *d, long timeout_ms);
#endif
