/* error.h -- how crema reports failures.
 *
 * Every library function that can fail on user input returns an int status (0 = success,
 * -1 = failure) and fills a caller-provided crema_error with one readable sentence that says
 * what went wrong, where (file:line:col, layer name, ...) and, when we know, what to do.
 * The library never prints errors itself and never exits; tools print "error: <msg>". */
#ifndef CREMA_BASE_ERROR_H
#define CREMA_BASE_ERROR_H

#include <stdarg.h>

#define CREMA_ERROR_MAX 1024

typedef struct crema_error {
  char msg[CREMA_ERROR_MAX];
} crema_error;

#if defined(__GNUC__)
#define CREMA_PRINTF(fmt_index, arg_index) __attribute__((format(printf, fmt_index, arg_index)))
#else
#define CREMA_PRINTF(fmt_index, arg_index)
#endif

/* Fills err (may be NULL) with the formatted message and returns -1, so callers can write
 * `return crema_fail(err, "...", ...);`. */
int crema_fail(crema_error *err, const char *fmt, ...) CREMA_PRINTF(2, 3);
int crema_vfail(crema_error *err, const char *fmt, va_list ap);

/* Prepends context to an existing message: "<context>: <old message>". Returns -1. */
int crema_error_prefix(crema_error *err, const char *fmt, ...) CREMA_PRINTF(2, 3);

/* Empties err (may be NULL). */
void crema_error_clear(crema_error *err);

#endif
