/* textformat.h -- protobuf text format (.prototxt) for any protobuf-c message.
 *
 * protobuf-c has no text format, so this is a small parser and printer driven entirely by
 * protobuf-c's descriptors. It reads what Caffe's (C++ protobuf's) text parser reads:
 *   - `field: value` and nested `field { ... }`, `field: { ... }`, `field < ... >`;
 *   - repeated fields given several times or as `field: [a, b, c]`;
 *   - enums by name or number; `#` comments; `,` or `;` after a value;
 *   - strings in '...' or "..." with C escapes (\n \t \" \' \\ \ooo \xhh), adjacent strings
 *     concatenated; bytes fields as strings;
 *   - integers in decimal, hex (0x..) or octal (0..), range-checked for their type;
 *   - floats such as 1e-4, .5, 5., 1f, inf, -inf, nan, infinity, or an integer literal;
 *   - booleans true/false/True/False/t/f/1/0.
 * Field names that protobuf-c had to rename with a trailing underscore (ExpParameter's
 * "base_") are read and printed under their proto name ("base"): a name X that is not a
 * field of the message but X_ is, means X_.
 * A non-repeated field given twice is an error, as in Caffe. */
#ifndef CREMA_PROTO_TEXTFORMAT_H
#define CREMA_PROTO_TEXTFORMAT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"

/* Parses protobuf text format (text[0..len), no terminator needed) into a new message of type
 * desc. filename is only used in error messages, which read "file:line:col: message" (line
 * and column count from 1). On success *out is a new message the caller frees with
 * crema_message_free (or protobuf_c_message_free_unpacked(msg, NULL)); on failure *out is
 * NULL and err says what and where. Any input size is accepted. */
int crema_text_parse(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                     const char *filename, ProtobufCMessage **out, crema_error *err);

/* Prints msg as text format that parses back to the same message: fields in field-number
 * order, nested messages indented by 2 spaces, floats and doubles in the shortest form that
 * reads back to the same bits (inf, -inf, nan spelled out). *out is a NUL-terminated
 * malloc'd string the caller frees with free(). Fails only when out of memory. */
int crema_text_print(const ProtobufCMessage *msg, char **out, crema_error *err);

/* Shortest decimal text of f ("%.6g" .. "%.9g", the first that reads back to the same
 * float; "inf", "-inf", "nan"). buf needs 32 bytes. Returns buf. */
char *crema_format_float(float f, char *buf, size_t size);
/* Same for doubles ("%.15g" .. "%.17g"). */
char *crema_format_double(double d, char *buf, size_t size);

#endif
