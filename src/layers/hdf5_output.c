/* hdf5_output.c -- Caffe's "HDF5Output": writes its two bottoms to the HDF5 file
 * hdf5_output_param.file_name as the float datasets "data" (bottom 0) and "label" (bottom 1),
 * with the bottoms' shapes. The file is created (truncated) at setup. Each forward pass
 * replaces both datasets (Caffe fails on a second pass because the datasets exist), and the
 * file is flushed, so it always holds the latest batch. No tops, no gradient. Needs crema
 * built with HDF5. */
#include <stdlib.h>

#include "layers/layer.h"
#include "proto/hdf5_io.h"

static int hdf5_output_setup(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                             crema_error *err) {
  (void)bottom;
  (void)top;
  const Crema__HDF5OutputParameter *p = l->param->hdf5_output_param;
  if (!crema_hdf5_available())
    return crema_fail(err, "HDF5Output needs crema built with HDF5: install libhdf5-dev and rebuild");
  if (!p || !p->file_name || !*p->file_name)
    return crema_fail(err, "hdf5_output_param { file_name: \"out.h5\" } is required");
  crema_hdf5_writer *w = NULL;
  if (crema_hdf5_writer_open(p->file_name, &w, err)) return -1;
  l->state = w;
  return 0;
}

static int hdf5_output_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err) {
  (void)l;
  (void)top;
  if (crema_blob_legacy_dim(bottom[0], 0) != crema_blob_legacy_dim(bottom[1], 0))
    return crema_fail(err, "data and label need the same first dimension, got %d and %d",
                      crema_blob_legacy_dim(bottom[0], 0), crema_blob_legacy_dim(bottom[1], 0));
  return 0;
}

static int hdf5_output_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                               crema_error *err) {
  (void)top;
  crema_hdf5_writer *w = l->state;
  if (crema_hdf5_writer_put(w, "data", bottom[0]->num_axes, bottom[0]->shape, bottom[0]->data, err))
    return -1;
  return crema_hdf5_writer_put(w, "label", bottom[1]->num_axes, bottom[1]->shape, bottom[1]->data, err);
}

static void hdf5_output_free(crema_layer *l) { crema_hdf5_writer_close(l->state); }

const crema_layer_ops crema_hdf5_output_ops = {
    .type = "HDF5Output",
    .min_bottoms = 2,
    .max_bottoms = 2,
    .min_tops = 0,
    .max_tops = 0,
    .setup = hdf5_output_setup,
    .reshape = hdf5_output_reshape,
    .forward = hdf5_output_forward,
    .free_state = hdf5_output_free,
};
