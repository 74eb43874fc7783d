/* image_probe.c -- format, size and completeness of an image file, checked from its bytes
 * before a decoder runs (see image_probe.h). One function per format. */
#include "data/image_probe.h"

#include <stdbool.h>
#include <string.h>

#define MAX_SIDE (1u << 24) /* stb_image's own per-side limit */

static uint64_t g_max_pixels = CREMA_IMAGE_DEFAULT_MAX_PIXELS;

void crema_image_set_max_pixels(uint64_t max_pixels) {
  g_max_pixels = max_pixels ? max_pixels : CREMA_IMAGE_DEFAULT_MAX_PIXELS;
}

uint64_t crema_image_max_pixels(void) { return g_max_pixels; }

const char *crema_image_format_name(crema_image_format f) {
  switch (f) {
  case CREMA_IMAGE_FORMAT_JPEG: return "jpeg";
  case CREMA_IMAGE_FORMAT_PNG: return "png";
  case CREMA_IMAGE_FORMAT_BMP: return "bmp";
  case CREMA_IMAGE_FORMAT_GIF: return "gif";
  case CREMA_IMAGE_FORMAT_PNM: return "pnm";
  }
  return "unknown";
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | be16(p + 2); }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p + 2) << 16 | le16(p); }

/* ---------------------------------------------------------------- PNG */

static int probe_png(const uint8_t *b, size_t len, const char *what, crema_image_info *in, crema_error *err) {
  if (len < 8 + 25 || be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4))
    return crema_fail(err, "%s: truncated or corrupt PNG (no IHDR header after the signature)", what);
  const uint8_t *h = b + 16;
  in->width = be32(h);
  in->height = be32(h + 4);
  const int depth = h[8], ct = h[9];
  bool ok = false;
  switch (ct) {
  case 0: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
  case 3: ok = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
  case 2:
  case 4:
  case 6: ok = depth == 8 || depth == 16; break;
  default: return crema_fail(err, "%s: corrupt PNG (colour type %d does not exist)", what, ct);
  }
  if (!ok)
    return crema_fail(err, "%s: corrupt PNG (bit depth %d is not allowed with colour type %d)", what, depth,
                      ct);
  if (h[10] != 0 || h[11] != 0 || h[12] > 1)
    return crema_fail(err, "%s: corrupt PNG (unknown compression, filter or interlace method)", what);
  in->bits = depth;
  in->channels = (ct == 0 || ct == 4) ? 1 : 3;
  /* Walk the chunks: each must fit in the file, and the image must end with IEND. */
  size_t pos = 8;
  bool idat = false, plte = false;
  for (;;) {
    if (len - pos < 12)
      return crema_fail(err, "%s: truncated PNG (the file ends at byte %zu, before the IEND chunk)", what,
                        len);
    const uint32_t n = be32(b + pos);
    if (n > 0x7fffffffu || len - pos - 12 < n)
      return crema_fail(err,
                        "%s: truncated PNG (a chunk of %u bytes at byte %zu runs past the end, %zu bytes)",
                        what, n, pos, len);
    const uint8_t *type = b + pos + 4;
    if (!memcmp(type, "IDAT", 4)) idat = true;
    if (!memcmp(type, "PLTE", 4)) plte = true;
    if (!memcmp(type, "IEND", 4)) break;
    pos += 12 + (size_t)n;
  }
  if (!idat) return crema_fail(err, "%s: corrupt PNG (no image data, IDAT chunk)", what);
  if (ct == 3 && !plte) return crema_fail(err, "%s: corrupt PNG (palette image without a PLTE chunk)", what);
  return 0;
}

/* ---------------------------------------------------------------- JPEG */

/* A DHT segment's tables (payload of seg - 2 bytes at p): class 0-1, slot 0-3, and at most 256
 * codes each. stb_image 2.27 writes past its tables when the 16 counts add up to more. */
