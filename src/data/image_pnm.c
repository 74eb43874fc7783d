/* image_pnm.c -- Netpbm decoding with OpenCV's sample rules (see image_pnm.h). */
#include "data/image_pnm.h"

#include <stdbool.h>
#include <stdlib.h>

static bool is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Next plain sample: a decimal number (P2, P3) or one '0'/'1' digit (P1). -1 at the end of the
 * data or on a byte that is not a digit. */
static long plain_sample(const uint8_t *b, size_t len, size_t *pos, bool one_digit) {
  while (*pos < len && (is_space(b[*pos]) || b[*pos] == '#')) {
    if (b[*pos] == '#')
      while (*pos < len && b[*pos] != '\n' && b[*pos] != '\r') (*pos)++;
    else
      (*pos)++;
  }
  if (*pos >= len || b[*pos] < '0' || b[*pos] > '9') return -1;
  if (one_digit) return b[(*pos)++] - '0';
  long v = 0;
  while (*pos < len && b[*pos] >= '0' && b[*pos] <= '9') {
    if (v < 1000000) v = v * 10 + (b[*pos] - '0');
    (*pos)++;
  }
  return v;
}

int crema_pnm_decode(const uint8_t *buf, size_t len, const crema_image_info *info, const char *what,
                     uint8_t **out, crema_error *err) {
  const size_t n = (size_t)info->width * info->height * info->channels;
  uint8_t *px = malloc(n ? n : 1);
  if (!px) return crema_fail(err, "%s: out of memory for a %u x %u image", what, info->width, info->height);
  const uint8_t *b = buf + info->data_offset;
  const size_t avail = len - info->data_offset; /* the probe checked binary sizes */
  const uint32_t maxval = info->maxval;
  switch (info->pnm_kind) {
  case 5:
  case 6:
    if (maxval > 255)
      for (size_t i = 0; i < n; i++) px[i] = b[2 * i]; /* big-endian: the high byte */
    else
      for (size_t i = 0; i < n; i++) px[i] = b[i];
    break;
  case 4: {
    const size_t row = ((size_t)info->width + 7) / 8;
    for (size_t y = 0; y < info->height; y++)
      for (size_t x = 0; x < info->width; x++)
        px[y * info->width + x] = (b[y * row + x / 8] >> (7 - x % 8) & 1) ? 0 : 255;
    break;
  }
  default: { /* plain P1, P2, P3 */
    size_t pos = 0;
    const bool bits = info->pnm_kind == 1;
    for (size_t i = 0; i < n; i++) {
      long v = plain_sample(b, avail, &pos, bits);
      if (v < 0 || (bits && v > 1)) {
        free(px);
        return crema_fail(err, "%s: truncated or corrupt PNM (sample %zu of %zu is missing or not a number)",
                          what, i + 1, n);
      }
      if (bits)
        px[i] = v ? 0 : 255;
      else {
        if (v > (long)maxval) v = (long)maxval;
        if (maxval > 255)
          px[i] = (uint8_t)(v >> 8);
        else if (maxval != 255)
          px[i] = (uint8_t)(v * 255 / maxval);
        else
          px[i] = (uint8_t)v;
      }
    }
  }
  }
  *out = px;
  return 0;
}
