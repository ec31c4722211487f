/* safetensors reader and writer: a round trip through a real file, F16 and
 * BF16 conversion against values worked out by hand, and every kind of
 * corrupt file the reader must refuse with FT_EFORMAT and a message saying
 * what is wrong (plus every truncation and single-byte corruption of a small
 * valid file, which must never be accepted wrongly or crash). */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "test.h"

static char dir[] = "/tmp/ft_test_st_XXXXXX";

/* A file image: 8-byte length, header (as given, unpadded), data. */
static size_t image(uint8_t *buf, const char *header, const void *data, size_t dlen) {
  uint64_t n = strlen(header);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
  memcpy(buf + 8, header, n);
  if (dlen) memcpy(buf + 8 + n, data, dlen);
  return 8 + n + dlen;
}

/* Opens an image and expects code; returns the error for message checks. */
static ft_error open_img(const char *header, const void *data, size_t dlen, int want) {
  static uint8_t buf[1 << 16];
  size_t n = image(buf, header, data, dlen);
  st_file *f = NULL;
  ft_error e = {0};
  int rc = st_open_buffer(&f, buf, n, &e);
  CHECK_EQ_INT(rc, want);
  if (rc) CHECK(f == NULL);
  st_close(f);
  return e;
}

static int count_files(const char *path) {
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static void test_round_trip(void) {
  float a[6] = {1.5f, -2.25f, 3e-8f, 1e30f, -0.0f, 7.0f}, b[3] = {0.1f, 0.2f, 0.3f}, s = 42.0f;
  st_out o[4] = {
      {.name = "model.embed.weight", .data = a, .ndim = 2, .shape = {2, 3}},
      {.name = "bias", .data = b, .ndim = 1, .shape = {3}},
      {.name = "scalar", .data = &s, .ndim = 0},
      {.name = "empty", .data = NULL, .ndim = 2, .shape = {0, 5}},
  };
  char path[256];
  snprintf(path, sizeof path, "%s/rt.safetensors", dir);
  json_t *meta = json_pack("{s:s}", "step", "7");
  ft_error e = {0};
  CHECK_EQ_INT(st_write_f32(path, o, 4, meta, &e), 0);
  json_decref(meta);
  CHECK_EQ_INT(count_files(dir), 1); /* no temp file left behind */

  /* header length is a multiple of 8 and the padding is spaces */
  FILE *fp = fopen(path, "rb");
  uint8_t len8[8];
  CHECK(fp && fread(len8, 1, 8, fp) == 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
  CHECK_EQ_INT(hlen % 8, 0);
  char *hdr = calloc(1, hlen + 1);
  CHECK(fread(hdr, 1, hlen, fp) == hlen);
  fclose(fp);
  CHECK(hdr[0] == '{');
  CHECK(strstr(hdr, "\"__metadata__\"") != NULL);
  size_t end = strlen(hdr);
  while (end > 0 && hdr[end - 1] == ' ') end--;
  CHECK(hdr[end - 1] == '}');
  free(hdr);

  st_file *f = NULL;
  CHECK_EQ_INT(st_open(&f, path, &e), 0);
  if (!f) return;
  CHECK_EQ_INT(st_count(f), 4);
  CHECK_EQ_STR(st_metadata(f, "format"), "pt");
  CHECK_EQ_STR(st_metadata(f, "step"), "7");
  CHECK(st_metadata(f, "nope") == NULL);
  const st_tensor *t = st_find(f, "model.embed.weight");
  CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
        t->numel == 6);
  float got[6];
  if (t) {
    CHECK_EQ_INT(st_read_f32(f, t, got, 6, &e), 0);
    CHECK(memcmp(got, a, sizeof a) == 0); /* bit for bit, -0 included */
    CHECK_EQ_INT(st_read_f32(f, t, got, 5, &e), FT_ESHAPE);
    CHECK_EQ_STR(e.param, "model.embed.weight");
  }
  t = st_find(f, "scalar");
  CHECK(t && t->ndim == 0 && t->numel == 1);
  if (t) {
    CHECK_EQ_INT(st_read_f32(f, t, got, 1, &e), 0);
    CHECK(got[0] == 42.0f);
  }
  t = st_find(f, "empty");
  CHECK(t && t->numel == 0 && t->nbytes == 0);
  t = st_find(f, "bias");
  CHECK(t && st_index(f, t) < 4 && st_at(f, st_index(f, t)) == t);
  CHECK(st_find(f, "missing") == NULL);
  CHECK(st_find(f, "__metadata__") == NULL);
  st_close(f);
  unlink(path);
}

static void test_write_errors(void) {
  float a[2] = {1, 2};
  st_out o[2] = {{.name = "x", .data = a, .ndim = 1, .shape = {2}},
                 {.name = "x", .data = a, .ndim = 1, .shape = {2}}};
  char path[256];
  snprintf(path, sizeof path, "%s/dup.safetensors", dir);
  ft_error e = {0};
  CHECK_EQ_INT(st_write_f32(path, o, 2, NULL, &e), FT_EINVALID);
  CHECK_EQ_STR(e.param, "x");
  json_t *bad = json_pack("{s:i}", "step", 7);
  CHECK_EQ_INT(st_write_f32(path, o, 1, bad, &e), FT_EINVALID);
  json_decref(bad);
  CHECK(access(path, F_OK) != 0);
  CHECK_EQ_INT(count_files(dir), 0);
  snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
  CHECK_EQ_INT(st_write_f32(path, o, 1, NULL, &e), FT_EIO);
}

static void test_f16_bf16(void) {
  /* F16: 1, -2, 65504 (max), 2^-24 (min subnormal), -0, inf, 1/3 rounded,
   * 2^-14 (min normal), 1023*2^-24 (max subnormal), nan */
  uint16_t h[10] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0x3555, 0x0400, 0x03FF, 0x7E00};
  float want[9] = {1.0f,     -2.0f,           65504.0f,       ldexpf(1, -24),   -0.0f,
                   INFINITY, 0.333251953125f, ldexpf(1, -14), ldexpf(1023, -24)};
  /* BF16: 1, -3, 3.140625, 2^-133 (subnormal), -inf */
  uint16_t bf[5] = {0x3F80, 0xC040, 0x4049, 0x0001, 0xFF80};
  float bwant[4] = {1.0f, -3.0f, 3.140625f, ldexpf(1, -133)};
  uint8_t data[30];
  memcpy(data, h, 20);
  memcpy(data + 20, bf, 10);
  /* header length 97: odd, so the data is unaligned in the mapping */
  const char *hdr =
      "{\"h\":{\"dtype\":\"F16\",\"shape\":[10],\"data_offsets\":[0,20]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[20,30]}}";
  uint8_t buf[256];
  size_t n = image(buf, hdr, data, 30);
  char path[256];
  snprintf(path, sizeof path, "%s/half.safetensors", dir);
  FILE *fp = fopen(path, "wb");
  CHECK(fp && fwrite(buf, 1, n, fp) == n);
  fclose(fp);
  st_file *f = NULL;
  ft_error e = {0};
  CHECK_EQ_INT(st_open(&f, path, &e), 0);
  if (!f) return;
  const st_tensor *t = st_find(f, "h");
  float got[10];
  CHECK(t && t->dtype == ST_F16 && t->nbytes == 20);
  CHECK_EQ_INT(st_read_f32(f, t, got, 10, &e), 0);
  for (int i = 0; i < 9; i++) CHECK(memcmp(&got[i], &want[i], 4) == 0);
  CHECK(isnan(got[9]));
  CHECK(signbit(got[4]));
  t = st_find(f, "b");
  CHECK(t && t->dtype == ST_BF16);
  CHECK_EQ_INT(st_read_f32(f, t, got, 5, &e), 0);
  for (int i = 0; i < 4; i++) CHECK(memcmp(&got[i], &bwant[i], 4) == 0);
  CHECK(isinf(got[4]) && got[4] < 0);
  st_close(f);
  unlink(path);
  /* every F16 value through the converter agrees with the compiler's _Float16 */
#if defined(__FLT16_MAX__)
  int bad = 0;
  for (uint32_t x = 0; x < 65536; x++) {
    _Float16 v;
    uint16_t u = (uint16_t)x;
    memcpy(&v, &u, 2);
    float a = st_f16_to_f32(u), b = (float)v;
    if (!(isnan(a) && isnan(b)) && memcmp(&a, &b, 4) != 0) bad++;
  }
  CHECK_EQ_INT(bad, 0);
#endif
}

