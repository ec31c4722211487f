/* UTF-8 validation and decoding (common/ft_utf8.c) against RFC 3629 and the
 * Unicode Standard's table of well-formed sequences: every boundary of every
 * lead byte, overlongs, surrogates, code points past U+10FFFF, sequences cut
 * short, stray continuation bytes, and the length of each ill-formed subpart
 * (what one U+FFFD replaces). */
#include <stdlib.h>

#include "ft_utf8.h"
#include "test.h"

/* ft_utf8_valid on a string literal of n bytes. */
#define VALID(lit) ft_utf8_valid(lit, sizeof(lit) - 1, NULL)

static void test_valid_boundaries(void) {
  CHECK(VALID(""));
  CHECK(VALID("plain ASCII, longer than eight bytes"));
  CHECK(VALID("\x7F"));
  CHECK(VALID("\xC2\x80"));             /* U+0080, the first 2-byte */
  CHECK(VALID("\xDF\xBF"));             /* U+07FF */
  CHECK(VALID("\xE0\xA0\x80"));         /* U+0800, the first 3-byte */
  CHECK(VALID("\xED\x9F\xBF"));         /* U+D7FF, just below the surrogates */
  CHECK(VALID("\xEE\x80\x80"));         /* U+E000, just above them */
  CHECK(VALID("\xEF\xBF\xBF"));         /* U+FFFF */
  CHECK(VALID("\xF0\x90\x80\x80"));     /* U+10000, the first 4-byte */
  CHECK(VALID("\xF4\x8F\xBF\xBF"));     /* U+10FFFF, the last code point */
  CHECK(VALID("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80")); /* é € 😀 */
  /* U+0000 is a code point like any other */
  CHECK(ft_utf8_valid("a\0b", 3, NULL));
}

static void test_invalid(void) {
  CHECK(!VALID("\x80"));                 /* a lone continuation byte */
  CHECK(!VALID("\xBF"));
  CHECK(!VALID("\xC0\x80"));             /* overlong NUL */
  CHECK(!VALID("\xC1\xBF"));             /* overlong U+007F */
  CHECK(!VALID("\xE0\x80\x80"));         /* overlong 3-byte */
  CHECK(!VALID("\xE0\x9F\xBF"));         /* overlong U+07FF */
  CHECK(!VALID("\xF0\x8F\xBF\xBF"));     /* overlong U+FFFF */
  CHECK(!VALID("\xED\xA0\x80"));         /* U+D800, a surrogate */
  CHECK(!VALID("\xED\xBF\xBF"));         /* U+DFFF */
  CHECK(!VALID("\xED\xA0\xBD\xED\xB8\x80")); /* a CESU-8 surrogate pair */
  CHECK(!VALID("\xF4\x90\x80\x80"));     /* U+110000 */
  CHECK(!VALID("\xF5\x80\x80\x80"));     /* lead bytes past F4 */
  CHECK(!VALID("\xF8\x88\x80\x80\x80")); /* the old 5-byte form */
  CHECK(!VALID("\xFE"));
  CHECK(!VALID("\xFF"));
  CHECK(!VALID("\xC3"));                 /* cut short at the end */
  CHECK(!VALID("\xE2\x82"));
  CHECK(!VALID("\xF0\x9F\x98"));
  CHECK(!VALID("\xE2\x82" "A"));         /* cut short by ASCII */
  CHECK(!VALID("\xC3\xC3\xA9"));         /* cut short by another lead */
  /* the length bounds the check: a valid sequence cut by n */
  CHECK(!ft_utf8_valid("\xC3\xA9", 1, NULL));
}

static void test_bad_offset(void) {
  size_t bad = 99;
  CHECK(!ft_utf8_valid("0123456789abcdef\xFF", 17, &bad));
  CHECK_EQ_INT(bad, 16); /* found past the eight-byte ASCII skip */
  bad = 99;
  CHECK(!ft_utf8_valid("ab\xC3\xA9" "cd\xE2\x82", 8, &bad));
  CHECK_EQ_INT(bad, 6); /* the lead of the cut sequence, not its end */
  bad = 99;
  CHECK(!ft_utf8_valid("\xED\xA0\x80", 3, &bad));
  CHECK_EQ_INT(bad, 0);
  bad = 99;
  CHECK(ft_utf8_valid("ok", 2, &bad));
  CHECK_EQ_INT(bad, 99); /* untouched when valid */
  /* every position of the ASCII skip: the bad byte is found wherever it is */
  char buf[40];
  for (size_t at = 0; at < 32; at++) {
    memset(buf, 'x', sizeof buf);
    buf[at] = (char)0x80;
    bad = 99;
    CHECK(!ft_utf8_valid(buf, sizeof buf, &bad));
    CHECK_EQ_INT(bad, at);
  }
}

