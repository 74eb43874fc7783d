#include "base/error.h"

#include <stdio.h>
#include <string.h>

int crema_vfail(crema_error *err, const char *fmt, va_list ap) {
  if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  return -1;
}

int crema_fail(crema_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  crema_vfail(err, fmt, ap);
  va_end(ap);
  return -1;
}

int crema_error_prefix(crema_error *err, const char *fmt, ...) {
  if (!err) return -1;
  char prefix[CREMA_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* Build "<prefix>: <old>" by hand, truncating at the buffer's end. */
  char out[CREMA_ERROR_MAX];
  size_t n = strnlen(prefix, sizeof out - 1);
  memcpy(out, prefix, n);
  const char sep[] = ": ";
  for (size_t i = 0; sep[i] && n < sizeof out - 1; i++) out[n++] = sep[i];
  size_t m = strnlen(err->msg, sizeof err->msg);
  if (m > sizeof out - 1 - n) m = sizeof out - 1 - n;
  memcpy(out + n, err->msg, m);
  out[n + m] = '\0';
  memcpy(err->msg, out, n + m + 1);
  return -1;
}

void crema_error_clear(crema_error *err) {
  if (err) err->msg[0] = '\0';
}
