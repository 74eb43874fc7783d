/* npy.h -- NumPy .npy files (format 1.0-3.0), the way arrays move between crema's tools and
 * Python: np.save("x.npy", a.astype(np.float32)) -> crema forward --input data=x.npy.
 *
 * Reading accepts little-endian float32 ('<f4') and float64 ('<f8', converted to float) in
 * C order; anything else (integers, big-endian, Fortran order, object arrays) is an error
 * that says how to convert the array. Writing produces format 1.0, '<f4', C order, written
 * atomically (temp file + rename). */
#ifndef CREMA_TOOLS_NPY_H
#define CREMA_TOOLS_NPY_H

#include <stddef.h>

#include "base/error.h"
#include "tensor/blob.h"

/* Parses the .npy bytes in buf (len bytes): fills num_axes/shape and stores a freshly
 * malloc'd float copy of the data in *data (caller frees). `name` is used in errors. */
int crema_npy_parse(const void *buf, size_t len, const char *name, int *num_axes, int shape[CREMA_MAX_AXES],
                    float **data, crema_error *err);
/* Reads path into blob b: b is reshaped to the array's shape and its data overwritten. */
int crema_npy_read(const char *path, crema_blob *b, crema_error *err);
/* Serialises an array as .npy bytes into a malloc'd buffer (*out, *len; caller frees). */
int crema_npy_format(int num_axes, const int *shape, const float *data, void **out, size_t *len,
                     crema_error *err);
/* Writes b's data (shape b->shape) to path as float32 .npy, atomically. */
int crema_npy_write(const char *path, const crema_blob *b, crema_error *err);

#endif
