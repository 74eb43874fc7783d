/* layer.h -- the layer vtable and the layer object every layer type fills in.
 *
 * A layer type is one file in src/layers/ that defines a `const crema_layer_ops` and one row
 * in registry.c mapping Caffe's type string to it. The net (or a test) creates a layer with
 * crema_layer_create, then crema_layer_setup (which calls ops->setup then ops->reshape),
 * then calls forward/backward as often as it likes, calling crema_layer_reshape whenever a
 * bottom's shape may have changed. crema_layer_free releases everything the layer owns.
 *
 * Conventions every layer follows (they are what make nets, solvers and tests compose):
 *  - forward writes every top completely. backward OVERWRITES bottom diffs (only those with
 *    propagate_down[i] true) and ACCUMULATES (+=) into parameter diffs (only those with
 *    l->param_propagate_down[i] true) -- the solver zeroes parameter diffs once per
 *    iteration, which gives iter_size accumulation and shared parameters for free (a layer
 *    may instead write a diff the net marked as zero: overwrites_pending_diffs below).
 *  - In-place (top[0] == bottom[0], same blob pointer) is allowed only for types whose ops
 *    set allow_inplace; their backward must read what it needs from top data or state.
 *  - Loss layers produce a 1-element top; the net seeds its diff with the loss weight, and
 *    backward scales by top[0]->diff[0].
 *  - No allocation in forward/backward: buffers are sized in setup/reshape (grow-only).
 *  - Randomness only from l->rng (seeded by the creator), so runs are reproducible.
 *  - forward may fail (a data layer meeting a corrupt record); it then fills err and
 *    returns -1. Compute layers just return 0. */
#ifndef CREMA_LAYERS_LAYER_H
#define CREMA_LAYERS_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/rng.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"
#include "tensor/math.h"
#include "tensor/workspace.h"

#define CREMA_LAYER_MAX_BLOBS 8 /* learnable/stat parameter blobs per layer */

typedef struct crema_layer crema_layer;

typedef struct crema_layer_ops {
  const char *type; /* Caffe's type string, e.g. "Convolution" */
  /* Arity, checked generically before setup. -1 = no limit. */
  int min_bottoms, max_bottoms, min_tops, max_tops;
  bool allow_inplace;
  /* The layer can run in-place layers after it as it writes its top (crema_fusion below):
   * Convolution (a ReLU; BatchNorm and Scale folded), Eltwise (a ReLU), BatchNorm (a Scale
   * and a ReLU, forward and backward). */
  bool takes_fusion;
  /* Loss layers: top 0 gets loss_weight 1 unless the prototxt says otherwise. */
  bool is_loss;
  /* backward honours a parameter blob's diff_zero_pending (blob.h): it writes that blob's
   * gradient instead of adding it, then clears the flag. Worth it for large parameters
   * (InnerProduct: CaffeNet's fc6 diff is 151 MB, zeroed and read back every iteration
   * otherwise); for other layers the net zeroes pending diffs before their backward. */
  bool overwrites_pending_diffs;
  /* Reads l->param, checks it, allocates l->state, creates l->blobs (filled with their
   * fillers from l->rng) and sets l->n_blobs. Called once. Bottom shapes are known. */
  int (*setup)(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err);
  /* Shapes the tops (and internal buffers) from the bottoms. Called after setup and
   * whenever bottom shapes may have changed. */
  int (*reshape)(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err);
  int (*forward)(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err);
  /* NULL for layers that never propagate (data layers, Accuracy, ArgMax, Silence...). */
  void (*backward)(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                   crema_blob *const *bottom);
  /* Frees l->state and whatever it points to (not l->blobs: crema_layer_free does that). */
  void (*free_state)(crema_layer *l);
  /* Data layers: records consumed so far, and repositioning for an exact resume. Optional. */
  uint64_t (*get_position)(const crema_layer *l);
  int (*set_position)(crema_layer *l, uint64_t position, crema_error *err);
  /* Layers with more than one compute engine (src/engine): the one that runs now, e.g.
   * "onednn jit:avx2" or "caffe". Optional: NULL means the reference path ("caffe"). */
  const char *(*engine_name)(const crema_layer *l);
  /* Layers without bottoms: true when every forward pass writes the whole of top t (a data
   * layer's next batch), so that a forward-only net may keep it in shared storage. Optional:
   * NULL means the top keeps its values between passes (Input: the caller fills it). */
  bool (*refills_top)(const crema_layer *l, int t);
} crema_layer_ops;

