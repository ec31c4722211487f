/* UTF-8 as RFC 3629 defines it: the one check of it in the tree (uploads,
 * records, file names, error messages and the tokenizer all use these).
 * Well-formed means: the shortest form of each code point, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no sequence cut short. U+0000 is
 * an ordinary code point here; callers holding C strings stop at it. */
#ifndef FT_UTF8_H
#define FT_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* The sequence at s[0..n): its length (1..4) with its code point in *cp;
 * or, when it is ill-formed, minus the length (1..3) of its maximal
 * ill-formed subpart, the bytes one U+FFFD stands for (Unicode's practice
 * for replacement); *cp is then not written. 0 when n is 0. */
int ft_utf8_next(const char *s, size_t n, uint32_t *cp);

/* 1 when s[0..n) is well-formed UTF-8; else 0, with *bad (if not NULL) the
 * offset of the first byte of the first ill-formed sequence. */
int ft_utf8_valid(const char *s, size_t n, size_t *bad);
#endif
