/* libFuzzer target: the job spec validator (engine/train/spec.c) over the bytes of
 * a POST /v1/fine_tuning/jobs body, parsed the way the daemon parses it. A
 * spec that parses must come back unchanged through spec_to_json (the
 * worker re-parses that form), so a failed round trip is a crash too. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
  if (!body) return 0;
  ft_spec s;
  ft_error err = {0};
  if (spec_parse(body, &s, &err) == 0) {
    json_t *again = spec_to_json(&s);
    if (!again) abort();
    ft_spec s2;
    ft_error err2 = {0};
    if (spec_parse(again, &s2, &err2) != 0) abort(); /* the resolved form must parse */
    json_t *third = spec_to_json(&s2);
    if (!third || !json_equal(again, third)) abort(); /* and be a fixed point */
    json_decref(third);
    json_decref(again);
  } else if (!err.message[0]) {
    abort(); /* every refusal says why */
  }
  json_decref(body);
  return 0;
}
