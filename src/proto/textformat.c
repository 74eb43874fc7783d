/* textformat.c -- protobuf text format parser and printer over protobuf-c descriptors.
 *
 * Memory rule: everything stored in a message is malloc'd exactly as protobuf-c's unpack
 * would allocate it (strings, bytes, sub-messages, repeated arrays), so the result is freed
 * with protobuf_c_message_free_unpacked(msg, NULL). The message is kept freeable at every
 * step, so a parse error simply frees the partial message. */
#include "proto/textformat.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than this is refused instead of overflowing the stack. */
#define MAX_DEPTH 100
/* Longest number or identifier token we accept. */
#define MAX_TOKEN 256

#define MEMBER(type, msg, offset) (*(type *)((char *)(msg) + (offset)))

/* ------------------------------------------------------------------ field helpers */

/* Looks a field up by its text name: the exact name, or NAME_ for names protobuf-c had to
 * rename ("base" -> "base_"). */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc, const char *name) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
  if (f) return f;
  size_t n = strlen(name);
  if (n == 0 || n >= MAX_TOKEN) return NULL;
  char alias[MAX_TOKEN + 2];
  memcpy(alias, name, n);
  alias[n] = '_';
  alias[n + 1] = '\0';
  return protobuf_c_message_descriptor_get_field_by_name(desc, alias);
}

/* The name a field is written under in text: "base_" -> "base" when "base" is no field. */
static void text_name(const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *f, char *buf,
                      size_t size) {
  size_t n = strlen(f->name);
  snprintf(buf, size, "%s", f->name);
  if (n > 1 && n < size && f->name[n - 1] == '_') {
    buf[n - 1] = '\0';
    if (protobuf_c_message_descriptor_get_field_by_name(desc, buf)) buf[n - 1] = '_';
  }
}

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_ENUM: return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: return 8;
  case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
  case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  }
  return 0;
}

static bool is_oneof(const ProtobufCFieldDescriptor *f) {
  return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* Whether a singular field is set, by protobuf-c's own rules (a string or message pointing
 * at the descriptor's default counts as unset, as protobuf-c's packer treats it). */
static bool field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  if (is_oneof(f)) return MEMBER(const uint32_t, msg, f->quantifier_offset) == f->id;
  if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
    const void *p = MEMBER(void *const, msg, f->offset);
    return p != NULL && p != f->default_value;
  }
  if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
    return MEMBER(const protobuf_c_boolean, msg, f->quantifier_offset) != 0;
  return f->label == PROTOBUF_C_LABEL_REQUIRED;
}

static void mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  if (is_oneof(f))
    MEMBER(uint32_t, msg, f->quantifier_offset) = f->id;
  else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
           f->type != PROTOBUF_C_TYPE_MESSAGE)
    MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
}

/* Appends one zeroed element to a repeated field and returns it. Arrays grow in powers of two
 * (the capacity is implied by the count), so n appends cost O(n). NULL when out of memory. */
static void *append_elem(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  size_t *n = &MEMBER(size_t, msg, f->quantifier_offset);
  void **arr = &MEMBER(void *, msg, f->offset);
  size_t es = elem_size(f->type);
  if (*n == 0 || (*n & (*n - 1)) == 0) {
    size_t cap = *n ? *n * 2 : 1;
    if (cap > SIZE_MAX / es) return NULL;
    void *grown = realloc(*arr, cap * es);
    if (!grown) return NULL;
    *arr = grown;
  }
  void *slot = (char *)*arr + *n * es;
  memset(slot, 0, es);
  (*n)++;
  return slot;
}

/* A new message of type desc with its defaults set; NULL when out of memory. */
static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *desc) {
  ProtobufCMessage *m = malloc(desc->sizeof_message);
  if (!m) return NULL;
  desc->message_init(m);
  return m;
}

/* ------------------------------------------------------------------ the parser */

typedef struct parser {
  const char *text, *p, *end;
  const char *filename;
  int line, col;
  crema_error *err;
} parser;

typedef struct pos {
  int line, col;
} pos;

