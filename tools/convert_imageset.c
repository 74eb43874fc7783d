/* convert_imageset -- a folder of images and a "<path> <label>" list -> an LMDB of Datums,
 * with Caffe's flags, defaults, keys and record layout (see src/data/convert.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "common/flags.h"
#include "common/progress.h"
#include "common/tool.h"
#include "data/convert.h"
#include "data/image_probe.h"

static const char USAGE[] =
    "Converts a set of images to the lmdb format used as input for Caffe and crema.\n"
    "Usage:\n"
    "    convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME\n"
    "LISTFILE has one \"<path> <label>\" per line; paths are relative to ROOTFOLDER/\n"
    "(joined as written) and may contain spaces. DB_NAME must not exist.\n";

static void on_progress(void *ctx, size_t done, size_t total) {
  crema_progress *p = ctx;
  p->total = total;
  crema_progress_update(p, done);
}

static void on_skip(void *ctx, const char *path, const char *reason) {
  crema_progress *p = ctx;
  (void)path;
  if (p->tty && p->drawn) { /* finish the bar's line so the warning does not land inside it */
    fputc('\n', stderr);
    p->drawn = false;
  }
  CREMA_WARN("skipped: %s", reason);
}

int main(int argc, char **argv) {
  crema_tool_init(argc, argv);
  bool gray = false, shuffle = false, check_size = false, encoded = false;
  const char *backend = "lmdb", *encode_type = "";
  long resize_width = 0, resize_height = 0, seed = 0, max_pixels = (long)CREMA_IMAGE_DEFAULT_MAX_PIXELS;
  crema_flag flags[] = {
      {"gray", CREMA_FLAG_BOOL, &gray, "When this option is on, treat images as grayscale ones", 0},
      {"shuffle", CREMA_FLAG_BOOL, &shuffle, "Randomly shuffle the order of images and their labels", 0},
      {"seed", CREMA_FLAG_INT, &seed, "Seed of the shuffle (the same seed gives the same order)", 0},
      {"backend", CREMA_FLAG_STRING, &backend, "The backend {lmdb, leveldb} for storing the result", 0},
      {"resize_width", CREMA_FLAG_INT, &resize_width, "Width images are resized to (with resize_height)", 0},
      {"resize_height", CREMA_FLAG_INT, &resize_height, "Height images are resized to (with resize_width)",
       0},
      {"check_size", CREMA_FLAG_BOOL, &check_size,
       "When this option is on, check that all the datum have the same size", 0},
      {"encoded", CREMA_FLAG_BOOL, &encoded,
       "When this option is on, the encoded image will be save in datum", 0},
      {"encode_type", CREMA_FLAG_STRING, &encode_type,
       "Optional: What type should we encode the image as ('png','jpg')", 0},
      {"max_pixels", CREMA_FLAG_INT, &max_pixels,
       "Images of more pixels (width x height) are refused as decompression bombs", 0},
  };
  const int n_flags = (int)(sizeof flags / sizeof flags[0]);
  char *pos[3];
  int n_pos = 0;
  int rc = crema_flags_command(argc, argv, USAGE, flags, n_flags, pos, 3, 3, &n_pos);
  if (rc >= 0) return rc;
  crema_error err = {{0}};
  if ((rc = crema_flag_check_range("resize_width", 0, 65535, USAGE, flags, n_flags)) ||
      (rc = crema_flag_check_range("resize_height", 0, 65535, USAGE, flags, n_flags)) ||
      (rc = crema_flag_check_range("max_pixels", 1, INT_MAX, USAGE, flags, n_flags)))
    return rc;
  crema_image_set_max_pixels((uint64_t)max_pixels);
  if (*encode_type && !encoded) CREMA_INFO("encode_type specified, assuming encoded=true.");
  const size_t root_len = strlen(pos[0]);
  struct stat st;
  if (root_len && pos[0][root_len - 1] != '/' && stat(pos[0], &st) == 0 && S_ISDIR(st.st_mode))
    CREMA_WARN(
        "ROOTFOLDER \"%s\" has no trailing '/': paths are joined to it as written (as Caffe does), e.g. "
        "\"%sexample.jpg\"",
        pos[0], pos[0]);

  crema_progress prog;
  crema_progress_start(&prog, "convert_imageset", "images", 0);
  crema_convert_options o = {
      .root = pos[0],
      .list_file = pos[1],
      .db_path = pos[2],
      .backend = backend,
      .gray = gray,
      .shuffle = shuffle,
      .seed = (uint64_t)seed,
      .check_size = check_size,
      .encoded = encoded,
      .encode_type = encode_type,
      .resize_width = (int)resize_width,
      .resize_height = (int)resize_height,
      .progress = on_progress,
      .skipped = on_skip,
      .ctx = &prog,
  };
  crema_convert_result res;
  CREMA_INFO("Converting images listed in %s (root %s) into %s%s", o.list_file, o.root, o.db_path,
             shuffle ? ", shuffled" : "");
  /* The total is known once the list is read; start with 0 and let the first update fix it. */
  prog.total = 0;
  if (crema_convert_imageset(&o, &res, &err)) {
    if (prog.drawn) fputc('\n', stderr);
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
  }
  double secs = crema_progress_finish(&prog, res.lines);
  CREMA_INFO("A total of %zu images: %zu written, %zu skipped (%.1f s, %.1f images/s) -> %s", res.lines,
             res.written, res.skipped, secs, secs > 0 ? res.lines / secs : 0.0, o.db_path);
  printf("%zu written, %zu skipped\n", res.written, res.skipped);
  return 0;
}