static void test_next(void) {
  uint32_t cp = 0;
  CHECK_EQ_INT(ft_utf8_next("A", 1, &cp), 1);
  CHECK_EQ_INT(cp, 'A');
  CHECK_EQ_INT(ft_utf8_next("\xC3\xA9", 2, &cp), 2);
  CHECK_EQ_INT(cp, 0xE9);
  CHECK_EQ_INT(ft_utf8_next("\xE2\x82\xAC", 3, &cp), 3);
  CHECK_EQ_INT(cp, 0x20AC);
  CHECK_EQ_INT(ft_utf8_next("\xF4\x8F\xBF\xBF", 4, &cp), 4);
  CHECK_EQ_INT(cp, 0x10FFFF);
  CHECK_EQ_INT(ft_utf8_next("\xF0\x9F\x98\x80zz", 6, &cp), 4);
  CHECK_EQ_INT(cp, 0x1F600);
  CHECK_EQ_INT(ft_utf8_next("", 0, &cp), 0);
  /* ill-formed: minus the maximal subpart; cp is left alone */
  cp = 7;
  CHECK_EQ_INT(ft_utf8_next("\x80", 1, &cp), -1);
  CHECK_EQ_INT(ft_utf8_next("\xC0\x80", 2, &cp), -1);   /* C0 is never a lead */
  CHECK_EQ_INT(ft_utf8_next("\xE0\x80\x80", 3, &cp), -1); /* 80 not allowed after E0 */
  CHECK_EQ_INT(ft_utf8_next("\xED\xA0\x80", 3, &cp), -1); /* surrogate */
  CHECK_EQ_INT(ft_utf8_next("\xF4\x90\x80\x80", 4, &cp), -1);
  CHECK_EQ_INT(ft_utf8_next("\xE2\x82" "A", 3, &cp), -2);
  CHECK_EQ_INT(ft_utf8_next("\xE2\x82\xAC", 2, &cp), -2); /* cut by n */
  CHECK_EQ_INT(ft_utf8_next("\xF0\x9F\x98" "A", 4, &cp), -3);
  CHECK_EQ_INT(ft_utf8_next("\xF0\x9F\x98\x80", 3, &cp), -3);
  CHECK_EQ_INT(cp, 7);
}

/* Every code point encodes to a sequence that decodes back to it, and each
 * encoded surrogate is refused. */
static void test_round_trip_all(void) {
  int wrong = 0;
  for (uint32_t c = 0; c <= 0x10FFFF; c++) {
    unsigned char b[4];
    int n;
    if (c < 0x80) {
      b[0] = (unsigned char)c, n = 1;
    } else if (c < 0x800) {
      b[0] = (unsigned char)(0xC0 | c >> 6), b[1] = (unsigned char)(0x80 | (c & 0x3F)), n = 2;
    } else if (c < 0x10000) {
      b[0] = (unsigned char)(0xE0 | c >> 12), b[1] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
      b[2] = (unsigned char)(0x80 | (c & 0x3F)), n = 3;
    } else {
      b[0] = (unsigned char)(0xF0 | c >> 18), b[1] = (unsigned char)(0x80 | (c >> 12 & 0x3F));
      b[2] = (unsigned char)(0x80 | (c >> 6 & 0x3F)), b[3] = (unsigned char)(0x80 | (c & 0x3F));
      n = 4;
    }
    uint32_t got = 0xFFFFFFFF;
    int k = ft_utf8_next((const char *)b, (size_t)n, &got);
    int surrogate = c >= 0xD800 && c <= 0xDFFF;
    if (surrogate ? k >= 0 : (k != n || got != c)) wrong++;
    if (ft_utf8_valid((const char *)b, (size_t)n, NULL) == surrogate) wrong++;
  }
  CHECK_EQ_INT(wrong, 0);
}

int main(void) {
  RUN(test_valid_boundaries);
  RUN(test_invalid);
  RUN(test_bad_offset);
  RUN(test_next);
  RUN(test_round_trip_all);
  return test_report();
}