static int check_dht(const uint8_t *p, size_t n, bool defined[2][4], const char *what, crema_error *err) {
  size_t i = 0;
  while (i < n) {
    if (n - i < 17) return crema_fail(err, "%s: corrupt JPEG (short Huffman table)", what);
    if ((p[i] >> 4) > 1 || (p[i] & 15) > 3)
      return crema_fail(err, "%s: corrupt JPEG (Huffman table class %d, slot %d)", what, p[i] >> 4,
                        p[i] & 15);
    size_t codes = 0;
    for (int k = 1; k <= 16; k++) codes += p[i + k];
    if (codes > 256)
      return crema_fail(err, "%s: corrupt JPEG (a Huffman table of %zu codes; at most 256 exist)", what,
                        codes);
    if (n - i - 17 < codes) return crema_fail(err, "%s: corrupt JPEG (short Huffman table)", what);
    defined[p[i] >> 4][p[i] & 15] = true;
    i += 17 + codes;
  }
  return 0;
}

/* Walks every marker segment, headers and the ones between the scans of a progressive file
 * (entropy-coded data never holds 0xFF followed by anything but 0x00, a restart marker or fill
 * 0xFF), up to the end-of-image marker. Without that marker the file was cut short. */
static int probe_jpeg(const uint8_t *b, size_t len, const char *what, crema_image_info *in,
                      crema_error *err) {
  size_t pos = 2;
  bool have_sof = false, in_scan = false, progressive = false;
  bool tables[2][4] = {{false}}; /* Huffman tables defined so far: [DC, AC][slot] */
  for (;;) {
    if (in_scan) { /* skip entropy-coded bytes up to the next real marker */
      while (pos + 1 < len && !(b[pos] == 0xFF && b[pos + 1] != 0x00 && b[pos + 1] != 0xFF &&
                                !(b[pos + 1] >= 0xD0 && b[pos + 1] <= 0xD7)))
        pos++;
      if (pos + 1 >= len)
        return crema_fail(err, "%s: truncated JPEG (no end-of-image marker; the file was cut short)", what);
    }
    if (pos >= len || b[pos] != 0xFF) {
      if (pos >= len) return crema_fail(err, "%s: truncated JPEG (the file ends inside its headers)", what);
      return crema_fail(err, "%s: corrupt JPEG (expected a marker at byte %zu)", what, pos);
    }
    while (pos < len && b[pos] == 0xFF) pos++;
    if (pos >= len) return crema_fail(err, "%s: truncated JPEG (the file ends inside its headers)", what);
    const uint8_t m = b[pos++];
    if (m == 0xD9) {
      if (!in_scan)
        return crema_fail(err, "%s: corrupt JPEG (end-of-image marker before any image data)", what);
      return 0;
    }
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* no length */
    if (len - pos < 2)
      return crema_fail(err, "%s: truncated JPEG (the file ends inside a marker segment)", what);
    const uint32_t seg = be16(b + pos);
    if (seg < 2 || len - pos < seg)
      return crema_fail(err,
                        "%s: truncated JPEG (a segment of %u bytes at byte %zu runs past the end, %zu bytes)",
                        what, seg, pos, len);
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (have_sof) return crema_fail(err, "%s: corrupt JPEG (a second frame header)", what);
      if (m > 0xC2)
        return crema_fail(err,
                          "%s: unsupported JPEG variant (SOF%d: lossless, hierarchical or arithmetic-coded); "
                          "crema reads baseline and progressive JPEG",
                          what, m - 0xC0);
      if (seg < 8) return crema_fail(err, "%s: corrupt JPEG (short frame header)", what);
      const uint8_t *f = b + pos + 2;
      if (f[0] != 8)
        return crema_fail(err, "%s: unsupported JPEG precision of %d bits (crema reads 8-bit JPEG)", what,
                          f[0]);
      in->height = be16(f + 1);
      in->width = be16(f + 3);
      const int nc = f[5];
      if (nc != 1 && nc != 3 && nc != 4)
        return crema_fail(err, "%s: unsupported JPEG with %d colour components (1, 3 or 4 are read)", what,
                          nc);
      if (seg < 8 + 3u * (uint32_t)nc) return crema_fail(err, "%s: corrupt JPEG (short frame header)", what);
      in->channels = nc == 1 ? 1 : 3;
      in->bits = 8;
      have_sof = true;
      progressive = m == 0xC2;
    }
    if (m == 0xC4 && check_dht(b + pos + 2, seg - 2, tables, what, err)) return -1;
    if (m == 0xDA) { /* start of scan: entropy-coded data follows its header */
      if (!have_sof) return crema_fail(err, "%s: corrupt JPEG (image data before the frame header)", what);
      /* Every Huffman table the scan uses must have been defined: stb_image 2.27 decodes with
       * an empty table and indexes far outside it. Progressive scans use DC tables (spectral
       * start 0) or AC tables (start > 0); baseline scans use both. */
      const uint8_t *sc = b + pos + 2;
      const uint32_t ns = seg >= 3 ? sc[0] : 0;
      if (ns < 1 || ns > 4 || seg < 6 + 2 * ns)
        return crema_fail(err, "%s: corrupt JPEG (bad scan header)", what);
      const int ss = sc[1 + 2 * ns];
      for (uint32_t k = 0; k < ns; k++) {
        const int td = sc[2 + 2 * k] >> 4, ta = sc[2 + 2 * k] & 15;
        const bool need_dc = !progressive || ss == 0, need_ac = !progressive || ss > 0;
        if (td > 3 || ta > 3 || (need_dc && !tables[0][td]) || (need_ac && !tables[1][ta]))
          return crema_fail(err, "%s: corrupt JPEG (a scan uses a Huffman table that was never defined)",
                            what);
      }
      in_scan = true;
    }
    pos += seg;
  }
}

