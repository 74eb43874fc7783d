/* recipe.h -- finetuning as net surgery on messages.
 *
 * What this module promises:
 *   - every function is pure: it reads its input messages and returns NEW messages (the
 *     caller frees them with crema_message_free); inputs are never modified;
 *   - nothing here runs a net, touches a data set or reads a file: the results can be
 *     printed with the text-format printer, read by a person, and tested on their own;
 *   - errors name the layer (and what to pass on the command line to get past them).
 * What it logs: which heads it found, renamed and re-initialised, and which layers it froze
 * (CREMA_INFO lines, like `crema train` logs the weights it copies).
 *
 * The recipe, in the order `crema finetune` applies it:
 *   crema_recipe_find_heads       the classifier layer(s) feeding the final Softmax / losses
 *   crema_recipe_train_val        base net (deploy or train_val) -> train_val on new LMDBs
 *   crema_recipe_replace_heads    rename, num_output = classes, fresh filler, lr_mult boost
 *   crema_recipe_freeze_*         lr_mult 0 (BatchNorm: stored statistics)
 *   crema_recipe_deploy           train_val -> deploy (Input, Softmax "prob")
 *   crema_recipe_solver           a default solver, or the user's adapted
 *   crema_recipe_strip_crema_fields  only what BVLC Caffe's parser accepts (--caffe) */
#ifndef CREMA_RECIPE_RECIPE_H
#define CREMA_RECIPE_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "base/error.h"
#include "proto/crema.pb-c.h"

/* The classifier heads of a net: for each final layer (every SoftmaxWithLoss, else the last
 * Softmax), the last layer with parameters on the path back from its input, which must be an
 * InnerProduct, or a 1x1 Convolution followed (later on the path) by a global pooling.
 * Layers without parameters (ReLU, Dropout, Pooling, Flatten, ...) are walked through.
 * GoogLeNet's train_val gives its three heads. *names is a malloc'd array of malloc'd
 * names (free with crema_recipe_free_names), in net order, without duplicates. */
int crema_recipe_find_heads(const Crema__NetParameter *net, char ***names, int *n, crema_error *err);
void crema_recipe_free_names(char **names, int n);

/* Whether a net is a deploy net: it has no loss layer (no SoftmaxWithLoss) and no
 * Data/ImageData layer. */
bool crema_recipe_is_deploy(const Crema__NetParameter *net);

/* The input of a deploy net: channels, height and width of its first Input layer's shape.
 * Fails when there is no 4-d Input. */
int crema_recipe_input_shape(const Crema__NetParameter *net, int *c, int *h, int *w, crema_error *err);

/* Where the new data comes from. */
typedef struct crema_recipe_data {
  const char *train_source, *val_source;           /* LMDB paths, written as given */
  int train_batch, val_batch;                      /* > 0 */
  const Crema__TransformationParameter *transform; /* crop, mean, scale (crema's deploy-only
                                                    * fields resize_* and channel_order are left
                                                    * out of the net); NULL = none */
  bool mirror;                                     /* random mirror in TRAIN */
} crema_recipe_data;

/* Base net -> train_val: every data layer (Input, Data, ImageData, ...) is replaced by two
 * Data layers (TRAIN and TEST, LMDB) with the base's data top names ("data", "label" when
 * it has none). A deploy net's final Softmax becomes SoftmaxWithLoss "loss" plus Accuracy
 * "accuracy" (TEST), and "accuracy_top5" (top_k 5) when num_classes >= 10. Accuracy layers
 * whose top_k exceeds num_classes are dropped. Heads are not touched here. */
int crema_recipe_train_val(const Crema__NetParameter *base, const crema_recipe_data *data, int num_classes,
                           Crema__NetParameter **out, crema_error *err);

typedef struct crema_recipe_head_options {
  int num_classes;    /* > 0 */
  const char *suffix; /* appended to each head's name ("_ft"); must be non-empty */
  float lr_boost;     /* weights' lr_mult x this, the bias's 2 x this (> 0) */
} crema_recipe_head_options;

/* Each named head: renamed <name><suffix> (so copying weights by name leaves it to its
 * filler), num_output = num_classes, weight_filler xavier and bias_filler constant 0, stored
 * blobs dropped, ParamSpec names cleared, lr_mult = (its own or 1) x lr_boost for the
 * weights and (its own or 2) x lr_boost for the bias. A name that is not an InnerProduct or
 * Convolution of the net is an error. */
int crema_recipe_replace_heads(const Crema__NetParameter *net, char *const *heads, int n,
                               const crema_recipe_head_options *opt, Crema__NetParameter **out,
                               crema_error *err);

/* lr_mult 0 for every parameter of every layer up to and including `layer` (in net order);
 * frozen BatchNorm layers get use_global_stats true. An unknown layer is an error. */
int crema_recipe_freeze_through(const Crema__NetParameter *net, const char *layer, Crema__NetParameter **out,
                                crema_error *err);
/* The same for every layer with parameters except the named ones (`--train head`). */
int crema_recipe_train_only(const Crema__NetParameter *net, char *const *keep, int n_keep,
                            Crema__NetParameter **out, crema_error *err);

/* The same for the layers named NAME or matching PREFIX* (`--freeze`, as `crema train`'s).
 * A pattern that matches no layer is an error. */
int crema_recipe_freeze_matching(const Crema__NetParameter *net, char *const *patterns, int n,
                                 Crema__NetParameter **out, crema_error *err);

/* train_val -> deploy: data layers become one Input "data" of shape (1, c, h, w); losses,
 * accuracies and layers reading the label go; Softmax "prob" is added on the input of the
 * last SoftmaxWithLoss; layers that do not lead to "prob" (auxiliary heads) are pruned. */
int crema_recipe_deploy(const Crema__NetParameter *train_val, int c, int h, int w, Crema__NetParameter **out,
                        crema_error *err);

typedef struct crema_recipe_solver_options {
  const Crema__SolverParameter *base; /* NULL = crema's default recipe */
  const char *net;                    /* the train_val path as written into `net` */
  float lr;                           /* > 0 sets base_lr; else 0.001, or the base's x 0.1 */
  int max_iter, test_iter, test_interval, display, snapshot; /* > 0 */
  const char *snapshot_prefix;
  const char *schedule; /* "step" (stepsize = 3/4 of max_iter, gamma 0.1), "cosine", or NULL:
                         * the base's, else step */
  int patience;         /* > 0: early stopping on "accuracy" (crema only) */
  bool has_seed;
  int64_t seed;
  bool caffe; /* only what BVLC Caffe reads: no crema fields; "cosine" is an error */
} crema_recipe_solver_options;

/* Default: SGD, momentum 0.9, weight_decay 5e-4, test_initialization false, CPU. With a
 * base: its update rule and settings, with its nets replaced by `net`, base_lr x 0.1 unless
 * lr is given, and iterations, tests and snapshots from the options. */
int crema_recipe_solver(const crema_recipe_solver_options *opt, Crema__SolverParameter **out,
                        crema_error *err);

/* Clears, recursively and in place, every field numbered >= 1000 (crema's own), so BVLC
 * Caffe's text parser reads the message. */
void crema_recipe_strip_crema_fields(ProtobufCMessage *m);
/* Whether any field numbered >= 1000 is set anywhere in m; `where` (may be NULL) gets the
 * first one's name. */
bool crema_recipe_has_crema_fields(const ProtobufCMessage *m, char *where, size_t where_size);

#endif