static pos here(const parser *ps) { return (pos){ps->line, ps->col}; }

static int fail_at(parser *ps, pos at, const char *fmt, ...) CREMA_PRINTF(3, 4);
static int fail_at(parser *ps, pos at, const char *fmt, ...) {
  char msg[CREMA_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return crema_fail(ps->err, "%s:%d:%d: %s", ps->filename, at.line, at.col, msg);
}

static bool at_end(const parser *ps) { return ps->p >= ps->end; }
static int peek(const parser *ps) { return at_end(ps) ? -1 : (unsigned char)*ps->p; }

static void advance(parser *ps) {
  if (at_end(ps)) return;
  if (*ps->p == '\n') {
    ps->line++;
    ps->col = 1;
  } else {
    ps->col++;
  }
  ps->p++;
}

/* Skips whitespace and # comments. */
static void skip_space(parser *ps) {
  while (!at_end(ps)) {
    int c = peek(ps);
    if (c == '#') {
      while (!at_end(ps) && *ps->p != '\n') advance(ps);
    } else if (isspace(c)) {
      advance(ps);
    } else {
      break;
    }
  }
}

static bool ident_start(int c) { return c == '_' || isalpha(c); }
static bool ident_char(int c) { return c == '_' || isalnum(c); }

/* Describes the next token for "found ..." in error messages. */
static void describe_next(const parser *ps, char *buf, size_t size) {
  if (at_end(ps)) {
    snprintf(buf, size, "end of file");
    return;
  }
  size_t n = 0;
  const char *q = ps->p;
  if (ident_char((unsigned char)*q) || *q == '.' || *q == '-') {
    while (q + n < ps->end && n < 40 &&
           (ident_char((unsigned char)q[n]) || q[n] == '.' || q[n] == '-' || q[n] == '+'))
      n++;
  } else if (*q == '"' || *q == '\'') {
    n = 1;
    while (q + n < ps->end && n < 40 && q[n] != '\n' && q[n] != *q) n++;
    if (q + n < ps->end && q[n] == *q) n++;
  } else {
    n = 1;
  }
  snprintf(buf, size, "\"%.*s\"", (int)n, q);
}

/* Reads an identifier at the current position into buf (caller checked ident_start). */
static int read_ident(parser *ps, char *buf, size_t size) {
  pos at = here(ps);
  size_t n = 0;
  while (!at_end(ps) && ident_char(peek(ps))) {
    if (n + 1 >= size) return fail_at(ps, at, "name too long");
    buf[n++] = (char)peek(ps);
    advance(ps);
  }
  buf[n] = '\0';
  return 0;
}

/* Growable byte buffer for string literals and the printer. */
typedef struct strbuf {
  char *data;
  size_t len, cap;
  bool oom;
} strbuf;

static void sb_reserve(strbuf *sb, size_t extra) {
  if (sb->oom) return;
  if (sb->len + extra + 1 <= sb->cap) return;
  size_t cap = sb->cap ? sb->cap : 256;
  while (cap < sb->len + extra + 1) cap *= 2;
  char *d = realloc(sb->data, cap);
  if (!d) {
    sb->oom = true;
    return;
  }
  sb->data = d;
  sb->cap = cap;
}

static void sb_putc(strbuf *sb, char c) {
  sb_reserve(sb, 1);
  if (sb->oom) return;
  sb->data[sb->len++] = c;
  sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *s) {
  size_t n = strlen(s);
  sb_reserve(sb, n);
  if (sb->oom) return;
  memcpy(sb->data + sb->len, s, n + 1);
  sb->len += n;
}

static void sb_printf(strbuf *sb, const char *fmt, ...) CREMA_PRINTF(2, 3);
static void sb_printf(strbuf *sb, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    sb_puts(sb, tmp);
    return;
  }
  sb_reserve(sb, (size_t)n);
  if (sb->oom) return;
  va_start(ap, fmt);
  vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb->len += (size_t)n;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads one or more adjacent quoted strings ("a" 'b' "c" -> "abc") into sb. */
static int read_strings(parser *ps, strbuf *sb) {
  do {
    pos start = here(ps);
    int quote = peek(ps);
    advance(ps);
    for (;;) {
      if (at_end(ps) || peek(ps) == '\n')
        return fail_at(ps, start, "unterminated string (missing closing %c)", quote);
      int c = peek(ps);
      if (c == quote) {
        advance(ps);
        break;
      }
      if (c != '\\') {
        sb_putc(sb, (char)c);
        advance(ps);
        continue;
      }
      pos esc = here(ps);
      advance(ps);
      if (at_end(ps)) return fail_at(ps, start, "unterminated string (missing closing %c)", quote);
      c = peek(ps);
      advance(ps);
      switch (c) {
      case 'n': sb_putc(sb, '\n'); break;
      case 't': sb_putc(sb, '\t'); break;
      case 'r': sb_putc(sb, '\r'); break;
      case 'a': sb_putc(sb, '\a'); break;
      case 'b': sb_putc(sb, '\b'); break;
      case 'f': sb_putc(sb, '\f'); break;
      case 'v': sb_putc(sb, '\v'); break;
      case '\\':
      case '\'':
      case '"':
      case '?': sb_putc(sb, (char)c); break;
      case 'x':
      case 'X': {
        int v = 0, digits = 0;
        while (digits < 2 && hexval(peek(ps)) >= 0) {
          v = v * 16 + hexval(peek(ps));
          advance(ps);
          digits++;
        }
        if (!digits) return fail_at(ps, esc, "\\x escape without hex digits");
        sb_putc(sb, (char)v);
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int v = c - '0', digits = 1;
          while (digits < 3 && peek(ps) >= '0' && peek(ps) <= '7') {
            v = v * 8 + (peek(ps) - '0');
            advance(ps);
            digits++;
          }
          if (v > 255) return fail_at(ps, esc, "octal escape out of range (above \\377)");
          sb_putc(sb, (char)v);
        } else {
          return fail_at(ps, esc, "invalid escape \"\\%c\" in string", c);
        }
      }
    }
    skip_space(ps);
  } while (peek(ps) == '"' || peek(ps) == '\'');
  if (sb->oom) return crema_fail(ps->err, "%s: out of memory reading a string", ps->filename);
  return 0;
}

/* A scalar token: optional '-', then an identifier (inf, nan, true, enum names) or a number
 * (digits, '.', letters for hex and suffixes, exponent signs). */
typedef struct token {
  bool neg;
  bool ident;
  char text[MAX_TOKEN];
  pos at;
} token;

static int read_scalar_token(parser *ps, const char *field, token *t) {
  t->at = here(ps);
  t->neg = false;
  if (peek(ps) == '-') {
    t->neg = true;
    advance(ps);
    skip_space(ps);
  }
  int c = peek(ps);
  size_t n = 0;
  if (ident_start(c)) {
    t->ident = true;
    if (read_ident(ps, t->text, sizeof t->text)) return -1;
    return 0;
  }
  if (!(isdigit(c) || c == '.')) {
    char found[64];
    describe_next(ps, found, sizeof found);
    bool quoted = c == '"' || c == '\'';
    return fail_at(ps, here(ps), "expected a value for field \"%s\", found %s%s", field, found,
                   quoted ? " (only string fields take quotes; numbers, booleans and enum names do not)"
                          : "");
  }
  t->ident = false;
  bool hex = false;
  while (!at_end(ps)) {
    c = peek(ps);
    bool take = isalnum(c) || c == '_' || c == '.';
    if (!take && (c == '+' || c == '-') && n > 0 && !hex && (t->text[n - 1] == 'e' || t->text[n - 1] == 'E'))
      take = true;
    if (!take) break;
    if (n + 1 >= sizeof t->text) return fail_at(ps, t->at, "number too long");
    t->text[n++] = (char)c;
    if (n == 2 && t->text[0] == '0' && (c == 'x' || c == 'X')) hex = true;
    advance(ps);
  }
  t->text[n] = '\0';
  return 0;
}

/* Integer value of a token within [-neg_limit, pos_limit]. */
static int token_to_int(parser *ps, const char *field, const token *t, uint64_t pos_limit, uint64_t neg_limit,
                        const char *type_name, int64_t *sval, uint64_t *uval) {
  if (t->ident)
    return fail_at(ps, t->at, "expected an integer for field \"%s\", found \"%s%s\"", field,
                   t->neg ? "-" : "", t->text);
  errno = 0;
  char *endp = NULL;
  const char *s = t->text;
  uint64_t v = strtoull(s, &endp, 0);
  if (*s == '\0' || *endp != '\0' || *s == '+' || *s == '-')
    return fail_at(ps, t->at, "expected an integer for field \"%s\", found \"%s%s\"", field,
                   t->neg ? "-" : "", t->text);
  if (errno == ERANGE || (t->neg ? v > neg_limit : v > pos_limit)) {
    if (t->neg && neg_limit == 0)
      return fail_at(ps, t->at, "negative value -%s for unsigned field \"%s\" (%s)", t->text, field,
                     type_name);
    return fail_at(ps, t->at, "integer %s%s out of range for field \"%s\" (%s)", t->neg ? "-" : "", t->text,
                   field, type_name);
  }
  *uval = v;
  /* Two's complement negation in unsigned arithmetic avoids overflow at INT64_MIN. */
  *sval = t->neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

static bool ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
  return *a == *b;
}

/* Floating-point value of a token; is_float selects strtof so float fields round once. */
static int token_to_real(parser *ps, const char *field, const token *t, bool is_float, double *out) {
  double v;
  if (t->ident) {
    if (ieq(t->text, "inf") || ieq(t->text, "infinity"))
      v = INFINITY;
    else if (ieq(t->text, "nan"))
      v = NAN;
    else
      return fail_at(ps, t->at, "expected a number for field \"%s\", found \"%s%s\"", field,
                     t->neg ? "-" : "", t->text);
  } else {
    char buf[MAX_TOKEN];
    snprintf(buf, sizeof buf, "%s", t->text);
    size_t n = strlen(buf);
    bool hex = n > 1 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X');
    if (!hex && n > 1 && (buf[n - 1] == 'f' || buf[n - 1] == 'F')) buf[--n] = '\0';
    char *endp = NULL;
    errno = 0;
    if (hex) {
      uint64_t u = strtoull(buf, &endp, 16);
      v = (double)u;
    } else if (is_float) {
      v = strtof(buf, &endp);
    } else {
      v = strtod(buf, &endp);
    }
    /* ERANGE is fine: overflow gives inf, underflow a denormal or zero, as protobuf does. */
    if (n == 0 || *endp != '\0' || buf[0] == '+' || buf[0] == '-')
      return fail_at(ps, t->at, "expected a number for field \"%s\", found \"%s%s\"", field,
                     t->neg ? "-" : "", t->text);
  }
  *out = t->neg ? -v : v;
  return 0;
}

static int parse_fields(parser *ps, ProtobufCMessage *msg, int close, const char *ctx, int depth);

/* Parses a scalar (non-message) value of field f into slot. */
static int parse_scalar(parser *ps, const ProtobufCFieldDescriptor *f, const char *fname, void *slot) {
  if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
    if (peek(ps) != '"' && peek(ps) != '\'') {
      char found[64];
      describe_next(ps, found, sizeof found);
      bool word = !at_end(ps) && (ident_start(peek(ps)) || isdigit(peek(ps)));
      return fail_at(ps, here(ps), "expected a quoted string for field \"%s\", found %s%s", fname, found,
                     word ? " (strings need quotes)" : "");
    }
    strbuf sb = {0};
    if (read_strings(ps, &sb)) {
      free(sb.data);
      return -1;
    }
    if (!sb.data) {
      sb.data = calloc(1, 1);
      if (!sb.data) return crema_fail(ps->err, "%s: out of memory", ps->filename);
    }
    if (f->type == PROTOBUF_C_TYPE_STRING) {
      *(char **)slot = sb.data;
    } else {
      ProtobufCBinaryData *bd = slot;
      bd->len = sb.len;
      bd->data = (uint8_t *)sb.data;
    }
    return 0;
  }
  token t;
  if (read_scalar_token(ps, fname, &t)) return -1;
  int64_t s = 0;
  uint64_t u = 0;
  double d = 0;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if (token_to_int(ps, fname, &t, INT32_MAX, (uint64_t)INT32_MAX + 1, "int32", &s, &u)) return -1;
    *(int32_t *)slot = (int32_t)s;
    return 0;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if (token_to_int(ps, fname, &t, UINT32_MAX, 0, "uint32", &s, &u)) return -1;
    *(uint32_t *)slot = (uint32_t)u;
    return 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if (token_to_int(ps, fname, &t, INT64_MAX, (uint64_t)INT64_MAX + 1, "int64", &s, &u)) return -1;
    *(int64_t *)slot = s;
    return 0;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    if (token_to_int(ps, fname, &t, UINT64_MAX, 0, "uint64", &s, &u)) return -1;
    *(uint64_t *)slot = u;
    return 0;
  case PROTOBUF_C_TYPE_FLOAT:
    if (token_to_real(ps, fname, &t, true, &d)) return -1;
    *(float *)slot = (float)d;
    return 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    if (token_to_real(ps, fname, &t, false, &d)) return -1;
    *(double *)slot = d;
    return 0;
  case PROTOBUF_C_TYPE_BOOL: {
    const char *x = t.text;
    int v = -1;
    if (!t.neg) {
      if (!strcmp(x, "true") || !strcmp(x, "True") || !strcmp(x, "t") || !strcmp(x, "1")) v = 1;
      if (!strcmp(x, "false") || !strcmp(x, "False") || !strcmp(x, "f") || !strcmp(x, "0")) v = 0;
    }
    if (v < 0)
      return fail_at(ps, t.at, "expected true or false for field \"%s\", found \"%s%s\"", fname,
                     t.neg ? "-" : "", x);
    *(protobuf_c_boolean *)slot = v;
    return 0;
  }
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    const ProtobufCEnumValue *ev = NULL;
    if (t.ident && !t.neg) {
      ev = protobuf_c_enum_descriptor_get_value_by_name(ed, t.text);
    } else if (!t.ident) {
      if (token_to_int(ps, fname, &t, INT32_MAX, (uint64_t)INT32_MAX + 1, "enum", &s, &u)) return -1;
      ev = protobuf_c_enum_descriptor_get_value(ed, (int)s);
    }
    if (!ev) {
      char names[600];
      size_t n = 0;
      names[0] = '\0';
      for (unsigned i = 0; i < ed->n_values && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", ed->values[i].name);
      return fail_at(ps, t.at, "unknown value \"%s%s\" for enum field \"%s\" (valid: %s)", t.neg ? "-" : "",
                     t.text, fname, names);
    }
    *(int *)slot = ev->value;
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_MESSAGE: break;
  }
  return fail_at(ps, t.at, "field \"%s\" has a type the text parser does not handle", fname);
}