/* Half-precision writing: the converters against the compiler's _Float16
 * and hand-worked BF16 roundings, st_write in F16/BF16, and st_convert. */
static void test_write_half(void) {
#if defined(__FLT16_MAX__)
  int bad = 0;
  uint32_t x = 12345;
  for (int i = 0; i < 1 << 20; i++) {
    x = x * 1664525u + 1013904223u; /* every exponent, sign and mantissa pattern */
    float f;
    memcpy(&f, &x, 4);
    _Float16 v = (_Float16)f;
    uint16_t want;
    memcpy(&want, &v, 2);
    uint16_t got = st_f32_to_f16(f);
    if (isnan(f) ? (got & 0x7c00) != 0x7c00 || !(got & 0x3ff) : got != want) bad++;
  }
  CHECK_EQ_INT(bad, 0);
#endif
  CHECK_EQ_INT(st_f32_to_f16(65520.0f), 0x7C00); /* rounds up past the max: inf */
  CHECK_EQ_INT(st_f32_to_f16(ldexpf(1, -25)), 0x0000); /* a tie with 0: even */
  CHECK_EQ_INT(st_f32_to_f16(ldexpf(3, -26)), 0x0001);
  CHECK_EQ_INT(st_f32_to_bf16(1.0f), 0x3F80);
  CHECK_EQ_INT(st_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3F80); /* a tie: to even */
  CHECK_EQ_INT(st_f32_to_bf16(1.0f + ldexpf(3, -8)), 0x3F82); /* a tie: to even, up */
  CHECK_EQ_INT(st_f32_to_bf16(1.0f + ldexpf(5, -9)), 0x3F81); /* above the half */
  CHECK_EQ_INT(st_f32_to_bf16(-INFINITY), 0xFF80);
  CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));

  float a[5] = {1.0f, -0.3333f, 65504.0f, 1e-6f, 123.456f};
  st_out o[2] = {{.name = "w", .data = a, .ndim = 2, .shape = {1, 5}},
                 {.name = "s", .data = a + 1, .ndim = 0}};
  char p32[256], p16[256], pbf[256];
  snprintf(p32, sizeof p32, "%s/w32.safetensors", dir);
  snprintf(p16, sizeof p16, "%s/w16.safetensors", dir);
  snprintf(pbf, sizeof pbf, "%s/wbf.safetensors", dir);
  ft_error e = {0};
  json_t *meta = json_pack("{s:s}", "origin", "test");
  CHECK_EQ_INT(st_write(p32, o, 2, meta, ST_F32, &e), 0);
  json_decref(meta);
  CHECK_EQ_INT(st_write(pbf, o, 2, NULL, ST_BF16, &e), 0);
  CHECK_EQ_INT(st_write(p16, o, 2, NULL, (st_dtype)7, &e), FT_EINVALID);
  CHECK_EQ_INT(st_convert(p32, p16, ST_F16, &e), 0);
  st_file *f = NULL, *g = NULL;
  CHECK_EQ_INT(st_open(&f, p16, &e), 0);
  CHECK_EQ_INT(st_open(&g, pbf, &e), 0);
  if (!f || !g) return;
  CHECK_EQ_STR(st_metadata(f, "origin"), "test"); /* metadata kept by st_convert */
  const st_tensor *t = st_find(f, "w"), *u = st_find(g, "w");
  float got[5];
  CHECK(t && t->dtype == ST_F16 && t->nbytes == 10 && t->shape[0] == 1 && t->shape[1] == 5);
  CHECK(u && u->dtype == ST_BF16 && u->nbytes == 10);
  if (t && u) {
    CHECK_EQ_INT(st_read_f32(f, t, got, 5, &e), 0);
    for (int i = 0; i < 5; i++) CHECK(got[i] == st_f16_to_f32(st_f32_to_f16(a[i])));
    CHECK(got[2] == 65504.0f && fabsf(got[1] - a[1]) < 1e-4f && got[1] != a[1]);
    CHECK_EQ_INT(st_read_f32(g, u, got, 5, &e), 0);
    for (int i = 0; i < 5; i++) CHECK(got[i] == st_bf16_to_f32(st_f32_to_bf16(a[i])));
  }
  t = st_find(f, "s");
  CHECK(t && t->ndim == 0 && t->dtype == ST_F16 && t->nbytes == 2);
  st_close(f);
  st_close(g);
  CHECK_EQ_INT(st_convert(p32, "/nonexistent-dir/x.safetensors", ST_F16, &e), FT_EIO);
  unlink(p32);
  unlink(p16);
  unlink(pbf);
}