/* In-place layers after a layer that the net runs inside it (net_fuse.c): set by the net,
 * before a reshape, on layers whose ops take fusion. All zero: none. */
typedef struct crema_fusion {
  crema_act act; /* a ReLU, applied as the outputs are written */
  /* BatchNorm (+ Scale) folded into the layer, in nets whose backward never runs: weights
   * and bias (num_output) to use instead of blobs[0] and blobs[1], which stay untouched (the
   * layer then has a bias even without bias_term). NULL: nothing folded. Owned by the net. */
  const float *weights, *bias;
  /* BatchNorm: the in-place Scale after it, which it runs inside its forward and backward
   * with `act` (batch_norm_chain.h); NULL: none (a ReLU alone may still be). Borrowed from
   * the net. */
  crema_layer *scale;
  /* Set by the net before each backward of an Eltwise that runs its ReLU's backward: the
   * two tops of the Split after it, whose diffs sum to the gradient the layer starts from
   * (it then makes the Split's sum itself, and the Split's backward does not run); NULL: the
   * top's own diff. Borrowed from the net. */
  const crema_blob *sum[2];
} crema_fusion;

struct crema_layer {
  const crema_layer_ops *ops;
  /* Borrowed: the LayerParameter this layer was made from. Must outlive the layer (the net
   * keeps its NetParameter for its whole life). */
  const Crema__LayerParameter *param;
  Crema__Phase phase;
  int n_bottom, n_top;
  /* Parameter blobs, in Caffe's order (e.g. weights then bias). A blob marked shared is
   * owned by another layer (ParamSpec sharing) and not freed by this one. */
  int n_blobs;
  crema_blob *blobs[CREMA_LAYER_MAX_BLOBS];
  bool blob_shared[CREMA_LAYER_MAX_BLOBS];
  /* Per-blob learning-rate and decay multipliers: from ParamSpec, default 1; setup may
   * override (BatchNorm's statistics are never learned: 0). */
  float lr_mult[CREMA_LAYER_MAX_BLOBS];
  float decay_mult[CREMA_LAYER_MAX_BLOBS];
  /* Whether backward must compute each parameter's gradient (false when frozen). */
  bool param_propagate_down[CREMA_LAYER_MAX_BLOBS];
  crema_rng rng;
  void *state; /* the layer type's own struct */
  /* Set by the creator before setup (optional): when skip_fill(ctx, name, i) is true,
   * crema_layer_add_blob leaves parameter blob i zero instead of running its filler, because
   * the caller overwrites it right after the build (weights from a caffemodel, or shared with
   * another net). NULL = fill every blob. */
  bool (*skip_fill)(void *ctx, const char *layer_name, int blob);
  void *skip_fill_ctx;
  /* Set by the creator before setup (optional, borrowed): scratch memory shared with the
   * other layers of the net, for buffers needed only inside one forward or backward call
   * (see tensor/workspace.h). NULL = the layer keeps its own. */
  crema_workspace *workspace;
  /* Set by the net (crema_net_share_activations): backward never runs, so state a layer keeps
   * only for backward (max pooling's argmax, the copy of its input an in-place layer keeps:
   * crema_input_copy, Scale) need not be written, and its calloc'd buffers never become
   * resident. False = Caffe's behaviour, everything kept. */
  bool forward_only;
  /* Set by the net (crema_net_fuse); `run_fused` tells each forward call whether to apply it:
   * false when a partial forward stops before the end of the fused layers. */
  crema_fusion fusion;
  bool run_fused;
};

