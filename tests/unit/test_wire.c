/* The framed worker protocol (common/wire.c): round trips, frames split at
 * every byte boundary, several frames in one read, and the ways a peer can
 * send rubbish: oversized headers, non-object JSON, no "type", garbage; the
 * message-type table both ways, and types unknown or from the wrong side. */
#include <stdlib.h>

#include "test.h"
#include "wire.h"

static json_t *msg_(const char *text) {
  json_error_t e;
  return json_loads(text, 0, &e);
}

/* A raw frame: header announcing n, then the bytes of body. */
static char *raw_frame(const char *body, uint32_t n, size_t *len) {
  size_t bl = strlen(body);
  char *b = malloc(4 + bl);
  b[0] = (char)(n >> 24);
  b[1] = (char)(n >> 16);
  b[2] = (char)(n >> 8);
  b[3] = (char)n;
  memcpy(b + 4, body, bl);
  *len = 4 + bl;
  return b;
}

static void test_encode_header(void) {
  json_t *m = msg_("{\"type\":\"claim\"}");
  char *buf;
  size_t len;
  CHECK_EQ_INT(wire_encode(m, &buf, &len), 0);
  CHECK_EQ_INT(len, 4 + strlen("{\"type\":\"claim\"}"));
  CHECK_EQ_INT((unsigned char)buf[0], 0);
  CHECK_EQ_INT((unsigned char)buf[3], len - 4);
  CHECK(memcmp(buf + 4, "{\"type\":\"claim\"}", len - 4) == 0);
  free(buf);
  json_decref(m);
}

static void test_encode_refuses_non_message(void) {
  char *buf = (char *)1;
  size_t len = 1;
  json_t *a = json_array();
  CHECK_EQ_INT(wire_encode(a, &buf, &len), FT_EPROTO);
  CHECK(buf == NULL);
  json_t *o = msg_("{\"x\":1}");
  CHECK_EQ_INT(wire_encode(o, &buf, &len), FT_EPROTO);
  json_decref(a);
  json_decref(o);
}

static void test_split_every_boundary(void) {
  json_t *m1 = msg_(
      "{\"type\":\"metrics\",\"job_id\":\"ftjob-1\",\"attempt\":2,"
      "\"metrics\":{\"step\":3,\"train_loss\":1.5,\"text\":\"h\\u00e9llo\"}}");
  json_t *m2 = msg_("{\"type\":\"heartbeat\",\"job_id\":\"ftjob-1\",\"attempt\":2}");
  char *b1, *b2;
  size_t l1, l2;
  CHECK_EQ_INT(wire_encode(m1, &b1, &l1), 0);
  CHECK_EQ_INT(wire_encode(m2, &b2, &l2), 0);
  char *all = malloc(l1 + l2);
  memcpy(all, b1, l1);
  memcpy(all + l1, b2, l2);
  size_t total = l1 + l2;
  /* Two cuts: every (i, j) pair splits the stream into three reads. */
  for (size_t i = 0; i <= total; i++) {
    for (size_t j = i; j <= total; j++) {
      wire_decoder d;
      wire_decoder_init(&d);
      size_t cuts[4] = {0, i, j, total};
      int got = 0;
      json_t *out[2] = {NULL, NULL};
      for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(wire_feed(&d, all + cuts[k], cuts[k + 1] - cuts[k]), 0);
        for (;;) {
          json_t *m = NULL;
          ft_error err;
          CHECK_EQ_INT(wire_next(&d, &m, &err), 0);
          if (!m) break;
          if (got < 2)
            out[got] = m;
          else
            json_decref(m);
          got++;
        }
      }
      CHECK_EQ_INT(got, 2);
      CHECK(out[0] && json_equal(out[0], m1));
      CHECK(out[1] && json_equal(out[1], m2));
      CHECK_EQ_INT(d.len, 0);
      json_decref(out[0]);
      json_decref(out[1]);
      wire_decoder_free(&d);
    }
  }
  free(all);
  free(b1);
  free(b2);
  json_decref(m1);
  json_decref(m2);
}