static void test_corrupt(void) {
  float d[4] = {1, 2, 3, 4};
  ft_error e;
  uint8_t tiny[5] = {1, 0, 0, 0, 0};
  st_file *f = NULL;
  CHECK_EQ_INT(st_open_buffer(&f, tiny, 5, &e), FT_EFORMAT); /* shorter than the length */
  CHECK(strstr(e.message, "truncated") != NULL);

  /* header length beyond the file */
  uint8_t buf[64] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK_EQ_INT(st_open_buffer(&f, buf, 10, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "truncated") != NULL);
  /* absurd header length */
  uint8_t huge[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
  CHECK_EQ_INT(st_open_buffer(&f, huge, 16, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "out of range") != NULL);

  e = open_img("[1,2]", NULL, 0, FT_EFORMAT);
  CHECK(strstr(e.message, "not a JSON object") != NULL);
  e = open_img("{\"a\":", NULL, 0, FT_EFORMAT);
  CHECK(strstr(e.message, "invalid") != NULL);
  e = open_img("{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", d, 16,
               FT_EFORMAT);
  CHECK_EQ_STR(e.param, "w");
  CHECK(strstr(e.message, "I64") != NULL);
  e = open_img("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 12,
               FT_EFORMAT); /* data cut short */
  CHECK_EQ_STR(e.param, "w");
  CHECK(strstr(e.message, "truncated") != NULL);
  e = open_img("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", d, 16,
               FT_EFORMAT); /* offsets past the end */
  CHECK_EQ_STR(e.param, "w");
  e = open_img("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", d, 16,
               FT_EFORMAT); /* shape x size != span */
  CHECK_EQ_STR(e.param, "w");
  CHECK(strstr(e.message, "need 12 bytes") != NULL);
  e = open_img("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "need 8 bytes") != NULL);
  e = open_img(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
      d, 16, FT_EFORMAT);
  CHECK(strstr(e.message, "overlaps") != NULL);
  e = open_img("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "gap") != NULL);
  e = open_img("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "after the last tensor") != NULL);
  e = open_img("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "data_offsets") != NULL);
  e = open_img("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "shape") != NULL);
  e = open_img(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", d,
      16, FT_EFORMAT); /* numel overflows */
  CHECK_EQ_STR(e.param, "a");
  e = open_img("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", d, 16,
               FT_EFORMAT);
  CHECK(strstr(e.message, "unknown header field") != NULL);
  e = open_img(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
      d, 16, FT_EFORMAT); /* duplicate names */
  e = open_img("{\"__metadata__\":{\"format\":1}}", NULL, 0, FT_EFORMAT);
  CHECK_EQ_STR(e.param, "__metadata__");
  e = open_img("{\"a\":5}", NULL, 0, FT_EFORMAT);
  CHECK_EQ_STR(e.param, "a");
  /* still fine: no tensors at all, metadata only */
  open_img("{\"__metadata__\":{\"format\":\"pt\"}}", NULL, 0, 0);

  char path[256];
  snprintf(path, sizeof path, "%s/nothere.safetensors", dir);
  CHECK_EQ_INT(st_open(&f, path, &e), FT_ENOT_FOUND);
  snprintf(path, sizeof path, "%s/empty.safetensors", dir);
  fclose(fopen(path, "wb"));
  CHECK_EQ_INT(st_open(&f, path, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "empty.safetensors") != NULL);
  unlink(path);
}

/* A valid file cut at every length, and with every byte of its first part
 * changed: never accepted when cut, never a crash. */
static void test_truncations_and_flips(void) {
  float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  st_out o[2] = {{.name = "a", .data = a, .ndim = 2, .shape = {2, 2}},
                 {.name = "b", .data = a + 4, .ndim = 1, .shape = {4}}};
  char path[256];
  snprintf(path, sizeof path, "%s/cut.safetensors", dir);
  ft_error e;
  CHECK_EQ_INT(st_write_f32(path, o, 2, NULL, &e), 0);
  struct stat sb;
  CHECK(stat(path, &sb) == 0);
  size_t n = (size_t)sb.st_size;
  uint8_t *buf = malloc(n), *cp = malloc(n);
  FILE *fp = fopen(path, "rb");
  CHECK(fp && fread(buf, 1, n, fp) == n);
  fclose(fp);
  int accepted = 0;
  for (size_t len = 0; len < n; len++) {
    memcpy(cp, buf, len); /* a copy of exactly len bytes: ASan sees overreads */
    st_file *f = NULL;
    int rc = st_open_buffer(&f, cp, len, &e);
    if (rc == 0) accepted++;
    CHECK(rc == 0 || rc == FT_EFORMAT);
    st_close(f);
  }
  CHECK_EQ_INT(accepted, 0);
  /* the real file truncated on disk */
  CHECK(truncate(path, (off_t)n - 3) == 0);
  st_file *f = NULL;
  CHECK_EQ_INT(st_open(&f, path, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "truncated") != NULL);
  CHECK(strstr(e.message, "cut.safetensors") != NULL);
  unlink(path);

  size_t hlen = n - 32;
  for (size_t i = 0; i < hlen + 8; i++) {
    memcpy(cp, buf, n);
    cp[i] ^= 0x5a;
    f = NULL;
    int rc = st_open_buffer(&f, cp, n, &e);
    CHECK(rc == 0 || rc == FT_EFORMAT);
    if (rc == 0) { /* anything accepted is internally consistent */
      for (size_t k = 0; k < st_count(f); k++) {
        const st_tensor *t = st_at(f, k);
        float tmp[16];
        CHECK(t->numel <= 16);
        if (t->numel <= 16) CHECK_EQ_INT(st_read_f32(f, t, tmp, t->numel, &e), 0);
      }
    }
    st_close(f);
  }
  free(buf);
  free(cp);
}

int main(void) {
  if (!mkdtemp(dir)) return 2;
  RUN(test_round_trip);
  RUN(test_write_errors);
  RUN(test_f16_bf16);
  RUN(test_write_half);
  RUN(test_corrupt);
  RUN(test_truncations_and_flips);
  rmdir(dir);
  return test_report();
}
