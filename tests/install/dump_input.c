/* dump_input.c -- for scripts/test_install.sh: preprocesses an image with a run folder's
 * stored preprocessing through the installed C API and writes the first input blob as a
 * NumPy .npy file (float32, C order), so `crema forward` can run the same input.
 *
 *   dump_input RUN_DIR IMAGE OUT.npy */
#include <stdio.h>
#include <string.h>

#include <crema/crema.h>

/* Writes an .npy version 1.0 file: magic, header dict padded to 64 bytes, raw floats. */
static int write_npy(const char *path, const int *dims, int ndim, const float *data, size_t count) {
  char dict[256];
  int used = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  for (int i = 0; i < ndim; i++) used += snprintf(dict + used, sizeof dict - (size_t)used, "%d, ", dims[i]);
  used += snprintf(dict + used, sizeof dict - (size_t)used, "), }");
  int total = 10 + used + 1;
  int pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  unsigned hlen = (unsigned)(used + pad + 1);
  unsigned char head[10] = {
      0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  fwrite(head, 1, sizeof head, f);
  fwrite(dict, 1, (size_t)used, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  fwrite(data, sizeof(float), count, f);
  return fclose(f);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s RUN_DIR IMAGE OUT.npy\n", argv[0]);
    return 2;
  }
  crema_set_log_level(1);
  crema_model *m = NULL;
  if (crema_model_load_run(argv[1], &m) != CREMA_OK) {
    fprintf(stderr, "error: %s\n", crema_last_error());
    return 1;
  }
  const char *input = crema_model_input_name(m, 0);
  int ndim, dims[CREMA_MAX_DIMS];
  const float *data;
  size_t count;
  int rc = 1;
  if (crema_model_blob_shape(m, input, &ndim, dims) == CREMA_OK) {
    dims[0] = 1;
    if (crema_model_reshape_input(m, input, ndim, dims) == CREMA_OK &&
        crema_model_set_input_image_file(m, 0, argv[2]) == CREMA_OK &&
        crema_model_blob_data(m, input, &data, &count) == CREMA_OK)
      rc = write_npy(argv[3], dims, ndim, data, count) ? 1 : 0;
  }
  if (rc) fprintf(stderr, "error: %s\n", crema_last_error());
  crema_model_free(m);
  return rc;
}
