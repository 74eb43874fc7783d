/* net_internal.h -- the Net's private data, shared by the files of src/net only. */
#ifndef CREMA_NET_NET_INTERNAL_H
#define CREMA_NET_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "net/net.h"

typedef struct net_layer {
  crema_layer *layer;
  /* The layer's message: borrowed from net->param, or owned (a Split layer, or a copy whose
   * bottoms were renamed to split outputs). */
  Crema__LayerParameter *param;
  bool param_owned;
  int orig; /* index into net->param->layer; -1 for an inserted Split */
  int n_bottom, n_top;
  int *bottom_ids, *top_ids;
  crema_blob **bottoms, **tops;
  bool *bottom_need_backward;
  bool need_backward;
  /* A Split whose tops borrow its bottom's data (see share_split_data in net.c): its
   * forward only re-points them. */
  bool shares_data;
} net_layer;

/* A buffer of count floats the net's blobs borrow slices of (net_memory.c). The net owns
 * it, unless `lent` (then another net, which never runs at the same time, does). n_borrowers
 * counts the nets it was lent to: it may grow (and move) only before the first loan. */
typedef struct net_arena {
  float *buf;
  size_t count;
  bool lent;
  int n_borrowers;
} net_arena;

/* In-place layers run inside the layer before them (net_fuse.c); per layer index. */
typedef struct net_fusion {
  bool inference;  /* BatchNorm and Scale folded too (the net never runs backward) */
  int *head;       /* the layer that runs this one, or -1 */
  int *last;       /* for a layer that runs others: the last of them; else -1 */
  int *bn, *scale; /* for such a layer: its folded BatchNorm and Scale, or -1 (a BatchNorm
                    * head runs its Scale: bn -1) */
  bool *whole;     /* the layer runs its chain's backward too (a BatchNorm in training) */
  int *split;      /* for an Eltwise running its ReLU's backward: the Split after it whose sum
                    * it makes, or -1; */
  int *split_head; /* for such a Split: that Eltwise; else -1 */
  float **folded;  /* for such a layer with a BatchNorm: its folded weights, then bias (owned) */
} net_fusion;

/* A named (ParamSpec.name) parameter and whether its multipliers were set explicitly. */
typedef struct named_param {
  const char *name; /* borrowed from the owning layer's ParamSpec */
  int param;        /* index into net->params */
  bool has_lr, has_decay;
} named_param;

/* Name -> int, open addressing. Keys are borrowed and must outlive the index. Nets may name
 * any number of blobs; a linear search per lookup made a prototxt with 10^5 tops take
 * minutes to build. */
typedef struct crema_name_index {
  const char **keys;
  int *vals;
  size_t cap, n; /* cap is 0 or a power of two */
} crema_name_index;

struct crema_net {
  Crema__NetParameter *param;         /* upgraded, filtered copy (owned); layers hold no blobs */
  int *orig_index;                    /* filtered layer -> index in the prototxt as given */
  Crema__LayerParameter **init_blobs; /* blobs found in the message, until copied in */
  char *source;
  Crema__Phase phase;
  int n_layers;
  net_layer *layers;
  int n_blobs, cap_blobs;
  crema_blob **blobs;
  char **blob_names;
  crema_name_index blob_index; /* blob_names -> blob id */
  bool *blob_need_backward;
  bool *blob_available; /* build-time: produced and not yet consumed */
  float *blob_loss_weight;
  int n_outputs, n_inputs, n_loss;
  int *output_ids, *input_ids, *loss_ids;
  int n_params, n_named;
  crema_net_param *params;
  named_param *named;
  /* Scratch shared by the layers (see tensor/workspace.h): the net's own (workspace_owned)
   * or borrowed through crema_net_options.workspace. */
  crema_workspace *workspace;
  bool workspace_owned;
  crema_net_backward_fn on_backward; /* may be NULL */
  void *on_backward_ctx;
  /* Storage the blobs' diffs (crema_net_share_diffs) and data (crema_net_share_activations)
   * borrow; NULL buf until then. */
  net_arena diffs, activations;
  net_fusion *fusion; /* NULL until crema_net_fuse */
};

/* Checks and copies the blobs of `src` (a LayerParameter holding blobs) into layer li. */
int crema_net_copy_layer_blobs(crema_net *net, int li, const Crema__LayerParameter *src, crema_error *err);

/* net_fuse.c: forward over [start, end] skips layer i (its chain's layer runs it whole);
 * arms layer i's fusion for a forward ending at `end`; frees the fusion. */
bool crema_net_fusion_skips(const crema_net *net, int i, int start, int end);
void crema_net_fusion_arm(crema_net *net, int i, int end);
void crema_net_fusion_free(crema_net *net);
/* Backward over [end, start] skips layer i (its chain's head runs the chain's backward);
 * arms head i for such a backward and returns the chain's last layer, or -1 when layer i
 * runs only its own backward. */
bool crema_net_fusion_skips_backward(const crema_net *net, int i, int end, int start);
int crema_net_fusion_arm_backward(crema_net *net, int i, int start);

/* Frees an arena (net_memory.c); no blob may use it afterwards. */
void crema_net_free_arena(net_arena *arena);

#endif
