/* Small jansson helpers (ft_json.h). */
#include "ft_json.h"

#include <stdio.h>
#include <stdlib.h>

json_t *ft_json_float(float f) {
  char buf[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    if (strtof(buf, NULL) == f) break;
  }
  return json_real(strtod(buf, NULL));
}
