/* net.h -- a Net: layers wired by blob names, built from a NetParameter and a NetState.
 *
 * Building applies the include/exclude rules for the state (phase, level, stages), resolves
 * bottoms and tops by name (a top reused as its own bottom = in place), inserts Split layers
 * where one top feeds several bottoms (as Caffe does, so layer and blob names match Caffe's;
 * as in Caffe their tops borrow the bottom's data and own only their diffs),
 * assigns loss weights, shares parameters by ParamSpec name, and works out which layers need
 * backward (propagate_down, force_backward, lr_mult 0 = frozen).
 *
 * Ownership: crema_net_build copies the NetParameter it is given (after upgrading legacy
 * forms); the net owns its layers, blobs, that copy and the scratch workspace its layers
 * share (unless it borrowed one); free with crema_net_free. */
#ifndef CREMA_NET_NET_H
#define CREMA_NET_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "layers/layer.h"
#include "proto/crema.pb-c.h"
#include "tensor/blob.h"

typedef struct crema_net crema_net;

typedef struct crema_net_options {
  Crema__Phase phase; /* which layers to include, and the layers' behaviour */
  int level;          /* NetState level */
  int n_stages;       /* NetState stages */
  const char *const *stages;
  uint64_t seed;      /* seeds every layer's RNG and filler */
  const char *source; /* file name used in error messages (may be NULL) */
  /* Optional: parameter blobs for which skip_fill(ctx, layer name, blob index) is true are
   * left zero instead of filled, because the caller overwrites them right after the build
   * (a finetune's caffemodel, a test net's weights shared with the train net). */
  bool (*skip_fill)(void *ctx, const char *layer_name, int blob);
  void *skip_fill_ctx;
  /* Optional, borrowed: scratch memory to share with another net that never runs at the
   * same time as this one (a solver's test nets use the train net's), and that outlives
   * this net. NULL: the net makes its own. */
  crema_workspace *workspace;
} crema_net_options;

/* Builds a net; `param` is copied (the caller keeps ownership of its message). */
int crema_net_build(const Crema__NetParameter *param, const crema_net_options *opt, crema_net **out,
                    crema_error *err);
/* Reads a prototxt (text, or binary by content) and builds it. */
int crema_net_load(const char *path, const crema_net_options *opt, crema_net **out, crema_error *err);
void crema_net_free(crema_net *net);

/* Forward over all layers; *loss (may be NULL) gets the weighted sum of the loss tops. */
int crema_net_forward(crema_net *net, float *loss, crema_error *err);
int crema_net_forward_from_to(crema_net *net, int start, int end, crema_error *err);
/* Backward over all layers that need it (seeds loss tops' diffs with their loss weights).
 * Parameter diffs ACCUMULATE (+=): zero them first with crema_net_clear_param_diffs. */
void crema_net_backward(crema_net *net);
/* Backward over layers start down to end (inclusive, start >= end), as Caffe's
 * BackwardFromTo; loss tops are seeded first. */
void crema_net_backward_from_to(crema_net *net, int start, int end);
/* One layer: forward of layer i / backward of layer i when it needs backward (no seeding of
 * loss diffs: call crema_net_seed_loss_diffs first). For per-layer timing. */
int crema_net_forward_layer(crema_net *net, int i, crema_error *err);
void crema_net_backward_layer(crema_net *net, int i);
void crema_net_seed_loss_diffs(crema_net *net);
/* Called by crema_net_backward / crema_net_backward_from_to after each layer's turn (layers
 * that need no backward included), in backward order: when layer i's turn is done, the
 * gradients of parameters used only by layers >= i are complete. Lets a caller start
 * sending gradients while backward continues (src/dist). NULL fn removes it. */
typedef void (*crema_net_backward_fn)(void *ctx, int layer);
void crema_net_set_backward_callback(crema_net *net, crema_net_backward_fn fn, void *ctx);
/* Zeroes the diff of every learnable parameter (once per iteration, before backward). */
void crema_net_clear_param_diffs(crema_net *net);
/* The same, for the backward pass that comes next: each diff is only marked zero
 * (diff_zero_pending), so a layer that writes its gradient (InnerProduct) skips zeroing and
 * re-reading it. By the end of the backward of the layer that owns a parameter, and by the
 * end of every crema_net_backward / _from_to / _layer call, each pending diff has been
 * written or zeroed: the backward callback, the solver and anything reading diffs after
 * backward see what crema_net_clear_param_diffs would have given (the same bits, but that a
 * GEMM writing a gradient of exactly zero may give -0 where adding it to +0 gave +0).
 * Reading a diff between this call and the next backward is not allowed. */
