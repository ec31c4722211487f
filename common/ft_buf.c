/* The growing text buffer (ft_buf.h): vsnprintf straight into the free
 * space, and one realloc with room for the whole piece when it did not fit,
 * so every append formats at most twice. */
#include "ft_buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ft_err.h"

int ft_buf_printf(ft_buf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int k = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0) return FT_EINVALID;
    if (b->data && (size_t)k < room) {
      b->len += (size_t)k;
      return 0;
    }
    size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
    char *nb = realloc(b->data, ncap);
    if (!nb) {
      if (b->data) b->data[b->len] = 0; /* (vsnprintf wrote a truncated piece) */
      return FT_ENOMEM;
    }
    b->data = nb;
    b->cap = ncap;
  }
}

void ft_buf_clear(ft_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = 0;
}

void ft_buf_free(ft_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int ft_grow(void **p, size_t *cap, size_t need, size_t elem, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : (first ? first : 1);
  while (c < need) {
    if (c > SIZE_MAX / 2 / elem) return FT_ENOMEM;
    c *= 2;
  }
  void *q = realloc(*p, c * elem);
  if (!q) return FT_ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}