/* Parses `{ ... }` or `< ... >` into a new sub-message stored in *slot (stored before its
 * body is parsed so a failure leaves a freeable message behind). */
static int parse_submessage(parser *ps, const ProtobufCFieldDescriptor *f, const char *fname, void *slot,
                            int depth) {
  int open = peek(ps);
  if (open != '{' && open != '<') {
    char found[64];
    describe_next(ps, found, sizeof found);
    return fail_at(ps, here(ps), "expected \"{\" after \"%s\", found %s", fname, found);
  }
  if (depth >= MAX_DEPTH) return fail_at(ps, here(ps), "messages nested more than %d deep", MAX_DEPTH);
  advance(ps);
  ProtobufCMessage *sub = new_message(f->descriptor);
  if (!sub) return crema_fail(ps->err, "%s: out of memory", ps->filename);
  *(ProtobufCMessage **)slot = sub;
  return parse_fields(ps, sub, open == '{' ? '}' : '>', fname, depth + 1);
}

/* One value of field f (message or scalar), appended when f is repeated. */
static int parse_one_value(parser *ps, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                           const char *fname, int depth) {
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
      /* Create the sub-message first so the array never holds a NULL. */
      if (peek(ps) != '{' && peek(ps) != '<') return parse_submessage(ps, f, fname, NULL, depth);
      if (depth >= MAX_DEPTH) return fail_at(ps, here(ps), "messages nested more than %d deep", MAX_DEPTH);
      int open = peek(ps);
      advance(ps);
      ProtobufCMessage *sub = new_message(f->descriptor);
      if (!sub) return crema_fail(ps->err, "%s: out of memory", ps->filename);
      void *slot = append_elem(msg, f);
      if (!slot) {
        free(sub);
        return crema_fail(ps->err, "%s: out of memory", ps->filename);
      }
      *(ProtobufCMessage **)slot = sub;
      return parse_fields(ps, sub, open == '{' ? '}' : '>', fname, depth + 1);
    }
    unsigned char tmp[sizeof(ProtobufCBinaryData) + sizeof(double)];
    memset(tmp, 0, sizeof tmp);
    if (parse_scalar(ps, f, fname, tmp)) return -1;
    void *slot = append_elem(msg, f);
    if (!slot) {
      if (f->type == PROTOBUF_C_TYPE_STRING) free(*(char **)tmp);
      if (f->type == PROTOBUF_C_TYPE_BYTES) free(((ProtobufCBinaryData *)tmp)->data);
      return crema_fail(ps->err, "%s: out of memory", ps->filename);
    }
    memcpy(slot, tmp, elem_size(f->type));
    return 0;
  }
  void *member = (char *)msg + f->offset;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    int rc = parse_submessage(ps, f, fname, member, depth);
    if (*(void **)member) mark_present(msg, f);
    return rc;
  }
  if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
    unsigned char tmp[sizeof(ProtobufCBinaryData)];
    memset(tmp, 0, sizeof tmp);
    if (parse_scalar(ps, f, fname, tmp)) return -1;
    memcpy(member, tmp, elem_size(f->type));
  } else if (parse_scalar(ps, f, fname, member)) {
    return -1;
  }
  mark_present(msg, f);
  return 0;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static int unknown_field(parser *ps, pos at, const ProtobufCMessageDescriptor *desc, const char *name,
                         const char *ctx) {
  size_t best = SIZE_MAX;
  char best_name[MAX_TOKEN] = "";
  for (unsigned i = 0; i < desc->n_fields; i++) {
    char tn[MAX_TOKEN];
    text_name(desc, &desc->fields[i], tn, sizeof tn);
    size_t d = edit_distance(name, tn);
    if (d < best) {
      best = d;
      snprintf(best_name, sizeof best_name, "%s", tn);
    }
  }
  size_t limit = strlen(name) / 3;
  if (limit < 2) limit = 2;
  if (best <= limit)
    return fail_at(ps, at, "unknown field \"%s\" in %s (did you mean \"%s\"?)", name, ctx, best_name);
  return fail_at(ps, at, "unknown field \"%s\" in %s", name, ctx);
}