void crema_net_clear_param_diffs_lazily(crema_net *net);
/* The weighted loss of the last forward pass: sum over loss tops of weight * sum(top). */
float crema_net_current_loss(const crema_net *net);
/* Reshapes every layer after input blobs changed shape. */
int crema_net_reshape(crema_net *net, crema_error *err);
/* The scratch memory the net's layers share (its own or the one it borrowed; borrowed
 * from the net). Its size is the largest single layer's need, not the sum. */
crema_workspace *crema_net_workspace(const crema_net *net);

/* Opt-in, for a net that only a training loop runs (a solver's train net): activation blobs
 * whose gradients are never needed at the same time keep their diffs in one shared arena,
 * planned now from the layers' order and the current shapes (net_memory.c). Training gives
 * the same bits as before; but an activation's diff is then valid only inside a full
 * crema_net_backward (from its consumer's backward to its producer's), not after it, and
 * backward over part of the net (crema_net_backward_from_to, _layer) may read other blobs'
 * gradients. Loss tops and diffs that backward reads without writing keep their own. A blob
 * that later grows past its slice gets its own diff again. Calling it again does nothing. */
int crema_net_share_diffs(crema_net *net, crema_error *err);
/* Opt-in, for a net that only runs forward and of which only the outputs are read after
 * forward (a solver's test nets): intermediate activations whose lifetimes do not overlap
 * keep their data in one shared arena, planned like the diffs above. Outputs, loss tops, net
 * inputs and the tops of layers without bottoms keep their own; every other blob's data is
 * valid only inside a full crema_net_forward, and backward must not run: the layers are told
 * so (crema_layer.forward_only) and keep no state that only backward reads.
 * lender (optional): a net whose activation gradients are shared (crema_net_share_diffs) and
 * that never runs at the same time as this one (a solver's train net between iterations,
 * when its gradients are dead). Its gradient arena then holds this net's activations too,
 * grown to fit if this is its first loan (else a net that does not fit gets its own arena);
 * the lender must outlive this net, and each forward of this net overwrites its gradients. */
int crema_net_share_activations(crema_net *net, crema_net *lender, crema_error *err);
/* Opt-in: every Convolution or Eltwise whose top is rewritten in place by a ReLU runs it as
 * it writes its outputs, and the ReLU's forward is skipped (its backward still runs:
 * training gives the same bits). With `inference` (a net whose backward never runs, such as
 * one after crema_net_share_activations), an in-place BatchNorm using its stored statistics,
 * and a Scale after it, are also folded into a copy of the convolution's weights and bias
 * (as `crema export` folds them; the same results to float rounding), and a ReLU of any
 * slope is fused. A chain is fused only when no other layer touches the blob between its
 * layers. Blob values after a forward are the same as without fusion; a partial forward
 * (crema_net_forward_from_to) that stops inside a chain runs its first layer unfused, and
 * crema_net_forward_layer runs a layer as a whole forward does (a fused layer: not at all).
 * The folded copy is a snapshot: call again after the parameters change (with the same
 * `inference`; another is an error) to re-read them. Costs one extra copy of the folded
 * layers' weights. */
int crema_net_fuse(crema_net *net, bool inference, crema_error *err);
/* The layer that runs layer i as part of its forward (crema_net_fuse), or -1. */
int crema_net_fused_into(const crema_net *net, int i);
/* The layer that runs layer i's backward as part of its own (in training: a Scale or ReLU
 * inside the BatchNorm before it, a ReLU inside an Eltwise, the Split after such an Eltwise),
 * or -1. */
int crema_net_backward_fused_into(const crema_net *net, int i);

/* Bytes the net's blobs hold for their diffs / data, a shared arena counted once (data
 * borrowed from another blob and parameters not included). */
size_t crema_net_diff_bytes(const crema_net *net);
size_t crema_net_data_bytes(const crema_net *net);

