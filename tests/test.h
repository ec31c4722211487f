/* A small test runner for C tests: each CHECK prints the failed expression
 * with file:line and the run ends with the plain closing line
 * "N passed, N failed" that CI reads. Use:
 *   static void test_x(void) { CHECK(a == b); CHECK_NEAR(x, y, 1e-5); }
 *   int main(void) { RUN(test_x); return test_report(); }
 */
#ifndef FT_TEST_H
#define FT_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_passed_, test_failed_, test_cur_failed_;

#define CHECK(expr)                                                              \
  do {                                                                           \
    if (!(expr)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);   \
      test_cur_failed_ = 1;                                                      \
    }                                                                            \
  } while (0)
#define CHECK_EQ_INT(a, b)                                                       \
  do {                                                                           \
    long long a_ = (long long)(a), b_ = (long long)(b);                          \
    if (a_ != b_) {                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n",          \
              __FILE__, __LINE__, #a, #b, a_, b_);                               \
      test_cur_failed_ = 1;                                                      \
    }                                                                            \
  } while (0)
#define CHECK_EQ_STR(a, b)                                                       \
  do {                                                                           \
    const char *a_ = (a), *b_ = (b);                                             \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n",      \
              __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
      test_cur_failed_ = 1;                                                      \
    }                                                                            \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                    \
  do {                                                                           \
    double a_ = (double)(a), b_ = (double)(b);                                   \
    if (!(fabs(a_ - b_) <= (tol))) {                                             \
      fprintf(stderr, "%s:%d: CHECK failed: |%s - %s| <= %g (%.9g vs %.9g)\n",   \
              __FILE__, __LINE__, #a, #b, (double)(tol), a_, b_);                \
      test_cur_failed_ = 1;                                                      \
    }                                                                            \
  } while (0)
#define RUN(fn)                                                                  \
  do {                                                                           \
    test_cur_failed_ = 0;                                                        \
    fn();                                                                        \
    if (test_cur_failed_) {                                                      \
      test_failed_++;                                                            \
      fprintf(stderr, "FAIL %s\n", #fn);                                         \
    } else {                                                                     \
      test_passed_++;                                                            \
      fprintf(stderr, "ok   %s\n", #fn);                                         \
    }                                                                            \
  } while (0)

static inline int test_report(void) {
  printf("%d passed, %d failed\n", test_passed_, test_failed_);
  return test_failed_ ? 1 : 0;
}
#endif
