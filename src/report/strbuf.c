/* strbuf.c -- growable text buffer, HTML escaping, base64, atomic file writes. */
#include "report/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(crema_strbuf *b, size_t extra) {
  if (b->oom) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void crema_strbuf_append(crema_strbuf *b, const char *s, size_t n) {
  if (!reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void crema_strbuf_printf(crema_strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void crema_strbuf_escape(crema_strbuf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': crema_strbuf_append(b, "&amp;", 5); break;
    case '<': crema_strbuf_append(b, "&lt;", 4); break;
    case '>': crema_strbuf_append(b, "&gt;", 4); break;
    case '"': crema_strbuf_append(b, "&quot;", 6); break;
    case '\'': crema_strbuf_append(b, "&#39;", 5); break;
    default: crema_strbuf_append(b, s, 1);
    }
  }
}

void crema_strbuf_base64(crema_strbuf *b, const unsigned char *p, size_t n) {
  static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (!reserve(b, (n + 2) / 3 * 4)) return;
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    *o++ = T[v >> 18 & 63], *o++ = T[v >> 12 & 63], *o++ = T[v >> 6 & 63], *o++ = T[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0u);
    *o++ = T[v >> 18 & 63], *o++ = T[v >> 12 & 63];
    *o++ = i + 1 < n ? T[v >> 6 & 63] : '=';
    *o++ = '=';
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
}

int crema_strbuf_ok(const crema_strbuf *b, const char *what, crema_error *err) {
  if (b->oom) return crema_fail(err, "out of memory while writing %s", what);
  return 0;
}

void crema_strbuf_free(crema_strbuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}
