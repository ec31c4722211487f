/* A growing text buffer for output assembled piece by piece: the /metrics
 * page and the pending bytes of a Server-Sent Events stream. The buffer
 * doubles as it grows, so a page of a few kilobytes costs a few reallocs;
 * it is always NUL-terminated once something was written. Not thread-safe:
 * a buffer shared between threads is guarded by its owner's mutex. */
#ifndef FT_BUF_H
#define FT_BUF_H
#include <stddef.h>

/* Zero-initialised is empty; the owner frees data with ft_buf_free. */
typedef struct {
  char *data;
  size_t len, cap;
} ft_buf;

/* Appends printf output; 0, or FT_ENOMEM with b unchanged. */
int ft_buf_printf(ft_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties b, keeping its memory for reuse. */
void ft_buf_clear(ft_buf *b);
/* Frees data and empties b. */
void ft_buf_free(ft_buf *b);

/* Grows any malloc'd array *p of *cap elements of elem bytes to hold at least
 * need, doubling from first (a capacity to start from when *cap is 0). 0, or
 * FT_ENOMEM with *p and *cap unchanged. */
int ft_grow(void **p, size_t *cap, size_t need, size_t elem, size_t first);
#endif