/* Parses `name: value` / `name { ... }` entries until `close` ('}' or '>'), or until end of
 * input when close is 0. ctx names the message in errors ("convolution_param"). */
static int parse_fields(parser *ps, ProtobufCMessage *msg, int close, const char *ctx, int depth) {
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  for (;;) {
    skip_space(ps);
    if (at_end(ps)) {
      if (close) return fail_at(ps, here(ps), "expected \"%c\" to close %s, found end of file", close, ctx);
      return 0;
    }
    int c = peek(ps);
    if (close && c == close) {
      advance(ps);
      return 0;
    }
    pos at = here(ps);
    if (!ident_start(c)) {
      char found[64];
      describe_next(ps, found, sizeof found);
      if (c == '}' || c == '>') return fail_at(ps, at, "unexpected %s (no message to close here)", found);
      return fail_at(ps, at, "expected a field name of %s, found %s", ctx, found);
    }
    char name[MAX_TOKEN];
    if (read_ident(ps, name, sizeof name)) return -1;
    const ProtobufCFieldDescriptor *f = find_field(desc, name);
    if (!f) return unknown_field(ps, at, desc, name, ctx);
    if (f->label != PROTOBUF_C_LABEL_REPEATED && field_present(msg, f))
      return fail_at(ps, at, "non-repeated field \"%s\" specified multiple times in %s", name, ctx);
    skip_space(ps);
    bool colon = false;
    if (peek(ps) == ':') {
      colon = true;
      advance(ps);
      skip_space(ps);
    }
    if (!colon && f->type != PROTOBUF_C_TYPE_MESSAGE) {
      char found[64];
      describe_next(ps, found, sizeof found);
      return fail_at(ps, here(ps), "expected \":\" after field name \"%s\", found %s", name, found);
    }
    if (peek(ps) == '[') {
      if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return fail_at(ps, here(ps), "field \"%s\" is not repeated, so it takes one value, not a [list]",
                       name);
      advance(ps);
      skip_space(ps);
      if (peek(ps) == ']') {
        advance(ps);
      } else {
        for (;;) {
          if (parse_one_value(ps, msg, f, name, depth)) return -1;
          skip_space(ps);
          if (peek(ps) == ',') {
            advance(ps);
            skip_space(ps);
            continue;
          }
          if (peek(ps) == ']') {
            advance(ps);
            break;
          }
          char found[64];
          describe_next(ps, found, sizeof found);
          return fail_at(ps, here(ps), "expected \",\" or \"]\" in the list of \"%s\", found %s", name,
                         found);
        }
      }
    } else if (parse_one_value(ps, msg, f, name, depth)) {
      return -1;
    }
    skip_space(ps);
    if (peek(ps) == ',' || peek(ps) == ';') advance(ps);
  }
}

