#include "data/list_file.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "data/image.h"

int crema_image_list_read(const char *path, crema_image_list *out, crema_error *err) {
  memset(out, 0, sizeof *out);
  uint8_t *bytes;
  size_t len;
  if (crema_read_file_bytes(path, &bytes, &len, err)) return -1;
  char *text = realloc(bytes, len + 1);
  if (!text) {
    free(bytes);
    return crema_fail(err, "out of memory reading \"%s\"", path);
  }
  text[len] = '\0';
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  crema_list_entry *e = calloc(lines, sizeof *e);
  if (!e) {
    free(text);
    return crema_fail(err, "out of memory reading \"%s\"", path);
  }
  size_t n = 0, line_no = 0;
  char *p = text;
  while (p && *p) {
    line_no++;
    char *nl = strchr(p, '\n');
    char *next = nl ? nl + 1 : NULL;
    char *end = nl ? nl : p + strlen(p);
    while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) end--;
    *end = '\0';
    if (end > p) {
      char *sp = strrchr(p, ' ');
      char *num_end = NULL;
      long label = 0;
      if (sp) {
        errno = 0;
        label = strtol(sp + 1, &num_end, 10);
      }
      if (!sp || sp == p || !sp[1] || *num_end || errno || label < INT_MIN || label > INT_MAX) {
        crema_fail(err, "%s:%zu: expected \"<image path> <integer label>\", got \"%s\"", path, line_no, p);
        free(e);
        free(text);
        return -1;
      }
      *sp = '\0';
      e[n].path = p;
      e[n].label = (int)label;
      n++;
    }
    p = next;
  }
  if (n == 0) {
    free(e);
    free(text);
    return crema_fail(err, "list file \"%s\" has no images (expected lines \"<image path> <label>\")", path);
  }
  out->entries = e;
  out->count = n;
  out->text = text;
  return 0;
}

void crema_image_list_free(crema_image_list *list) {
  if (!list) return;
  free(list->entries);
  free(list->text);
  memset(list, 0, sizeof *list);
}

void crema_shuffle_indices(uint32_t *idx, size_t n, uint64_t seed, uint64_t stream) {
  crema_rng r;
  crema_rng_seed(&r, seed, stream);
  for (size_t i = n; i > 1; i--) {
    size_t j = crema_rng_below(&r, (uint32_t)i);
    uint32_t t = idx[i - 1];
    idx[i - 1] = idx[j];
    idx[j] = t;
  }
}
