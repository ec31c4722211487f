/* UTF-8 and canonical normalization (NFC/NFD) for the tokenizer. Qwen's
 * tokenizer.json normalizes to NFC before splitting; most text is already
 * NFC, so runs of "safe" code points (NFC_QC=Yes, ccc=0) are copied as they
 * are and only the spans around others take the full decompose / reorder /
 * compose path (UAX #15). The tables come from scripts/gen_tok_unicode.py;
 * Hangul syllables are algorithmic. */
#include "tok/tok_unicode.h"

#include <stdlib.h>
#include <string.h>

#include "ft_err.h"
#include "ft_utf8.h"
#include "tok/tok_unicode_data.h"

int tok_utf8_decode(const char *str, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)str;
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  if (s[0] < 0xE0) {
    *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    return 2;
  }
  if (s[0] < 0xF0) {
    *cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return 3;
  }
  *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
        ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
  return 4;
}

int tok_utf8_encode(char *out, uint32_t cp) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

int tok_utf8_lossy(const char *s, size_t n, char **out, size_t *outn) {
  char *o = malloc(n * 3 + 1); /* each bad byte grows to 3 at most */
  if (!o) return FT_ENOMEM;
  size_t i = 0, j = 0;
  while (i < n) {
    uint32_t cp;
    int len = ft_utf8_next(s + i, n - i, &cp);
    if (len > 0) {
      memcpy(o + j, s + i, (size_t)len);
      j += (size_t)len;
      i += (size_t)len;
    } else { /* -len bytes: the maximal ill-formed subpart */
      memcpy(o + j, "\xEF\xBF\xBD", 3);
      j += 3;
      i += (size_t)-len;
    }
  }
  o[j] = 0;
  *out = o;
  *outn = j;
  return 0;
}

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7 };
enum { LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  size_t lo = 0, hi = sizeof tok_ccc / sizeof tok_ccc[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    uint32_t c = tok_ccc[mid] >> 8;
    if (c == cp) return (int)(tok_ccc[mid] & 0xFF);
    if (c < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
  if (cp < 0xC0) return NULL;
  size_t lo = 0, hi = sizeof tok_decomp / sizeof tok_decomp[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (tok_decomp[mid][0] == cp) return tok_decomp[mid];
    if (tok_decomp[mid][0] < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
    return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
  if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
      b < TBASE + TCOUNT)
    return a + (b - TBASE);
  uint64_t key = ((uint64_t)a << 32) | b;
  size_t lo = 0, hi = sizeof tok_comp / sizeof tok_comp[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    uint64_t k = ((uint64_t)tok_comp[mid][0] << 32) | tok_comp[mid][1];
    if (k == key) return tok_comp[mid][2];
    if (k < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* Appends the full canonical decomposition of cp to buf (room checked by
 * the caller: a code point decomposes into at most 4 in Unicode 14). */
static size_t decompose(uint32_t cp, uint32_t *buf) {
  if (cp >= SBASE && cp < SBASE + SCOUNT) {
    uint32_t s = cp - SBASE, t = s % TCOUNT;
    buf[0] = LBASE + s / NCOUNT;
    buf[1] = VBASE + (s % NCOUNT) / TCOUNT;
    if (t) {
      buf[2] = TBASE + t;
      return 3;
    }
    return 2;
  }
  const uint32_t *d = decomp_of(cp);
  if (!d) {
    buf[0] = cp;
    return 1;
  }
  size_t k = decompose(d[1], buf);
  if (d[2]) k += decompose(d[2], buf + k);
  return k;
}

static int nfc_unsafe(uint32_t cp) {
  if (cp < 0x300) return 0;
  size_t lo = 0, hi = sizeof tok_nfc_unsafe / sizeof tok_nfc_unsafe[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < tok_nfc_unsafe[mid][0])
      hi = mid;
    else if (cp > tok_nfc_unsafe[mid][1])
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

/* Full decompose / reorder / (compose) of s[0..n), written at o (room for
 * 3n bytes: no code point's NFD or NFC is more than 3x its UTF-8 length);
 * cps has room for 4n code points (a code point decomposes into <= 4). */
static size_t normalize_span(const char *s, size_t n, int compose, uint32_t *cps, char *o) {
  size_t m = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += (size_t)tok_utf8_decode(s + i, &cp);
    m += decompose(cp, cps + m);
  }
  /* canonical order: stable insertion sort of each run of non-starters */
  for (size_t k = 1; k < m; k++) {
    int cc = ccc_of(cps[k]);
    if (cc == 0) continue;
    uint32_t c = cps[k];
    size_t j = k;
    while (j > 0) {
      int pc = ccc_of(cps[j - 1]);
      if (pc == 0 || pc <= cc) break;
      cps[j] = cps[j - 1];
      j--;
    }
    cps[j] = c;
  }
  if (compose && m > 0) {
    size_t starter = 0, w = 1;
    uint32_t sc = cps[0];
    int last = ccc_of(sc) ? 256 : 0;
    for (size_t k = 1; k < m; k++) {
      uint32_t c = cps[k];
      int cc = ccc_of(c);
      uint32_t comp = (last < cc || last == 0) ? compose_pair(sc, c) : 0;
      if (comp) {
        cps[starter] = comp;
        sc = comp;
      } else {
        if (cc == 0) {
          starter = w;
          sc = c;
        }
        last = cc;
        cps[w++] = c;
      }
    }
    m = w;
  }
  size_t j = 0;
  for (size_t k = 0; k < m; k++) j += (size_t)tok_utf8_encode(o + j, cps[k]);
  return j;
}

int tok_unicode_normalize(const char *s, size_t n, int compose, char **out, size_t *outn) {
  /* NFD/NFC grow text at most 3x in bytes (checked by the generator's data:
   * U+0390 is the worst case) */
  char *o = malloc(n * 3 + 1);
  uint32_t *cps = NULL;
  size_t cpcap = 0, j = 0, i = 0;
  if (!o) return FT_ENOMEM;
  while (i < n) {
    /* copy up to the next code point NFC may touch (for NFD: any >= U+00C0) */
    size_t u = i, last_safe = i;
    uint32_t cp = 0;
    while (u < n) {
      if ((unsigned char)s[u] < 0x80) {
        last_safe = u++;
        continue;
      }
      int k = tok_utf8_decode(s + u, &cp);
      if (compose ? nfc_unsafe(cp) : (cp >= 0xC0)) break;
      last_safe = u;
      u += (size_t)k;
    }
    if (u == n) {
      memcpy(o + j, s + i, n - i);
      j += n - i;
      break;
    }
    /* the span: from the last safe starter before u (it may compose with
     * what follows) to the next safe code point after u */
    size_t a = (last_safe < u) ? last_safe : u, b = u;
    if (a < i) a = i;
    while (b < n) {
      int k = tok_utf8_decode(s + b, &cp);
      if (b > u && !(compose ? nfc_unsafe(cp) : (cp >= 0xC0))) break;
      b += (size_t)k;
    }
    memcpy(o + j, s + i, a - i);
    j += a - i;
    if (cpcap < (b - a) * 4) {
      free(cps);
      cpcap = (b - a) * 4;
      cps = malloc(cpcap * sizeof *cps);
      if (!cps) {
        free(o);
        return FT_ENOMEM;
      }
    }
    j += normalize_span(s + a, b - a, compose, cps, o + j);
    i = b;
  }
  free(cps);
  o[j] = 0;
  *out = o;
  *outn = j;
  return 0;
}