int crema_text_parse(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                     const char *filename, ProtobufCMessage **out, crema_error *err) {
  *out = NULL;
  ProtobufCMessage *msg = new_message(desc);
  if (!msg) return crema_fail(err, "%s: out of memory", filename ? filename : "<text>");
  parser ps = {.text = text,
               .p = text,
               .end = text + len,
               .filename = filename ? filename : "<text>",
               .line = 1,
               .col = 1,
               .err = err};
  /* A UTF-8 byte order mark, as some editors write, is not part of the text. */
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) ps.p += 3;
  if (parse_fields(&ps, msg, 0, desc->short_name, 0)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return -1;
  }
  *out = msg;
  return 0;
}

/* ------------------------------------------------------------------ the printer */

char *crema_format_float(float f, char *buf, size_t size) {
  if (isnan(f)) {
    snprintf(buf, size, "nan");
  } else if (isinf(f)) {
    snprintf(buf, size, f < 0 ? "-inf" : "inf");
  } else {
    /* As protobuf's text printer (SimpleFtoa): 6 significant digits when they read back
     * as the same float, else 9 (never 7 or 8), so files diff cleanly against Caffe's. */
    snprintf(buf, size, "%.*g", 6, (double)f);
    if (strtof(buf, NULL) != f) snprintf(buf, size, "%.*g", 9, (double)f);
  }
  return buf;
}

