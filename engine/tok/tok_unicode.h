/* UTF-8 and Unicode canonical normalization for the tokenizer (tok.c):
 * decoding and encoding of text already checked with ft_utf8_valid
 * (common/ft_utf8.h), lossy repair (as Rust's from_utf8_lossy, which is what
 * Hugging Face's decoders produce), and NFC/NFD with tables generated from
 * the Unicode data (tok_unicode_data.h). Pure functions, no state. */
#ifndef FT_TOK_UNICODE_H
#define FT_TOK_UNICODE_H
#include <stddef.h>
#include <stdint.h>

/* Decodes one code point of well-formed UTF-8 at s; returns its byte length. */
int tok_utf8_decode(const char *s, uint32_t *cp);
/* Writes cp as UTF-8 to out (room for 4 bytes); returns the byte count. */
int tok_utf8_encode(char *out, uint32_t cp);
/* Copies s[0..n) with each maximal ill-formed subsequence replaced by U+FFFD.
 * *out is malloc'd and NUL-terminated; caller frees. 0 or FT_ENOMEM. */
int tok_utf8_lossy(const char *s, size_t n, char **out, size_t *outn);
/* NFC (compose=1) or NFD (compose=0) of well-formed UTF-8. *out is malloc'd
 * and NUL-terminated; caller frees. 0 or FT_ENOMEM. */
int tok_unicode_normalize(const char *s, size_t n, int compose, char **out, size_t *outn);
#endif
