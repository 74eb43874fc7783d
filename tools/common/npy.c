#include "common/npy.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/io.h"

static const unsigned char NPY_MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* Finds the value following the dictionary key 'key' (or "key") and its colon. */
static const char *dict_value(const char *h, const char *end, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = h; p + kl + 2 <= end; p++) {
    if ((*p != '\'' && *p != '"') || strncmp(p + 1, key, kl) || p[kl + 1] != *p) continue;
    const char *q = p + kl + 2;
    while (q < end && isspace((unsigned char)*q)) q++;
    if (q >= end || *q != ':') continue;
    q++;
    while (q < end && isspace((unsigned char)*q)) q++;
    return q < end ? q : NULL; /* a key at the very end of the header has no value */
  }
  return NULL;
}

/* Whether [p, end) starts with word; never reads at or past end. */
static bool starts_with(const char *p, const char *end, const char *word) {
  const size_t n = strlen(word);
  return (size_t)(end - p) >= n && !memcmp(p, word, n);
}

int crema_npy_parse(const void *buf, size_t len, const char *name, int *num_axes, int shape[CREMA_MAX_AXES],
                    float **data, crema_error *err) {
  const unsigned char *b = buf;
  *data = NULL;
  if (len < 10 || memcmp(b, NPY_MAGIC, sizeof NPY_MAGIC))
    return crema_fail(err, "%s: not a NumPy .npy file (no \\x93NUMPY magic); write it with numpy.save", name);
  int major = b[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return crema_fail(err, "%s: truncated .npy header", name);
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    hstart = 12;
  } else {
    return crema_fail(err, "%s: .npy format version %d.%d is not supported (crema reads 1.0 to 3.0)", name,
                      major, b[7]);
  }
  if (hlen > len - hstart) return crema_fail(err, "%s: truncated .npy header", name);
  const char *h = (const char *)b + hstart, *hend = h + hlen;

  const char *v = dict_value(h, hend, "descr");
  if (!v || (*v != '\'' && *v != '"'))
    return crema_fail(err, "%s: .npy header has no 'descr' string (dtype)", name);
  char descr[32] = "";
  size_t dl = 0;
  for (const char *p = v + 1; p < hend && *p != *v && dl < sizeof descr - 1; p++) descr[dl++] = *p;
  descr[dl] = '\0';
  size_t itemsize;
  if (!strcmp(descr, "<f4"))
    itemsize = 4;
  else if (!strcmp(descr, "<f8"))
    itemsize = 8;
  else
    return crema_fail(
        err,
        "%s: dtype \"%s\" is not supported: crema reads little-endian float32 (or float64) arrays; "
        "save with numpy.save(path, a.astype(numpy.float32))",
        name, descr);

  v = dict_value(h, hend, "fortran_order");
  if (!v) return crema_fail(err, "%s: .npy header has no 'fortran_order'", name);
  if (starts_with(v, hend, "True"))
    return crema_fail(err, "%s: array is in Fortran order; save numpy.ascontiguousarray(a) instead", name);
  if (!starts_with(v, hend, "False"))
    return crema_fail(err, "%s: bad 'fortran_order' value in .npy header", name);

  v = dict_value(h, hend, "shape");
  if (!v || *v != '(') return crema_fail(err, "%s: .npy header has no 'shape' tuple", name);
  int n = 0;
  size_t count = 1;
  const char *p = v + 1;
  for (;;) {
    while (p < hend && (isspace((unsigned char)*p) || *p == ',')) p++;
    if (p >= hend) return crema_fail(err, "%s: unterminated 'shape' in .npy header", name);
    if (*p == ')') break;
    if (!isdigit((unsigned char)*p)) return crema_fail(err, "%s: bad 'shape' in .npy header", name);
    if (n == CREMA_MAX_AXES)
      return crema_fail(err, "%s: array has more than %d axes, more than crema's blobs hold", name,
                        CREMA_MAX_AXES);
    /* Digits are read up to hend only: the header need not be followed by anything. */
    unsigned long long d = 0;
    for (; p < hend && isdigit((unsigned char)*p); p++) {
      d = d * 10 + (unsigned)(*p - '0');
      if (d > INT32_MAX) return crema_fail(err, "%s: a dimension of the shape is too large", name);
    }
    shape[n++] = (int)d;
    if (d && count > SIZE_MAX / 8 / d) return crema_fail(err, "%s: array too large", name);
    count *= (size_t)d;
  }
  *num_axes = n;
  size_t dstart = hstart + hlen;
  if (len - dstart < count * itemsize)
    return crema_fail(err, "%s: file is truncated: shape needs %zu bytes of data, the file has %zu", name,
                      count * itemsize, len - dstart);
  float *out = malloc(count ? count * sizeof(float) : 1);
  if (!out) return crema_fail(err, "%s: out of memory reading %zu values", name, count);
  const unsigned char *d = b + dstart;
  if (itemsize == 4) {
    memcpy(out, d, count * sizeof(float));
  } else {
    for (size_t i = 0; i < count; i++) {
      double x;
      memcpy(&x, d + i * 8, 8);
      out[i] = (float)x;
    }
  }
  *data = out;
  return 0;
}

int crema_npy_read(const char *path, crema_blob *b, crema_error *err) {
  char *buf = NULL;
  size_t len = 0;
  if (crema_read_file(path, &buf, &len, err)) return -1;
  int n = 0, shape[CREMA_MAX_AXES] = {0};
  float *data = NULL;
  int rc = crema_npy_parse(buf, len, path, &n, shape, &data, err);
  free(buf);
  if (rc) return -1;
  if (crema_blob_reshape(b, n, shape, err)) {
    free(data);
    return crema_error_prefix(err, "%s", path);
  }
  memcpy(b->data, data, b->count * sizeof(float));
  free(data);
  return 0;
}

int crema_npy_format(int num_axes, const int *shape, const float *data, void **out, size_t *len,
                     crema_error *err) {
  char header[512];
  int used = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  size_t count = 1;
  for (int i = 0; i < num_axes; i++) {
    used += snprintf(header + used, sizeof header - (size_t)used, "%d%s", shape[i],
                     num_axes == 1 ? "," : (i + 1 < num_axes ? ", " : ""));
    count *= (size_t)shape[i];
  }
  used += snprintf(header + used, sizeof header - (size_t)used, "), }");
  /* Pad with spaces so the data starts at a multiple of 64 bytes; the header ends in \n. */
  size_t total = 10 + (size_t)used + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)used + pad + 1;
  size_t n = 10 + hlen + count * sizeof(float);
  unsigned char *buf = malloc(n);
  if (!buf) return crema_fail(err, "out of memory writing .npy");
  memcpy(buf, NPY_MAGIC, 6);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (unsigned char)(hlen & 0xff);
  buf[9] = (unsigned char)(hlen >> 8);
  memcpy(buf + 10, header, (size_t)used);
  memset(buf + 10 + used, ' ', pad);
  buf[10 + hlen - 1] = '\n';
  if (count) memcpy(buf + 10 + hlen, data, count * sizeof(float));
  *out = buf;
  *len = n;
  return 0;
}

int crema_npy_write(const char *path, const crema_blob *b, crema_error *err) {
  void *buf = NULL;
  size_t len = 0;
  if (crema_npy_format(b->num_axes, b->shape, b->data, &buf, &len, err)) return -1;
  int rc = crema_write_file_atomic(path, buf, len, err);
  free(buf);
  return rc;
}