/* Looks the type up in the registry and allocates a layer (no setup yet). `seed` seeds
 * l->rng (the net passes a per-layer seed derived from the solver's random_seed).
 * Unknown type: an error naming the layer, its type and the known types.
 * The caller frees with crema_layer_free. */
int crema_layer_create(const Crema__LayerParameter *param, Crema__Phase phase, uint64_t seed,
                       crema_layer **out, crema_error *err);
/* Checks arity and in-place use, then ops->setup and ops->reshape. Errors are prefixed with
 * the layer's name and type. */
int crema_layer_setup(crema_layer *l, int n_bottom, crema_blob *const *bottom, int n_top,
                      crema_blob *const *top, crema_error *err);
int crema_layer_reshape(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err);
int crema_layer_forward(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top, crema_error *err);
void crema_layer_backward(crema_layer *l, crema_blob *const *top, const bool *propagate_down,
                          crema_blob *const *bottom);
void crema_layer_free(crema_layer *l);
/* Floating-point operations of one forward pass (2 per multiply-add) for the layers whose
 * cost is a matrix product (Convolution, Deconvolution, InnerProduct); 0 for the others.
 * Backward does about twice this (data and weight gradients). */
double crema_layer_forward_flops(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top);
/* The engine running this layer (ops->engine_name, or "caffe"). Static or state storage. */
const char *crema_layer_engine_name(const crema_layer *l);
/* A refills_top for data layers whose forward writes every top on every pass. */
bool crema_layer_refills_every_top(const crema_layer *l, int t);

/* Creates parameter blob i with the given shape and fills it with `filler` (NULL filler =
 * constant 0). For use inside setup. Also sets l->n_blobs = max(n_blobs, i + 1). */
int crema_layer_add_blob(crema_layer *l, int i, int num_axes, const int *shape,
                         const Crema__FillerParameter *filler, crema_error *err);

/* A reshape that gives top[0] the shape of bottom[0]: for element-wise layers. */
int crema_reshape_like_bottom(crema_layer *l, crema_blob *const *bottom, crema_blob *const *top,
                              crema_error *err);

/* ---- The input of a layer run in place (top == bottom) whose backward reads it: forward
 * overwrites it, so the layer keeps a copy (AbsVal, BNLL, Clip, ELU with alpha < 0, Log,
 * Power, PReLU, ReLU with a negative slope). `kept` is the layer's decision, the same in its
 * reshape, forward and backward: crema_layer_keeps_input, and any condition of its own. */
typedef struct crema_input_copy {
  float *buf;      /* NULL until first kept; freed by crema_input_copy_free */
  size_t capacity; /* floats in buf: it grows, never shrinks */
} crema_input_copy;
/* Run in place in a net that runs backward: a forward-only net keeps no copy. */
bool crema_layer_keeps_input(const crema_layer *l, crema_blob *const *bottom, crema_blob *const *top);
/* In reshape: makes room for bottom when kept (data only: the copy has no diff). Out of
 * memory, or past the blob memory limit: an error. */
int crema_input_copy_reshape(crema_input_copy *c, bool kept, const crema_blob *bottom, crema_error *err);
/* In forward, before top is written: copies bottom when kept. */
void crema_input_copy_save(crema_input_copy *c, bool kept, const crema_blob *bottom);
/* Or, for a forward pass that writes the copy itself in the same loop as its top (one read of
 * the input instead of two): where to write it when kept, else NULL. */
float *crema_input_copy_target(crema_input_copy *c, bool kept);
/* In backward: the input as forward saw it. */
const float *crema_input_copy_data(const crema_input_copy *c, bool kept, const crema_blob *bottom);
void crema_input_copy_free(crema_input_copy *c);

/* Registry (registry.c). */
const crema_layer_ops *crema_layer_lookup(const char *type);
/* Comma-separated list of every registered type, for error messages. */
void crema_layer_type_list(char *buf, size_t size);
int crema_layer_type_count(void);
/* For Caffe's types crema refuses on purpose (Python, MemoryData, WindowData): why; else NULL. */
const char *crema_layer_refused_reason(const char *type);
const crema_layer_ops *crema_layer_type_at(int i);

#endif
