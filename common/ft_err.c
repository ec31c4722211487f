/* The error table of ft_err.h turned into lookups. */
#include "ft_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define IDX(e) ((e) - FT_ERR_FIRST_ - 1)
#define NERR (FT_ERR_LAST_ - FT_ERR_FIRST_ - 1)

static const struct {
  int status;
  const char *type, *code, *msg;
} table[] = {
#define ROW_(name, status, type, code, msg) {status, type, code, msg},
    FT_ERR_MAP(ROW_)
#undef ROW_
};

static int valid(int e) { return e > FT_ERR_FIRST_ && e < FT_ERR_LAST_; }

int ft_err_status(int e) { return valid(e) ? table[IDX(e)].status : 500; }
const char *ft_err_type(int e) { return valid(e) ? table[IDX(e)].type : "server_error"; }
const char *ft_err_code(int e) { return valid(e) ? table[IDX(e)].code : "internal_error"; }
const char *ft_err_message(int e) { return valid(e) ? table[IDX(e)].msg : "internal error"; }

int ft_err_from_code(const char *code) {
  for (int i = 0; code && i < NERR; i++)
    if (strcmp(table[i].code, code) == 0) return FT_ERR_FIRST_ + 1 + i;
  return FT_EINTERNAL;
}

int ft_error_set(ft_error *e, int code, const char *param, const char *fmt, ...) {
  if (!e) return code;
  e->code = code;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
  } else {
    snprintf(e->message, sizeof e->message, "%s", ft_err_message(code));
  }
  return code;
}