/* ---------------------------------------------------------------- BMP */

static int probe_bmp(const uint8_t *b, size_t len, const char *what, crema_image_info *in, crema_error *err) {
  if (len < 26) return crema_fail(err, "%s: truncated BMP (%zu bytes, shorter than its headers)", what, len);
  const uint32_t off = le32(b + 10), hsz = le32(b + 14);
  int64_t w, h;
  uint32_t bpp, compression = 0;
  if (hsz == 12) {
    w = le16(b + 18);
    h = (int16_t)le16(b + 20);
    bpp = le16(b + 24);
  } else if (hsz == 40 || hsz == 56 || hsz == 108 || hsz == 124) {
    if (len < 14 + (size_t)hsz)
      return crema_fail(err, "%s: truncated BMP (the file ends inside its header)", what);
    w = (int32_t)le32(b + 18);
    h = (int32_t)le32(b + 22);
    bpp = le16(b + 28);
    compression = le32(b + 30);
  } else {
    return crema_fail(err, "%s: unsupported BMP header of %u bytes", what, hsz);
  }
  if (h < 0) h = -h; /* top-down rows */
  if (w <= 0 || h <= 0)
    return crema_fail(err, "%s: BMP of %lld x %lld pixels: width and height must be at least 1", what,
                      (long long)w, (long long)h);
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
    return crema_fail(err, "%s: corrupt BMP (%u bits per pixel)", what, bpp);
  if (compression == 1 || compression == 2)
    return crema_fail(err, "%s: RLE-compressed BMP is not supported; save it uncompressed or as PNG", what);
  if (compression != 0 && !(compression == 3 && (bpp == 16 || bpp == 32)))
    return crema_fail(err, "%s: unsupported BMP compression %u", what, compression);
  if (w > MAX_SIDE || h > MAX_SIDE)
    return crema_fail(err, "%s: BMP of %lld x %lld pixels is larger than any image crema decodes", what,
                      (long long)w, (long long)h);
  in->width = (uint32_t)w;
  in->height = (uint32_t)h;
  in->channels = 3;
  in->bits = 8;
  const uint64_t row = ((uint64_t)in->width * bpp + 31) / 32 * 4;
  const uint64_t need = (uint64_t)off + row * in->height;
  if (off < 14 + (uint64_t)hsz || need > len)
    return crema_fail(err,
                      "%s: truncated BMP (its header declares %u x %u pixels at %u bits, %llu bytes of pixel "
                      "data from byte %u, but the file has %zu bytes)",
                      what, in->width, in->height, bpp, (unsigned long long)(row * in->height), off, len);
  return 0;
}

/* ---------------------------------------------------------------- GIF */