static void test_partial_returns_nothing(void) {
  wire_decoder d;
  wire_decoder_init(&d);
  json_t *m = NULL;
  CHECK_EQ_INT(wire_next(&d, &m, NULL), 0);
  CHECK(m == NULL);
  size_t len;
  char *f = raw_frame("{\"type\":\"x\"}", 12, &len);
  CHECK_EQ_INT(wire_feed(&d, f, 3), 0);
  CHECK_EQ_INT(wire_next(&d, &m, NULL), 0);
  CHECK(m == NULL);
  CHECK_EQ_INT(wire_feed(&d, f + 3, len - 4), 0);
  CHECK_EQ_INT(wire_next(&d, &m, NULL), 0);
  CHECK(m == NULL);
  CHECK_EQ_INT(wire_feed(&d, f + len - 1, 1), 0);
  CHECK_EQ_INT(wire_next(&d, &m, NULL), 0);
  CHECK(m != NULL);
  CHECK_EQ_STR(json_string_value(json_object_get(m, "type")), "x");
  json_decref(m);
  free(f);
  wire_decoder_free(&d);
}

static void test_oversized_frame(void) {
  wire_decoder d;
  wire_decoder_init(&d);
  size_t len;
  char *f = raw_frame("", WIRE_MAX_FRAME + 1, &len);
  /* Refused as soon as the header is complete, even split. */
  CHECK_EQ_INT(wire_feed(&d, f, 2), 0);
  CHECK_EQ_INT(wire_feed(&d, f + 2, 2), FT_EPROTO);
  json_t *m = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(wire_next(&d, &m, &err), FT_EPROTO);
  CHECK(m == NULL);
  CHECK_EQ_INT(err.code, FT_EPROTO);
  free(f);
  wire_decoder_free(&d);

  /* A second frame's header behind a good frame is checked too. */
  wire_decoder_init(&d);
  char *g = raw_frame("{\"type\":\"a\"}", 12, &len);
  CHECK_EQ_INT(wire_feed(&d, g, len), 0);
  char hdr[4] = {(char)0xff, (char)0xff, (char)0xff, (char)0xff};
  CHECK_EQ_INT(wire_feed(&d, hdr, 4), FT_EPROTO);
  free(g);
  wire_decoder_free(&d);

  /* Exactly the limit is allowed by the header check. */
  wire_decoder_init(&d);
  char *h = raw_frame("", WIRE_MAX_FRAME, &len);
  CHECK_EQ_INT(wire_feed(&d, h, 4), 0);
  free(h);
  wire_decoder_free(&d);
}

/* A lowered limit (a peer before hello) refuses a frame the default takes,
 * and the buffer holds only what arrived, not what a header announced. */
static void test_lowered_limit(void) {
  wire_decoder d;
  wire_decoder_init(&d);
  wire_decoder_set_limit(&d, 64u << 10);
  CHECK_EQ_INT(wire_decoder_limit(&d), 64u << 10);
  size_t len;
  char *f = raw_frame("", (64u << 10) + 1, &len);
  CHECK_EQ_INT(wire_feed(&d, f, 4), FT_EPROTO);
  free(f);
  wire_decoder_free(&d);

  wire_decoder_init(&d);
  wire_decoder_set_limit(&d, 64u << 10);
  f = raw_frame("", 64u << 10, &len); /* exactly the limit: allowed */
  CHECK_EQ_INT(wire_feed(&d, f, 4), 0);
  CHECK(d.cap < 8192);
  /* restored to the default: a 1 MiB frame's header passes, and a few bytes
   * of its body do not reserve a megabyte */
  wire_decoder_free(&d);
  wire_decoder_init(&d);
  wire_decoder_set_limit(&d, 64u << 10);
  wire_decoder_set_limit(&d, 0);
  CHECK_EQ_INT(wire_decoder_limit(&d), WIRE_MAX_FRAME);
  char *g = raw_frame("", 1u << 20, &len);
  CHECK_EQ_INT(wire_feed(&d, g, 4), 0);
  char body[100] = {0};
  CHECK_EQ_INT(wire_feed(&d, body, sizeof body), 0);
  CHECK(d.cap <= 8192);
  free(f);
  free(g);
  wire_decoder_free(&d);
}

static void expect_proto(const char *body) {
  wire_decoder d;
  wire_decoder_init(&d);
  size_t len;
  char *f = raw_frame(body, (uint32_t)strlen(body), &len);
  CHECK_EQ_INT(wire_feed(&d, f, len), 0);
  /* a good frame after it, to check the bad one was consumed whole */
  size_t glen;
  char *g = raw_frame("{\"type\":\"ok\"}", 13, &glen);
  CHECK_EQ_INT(wire_feed(&d, g, glen), 0);
  json_t *m = NULL;
  ft_error err = {0};
  CHECK_EQ_INT(wire_next(&d, &m, &err), FT_EPROTO);
  CHECK(m == NULL);
  CHECK(err.message[0] != 0);
  CHECK_EQ_INT(wire_next(&d, &m, &err), 0);
  CHECK(m && json_is_string(json_object_get(m, "type")));
  json_decref(m);
  free(f);
  free(g);
  wire_decoder_free(&d);
}

