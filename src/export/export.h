/* export.h -- turning a trained net into files for deployment: a deploy net, BatchNorm folded
 * into the layer before it, a weights-only caffemodel, and an ONNX model.
 *
 * What this module promises:
 *  - Net surgery works on messages: every function takes a Crema__NetParameter it does not
 *    change and returns a NEW message (the caller frees it with crema_message_free), so each
 *    step can be tested, printed and written on its own.
 *  - A "model" here is a NetParameter whose layers carry their weight blobs (the layout of a
 *    caffemodel, with every layer's full parameters): crema_export_attach_weights makes one,
 *    crema_export_fold_batchnorm changes one, crema_export_strip_blobs turns one back into a
 *    prototxt.
 *  - Outputs keep the outputs of the net: folding changes values only by rounding (checked to
 *    1e-5 relative in the tests), and the ONNX graph computes what crema's forward pass does.
 *  - It never writes files except through crema_export_write_onnx, which writes atomically
 *    (temp file + rename). It never prints; what it did is returned in report structs.
 *  - A layer that cannot be expressed (in a deploy net, or in ONNX) is an error that names the
 *    layer and its type, never a silent approximation. */
#ifndef CREMA_EXPORT_EXPORT_H
#define CREMA_EXPORT_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

#define CREMA_EXPORT_MAX_REPORT 256

typedef struct crema_deploy_options {
  int batch;          /* first dim of the Input layer; 0 keeps a deploy net's own, else 1 */
  const char *source; /* file name used in error messages (may be NULL) */
} crema_deploy_options;

/* What deploy extraction did, for the tool to print. */
typedef struct crema_deploy_report {
  int removed;           /* layers dropped (other phase, Accuracy, Silence, Dropout, ...) */
  int pruned;            /* layers that no longer lead to the output (auxiliary heads) */
  char input_layer[128]; /* the Input layer's name */
  int input_shape[4];    /* its shape (N, C, H, W) */
  char output[128];      /* the output blob ("prob" when a loss was turned into it) */
  bool had_transform;    /* the data layer had a transform_param or an ImageData resize */
  /* Its deploy-time preprocessing (a preprocess.prototxt message: no mirror or augment,
   * ImageData's new_height/new_width as resize_height/resize_width), or NULL; freed by
   * crema_deploy_report_free. */
  Crema__TransformationParameter *transform;
} crema_deploy_report;
void crema_deploy_report_free(crema_deploy_report *r);

/* Deploy net from a train_val (or deploy) net:
 *  - layers of the TEST phase only (include/exclude rules applied, rules removed);
 *  - the data layer (Data, ImageData, MemoryData, DummyData or Input) becomes one Input layer
 *    with its first top and shape (batch, channels, crop size or image size); a Data layer's
 *    channels and size come from the first record of its LMDB, an ImageData's from its first
 *    image when new_height/new_width and crop_size do not say;
 *  - the main loss (largest loss_weight) becomes Softmax `prob` (SoftmaxWithLoss) or Sigmoid
 *    `prob` (SigmoidCrossEntropyLoss); other losses, Accuracy and Silence are removed, and so
 *    are layers that then lead nowhere (GoogLeNet's auxiliary classifiers);
 *  - Dropout (the identity at test time) is removed, its top renamed to its bottom;
 *  - in-place chains stay in place; blobs are removed.
 * A layer still reading the label after that is an error naming it. The report (may be NULL)
 * says what was done; free it with crema_deploy_report_free. */
int crema_export_deploy(const Crema__NetParameter *net, const crema_deploy_options *opt,
                        Crema__NetParameter **out, crema_deploy_report *report, crema_error *err);

/* A model: the deploy net with every parameter layer's blobs taken, by layer name, from
 * `weights` (a caffemodel). The blobs are checked against the shapes the net builds; a layer
 * with parameters but no weights in `weights` is an error naming it (an export never ships
 * filler values). No diffs are kept. */
int crema_export_attach_weights(const Crema__NetParameter *deploy, const Crema__NetParameter *weights,
                                Crema__NetParameter **out, crema_error *err);

/* The model without blobs (the prototxt to ship). */
int crema_export_strip_blobs(const Crema__NetParameter *model, Crema__NetParameter **out, crema_error *err);

/* Number of float values in all blobs of a model. */
size_t crema_export_count_params(const Crema__NetParameter *model);

/* What folding did. */
typedef struct crema_fold_report {
  int n_folded;                         /* BatchNorm layers folded */
  int n_scale;                          /* Scale layers folded with them */
  int n_kept;                           /* BatchNorm layers that could not be folded */
  char folded[CREMA_EXPORT_MAX_REPORT]; /* "bn1 (+scale1) into conv1, ..." (truncated) */
  char kept[CREMA_EXPORT_MAX_REPORT];   /* "bn3: conv3 also feeds pool3, ..." */
} crema_fold_report;

/* Folds each BatchNorm (in TEST form: global statistics) and the Scale right after it into
 * the Convolution or InnerProduct before it, when that layer's output feeds only the
 * BatchNorm (and the BatchNorm's only the Scale):
 *   s = 1 / factor (0 when the stored factor is 0, as Caffe does), mean = s*m, var = s*v,
 *   a = gamma / sqrt(var + eps);  W' = a * W (per output);  b' = a * (b - mean) + beta.
 * A BatchNorm that uses batch statistics at test time (use_global_stats: false) is kept.
 * A convolution without a bias gets one. report may be NULL. */
int crema_export_fold_batchnorm(const Crema__NetParameter *model, Crema__NetParameter **out,
                                crema_fold_report *report, crema_error *err);

/* Feeds both models (nets with blobs) the same seeded N(0, 1) input and returns in *max_rel the
 * largest |a - b| over every blob both nets name alike (outputs and intermediate ones),
 * relative to that blob's largest |a|. Errors when a model does not build, the inputs differ
 * in size, or no blob is common. */
int crema_export_compare(const Crema__NetParameter *a, const Crema__NetParameter *b, uint64_t seed,
                         double *max_rel, crema_error *err);

typedef struct crema_onnx_options {
  int opset;            /* 11..13; 0 = 13 */
  const char *producer; /* producer_name; NULL = "crema" */
} crema_onnx_options;

/* Writes `model` (a deploy net with weights, one Input) as an ONNX model at path, atomically.
 * One graph input per Input layer (named as its top), one graph output per net output (the
 * deploy's `prob`). Shapes are taken from building the net, so Caffe's ceil rounding of
 * pooling becomes explicit end padding. A layer it cannot express is an error naming it.
 * *n_nodes (may be NULL) gets the number of ONNX nodes written. */
int crema_export_write_onnx(const Crema__NetParameter *model, const crema_onnx_options *opt, const char *path,
                            int *n_nodes, crema_error *err);

#endif
