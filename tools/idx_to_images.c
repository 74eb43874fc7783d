/* idx_to_images.c -- (Fashion-)MNIST idx files -> PNG files + a Caffe list file.
 *
 *   idx_to_images --images=train-images-idx3-ubyte.gz --labels=train-labels-idx1-ubyte.gz
 *                 --out=DIR [--list=DIR/list.txt] [--count=N] [--offset=K] [--prefix=img]
 *
 * Writes DIR/<prefix>_00000.png ... (grey, 28x28 for MNIST) and a list file with one
 * "<prefix>_00000.png <label>" line per image, relative to DIR -- exactly what
 * convert_imageset and the ImageData layer read. Files ending in .gz are decompressed by
 * running `gzip -dc` (so no compression library is needed). The idx header is checked
 * (magic 0x00000803 for images, 0x00000801 for labels, matching counts).
 *
 * For image-folder tools (crema finetune): --folders writes DIR/<class name>/<file> (names
 * from --class-names, indexed by label, else the label number), --classes keeps only the
 * listed labels, and --per-class keeps at most N images of each. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/flags.h"
#include "common/tool.h"
#include "data/image.h"

/* Reads a whole file, through `gzip -dc` when its name ends in .gz. */
static int read_maybe_gz(const char *path, uint8_t **out, size_t *len, crema_error *err) {
  const size_t n = strlen(path);
  if (n < 3 || strcmp(path + n - 3, ".gz")) return crema_read_file_bytes(path, out, len, err);
  if (access(path, R_OK)) return crema_fail(err, "cannot read %s: %s", path, strerror(errno));
  int fds[2];
  if (pipe(fds)) return crema_fail(err, "pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) return crema_fail(err, "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execlp("gzip", "gzip", "-dc", path, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t cap = 1 << 20, used = 0;
  uint8_t *buf = malloc(cap);
  int rc = buf ? 0 : crema_fail(err, "out of memory");
  while (!rc) {
    if (used == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb) {
        rc = crema_fail(err, "out of memory");
        break;
      }
      buf = nb;
    }
    ssize_t r = read(fds[0], buf + used, cap - used);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) rc = crema_fail(err, "reading gzip -dc %s: %s", path, strerror(errno));
    if (r <= 0) break;
    used += (size_t)r;
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
    rc = crema_fail(err, "gzip -dc %s failed (is gzip installed, is the file complete?)", path);
  if (rc) {
    free(buf);
    return -1;
  }
  *out = buf;
  *len = used;
  return 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  const char *images = NULL, *labels = NULL, *out = NULL, *list = NULL, *prefix = "img";
  long count = 0, offset = 0, per_class = 0;
  const char *classes = NULL, *class_names = NULL;
  bool folders = false;
  crema_flag flags[] = {
      {"images", CREMA_FLAG_STRING, &images, "idx3 image file (.gz ok) (required)", 0},
      {"labels", CREMA_FLAG_STRING, &labels, "idx1 label file (.gz ok) (required)", 0},
      {"out", CREMA_FLAG_STRING, &out, "output folder for the PNG files (created) (required)", 0},
      {"list", CREMA_FLAG_STRING, &list, "list file to write (default OUT/list.txt)", 0},
      {"count", CREMA_FLAG_INT, &count, "how many images (0 = all from offset)", 0},
      {"offset", CREMA_FLAG_INT, &offset, "index of the first image", 0},
      {"prefix", CREMA_FLAG_STRING, &prefix, "file name prefix", 0},
      {"folders", CREMA_FLAG_BOOL, &folders, "one sub-folder per class: OUT/<class name>/<file>", 0},
      {"class-names", CREMA_FLAG_STRING, &class_names, "comma-separated names by label (with --folders)", 0},
      {"classes", CREMA_FLAG_STRING, &classes, "keep only these labels, comma-separated (default: all)", 0},
      {"per-class", CREMA_FLAG_INT, &per_class, "at most N images of each class (0 = no limit)", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[2];
  int n_pos = 0;
  crema_error err;
  int rc = crema_flags_parse(argc, argv, 1, flags, n_flags, pos, 2, &n_pos, &err);
  if (rc == 1 || (rc == 0 && (!images || !labels || !out || n_pos))) {
    if (rc == 0) fprintf(stderr, "error: --images, --labels and --out are required\n");
    FILE *f = rc == 1 ? stdout : stderr;
    fprintf(f, "usage: idx_to_images --images=IDX3[.gz] --labels=IDX1[.gz] --out=DIR [flags]\n");
    crema_flags_print(f, flags, n_flags);
    return rc == 1 ? 0 : 2;
  }
  if (rc) {
    fprintf(stderr, "error: %s\n", err.msg);
    return 2;
  }
  if (count < 0 || offset < 0 || per_class < 0) {
    fprintf(stderr, "error: --count, --offset and --per-class must be >= 0\n");
    return 2;
  }
  /* label filter and names (labels are bytes) */
  bool keep[256];
  char names[256][64];
  long seen[256] = {0};
  for (int k = 0; k < 256; k++) {
    keep[k] = classes == NULL;
    snprintf(names[k], sizeof names[k], "%d", k);
  }
  for (const char *c = classes; c && *c;) {
    char *end;
    const long v = strtol(c, &end, 10);
    if (end == c || v < 0 || v > 255) {
      fprintf(stderr, "error: --classes %s: give labels 0-255, comma-separated\n", classes);
      return 2;
    }
    keep[v] = true;
    c = *end == ',' ? end + 1 : end;
  }
  for (int k = 0; class_names && *class_names && k < 256; k++) {
    const char *e = strchr(class_names, ',');
    const size_t l = e ? (size_t)(e - class_names) : strlen(class_names);
    snprintf(names[k], sizeof names[k], "%.*s", (int)(l < 63 ? l : 63), class_names);
    if (!e) break;
    class_names = e + 1;
  }
  uint8_t *img = NULL, *lab = NULL;
  size_t img_len = 0, lab_len = 0;
  if (read_maybe_gz(images, &img, &img_len, &err) || read_maybe_gz(labels, &lab, &lab_len, &err)) {
    fprintf(stderr, "error: %s\n", err.msg);
    free(img);
    return 1;
  }
  int status = 0;
  if (img_len < 16 || be32(img) != 0x803) {
    fprintf(stderr, "error: %s is not an idx3 image file (magic 0x00000803 expected)\n", images);
    status = 1;
  } else if (lab_len < 8 || be32(lab) != 0x801) {
    fprintf(stderr, "error: %s is not an idx1 label file (magic 0x00000801 expected)\n", labels);
    status = 1;
  }
  uint32_t n = 0, rows = 0, cols = 0;
  if (!status) {
    n = be32(img + 4);
    rows = be32(img + 8);
    cols = be32(img + 12);
    if (be32(lab + 4) != n) {
      fprintf(stderr, "error: %s has %u images but %s has %u labels\n", images, n, labels, be32(lab + 4));
      status = 1;
    } else if (img_len < 16 + (size_t)n * rows * cols || lab_len < 8 + (size_t)n) {
      fprintf(stderr, "error: %s or %s is truncated\n", images, labels);
      status = 1;
    } else if ((uint32_t)offset >= n || offset > (long)n) {
      fprintf(stderr, "error: --offset %ld is past the %u images\n", offset, n);
      status = 1;
    }
  }
  if (!status && mkdir(out, 0755) && errno != EEXIST) {
    fprintf(stderr, "error: cannot create %s: %s\n", out, strerror(errno));
    status = 1;
  }
  char list_path[4096];
  if (list)
    snprintf(list_path, sizeof list_path, "%s", list);
  else
    snprintf(list_path, sizeof list_path, "%s/list.txt", out);
  FILE *lf = status ? NULL : fopen(list_path, "w");
  if (!status && !lf) {
    fprintf(stderr, "error: cannot write %s: %s\n", list_path, strerror(errno));
    status = 1;
  }
  long end = count > 0 && offset + count < (long)n ? offset + count : (long)n;
  long written = 0;
  for (long i = offset; !status && i < end; i++) {
    const int label = lab[8 + i];
    if (!keep[label] || (per_class && seen[label] >= per_class)) continue;
    seen[label]++;
    crema_image im = {(int)cols, (int)rows, 1, img + 16 + (size_t)i * rows * cols};
    uint8_t *png = NULL;
    size_t png_len = 0;
    char name[256], path[4352];
    if (folders) {
      snprintf(path, sizeof path, "%s/%s", out, names[label]);
      if (mkdir(path, 0755) && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
        status = 1;
        break;
      }
      snprintf(name, sizeof name, "%s/%s_%05ld.png", names[label], prefix, i);
    } else {
      snprintf(name, sizeof name, "%s_%05ld.png", prefix, i);
    }
    snprintf(path, sizeof path, "%s/%s", out, name);
    /* Plain writes: thousands of small files, and a rerun rewrites them all anyway. */
    if (crema_image_encode(&im, "png", &png, &png_len, &err)) {
      fprintf(stderr, "error: %s\n", err.msg);
      status = 1;
    } else {
      FILE *f = fopen(path, "wb");
      if (!f || fwrite(png, 1, png_len, f) != png_len) {
        fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
        status = 1;
      }
      if (f && fclose(f) && !status) {
        fprintf(stderr, "error: cannot write %s\n", path);
        status = 1;
      }
    }
    free(png);
    if (!status) {
      fprintf(lf, "%s %d\n", name, lab[8 + i]);
      written++;
    }
  }
  if (lf && fclose(lf)) {
    fprintf(stderr, "error: writing %s failed\n", list_path);
    status = 1;
  }
  if (!status)
    printf("wrote %ld images (%ux%u) to %s and the list %s\n", written, cols, rows, out, list_path);
  free(img);
  free(lab);
  return status;
}