static void test_bad_frames(void) {
  expect_proto("[1,2,3]");
  expect_proto("\"type\"");
  expect_proto("42");
  expect_proto("{\"kind\":\"claim\"}");
  expect_proto("{\"type\":7}");
  expect_proto("{\"type\":\"a\"} trailing");
  expect_proto("{\"type\":\"a\",\"type\":\"b\"}");
  expect_proto("\x01\x02garbage\xff\xfe");
  expect_proto("{\"type\":\"\xc3\x28\"}"); /* invalid UTF-8 */
  expect_proto("");
}

static void test_many_frames_one_read(void) {
  enum { N = 500 };
  size_t cap = 0, len = 0;
  char *all = NULL;
  for (int i = 0; i < N; i++) {
    json_t *m = json_pack("{s:s, s:i}", "type", "metrics", "i", i);
    char *b;
    size_t l;
    CHECK_EQ_INT(wire_encode(m, &b, &l), 0);
    if (len + l > cap) {
      cap = (len + l) * 2;
      all = realloc(all, cap);
    }
    memcpy(all + len, b, l);
    len += l;
    free(b);
    json_decref(m);
  }
  wire_decoder d;
  wire_decoder_init(&d);
  CHECK_EQ_INT(wire_feed(&d, all, len), 0);
  int i = 0;
  for (;;) {
    json_t *m = NULL;
    CHECK_EQ_INT(wire_next(&d, &m, NULL), 0);
    if (!m) break;
    CHECK_EQ_INT(json_integer_value(json_object_get(m, "i")), i);
    json_decref(m);
    i++;
  }
  CHECK_EQ_INT(i, N);
  free(all);
  wire_decoder_free(&d);
}

static wire_type type_of(const char *text, int from) {
  json_t *m = msg_(text);
  wire_type t = wire_type_of(m, from);
  json_decref(m);
  return t;
}

static void test_types(void) {
  CHECK_EQ_INT(type_of("{\"type\":\"claim\"}", WIRE_FROM_WORKER), WIRE_CLAIM);
  CHECK_EQ_INT(type_of("{\"type\":\"cancelled\",\"job_id\":\"j\"}", WIRE_FROM_WORKER),
               WIRE_CANCELLED);
  CHECK_EQ_INT(type_of("{\"type\":\"lease_lost\"}", WIRE_FROM_DAEMON), WIRE_LEASE_LOST);
  /* a name the table does not have is nothing, above all not "cancelled" */
  CHECK_EQ_INT(type_of("{\"type\":\"canceled\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  CHECK_EQ_INT(type_of("{\"type\":\"\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  CHECK_EQ_INT(type_of("{\"type\":\"CLAIM\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  CHECK_EQ_INT(type_of("{\"kind\":\"claim\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  /* a real type from the wrong side */
  CHECK_EQ_INT(type_of("{\"type\":\"welcome\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  CHECK_EQ_INT(type_of("{\"type\":\"cancel\"}", WIRE_FROM_WORKER), WIRE_UNKNOWN);
  CHECK_EQ_INT(type_of("{\"type\":\"hello\"}", WIRE_FROM_DAEMON), WIRE_UNKNOWN);
  /* every name maps back to its own type (so names are distinct) */
  for (int t = WIRE_UNKNOWN + 1; t < WIRE_TYPE_COUNT; t++) {
    const char *name = wire_type_name((wire_type)t);
    json_t *m = json_pack("{s:s}", "type", name);
    wire_type back = wire_type_of(m, WIRE_FROM_WORKER);
    if (back == WIRE_UNKNOWN) back = wire_type_of(m, WIRE_FROM_DAEMON);
    CHECK_EQ_INT(back, t);
    json_decref(m);
  }
  CHECK_EQ_STR(wire_type_name(WIRE_UNKNOWN), "?");
  CHECK_EQ_STR(wire_type_name((wire_type)999), "?");
}

int main(void) {
  RUN(test_encode_header);
  RUN(test_encode_refuses_non_message);
  RUN(test_split_every_boundary);
  RUN(test_partial_returns_nothing);
  RUN(test_oversized_frame);
  RUN(test_lowered_limit);
  RUN(test_bad_frames);
  RUN(test_many_frames_one_read);
  RUN(test_types);
  return test_report();
}
