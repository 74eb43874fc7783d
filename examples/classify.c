/* classify.c -- classify an image with an exported model, through crema's C API.
 *
 *   classify RUN_DIR IMAGE [TOP_K]
 *
 * RUN_DIR is a folder written by `crema export` or `crema finetune` (deploy.prototxt, the
 * weights, preprocess.prototxt, labels.txt). Prints one line per class, best first:
 *   rank class probability label
 * Build: cc classify.c $(pkg-config --cflags --libs crema) -o classify */
#include <stdio.h>
#include <stdlib.h>

#include <crema/crema.h>

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s RUN_DIR IMAGE [TOP_K (5)]\n", argv[0]);
    return 2;
  }
  int k = argc == 4 ? atoi(argv[3]) : 5;
  if (k < 1 || k > 1000) {
    fprintf(stderr, "error: TOP_K must be 1..1000, got \"%s\"\n", argv[3]);
    return 2;
  }
  crema_set_log_level(1); /* warnings and errors only */
  crema_model *model = NULL;
  if (crema_model_load_run(argv[1], &model) != CREMA_OK) {
    fprintf(stderr, "error: %s\n", crema_last_error());
    return 1;
  }
  crema_class *top = calloc((size_t)k, sizeof *top);
  int n = 0;
  crema_status s = top ? crema_model_classify_file(model, argv[2], k, top, &n) : CREMA_ERR_MEMORY;
  if (s != CREMA_OK) {
    fprintf(stderr, "error: %s (%s)\n", crema_last_error(), crema_strerror(s));
  } else {
    for (int i = 0; i < n; i++)
      printf("%d %d %.9g %s\n", i + 1, top[i].index, top[i].prob, top[i].label ? top[i].label : "");
  }
  free(top);
  crema_model_free(model);
  return s == CREMA_OK ? 0 : 1;
}
