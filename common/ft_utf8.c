/* UTF-8 decoding and validation (ft_utf8.h), after the table of well-formed
 * byte sequences in the Unicode Standard (ch. 3, table 3-7): the lead byte
 * fixes the length and the allowed range of the second byte, which is where
 * overlongs (E0, F0), surrogates (ED) and code points past U+10FFFF (F4) are
 * refused. Most text is ASCII, so validation skips it eight bytes at a time. */
#include "ft_utf8.h"

#include <string.h>

int ft_utf8_next(const char *str, size_t n, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)str;
  if (n == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
  uint32_t v;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, v = c & 0x0F;
    if (c == 0xE0) lo = 0xA0; /* overlong below U+0800 */
    if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, v = c & 0x07;
    if (c == 0xF0) lo = 0x90; /* overlong below U+10000 */
    if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return -1; /* a continuation byte, C0, C1 or F5..FF */
  }
  for (int k = 1; k < len; k++) {
    if ((size_t)k >= n || s[k] < lo || s[k] > hi) return -k;
    v = v << 6 | (s[k] & 0x3F);
    lo = 0x80, hi = 0xBF;
  }
  *cp = v;
  return len;
}

int ft_utf8_valid(const char *s, size_t n, size_t *bad) {
  size_t i = 0;
  while (i < n) {
    if ((unsigned char)s[i] < 0x80) {
      i++;
      for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
      }
      continue;
    }
    uint32_t cp;
    int k = ft_utf8_next(s + i, n - i, &cp);
    if (k < 0) {
      if (bad) *bad = i;
      return 0;
    }
    i += (size_t)k;
  }
  return 1;
}