/* Layers and blobs. */
int crema_net_num_layers(const crema_net *net);
crema_layer *crema_net_layer(const crema_net *net, int i);
const char *crema_net_layer_name(const crema_net *net, int i);
int crema_net_layer_index(const crema_net *net, const char *name); /* -1 if absent */
int crema_net_num_blobs(const crema_net *net);
crema_blob *crema_net_blob(const crema_net *net, int i);
const char *crema_net_blob_name(const crema_net *net, int i);
crema_blob *crema_net_blob_by_name(const crema_net *net, const char *name); /* NULL if absent */
/* Tops of the net that no layer consumes (the net's outputs), and the Input layers' tops. */
int crema_net_num_outputs(const crema_net *net);
crema_blob *crema_net_output(const crema_net *net, int i);
const char *crema_net_output_name(const crema_net *net, int i);
float crema_net_output_loss_weight(const crema_net *net, int i);
int crema_net_num_inputs(const crema_net *net);
crema_blob *crema_net_input(const crema_net *net, int i);
const char *crema_net_input_name(const crema_net *net, int i);
/* Bottom/top blob ids of layer i (indices into the net's blob list). */
int crema_net_layer_bottoms(const crema_net *net, int i, const int **ids);
int crema_net_layer_tops(const crema_net *net, int i, const int **ids);
bool crema_net_layer_needs_backward(const crema_net *net, int i);
bool crema_net_bottom_needs_backward(const crema_net *net, int i, int bottom);
/* The message layer i was built from (Split layers included; borrowed). */
const Crema__LayerParameter *crema_net_layer_param(const crema_net *net, int i);
/* Loss weight of blob i (0 for blobs that are not losses); whether any gradient reaches it. */
float crema_net_blob_loss_weight(const crema_net *net, int i);
bool crema_net_blob_needs_backward(const crema_net *net, int i);
Crema__Phase crema_net_phase(const crema_net *net);
const char *crema_net_name(const crema_net *net);

/* Learnable parameters, each once (shared parameters appear once, owned by their first
 * layer), in net order: the solver iterates over these. */
typedef struct crema_net_param {
  crema_blob *blob;
  float lr_mult, decay_mult;
  int layer; /* owning layer index */
  int index; /* blob index within that layer */
} crema_net_param;
int crema_net_num_params(const crema_net *net);
const crema_net_param *crema_net_param_at(const crema_net *net, int i);

/* The NetParameter the net was built from (after upgrade and filtering). */
const Crema__NetParameter *crema_net_param_message(const crema_net *net);

/* Weights. Copy-by-name: every layer of `weights` whose name matches a layer of the net has
 * its blobs copied (shape checked: a mismatch names the layer and both shapes and tells the
 * user to rename the layer to learn it from scratch). Reports copied / ignored / kept-filler
 * layer names through the log. */
int crema_net_copy_trained_layers(crema_net *net, const Crema__NetParameter *weights, crema_error *err);
int crema_net_copy_trained_layers_from_file(crema_net *net, const char *caffemodel, crema_error *err);
/* Net -> NetParameter with blobs (a caffemodel): the layers as built (phase filled in), without
 * the inserted Split layers, each with its parameter blobs (and diffs when with_diff).
 * Caller frees with crema_message_free. */
int crema_net_to_proto(const crema_net *net, bool with_diff, Crema__NetParameter **out, crema_error *err);
/* Writes a caffemodel atomically (temp file + rename). */
int crema_net_save_weights(const crema_net *net, const char *path, crema_error *err);

/* Makes parameter blob b of layer li the blob `shared` (owned elsewhere and outliving this
 * net, e.g. the train net's), as Caffe's ShareTrainedLayersWith does for test nets: the
 * layer's own blob is freed, and every layer and parameter entry of this net that used it
 * follows. The shapes must be equal (an error names both otherwise). */
int crema_net_share_param_blob(crema_net *net, int li, int b, crema_blob *shared, crema_error *err);

/* Fills every parameter with seeded values that keep a deep net's activations in range,
 * whatever its fillers say (deploy nets have none): He-normal weights (std sqrt(2/fan_in)),
 * biases U(-0.1, 0.1); BatchNorm mean U(-0.1, 0.1), variance U(0.5, 1.5), factor 1; Scale
 * U(0.5, 1.5) and its bias U(-0.1, 0.1); PReLU slopes 0.25. Shared blobs are filled once. */
void crema_net_fill_random_weights(crema_net *net, uint64_t seed);

/* The per-layer RNG seed: splitmix64 of the net's seed and the layer's position. */
uint64_t crema_net_layer_seed(uint64_t seed, uint64_t index);

#endif
