/* Structured logging for the executables (never the engine, which returns
 * codes and never prints): one line per event on stderr, "key=value" pairs
 * after a level and a message, which journald keeps as they are. */
#ifndef FT_LOG_H
#define FT_LOG_H
#include <stddef.h>
typedef enum { FT_LOG_DEBUG, FT_LOG_INFO, FT_LOG_WARN, FT_LOG_ERROR } ft_log_level;
void ft_log_set_level(ft_log_level l);
void ft_log(ft_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s made safe inside a quoted value: '"' and '\\' get a backslash, control
 * characters become \xNN; written into out (truncated to fit); returns out. */
const char *ft_log_esc(char *out, size_t n, const char *s);
#define FT_INFO(...) ft_log(FT_LOG_INFO, __VA_ARGS__)
#define FT_WARN(...) ft_log(FT_LOG_WARN, __VA_ARGS__)
#define FT_ERROR(...) ft_log(FT_LOG_ERROR, __VA_ARGS__)
#define FT_DEBUG(...) ft_log(FT_LOG_DEBUG, __VA_ARGS__)
#endif