char *crema_format_double(double d, char *buf, size_t size) {
  if (isnan(d)) {
    snprintf(buf, size, "nan");
  } else if (isinf(d)) {
    snprintf(buf, size, d < 0 ? "-inf" : "inf");
  } else {
    /* As protobuf's SimpleDtoa: 15 significant digits, else 17. */
    snprintf(buf, size, "%.*g", 15, d);
    if (strtod(buf, NULL) != d) snprintf(buf, size, "%.*g", 17, d);
  }
  return buf;
}

static void print_escaped(strbuf *sb, const uint8_t *s, size_t n, bool bytes) {
  sb_putc(sb, '"');
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    switch (c) {
    case '\n': sb_puts(sb, "\\n"); break;
    case '\r': sb_puts(sb, "\\r"); break;
    case '\t': sb_puts(sb, "\\t"); break;
    case '"': sb_puts(sb, "\\\""); break;
    case '\'': sb_puts(sb, "\\'"); break;
    case '\\': sb_puts(sb, "\\\\"); break;
    default:
      /* Three octal digits always, so a following digit cannot join the escape. UTF-8 text
       * in strings stays readable; bytes fields escape everything non-ASCII. */
      if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80))
        sb_printf(sb, "\\%03o", c);
      else
        sb_putc(sb, (char)c);
    }
  }
  sb_putc(sb, '"');
}

