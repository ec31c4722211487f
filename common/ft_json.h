/* Small jansson helpers shared by the engine and the daemon. */
#ifndef FT_JSON_H
#define FT_JSON_H
#include <jansson.h>

/* A JSON real holding the shortest decimal that reads back as the same float,
 * so a written config.json says 1e-05 rather than 9.99999975e-06. New
 * reference (NULL when out of memory). */
json_t *ft_json_float(float f);
#endif
