/* hdf5_io.h -- Caffe's HDF5 files: snapshots (.caffemodel.h5, .solverstate.h5) and the
 * data sets of its HDF5Data/HDF5Output layers.
 *
 * Layouts, as Caffe 1.0 writes and reads them:
 *   caffemodel.h5:  group /data, one group per layer (named as the layer), one float dataset
 *                   per parameter blob named "0", "1", ... with the blob's shape.
 *   solverstate.h5: scalar int datasets /iter and /current_step, a string dataset
 *                   /learned_net, and group /history with float datasets "0", "1", ...
 *                   crema adds /crema_state (bytes: its own SolverState fields, packed as the
 *                   protobuf message), which Caffe never looks at.
 *   data sets:      float (or integer, converted) datasets of any rank >= 1.
 * Snapshots go through the same messages as binaryproto ones (NetParameter with layer names
 * and blobs; SolverState), so everything downstream is shared. Writers write a temporary file
 * and rename it into place.
 *
 * HDF5 is optional (Debian libhdf5-dev, found by CMake). Built without it, every function
 * fails with an error saying so and crema_hdf5_available() is false. */
#ifndef CREMA_PROTO_HDF5_IO_H
#define CREMA_PROTO_HDF5_IO_H

#include <stdbool.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

bool crema_hdf5_available(void);
/* True when the name ends in ".h5" (Caffe's test for an HDF5 snapshot). */
bool crema_hdf5_is_h5_name(const char *path);

/* A NetParameter holding only layer names and blobs (what copy-by-name needs). The caller
 * frees with crema_message_free. */
int crema_hdf5_read_net(const char *path, Crema__NetParameter **out, crema_error *err);
/* Writes the layers of np (every layer gets its group, as in Caffe; blobs as datasets). */
int crema_hdf5_write_net(const char *path, const Crema__NetParameter *np, crema_error *err);

int crema_hdf5_read_solverstate(const char *path, Crema__SolverState **out, crema_error *err);
int crema_hdf5_write_solverstate(const char *path, const Crema__SolverState *st, crema_error *err);

#define CREMA_HDF5_MAX_AXES 32 /* Caffe's kMaxBlobAxes */

/* Reads dataset `name` of the file, converting to float: its shape in *num_axes and
 * shape[0 .. *num_axes), its values in *data (malloc'd; the caller frees). */
int crema_hdf5_read_floats(const char *path, const char *name, int *num_axes, int shape[CREMA_HDF5_MAX_AXES],
                           float **data, crema_error *err);

/* An HDF5 file written by HDF5Output: created (truncated) on open; each put replaces the
 * dataset of that name. */
typedef struct crema_hdf5_writer crema_hdf5_writer;
int crema_hdf5_writer_open(const char *path, crema_hdf5_writer **out, crema_error *err);
int crema_hdf5_writer_put(crema_hdf5_writer *w, const char *name, int num_axes, const int *shape,
                          const float *data, crema_error *err);
void crema_hdf5_writer_close(crema_hdf5_writer *w);

#endif