static void print_message(strbuf *sb, const ProtobufCMessage *msg, int indent);

/* Prints one value of field f stored at p. */
static void print_value(strbuf *sb, const ProtobufCFieldDescriptor *f, const void *p, int indent) {
  char num[40];
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32: sb_printf(sb, "%" PRId32, *(const int32_t *)p); break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: sb_printf(sb, "%" PRIu32, *(const uint32_t *)p); break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: sb_printf(sb, "%" PRId64, *(const int64_t *)p); break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: sb_printf(sb, "%" PRIu64, *(const uint64_t *)p); break;
  case PROTOBUF_C_TYPE_FLOAT: sb_puts(sb, crema_format_float(*(const float *)p, num, sizeof num)); break;
  case PROTOBUF_C_TYPE_DOUBLE: sb_puts(sb, crema_format_double(*(const double *)p, num, sizeof num)); break;
  case PROTOBUF_C_TYPE_BOOL: sb_puts(sb, *(const protobuf_c_boolean *)p ? "true" : "false"); break;
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    if (ev)
      sb_puts(sb, ev->name);
    else
      sb_printf(sb, "%d", v);
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(const char *const *)p;
    if (!s) s = "";
    print_escaped(sb, (const uint8_t *)s, strlen(s), false);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *bd = p;
    print_escaped(sb, bd->data, bd->data ? bd->len : 0, true);
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    sb_puts(sb, "{\n");
    print_message(sb, *(const ProtobufCMessage *const *)p, indent + 2);
    for (int i = 0; i < indent; i++) sb_putc(sb, ' ');
    sb_putc(sb, '}');
    break;
  }
}