/* Skips a chain of data sub-blocks at *pos (length byte, bytes..., 0). */
static bool skip_sub_blocks(const uint8_t *b, size_t len, size_t *pos) {
  for (;;) {
    if (*pos >= len) return false;
    const size_t n = b[(*pos)++];
    if (n == 0) return true;
    if (len - *pos < n) return false;
    *pos += n;
  }
}

static int probe_gif(const uint8_t *b, size_t len, const char *what, crema_image_info *in, crema_error *err) {
  if (len < 13) return crema_fail(err, "%s: truncated GIF (%zu bytes, shorter than its header)", what, len);
  in->width = le16(b + 6);
  in->height = le16(b + 8);
  in->channels = 3;
  in->bits = 8;
  size_t pos = 13;
  if (b[10] & 0x80) pos += 3u << ((b[10] & 7) + 1);
  /* The first frame is what gets decoded: its blocks must all be there. */
  for (;;) {
    if (pos >= len) return crema_fail(err, "%s: truncated GIF (the file ends before the first frame)", what);
    const uint8_t t = b[pos++];
    if (t == 0x21) {
      pos++; /* label */
      if (!skip_sub_blocks(b, len, &pos))
        return crema_fail(err, "%s: truncated GIF (the file ends inside an extension block)", what);
    } else if (t == 0x2C) {
      if (len - pos < 9)
        return crema_fail(err, "%s: truncated GIF (the file ends inside a frame header)", what);
      const uint8_t flags = b[pos + 8];
      pos += 9;
      if (flags & 0x80) pos += 3u << ((flags & 7) + 1);
      if (pos >= len)
        return crema_fail(err, "%s: truncated GIF (the file ends inside the first frame)", what);
      const int lzw = b[pos++];
      if (lzw < 1 || lzw > 11) return crema_fail(err, "%s: corrupt GIF (LZW code size %d)", what, lzw);
      if (!skip_sub_blocks(b, len, &pos))
        return crema_fail(err, "%s: truncated GIF (the file ends inside the first frame's data)", what);
      return 0;
    } else if (t == 0x3B) {
      return crema_fail(err, "%s: GIF without any frame", what);
    } else {
      return crema_fail(err, "%s: corrupt GIF (unknown block 0x%02x at byte %zu)", what, t, pos - 1);
    }
  }
}

/* ---------------------------------------------------------------- PNM */

/* Reads one decimal header number after whitespace and '#' comments; -1 when there is none or it
 * exceeds limit. */
static int64_t pnm_number(const uint8_t *b, size_t len, size_t *pos, int64_t limit) {
  for (;;) {
    while (*pos < len && (b[*pos] == ' ' || (b[*pos] >= '\t' && b[*pos] <= '\r'))) (*pos)++;
    if (*pos < len && b[*pos] == '#') {
      while (*pos < len && b[*pos] != '\n' && b[*pos] != '\r') (*pos)++;
      continue;
    }
    break;
  }
  if (*pos >= len || b[*pos] < '0' || b[*pos] > '9') return -1;
  int64_t v = 0;
  while (*pos < len && b[*pos] >= '0' && b[*pos] <= '9') {
    v = v * 10 + (b[(*pos)++] - '0');
    if (v > limit) return -1;
  }
  return v;
}

