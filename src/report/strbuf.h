/* strbuf.h -- a growable text buffer for the SVG and HTML writers.
 *
 * Appends never fail loudly: an allocation failure sets `oom` and later appends do nothing,
 * so writers check once at the end (crema_strbuf_ok). The buffer owns `data`; free with
 * crema_strbuf_free. `data` is always NUL-terminated once anything was appended. */
#ifndef CREMA_REPORT_STRBUF_H
#define CREMA_REPORT_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

typedef struct crema_strbuf {
  char *data;
  size_t len, cap;
  bool oom;
} crema_strbuf;

void crema_strbuf_printf(crema_strbuf *b, const char *fmt, ...) CREMA_PRINTF(2, 3);
void crema_strbuf_append(crema_strbuf *b, const char *s, size_t n);
/* Appends s with &, <, >, " and ' escaped for HTML/SVG text and attributes. */
void crema_strbuf_escape(crema_strbuf *b, const char *s);
/* Appends the base64 encoding (RFC 4648, with padding) of n bytes. */
void crema_strbuf_base64(crema_strbuf *b, const unsigned char *p, size_t n);
/* 0, or -1 with "out of memory while writing <what>" in err. */
int crema_strbuf_ok(const crema_strbuf *b, const char *what, crema_error *err);
void crema_strbuf_free(crema_strbuf *b);

#endif
