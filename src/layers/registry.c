/* registry.c -- Caffe's layer type strings mapped to crema's implementations.
 * Adding a layer type = one file in src/layers/ + one line here + its gradient check. */
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "layers/layer.h"

/* ---- data and inputs (declarations) */
extern const crema_layer_ops crema_input_ops, crema_dummy_data_ops;
extern const crema_layer_ops crema_data_ops, crema_image_data_ops;
/* ---- vision: convolution, pooling, inner product, LRN (declarations) */
extern const crema_layer_ops crema_convolution_ops, crema_deconvolution_ops, crema_pooling_ops,
    crema_inner_product_ops, crema_lrn_ops;
/* ---- activations, per-element and normalisation layers (declarations) */
extern const crema_layer_ops crema_relu_ops, crema_prelu_ops, crema_rrelu_ops, crema_elu_ops,
    crema_sigmoid_ops, crema_tanh_ops, crema_absval_ops, crema_power_ops, crema_dropout_ops,
    crema_batch_norm_ops, crema_scale_ops, crema_bias_ops;
/* ---- losses, softmax, accuracy, structural layers (declarations) */
extern const crema_layer_ops crema_softmax_ops, crema_softmax_loss_ops, crema_euclidean_loss_ops,
    crema_sigmoid_cross_entropy_loss_ops, crema_accuracy_ops, crema_concat_ops, crema_slice_ops,
    crema_split_ops, crema_eltwise_ops, crema_flatten_ops, crema_reshape_ops, crema_silence_ops,
    crema_argmax_ops;
/* ---- the rest of BVLC Caffe's catalogue (declarations) */
extern const crema_layer_ops crema_exp_ops, crema_log_ops, crema_bnll_ops, crema_threshold_ops,
    crema_clip_ops, crema_swish_ops, crema_tile_ops, crema_reduction_ops, crema_parameter_ops,
    crema_filter_ops, crema_batch_reindex_ops, crema_embed_ops, crema_crop_ops, crema_mvn_ops,
    crema_im2col_ops, crema_spp_ops, crema_hinge_loss_ops, crema_infogain_loss_ops,
    crema_contrastive_loss_ops, crema_multinomial_logistic_loss_ops, crema_hdf5_data_ops,
    crema_hdf5_output_ops, crema_rnn_ops, crema_lstm_ops, crema_lstm_unit_ops, crema_permute_ops,
    crema_normalize_ops, crema_prior_box_ops, crema_detection_output_ops;

static const crema_layer_ops *const REGISTRY[] = {
    /* ---- data and inputs (rows) */
    &crema_input_ops,
    &crema_dummy_data_ops,
    &crema_data_ops,
    &crema_image_data_ops,
    /* ---- vision (rows) */
    &crema_convolution_ops,
    &crema_deconvolution_ops,
    &crema_pooling_ops,
    &crema_inner_product_ops,
    &crema_lrn_ops,
    /* ---- activations (rows) */
    &crema_relu_ops,
    &crema_prelu_ops,
    &crema_rrelu_ops,
    &crema_elu_ops,
    &crema_sigmoid_ops,
    &crema_tanh_ops,
    &crema_absval_ops,
    &crema_power_ops,
    &crema_dropout_ops,
    &crema_batch_norm_ops,
    &crema_scale_ops,
    &crema_bias_ops,
    /* ---- losses and structure (rows) */
    &crema_softmax_ops,
    &crema_softmax_loss_ops,
    &crema_euclidean_loss_ops,
    &crema_sigmoid_cross_entropy_loss_ops,
    &crema_accuracy_ops,
    &crema_concat_ops,
    &crema_slice_ops,
    &crema_split_ops,
    &crema_eltwise_ops,
    &crema_flatten_ops,
    &crema_reshape_ops,
    &crema_silence_ops,
    &crema_argmax_ops,
    /* ---- the rest of BVLC Caffe's catalogue (rows) */
    &crema_exp_ops,
    &crema_log_ops,
    &crema_bnll_ops,
    &crema_threshold_ops,
    &crema_clip_ops,
    &crema_swish_ops,
    &crema_tile_ops,
    &crema_reduction_ops,
    &crema_parameter_ops,
    &crema_filter_ops,
    &crema_batch_reindex_ops,
    &crema_embed_ops,
    &crema_crop_ops,
    &crema_mvn_ops,
    &crema_im2col_ops,
    &crema_spp_ops,
    &crema_hinge_loss_ops,
    &crema_infogain_loss_ops,
    &crema_contrastive_loss_ops,
    &crema_multinomial_logistic_loss_ops,
    &crema_hdf5_data_ops,
    &crema_hdf5_output_ops,
    &crema_rnn_ops,
    &crema_lstm_ops,
    &crema_lstm_unit_ops,
    /* ---- SSD's inference layers (weiliu89/caffe) */
    &crema_permute_ops,
    &crema_normalize_ops,
    &crema_prior_box_ops,
    &crema_detection_output_ops,
};

/* BVLC Caffe's types that cannot exist outside Caffe's own process, and why. */
static const struct {
  const char *type, *why;
} REFUSED[] = {
    {"Python", "it runs Python code inside Caffe's process (a Caffe Python module); port the layer to C or "
               "compute its output beforehand"},
    {"MemoryData",
     "it is fed arrays by a program linked against Caffe (pycaffe/C++ set_input_arrays); use an "
     "Input layer and feed the blob through crema's library or `crema forward --input`"},
    {"WindowData",
     "it is the legacy R-CNN window-file reader, tied to Caffe's R-CNN scripts; convert the windows "
     "to an image list (ImageData) or an LMDB"},
};

const char *crema_layer_refused_reason(const char *type) {
  for (size_t i = 0; i < CREMA_ARRAY_LEN(REFUSED); i++)
    if (type && !strcmp(REFUSED[i].type, type)) return REFUSED[i].why;
  return NULL;
}

const crema_layer_ops *crema_layer_lookup(const char *type) {
  for (size_t i = 0; i < CREMA_ARRAY_LEN(REGISTRY); i++)
    if (!strcmp(REGISTRY[i]->type, type)) return REGISTRY[i];
  return NULL;
}

int crema_layer_type_count(void) { return (int)CREMA_ARRAY_LEN(REGISTRY); }

const crema_layer_ops *crema_layer_type_at(int k) {
  return k >= 0 && (size_t)k < CREMA_ARRAY_LEN(REGISTRY) ? REGISTRY[k] : NULL;
}

void crema_layer_type_list(char *buf, size_t size) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < CREMA_ARRAY_LEN(REGISTRY) && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", REGISTRY[i]->type);
}