static int probe_pnm(const uint8_t *b, size_t len, const char *what, crema_image_info *in, crema_error *err) {
  const int kind = b[1] - '0';
  size_t pos = 2;
  const int64_t w = pnm_number(b, len, &pos, MAX_SIDE), h = pnm_number(b, len, &pos, MAX_SIDE);
  if (w < 0 || h < 0) return crema_fail(err, "%s: truncated or corrupt PNM header (width and height)", what);
  int64_t maxval = 1;
  if (kind != 1 && kind != 4) {
    maxval = pnm_number(b, len, &pos, 65535);
    if (maxval < 1)
      return crema_fail(err, "%s: corrupt PNM header (the maximum value must be 1 to 65535)", what);
  }
  in->width = (uint32_t)w;
  in->height = (uint32_t)h;
  in->maxval = (uint32_t)maxval;
  in->pnm_kind = kind;
  in->channels = (kind == 3 || kind == 6) ? 3 : 1;
  in->bits = maxval > 255 ? 16 : kind == 1 || kind == 4 ? 1 : 8;
  if (pos >= len) return crema_fail(err, "%s: truncated PNM (no pixel data after the header)", what);
  pos++; /* the single whitespace byte that ends the header */
  in->data_offset = pos;
  if (w == 0 || h == 0) return 0; /* reported by the common size check */
  uint64_t need;
  if (kind == 4)
    need = ((uint64_t)w + 7) / 8 * (uint64_t)h;
  else if (kind >= 5)
    need = (uint64_t)w * h * in->channels * (maxval > 255 ? 2 : 1);
  else
    return 0; /* plain (ASCII) samples are counted by the decoder */
  if (need > len - pos)
    return crema_fail(err,
                      "%s: truncated PNM (its header declares %u x %u pixels, %llu bytes of samples, but %zu "
                      "bytes follow the header)",
                      what, in->width, in->height, (unsigned long long)need, len - pos);
  return 0;
}

/* ---------------------------------------------------------------- entry */

static bool looks_like_text(const uint8_t *b, size_t len) {
  const size_t n = len < 64 ? len : 64;
  for (size_t i = 0; i < n; i++)
    if (b[i] < 0x09 || (b[i] > 0x0d && b[i] < 0x20)) return false;
  return true;
}

int crema_image_probe(const uint8_t *buf, size_t len, const char *what, crema_image_info *info,
                      crema_error *err) {
  memset(info, 0, sizeof *info);
  if (len == 0) return crema_fail(err, "%s: empty file, not an image", what);
  int rc;
  if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
    info->format = CREMA_IMAGE_FORMAT_JPEG;
    rc = probe_jpeg(buf, len, what, info, err);
  } else if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) {
    info->format = CREMA_IMAGE_FORMAT_PNG;
    rc = probe_png(buf, len, what, info, err);
  } else if (len >= 2 && buf[0] == 'B' && buf[1] == 'M') {
    info->format = CREMA_IMAGE_FORMAT_BMP;
    rc = probe_bmp(buf, len, what, info, err);
  } else if (len >= 6 && (!memcmp(buf, "GIF87a", 6) || !memcmp(buf, "GIF89a", 6))) {
    info->format = CREMA_IMAGE_FORMAT_GIF;
    rc = probe_gif(buf, len, what, info, err);
  } else if (len >= 3 && buf[0] == 'P' && buf[1] >= '1' && buf[1] <= '6' &&
             (buf[2] == ' ' || (buf[2] >= '\t' && buf[2] <= '\r') || buf[2] == '#')) {
    info->format = CREMA_IMAGE_FORMAT_PNM;
    rc = probe_pnm(buf, len, what, info, err);
  } else if (looks_like_text(buf, len)) {
    return crema_fail(err, "%s: not an image (it looks like text); crema reads JPEG, PNG, BMP, GIF and PNM",
                      what);
  } else {
    return crema_fail(
        err, "%s: not an image in a format crema reads (JPEG, PNG, BMP, GIF, PNM: checked by content)", what);
  }
  if (rc) return rc;
  if (info->width == 0 || info->height == 0)
    return crema_fail(err, "%s: %s image of %u x %u pixels: width and height must be at least 1", what,
                      crema_image_format_name(info->format), info->width, info->height);
  if (info->width > MAX_SIDE || info->height > MAX_SIDE)
    return crema_fail(err, "%s: %s image of %u x %u pixels: a side is longer than %u", what,
                      crema_image_format_name(info->format), info->width, info->height, MAX_SIDE);
  const uint64_t pixels = (uint64_t)info->width * info->height;
  if (pixels > g_max_pixels)
    return crema_fail(err,
                      "%s: %s image of %u x %u = %llu pixels is more than the limit of %llu (--max_pixels); "
                      "a decompression bomb or an image to shrink first",
                      what, crema_image_format_name(info->format), info->width, info->height,
                      (unsigned long long)pixels, (unsigned long long)g_max_pixels);
  return 0;
}