static void print_message(strbuf *sb, const ProtobufCMessage *msg, int indent) {
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    char name[MAX_TOKEN];
    text_name(desc, f, name, sizeof name);
    size_t n = 1;
    const char *base = (const char *)msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      n = MEMBER(const size_t, msg, f->quantifier_offset);
      base = MEMBER(const char *const, msg, f->offset);
    } else if (f->label == PROTOBUF_C_LABEL_NONE && !is_oneof(f)) {
      /* proto3 implicit presence: print non-empty values only. */
      if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const void *p = *(const void *const *)base;
        if (!p || (f->type == PROTOBUF_C_TYPE_STRING && !*(const char *)p)) continue;
      }
    } else if (!field_present(msg, f)) {
      continue;
    }
    for (size_t k = 0; k < n; k++) {
      for (int s = 0; s < indent; s++) sb_putc(sb, ' ');
      sb_puts(sb, name);
      sb_puts(sb, f->type == PROTOBUF_C_TYPE_MESSAGE ? " " : ": ");
      print_value(sb, f, base + k * elem_size(f->type), indent);
      sb_putc(sb, '\n');
    }
  }
}

int crema_text_print(const ProtobufCMessage *msg, char **out, crema_error *err) {
  *out = NULL;
  strbuf sb = {0};
  sb_reserve(&sb, 0);
  if (!sb.oom) sb.data[0] = '\0';
  print_message(&sb, msg, 0);
  if (sb.oom) {
    free(sb.data);
    return crema_fail(err, "out of memory printing a %s as text", msg->descriptor->short_name);
  }
  *out = sb.data;
  return 0;
}
