/* status.c -- crema_strerror, the thread-local last error message, version and log level. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"
#include "base/log.h"

static _Thread_local char last_error[CREMA_ERROR_MAX];

/* Fixed texts, in the order of crema_status. */
static const char *const STATUS_TEXT[] = {
    "success",
    "invalid argument",
    "file cannot be read or written",
    "malformed or unsupported file",
    "no such input, blob or layer",
    "sizes do not agree",
    "out of memory",
    "failure while running",
};
_Static_assert(sizeof STATUS_TEXT / sizeof STATUS_TEXT[0] == CREMA_ERR_RUNTIME + 1,
               "STATUS_TEXT must list every crema_status");

const char *crema_strerror(crema_status status) {
  if ((int)status < 0 || (int)status > CREMA_ERR_RUNTIME) return "unknown status";
  return STATUS_TEXT[status];
}

const char *crema_last_error(void) { return last_error; }

const char *crema_version(void) { return CREMA_VERSION; }

void crema_set_log_level(int level) {
  if (level < 0) level = 0;
  if (level > 3) level = 3;
  /* 3 is above every severity: nothing passes the filter. */
  crema_log_set_min_level((crema_log_level)level);
}

/* The user's callback, behind the internal sink's signature. */
static void (*user_log)(void *user, int level, const char *line);

static void forward_log(void *user, crema_log_level level, const char *line) {
  if (user_log) user_log(user, (int)level, line);
}

void crema_set_log_callback(void (*fn)(void *user, int level, const char *line), void *user) {
  user_log = fn;
  crema_log_set_sink(fn ? forward_log : NULL, user);
}

crema_status api_fail(crema_status s, const crema_error *err) {
  snprintf(last_error, sizeof last_error, "%s", err ? err->msg : "");
  return s;
}

crema_status api_failf(crema_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}
