/* net.c -- building a Net from a NetParameter, and running it forward and backward.
 *
 * The build follows Caffe's Net::Init step by step so that nets, blob names, loss weights
 * and gradient flow match what Caffe users expect:
 *   1. copy + upgrade the message; filter layers by the NetState (include/exclude rules);
 *   2. insert Split layers where one top feeds several bottoms (Caffe's names);
 *   3. create and set up every layer in order, wiring bottoms/tops by name (in place when a
 *      top reuses its bottom's name), assigning loss weights and sharing named parameters;
 *   4. work out which layers and bottoms need backward (lr_mult, propagate_down, which blobs
 *      influence a loss, force_backward).
 * Weight copy-by-name and proto export live in net_weights.c. */
#include "net/net.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_internal.h"
#include "proto/io.h"
#include "proto/upgrade.h"
#include "tensor/math.h"

/* ---------------------------------------------------------------- small helpers */

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t crema_net_layer_seed(uint64_t seed, uint64_t index) { return splitmix64(seed ^ splitmix64(index)); }

static const char *net_source(const crema_net *net) { return net->source ? net->source : "net"; }

/* ---------------------------------------------------------------- NetState rules */

static bool has_stage(const Crema__NetState *s, const char *stage) {
  for (size_t i = 0; i < s->n_stage; i++)
    if (!strcmp(s->stage[i], stage)) return true;
  return false;
}

/* Caffe's StateMeetsRule: every condition the rule states must hold. */
static bool state_meets_rule(const Crema__NetState *s, const Crema__NetStateRule *r) {
  if (r->has_phase && r->phase != s->phase) return false;
  if (r->has_min_level && s->level < r->min_level) return false;
  if (r->has_max_level && s->level > r->max_level) return false;
  for (size_t i = 0; i < r->n_stage; i++)
    if (!has_stage(s, r->stage[i])) return false;
  for (size_t i = 0; i < r->n_not_stage; i++)
    if (has_stage(s, r->not_stage[i])) return false;
  return true;
}

/* Replaces msg->state by the state of this build: phase and level from the options, stages
 * from the prototxt's own state plus the options' (as Caffe's Net(file, phase, level,
 * stages) constructor does). */
static int set_state(Crema__NetParameter *msg, const crema_net_options *opt, crema_error *err) {
  if (!msg->state) {
    msg->state = malloc(sizeof *msg->state);
    if (!msg->state) return crema_fail(err, "out of memory");
    crema__net_state__init(msg->state);
  }
  Crema__NetState *s = msg->state;
  s->has_phase = 1;
  s->phase = opt->phase;
  s->has_level = 1;
  s->level = opt->level;
  if (opt->n_stages > 0) {
    char **st = realloc(s->stage, (s->n_stage + (size_t)opt->n_stages) * sizeof *st);
    if (!st) return crema_fail(err, "out of memory");
    s->stage = st;
    for (int i = 0; i < opt->n_stages; i++) {
      if (has_stage(s, opt->stages[i])) continue;
      if (!(s->stage[s->n_stage] = dup_string(opt->stages[i]))) return crema_fail(err, "out of memory");
      s->n_stage++;
    }
  }
  return 0;
}

/* Drops the layers the state excludes (freeing them) and gives the others the net's phase
 * when they do not name one. */
static int filter_layers(crema_net *net, Crema__NetParameter *msg, crema_error *err) {
  size_t kept = 0;
  for (size_t i = 0; i < msg->n_layer; i++) {
    Crema__LayerParameter *lp = msg->layer[i];
    const char *name = lp->name ? lp->name : "(unnamed)";
    if (lp->n_include && lp->n_exclude)
      return crema_fail(err,
                        "%s: layer \"%s\" has both include and exclude rules; specify either include "
                        "rules or exclude rules, not both",
                        net_source(net), name);
    bool included = lp->n_include == 0;
    for (size_t r = 0; r < lp->n_exclude; r++)
      if (state_meets_rule(msg->state, lp->exclude[r])) included = false;
    for (size_t r = 0; r < lp->n_include; r++)
      if (state_meets_rule(msg->state, lp->include[r])) included = true;
    if (!included) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      continue;
    }
    if (!lp->has_phase) {
      lp->has_phase = 1;
      lp->phase = msg->state->phase;
    }
    msg->layer[kept] = lp;
    net->orig_index[kept] = (int)i;
    kept++;
  }
  msg->n_layer = kept;
  return 0;
}

/* ---------------------------------------------------------------- split insertion */

/* Split layer / blob names exactly as Caffe's insert_splits.cpp forms them. */
static char *split_layer_name(const char *layer, const char *blob, int top_idx) {
  size_t n = strlen(layer) + strlen(blob) + 32;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s_%s_%d_split", blob, layer, top_idx);
  return s;
}

static char *split_blob_name(const char *layer, const char *blob, int top_idx, int k) {
  size_t n = strlen(layer) + strlen(blob) + 48;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s_%s_%d_split_%d", blob, layer, top_idx, k);
  return s;
}

/* ---------------------------------------------------------------- name index */

static size_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

/* Slot of key, or of the empty slot where it belongs. cap must be a power of two. */
static size_t name_slot(const crema_name_index *ix, const char *key) {
  size_t i = name_hash(key) & (ix->cap - 1);
  while (ix->keys[i] && strcmp(ix->keys[i], key)) i = (i + 1) & (ix->cap - 1);
  return i;
}

/* The value stored under key, or -1. */
static int name_index_get(const crema_name_index *ix, const char *key) {
  if (!ix->cap) return -1;
  size_t i = name_slot(ix, key);
  return ix->keys[i] ? ix->vals[i] : -1;
}

/* Stores (or replaces) key -> val; grows at half load. -1 when out of memory. */
static int name_index_put(crema_name_index *ix, const char *key, int val) {
  if (2 * (ix->n + 1) > ix->cap) {
    crema_name_index big = {.cap = ix->cap ? 2 * ix->cap : 64};
    big.keys = calloc(big.cap, sizeof *big.keys);
    big.vals = calloc(big.cap, sizeof *big.vals);
    if (!big.keys || !big.vals) {
      free(big.keys);
      free(big.vals);
      return -1;
    }
    for (size_t i = 0; i < ix->cap; i++)
      if (ix->keys[i]) {
        size_t j = name_slot(&big, ix->keys[i]);
        big.keys[j] = ix->keys[i];
        big.vals[j] = ix->vals[i];
      }
    big.n = ix->n;
    free(ix->keys);
    free(ix->vals);
    *ix = big;
  }
  size_t i = name_slot(ix, key);
  if (!ix->keys[i]) ix->n++;
  ix->keys[i] = key;
  ix->vals[i] = val;
  return 0;
}

static void name_index_free(crema_name_index *ix) {
  free(ix->keys);
  free(ix->vals);
  *ix = (crema_name_index){0};
}

typedef struct top_ref {
  int layer, top;
} top_ref;

/* Lists the tops produced by layers [0, upto) (unique names) for "unknown bottom" errors. */
static void list_tops(const Crema__NetParameter *msg, size_t upto, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < upto && used < size; i++)
    for (size_t j = 0; j < msg->layer[i]->n_top && used < size; j++) {
      const char *t = msg->layer[i]->top[j];
      bool seen = false;
      for (size_t a = 0; a <= i && !seen; a++)
        for (size_t b = 0; b < (a == i ? j : msg->layer[a]->n_top) && !seen; b++)
          seen = !strcmp(msg->layer[a]->top[b], t);
      if (!seen) used += (size_t)snprintf(buf + used, size - used, "%s\"%s\"", used ? ", " : "", t);
    }
  if (!used) snprintf(buf, size, "(none)");
}

static Crema__LayerParameter *new_split_param(const char *layer, const char *blob, int top_idx, int count,
                                              float loss_weight) {
  Crema__LayerParameter *p = malloc(sizeof *p);
  if (!p) return NULL;
  crema__layer_parameter__init(p);
  p->name = split_layer_name(layer, blob, top_idx);
  p->type = dup_string("Split");
  p->bottom = calloc(1, sizeof(char *));
  p->top = calloc((size_t)count, sizeof(char *));
  if (p->bottom) {
    p->n_bottom = 1;
    p->bottom[0] = dup_string(blob);
  }
  bool ok = p->name && p->type && p->bottom && p->bottom[0] && p->top;
  if (p->top)
    for (int k = 0; k < count; k++) {
      p->top[k] = split_blob_name(layer, blob, top_idx, k);
      p->n_top = (size_t)k + 1;
      ok = ok && p->top[k];
    }
  if (ok && loss_weight != 0.0f) {
    p->loss_weight = calloc((size_t)count, sizeof(float));
    if (p->loss_weight) {
      p->n_loss_weight = (size_t)count;
      p->loss_weight[0] = loss_weight;
    } else {
      ok = false;
    }
  }
  if (!ok) {
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return NULL;
  }
  return p;
}

/* Caffe's InsertSplits over net->param, producing net->layers[*].param: the filtered layers
 * themselves (borrowed) or, when a bottom is renamed to a split output, an owned copy; plus
 * owned Split layers. */
static int insert_splits(crema_net *net, crema_error *err) {
  const Crema__NetParameter *msg = net->param;
  size_t nl = msg->n_layer;
  int rc = -1;
  /* For each (layer, bottom): the top it reads. For each (layer, top): consumers, loss weight,
   * and how many split outputs were handed out so far. Indexed through offsets. */
  size_t *top_off = calloc(nl + 1, sizeof *top_off), *bot_off = calloc(nl + 1, sizeof *bot_off);
  for (size_t i = 0; top_off && bot_off && i < nl; i++) {
    top_off[i + 1] = top_off[i] + msg->layer[i]->n_top;
    bot_off[i + 1] = bot_off[i] + msg->layer[i]->n_bottom;
  }
  size_t n_tops = top_off ? top_off[nl] : 0, n_bots = bot_off ? bot_off[nl] : 0;
  top_ref *source = calloc(n_bots + 1, sizeof *source);
  int *count = calloc(n_tops + 1, sizeof *count), *next_split = calloc(n_tops + 1, sizeof *next_split);
  float *loss = calloc(n_tops + 1, sizeof *loss);
  /* Last producer of each name so far: name -> k, the producer in last_ref[k]. */
  crema_name_index last_index = {0};
  top_ref *last_ref = calloc(n_tops + 1, sizeof *last_ref);
  size_t n_last = 0;
  if (!top_off || !bot_off || !source || !count || !next_split || !loss || !last_ref) {
    crema_fail(err, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < nl; i++) {
    const Crema__LayerParameter *lp = msg->layer[i];
    for (size_t j = 0; j < lp->n_bottom; j++) {
      const int found = name_index_get(&last_index, lp->bottom[j]);
      if (found < 0) {
        char avail[768];
        list_tops(msg, i, avail, sizeof avail);
        crema_fail(
            err, "%s: layer \"%s\" reads unknown bottom blob \"%s\" (bottom %zu); blobs available there: %s",
            net_source(net), lp->name ? lp->name : "(unnamed)", lp->bottom[j], j, avail);
        goto done;
      }
      source[bot_off[i] + j] = last_ref[found];
      count[top_off[last_ref[found].layer] + (size_t)last_ref[found].top]++;
    }
    for (size_t j = 0; j < lp->n_top; j++) {
      int k = name_index_get(&last_index, lp->top[j]);
      if (k < 0) {
        k = (int)n_last++;
        if (name_index_put(&last_index, lp->top[j], k)) {
          crema_fail(err, "out of memory");
          goto done;
        }
      }
      last_ref[k] = (top_ref){(int)i, (int)j};
    }
    /* A top used as a loss counts as one more consumer (Caffe does the same). */
    size_t n_loss = lp->n_loss_weight < lp->n_top ? lp->n_loss_weight : lp->n_top;
    for (size_t j = 0; j < n_loss; j++) {
      const int k = name_index_get(&last_index, lp->top[j]); /* just added above */
      size_t t = top_off[last_ref[k].layer] + (size_t)last_ref[k].top;
      loss[t] = lp->loss_weight[j];
      if (loss[t] != 0.0f) count[t]++;
    }
  }
  /* Upper bound on layers: every layer plus one split per top. */
  net->layers = calloc(nl + n_tops + 1, sizeof *net->layers);
  if (!net->layers) {
    crema_fail(err, "out of memory");
    goto done;
  }
  int n = 0;
  for (size_t i = 0; i < nl; i++) {
    Crema__LayerParameter *lp = msg->layer[i];
    net_layer *L = &net->layers[n++];
    L->param = lp;
    L->orig = (int)i;
    for (size_t j = 0; j < lp->n_bottom; j++) {
      top_ref src = source[bot_off[i] + j];
      size_t t = top_off[src.layer] + (size_t)src.top;
      if (count[t] <= 1) continue;
      if (!L->param_owned) {
        if (!(L->param = crema_message_copy(&lp->base))) {
          crema_fail(err, "out of memory");
          goto done;
        }
        L->param_owned = true;
      }
      char *nb = split_blob_name(msg->layer[src.layer]->name ? msg->layer[src.layer]->name : "",
                                 lp->bottom[j], src.top, next_split[t]++);
      if (!nb) {
        crema_fail(err, "out of memory");
        goto done;
      }
      free(L->param->bottom[j]);
      L->param->bottom[j] = nb;
    }
    for (size_t j = 0; j < lp->n_top; j++) {
      size_t t = top_off[i] + j;
      if (count[t] <= 1) continue;
      net_layer *S = &net->layers[n++];
      S->orig = -1;
      S->param_owned = true;
      S->param = new_split_param(lp->name ? lp->name : "", lp->top[j], (int)j, count[t], loss[t]);
      if (!S->param) {
        crema_fail(err, "out of memory");
        goto done;
      }
      if (loss[t] != 0.0f) {
        /* The split carries the loss now; the producer's own loss weights go. */
        if (!L->param_owned) {
          if (!(L->param = crema_message_copy(&lp->base))) {
            crema_fail(err, "out of memory");
            goto done;
          }
          L->param_owned = true;
        }
        free(L->param->loss_weight);
        L->param->loss_weight = NULL;
        L->param->n_loss_weight = 0;
        next_split[t]++;
      }
    }
  }
  net->n_layers = n;
  rc = 0;
done:
  free(top_off);
  free(bot_off);
  free(source);
  free(count);
  free(next_split);
  free(loss);
  name_index_free(&last_index);
  free(last_ref);
  return rc;
}

/* ---------------------------------------------------------------- blobs */

static int find_blob(const crema_net *net, const char *name) {
  return name_index_get(&net->blob_index, name);
}

static int add_blob(crema_net *net, const char *name, crema_error *err) {
  if (net->n_blobs == net->cap_blobs) {
    int cap = net->cap_blobs ? 2 * net->cap_blobs : 64;
    crema_blob **b = realloc(net->blobs, (size_t)cap * sizeof *b);
    if (b) net->blobs = b;
    char **nm = realloc(net->blob_names, (size_t)cap * sizeof *nm);
    if (nm) net->blob_names = nm;
    bool *nb = realloc(net->blob_need_backward, (size_t)cap * sizeof *nb);
    if (nb) net->blob_need_backward = nb;
    bool *av = realloc(net->blob_available, (size_t)cap * sizeof *av);
    if (av) net->blob_available = av;
    float *lw = realloc(net->blob_loss_weight, (size_t)cap * sizeof *lw);
    if (lw) net->blob_loss_weight = lw;
    if (!b || !nm || !nb || !av || !lw) return crema_fail(err, "out of memory");
    net->cap_blobs = cap;
  }
  int id = net->n_blobs;
  net->blobs[id] = crema_blob_new();
  net->blob_names[id] = dup_string(name);
  if (!net->blobs[id] || !net->blob_names[id] || name_index_put(&net->blob_index, net->blob_names[id], id)) {
    crema_blob_free(net->blobs[id]);
    free(net->blob_names[id]);
    return crema_fail(err, "out of memory");
  }
  net->blob_need_backward[id] = false;
  net->blob_available[id] = false;
  net->blob_loss_weight[id] = 0.0f;
  net->n_blobs++;
  return id;
}

/* ---------------------------------------------------------------- parameters */

static int find_param_by_name(const crema_net *net, const char *name) {
  for (int i = 0; i < net->n_named; i++)
    if (!strcmp(net->named[i].name, name)) return i;
  return -1;
}

static void shape_dims(const crema_blob *b, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < b->num_axes && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%d", i ? " " : "", b->shape[i]);
}

/* Caffe's AppendParam: registers parameter blob `pi` of layer `li` in the net's list, or,
 * when its ParamSpec names a parameter seen before, replaces it by the owner's blob. */
static int append_param(crema_net *net, int li, int pi, crema_error *err) {
  net_layer *L = &net->layers[li];
  crema_layer *l = L->layer;
  const Crema__LayerParameter *lp = L->param;
  const Crema__ParamSpec *spec = (size_t)pi < lp->n_param ? lp->param[pi] : NULL;
  const char *pname = spec && spec->name && spec->name[0] ? spec->name : NULL;
  int owner = pname ? find_param_by_name(net, pname) : -1;
  if (owner < 0) {
    crema_net_param *p = &net->params[net->n_params];
    p->blob = l->blobs[pi];
    p->lr_mult = l->lr_mult[pi];
    p->decay_mult = l->decay_mult[pi];
    p->layer = li;
    p->index = pi;
    if (pname) {
      net->named[net->n_named].name = pname;
      net->named[net->n_named].param = net->n_params;
      net->named[net->n_named].has_lr = spec->has_lr_mult;
      net->named[net->n_named].has_decay = spec->has_decay_mult;
      net->n_named++;
    }
    net->n_params++;
    return 0;
  }
  named_param *np = &net->named[owner];
  crema_net_param *p = &net->params[np->param];
  crema_blob *mine = l->blobs[pi], *theirs = p->blob;
  const char *lname = lp->name ? lp->name : "(unnamed)";
  const char *oname = net->layers[p->layer].param->name;
  char s1[128], s2[128];
  shape_dims(theirs, s1, sizeof s1);
  shape_dims(mine, s2, sizeof s2);
  if (spec->has_share_mode && spec->share_mode == CREMA__PARAM_SPEC__DIM_CHECK_MODE__PERMISSIVE) {
    if (mine->count != theirs->count)
      return crema_fail(err,
                        "%s: cannot share parameter \"%s\" owned by layer \"%s\" with layer \"%s\": count "
                        "mismatch (owner shape %s, sharing layer shape %s)",
                        net_source(net), pname, oname, lname, s1, s2);
  } else if (!crema_blob_same_shape(mine, theirs)) {
    return crema_fail(err,
                      "%s: cannot share parameter \"%s\" owned by layer \"%s\" with layer \"%s\": shape "
                      "mismatch (owner shape %s, sharing layer shape %s); use share_mode: PERMISSIVE to "
                      "share blobs of equal count",
                      net_source(net), pname, oname, lname, s1, s2);
  }
  if (spec->has_lr_mult) {
    if (np->has_lr && spec->lr_mult != p->lr_mult)
      return crema_fail(
          err, "%s: shared parameter \"%s\" has mismatched lr_mult (%g in layer \"%s\", %g in \"%s\")",
          net_source(net), pname, (double)p->lr_mult, oname, (double)spec->lr_mult, lname);
    np->has_lr = true;
    p->lr_mult = spec->lr_mult;
  }
  if (spec->has_decay_mult) {
    if (np->has_decay && spec->decay_mult != p->decay_mult)
      return crema_fail(
          err, "%s: shared parameter \"%s\" has mismatched decay_mult (%g in layer \"%s\", %g in \"%s\")",
          net_source(net), pname, (double)p->decay_mult, oname, (double)spec->decay_mult, lname);
    np->has_decay = true;
    p->decay_mult = spec->decay_mult;
  }
  /* Share: the layer now reads and accumulates into the owner's blob. */
  crema_blob_free(mine);
  l->blobs[pi] = theirs;
  l->blob_shared[pi] = true;
  return 0;
}

/* ---------------------------------------------------------------- build */

static int layer_index_of_orig(const crema_net *net, int orig) {
  for (int i = 0; i < net->n_layers; i++)
    if (net->layers[i].orig == orig) return i;
  return -1;
}

/* Caffe's AllowForceBackward: loss layers never propagate to their label input. */
static bool allow_force_backward(const crema_layer *l, int bottom) {
  if (!l->ops->backward) return false;
  if (l->ops->is_loss && bottom == 1 && strcmp(l->ops->type, "EuclideanLoss")) return false;
  return true;
}

static int setup_layer(crema_net *net, int li, const crema_net_options *opt, crema_error *err) {
  net_layer *L = &net->layers[li];
  const Crema__LayerParameter *lp = L->param;
  const char *lname = lp->name ? lp->name : "(unnamed)";
  Crema__Phase phase = lp->has_phase ? lp->phase : opt->phase;
  /* Seed from the layer's position in the prototxt (splits get their own streams), so the
   * same layer draws the same initial weights in the TRAIN and the TEST net. */
  uint64_t pos = L->orig >= 0 ? (uint64_t)net->orig_index[L->orig] : ((uint64_t)1 << 32) + (uint64_t)li;
  if (crema_layer_create(lp, phase, crema_net_layer_seed(opt->seed, pos), &L->layer, err))
    return crema_error_prefix(err, "%s", net_source(net));
  crema_layer *l = L->layer;
  l->skip_fill = opt->skip_fill;
  l->skip_fill_ctx = opt->skip_fill_ctx;
  l->workspace = net->workspace;
  L->n_bottom = (int)lp->n_bottom;
  L->n_top = (int)lp->n_top;
  size_t nb = lp->n_bottom + 1, nt = lp->n_top + 1;
  L->bottom_ids = calloc(nb, sizeof(int));
  L->top_ids = calloc(nt, sizeof(int));
  L->bottoms = calloc(nb, sizeof(crema_blob *));
  L->tops = calloc(nt, sizeof(crema_blob *));
  L->bottom_need_backward = calloc(nb, sizeof(bool));
  if (!L->bottom_ids || !L->top_ids || !L->bottoms || !L->tops || !L->bottom_need_backward)
    return crema_fail(err, "out of memory");
  if (lp->n_propagate_down && lp->n_propagate_down != lp->n_bottom)
    return crema_fail(
        err,
        "%s: layer \"%s\": propagate_down is given %zu times; give it once per bottom (%zu) or not at all",
        net_source(net), lname, lp->n_propagate_down, lp->n_bottom);
  bool need_backward = false;
  for (int j = 0; j < L->n_bottom; j++) {
    int id = find_blob(net, lp->bottom[j]);
    if (id < 0 || !net->blob_available[id]) {
      char avail[768];
      size_t used = 0;
      avail[0] = '\0';
      for (int b = 0; b < net->n_blobs && used < sizeof avail; b++)
        if (net->blob_available[b])
          used += (size_t)snprintf(avail + used, sizeof avail - used, "%s\"%s\"", used ? ", " : "",
                                   net->blob_names[b]);
      return crema_fail(
          err, "%s: layer \"%s\" reads unknown bottom blob \"%s\" (bottom %d); blobs available there: %s",
          net_source(net), lname, lp->bottom[j], j, used ? avail : "(none)");
    }
    net->blob_available[id] = false;
    L->bottom_ids[j] = id;
    L->bottoms[j] = net->blobs[id];
    bool prop = lp->n_propagate_down ? lp->propagate_down[j] != 0 : true;
    L->bottom_need_backward[j] = net->blob_need_backward[id] && prop;
    need_backward = need_backward || net->blob_need_backward[id];
  }
  for (int j = 0; j < L->n_top; j++) {
    const char *tname = lp->top[j];
    int id;
    if (j < L->n_bottom && !strcmp(tname, lp->bottom[j])) {
      id = L->bottom_ids[j]; /* in place */
    } else {
      if (find_blob(net, tname) >= 0)
        return crema_fail(err,
                          "%s: layer \"%s\": top blob \"%s\" is produced by more than one layer; give it a "
                          "new name (only a top at the same position as its bottom may reuse a name, for "
                          "in-place computation)",
                          net_source(net), lname, tname);
      if ((id = add_blob(net, tname, err)) < 0) return -1;
    }
    net->blob_available[id] = true;
    L->top_ids[j] = id;
    L->tops[j] = net->blobs[id];
  }
  if (crema_layer_setup(l, L->n_bottom, L->bottoms, L->n_top, L->tops, err))
    return crema_error_prefix(err, "%s", net_source(net));
  /* Loss weights: given once per top, or the type's default (loss layers: top 0 gets 1). */
  if (lp->n_loss_weight && lp->n_loss_weight != lp->n_top)
    return crema_fail(
        err, "%s: layer \"%s\": loss_weight is given %zu times; give it once per top (%zu) or not at all",
        net_source(net), lname, lp->n_loss_weight, lp->n_top);
  for (int j = 0; j < L->n_top; j++) {
    float w = lp->n_loss_weight ? lp->loss_weight[j] : (l->ops->is_loss && j == 0 ? 1.0f : 0.0f);
    net->blob_loss_weight[L->top_ids[j]] = w;
  }
  /* Parameters: a layer with a learned parameter (lr_mult != 0) needs backward. */
  for (int p = 0; p < l->n_blobs; p++) {
    bool learn = l->lr_mult[p] != 0.0f;
    l->param_propagate_down[p] = learn;
    need_backward = need_backward || learn;
  }
  for (int p = 0; p < l->n_blobs; p++)
    if (append_param(net, li, p, err)) return -1;
  L->need_backward = need_backward;
  if (need_backward)
    for (int j = 0; j < L->n_top; j++) net->blob_need_backward[L->top_ids[j]] = true;
  return 0;
}

/* Caffe's pass from the last layer back: layers whose tops influence no loss, or whose
 * tops nobody back-propagates into, skip backward. */
static void prune_backward(crema_net *net) {
  bool *under_loss = calloc((size_t)net->n_blobs + 1, sizeof(bool));
  bool *skip = calloc((size_t)net->n_blobs + 1, sizeof(bool));
  if (!under_loss || !skip) {
    /* Out of memory here only costs speed: keep every backward. */
    free(under_loss);
    free(skip);
    return;
  }
  for (int li = net->n_layers - 1; li >= 0; li--) {
    net_layer *L = &net->layers[li];
    bool contributes = false, skip_down = true;
    for (int j = 0; j < L->n_top; j++) {
      int id = L->top_ids[j];
      if (net->blob_loss_weight[id] != 0.0f || under_loss[id]) contributes = true;
      if (!skip[id]) skip_down = false;
      if (contributes && !skip_down) break;
    }
    if (L->need_backward && skip_down) {
      L->need_backward = false;
      for (int j = 0; j < L->n_bottom; j++) L->bottom_need_backward[j] = false;
    }
    if (!contributes) L->need_backward = false;
    for (int j = 0; j < L->n_bottom; j++) {
      int id = L->bottom_ids[j];
      if (contributes)
        under_loss[id] = true;
      else
        L->bottom_need_backward[j] = false;
      if (!L->bottom_need_backward[j]) skip[id] = true;
    }
  }
  free(under_loss);
  free(skip);
}

static void force_backward(crema_net *net) {
  for (int li = 0; li < net->n_layers; li++) {
    net_layer *L = &net->layers[li];
    if (!L->layer->ops->backward) continue;
    L->need_backward = true;
    for (int j = 0; j < L->n_bottom; j++) {
      L->bottom_need_backward[j] = L->bottom_need_backward[j] || allow_force_backward(L->layer, j);
      net->blob_need_backward[L->bottom_ids[j]] =
          net->blob_need_backward[L->bottom_ids[j]] || L->bottom_need_backward[j];
    }
    /* Caffe also turns on every parameter gradient here; frozen (lr_mult 0) parameters stay
     * off in crema: nobody may learn them, so their gradient would be wasted work. */
  }
}

/* Caffe's SplitLayer gives every top its bottom's data (Blob::ShareData; only the diffs are
 * separate), so a blob read by k layers is held once, not k + 1 times. crema does the same,
 * except where a later layer writes the bottom or one of the tops in place: Caffe would then
 * let that layer change its siblings' input, and crema keeps the copies (results stay as
 * they were). last[b] is the last layer listing blob b as a top. */
static int share_split_data(crema_net *net, crema_error *err) {
  int *last = malloc(((size_t)net->n_blobs + 1) * sizeof *last);
  if (!last) return crema_fail(err, "out of memory");
  for (int b = 0; b < net->n_blobs; b++) last[b] = -1;
  for (int li = 0; li < net->n_layers; li++)
    for (int j = 0; j < net->layers[li].n_top; j++) last[net->layers[li].top_ids[j]] = li;
  int rc = 0;
  for (int li = 0; li < net->n_layers && !rc; li++) {
    net_layer *L = &net->layers[li];
    if (strcmp(L->layer->ops->type, "Split") || L->n_bottom != 1 || last[L->bottom_ids[0]] > li) continue;
    bool alone = true;
    for (int j = 0; j < L->n_top; j++) alone = alone && last[L->top_ids[j]] == li;
    if (!alone) continue;
    for (int j = 0; j < L->n_top && !rc; j++) rc = crema_blob_share_data(L->tops[j], L->bottoms[0], err);
    L->shares_data = true;
  }
  free(last);
  return rc;
}

typedef struct named_id {
  const char *name;
  int id;
} named_id;

static int cmp_named_id(const void *a, const void *b) {
  return strcmp(((const named_id *)a)->name, ((const named_id *)b)->name);
}

static int collect_outputs(crema_net *net, crema_error *err) {
  net->output_ids = calloc((size_t)net->n_blobs + 1, sizeof(int));
  net->input_ids = calloc((size_t)net->n_blobs + 1, sizeof(int));
  if (!net->output_ids || !net->input_ids) return crema_fail(err, "out of memory");
  for (int b = 0; b < net->n_blobs; b++)
    if (net->blob_available[b]) net->output_ids[net->n_outputs++] = b;
  /* Caffe lists outputs by name (a std::set): keep that order so logs read the same. */
  /* qsort, not an insertion sort: a net may have 10^5 outputs. Blob names are unique. */
  named_id *by_name = calloc((size_t)net->n_outputs + 1, sizeof *by_name);
  if (!by_name) return crema_fail(err, "out of memory");
  for (int i = 0; i < net->n_outputs; i++)
    by_name[i] = (named_id){net->blob_names[net->output_ids[i]], net->output_ids[i]};
  qsort(by_name, (size_t)net->n_outputs, sizeof *by_name, cmp_named_id);
  for (int i = 0; i < net->n_outputs; i++) net->output_ids[i] = by_name[i].id;
  free(by_name);
  for (int li = 0; li < net->n_layers; li++) {
    const net_layer *L = &net->layers[li];
    if (strcmp(L->layer->ops->type, "Input")) continue;
    for (int j = 0; j < L->n_top; j++) net->input_ids[net->n_inputs++] = L->top_ids[j];
  }
  int n_loss = 0;
  for (int b = 0; b < net->n_blobs; b++) n_loss += net->blob_loss_weight[b] != 0.0f;
  net->loss_ids = calloc((size_t)n_loss + 1, sizeof(int));
  if (!net->loss_ids) return crema_fail(err, "out of memory");
  for (int b = 0; b < net->n_blobs; b++)
    if (net->blob_loss_weight[b] != 0.0f) net->loss_ids[net->n_loss++] = b;
  return 0;
}

int crema_net_build(const Crema__NetParameter *param, const crema_net_options *opt, crema_net **out,
                    crema_error *err) {
  *out = NULL;
  crema_net *net = calloc(1, sizeof *net);
  if (!net) return crema_fail(err, "out of memory building a net");
  if (opt->source && !(net->source = dup_string(opt->source))) goto oom;
  net->phase = opt->phase;
  net->workspace = opt->workspace;
  if (!net->workspace) {
    if (!(net->workspace = calloc(1, sizeof *net->workspace))) goto oom;
    net->workspace_owned = true;
  }
  net->param = crema_message_copy(&param->base);
  if (!net->param) goto oom;
  Crema__NetParameter *msg = net->param;
  if (msg->n_layers || msg->n_input) {
    bool changed = false;
    if (crema_upgrade_net(msg, opt->source, &changed, err)) goto fail;
  }
  if (set_state(msg, opt, err)) goto fail;
  net->orig_index = calloc(msg->n_layer + 1, sizeof(int));
  if (!net->orig_index) goto oom;
  if (filter_layers(net, msg, err)) goto fail;
  /* Blobs stored inside layer messages (a NetParameter with weights) are set aside and copied
   * into the layers after setup, as Caffe's Layer constructor does. */
  net->init_blobs = calloc(msg->n_layer + 1, sizeof *net->init_blobs);
  if (!net->init_blobs) goto oom;
  for (size_t i = 0; i < msg->n_layer; i++) {
    Crema__LayerParameter *lp = msg->layer[i];
    if (!lp->n_blobs) continue;
    Crema__LayerParameter *holder = malloc(sizeof *holder);
    if (!holder) goto oom;
    crema__layer_parameter__init(holder);
    holder->name = lp->name ? dup_string(lp->name) : NULL;
    holder->n_blobs = lp->n_blobs;
    holder->blobs = lp->blobs;
    lp->n_blobs = 0;
    lp->blobs = NULL;
    net->init_blobs[i] = holder;
  }
  if (insert_splits(net, err)) goto fail;
  size_t max_params = 0;
  for (int li = 0; li < net->n_layers; li++) max_params += CREMA_LAYER_MAX_BLOBS;
  net->params = calloc(max_params + 1, sizeof *net->params);
  net->named = calloc(max_params + 1, sizeof *net->named);
  if (!net->params || !net->named) goto oom;
  for (int li = 0; li < net->n_layers; li++)
    if (setup_layer(net, li, opt, err)) goto fail;
  prune_backward(net);
  if (msg->force_backward) force_backward(net);
  if (collect_outputs(net, err)) goto fail;
  if (share_split_data(net, err)) goto fail;
  for (size_t i = 0; i < msg->n_layer; i++) {
    if (!net->init_blobs[i]) continue;
    if (crema_net_copy_layer_blobs(net, layer_index_of_orig(net, (int)i), net->init_blobs[i], err)) goto fail;
    protobuf_c_message_free_unpacked(&net->init_blobs[i]->base, NULL);
    net->init_blobs[i] = NULL;
  }
  *out = net;
  return 0;
oom:
  crema_fail(err, "out of memory building net %s", net_source(net));
fail:
  crema_net_free(net);
  return -1;
}

int crema_net_load(const char *path, const crema_net_options *opt, crema_net **out, crema_error *err) {
  *out = NULL;
  Crema__NetParameter *msg = NULL;
  if (crema_read_net_param(path, &msg, err)) return -1;
  crema_net_options o = *opt;
  if (!o.source) o.source = path;
  int rc = crema_net_build(msg, &o, out, err);
  crema_message_free(msg);
  return rc;
}

void crema_net_free(crema_net *net) {
  if (!net) return;
  crema_net_fusion_free(net); /* before the layers it points into */
  for (int li = 0; li < net->n_layers; li++) {
    net_layer *L = &net->layers[li];
    crema_layer_free(L->layer);
    if (L->param_owned && L->param) protobuf_c_message_free_unpacked(&L->param->base, NULL);
    free(L->bottom_ids);
    free(L->top_ids);
    free(L->bottoms);
    free(L->tops);
    free(L->bottom_need_backward);
  }
  free(net->layers);
  for (int b = 0; b < net->n_blobs; b++) {
    crema_blob_free(net->blobs[b]);
    free(net->blob_names[b]);
  }
  free(net->blobs);
  crema_net_free_arena(&net->diffs);
  crema_net_free_arena(&net->activations);
  name_index_free(&net->blob_index);
  free(net->blob_names);
  free(net->blob_need_backward);
  free(net->blob_available);
  free(net->blob_loss_weight);
  if (net->init_blobs && net->param)
    for (size_t i = 0; i < net->param->n_layer; i++)
      if (net->init_blobs[i]) protobuf_c_message_free_unpacked(&net->init_blobs[i]->base, NULL);
  free(net->init_blobs);
  if (net->param) protobuf_c_message_free_unpacked(&net->param->base, NULL);
  free(net->orig_index);
  free(net->params);
  free(net->named);
  free(net->output_ids);
  free(net->input_ids);
  free(net->loss_ids);
  free(net->source);
  if (net->workspace_owned) {
    crema_workspace_release(net->workspace);
    free(net->workspace);
  }
  free(net);
}

/* ---------------------------------------------------------------- running */

/* Runs layers [start, end] as a forward over [from, to] runs them: a layer fused into one
 * before it (crema_net_fuse) is skipped when that one runs it, which it does when the chain
 * ends by `to`. */
static int forward_range(crema_net *net, int start, int end, int from, int to, crema_error *err) {
  for (int li = start; li <= end; li++) {
    net_layer *L = &net->layers[li];
    if (crema_net_fusion_skips(net, li, from, to)) continue;
    crema_net_fusion_arm(net, li, to);
    if (L->shares_data) { /* nothing to copy: re-point the tops (the bottom may have moved) */
      for (int j = 0; j < L->n_top; j++)
        if (crema_blob_share_data(L->tops[j], L->bottoms[0], err))
          return crema_error_prefix(err, "%s: forward", net_source(net));
      continue;
    }
    if (crema_layer_forward(L->layer, L->bottoms, L->tops, err))
      return crema_error_prefix(err, "%s: forward", net_source(net));
  }
  return 0;
}

int crema_net_forward_from_to(crema_net *net, int start, int end, crema_error *err) {
  if (start < 0) start = 0;
  if (end >= net->n_layers) end = net->n_layers - 1;
  return forward_range(net, start, end, start, end, err);
}

float crema_net_current_loss(const crema_net *net) {
  double loss = 0.0;
  for (int k = 0; k < net->n_loss; k++) {
    const crema_blob *b = net->blobs[net->loss_ids[k]];
    double s = 0.0;
    for (size_t i = 0; i < b->count; i++) s += b->data[i];
    loss += (double)net->blob_loss_weight[net->loss_ids[k]] * s;
  }
  return (float)loss;
}

int crema_net_forward(crema_net *net, float *loss, crema_error *err) {
  if (crema_net_forward_from_to(net, 0, net->n_layers - 1, err)) return -1;
  if (loss) *loss = crema_net_current_loss(net);
  return 0;
}

void crema_net_seed_loss_diffs(crema_net *net) {
  /* Seed each loss top's gradient with its weight: d(weighted loss)/d(top) = w. */
  for (int k = 0; k < net->n_loss; k++) {
    crema_blob *b = net->blobs[net->loss_ids[k]];
    crema_set(b->count, net->blob_loss_weight[net->loss_ids[k]], b->diff);
  }
}

int crema_net_forward_layer(crema_net *net, int i, crema_error *err) {
  return forward_range(net, i, i, 0, net->n_layers - 1, err);
}

/* Zeroes a parameter diff that is still only marked zero (see
 * crema_net_clear_param_diffs_lazily). */
static void settle_pending_diff(crema_blob *b) {
  if (b->diff_zero_pending) crema_blob_zero_diff(b);
}

static void settle_pending_diffs(crema_layer *l) {
  for (int j = 0; j < l->n_blobs; j++) settle_pending_diff(l->blobs[j]);
}

/* One layer's turn in backward: its pending diffs zeroed first unless it writes them itself,
 * and none left pending after it. A layer fused into a head that runs the chain's backward
 * (crema_net_fusion_skips_backward) only has its diffs zeroed: the head adds to them. The
 * head runs when any layer of its chain [li, last] needs backward. Returns the last layer
 * whose backward has now run (li, or the end of li's chain); -1 for a skipped layer. */
static int backward_one(crema_net *net, int li, int end, int start) {
  net_layer *L = &net->layers[li];
  if (crema_net_fusion_skips_backward(net, li, end, start)) {
    settle_pending_diffs(L->layer);
    return -1;
  }
  const int last = crema_net_fusion_arm_backward(net, li, start);
  bool need = L->need_backward;
  for (int k = li + 1; k <= last; k++) need |= net->layers[k].need_backward;
  if (need) {
    if (!L->layer->ops->overwrites_pending_diffs) settle_pending_diffs(L->layer);
    crema_layer_backward(L->layer, L->tops, L->bottom_need_backward, L->bottoms);
  }
  settle_pending_diffs(L->layer);
  return last >= 0 ? last : li;
}

static void settle_all_pending_diffs(crema_net *net) {
  for (int i = 0; i < net->n_params; i++) settle_pending_diff(net->params[i].blob);
}

void crema_net_backward_layer(crema_net *net, int i) {
  backward_one(net, i, 0, net->n_layers - 1);
  settle_all_pending_diffs(net);
}

void crema_net_backward_from_to(crema_net *net, int start, int end) {
  if (start >= net->n_layers) start = net->n_layers - 1;
  if (end < 0) end = 0;
  crema_net_seed_loss_diffs(net);
  for (int li = start; li >= end; li--) {
    /* the callback hears of each layer once its gradients are written: a chain's layers
     * after its head, from the last, as they would have come */
    const int done = backward_one(net, li, end, start);
    for (int k = done; net->on_backward && k >= li; k--)
      if (k == li || crema_net_backward_fused_into(net, k) == li) net->on_backward(net->on_backward_ctx, k);
  }
  settle_all_pending_diffs(net); /* parameters of layers outside [end, start] */
}

void crema_net_set_backward_callback(crema_net *net, crema_net_backward_fn fn, void *ctx) {
  net->on_backward = fn;
  net->on_backward_ctx = ctx;
}

void crema_net_backward(crema_net *net) { crema_net_backward_from_to(net, net->n_layers - 1, 0); }

int crema_net_reshape(crema_net *net, crema_error *err) {
  for (int li = 0; li < net->n_layers; li++) {
    net_layer *L = &net->layers[li];
    if (crema_layer_reshape(L->layer, L->bottoms, L->tops, err))
      return crema_error_prefix(err, "%s: reshape", net_source(net));
  }
  return 0;
}

crema_workspace *crema_net_workspace(const crema_net *net) { return net->workspace; }

void crema_net_clear_param_diffs(crema_net *net) {
  for (int i = 0; i < net->n_params; i++) crema_blob_zero_diff(net->params[i].blob);
}

void crema_net_clear_param_diffs_lazily(crema_net *net) {
  for (int i = 0; i < net->n_params; i++) net->params[i].blob->diff_zero_pending = true;
}

/* ---------------------------------------------------------------- accessors */

int crema_net_num_layers(const crema_net *net) { return net->n_layers; }
crema_layer *crema_net_layer(const crema_net *net, int i) { return net->layers[i].layer; }
const char *crema_net_layer_name(const crema_net *net, int i) {
  const char *n = net->layers[i].param->name;
  return n ? n : "";
}
const Crema__LayerParameter *crema_net_layer_param(const crema_net *net, int i) {
  return net->layers[i].param;
}

int crema_net_layer_index(const crema_net *net, const char *name) {
  for (int i = 0; i < net->n_layers; i++)
    if (net->layers[i].param->name && !strcmp(net->layers[i].param->name, name)) return i;
  return -1;
}

int crema_net_num_blobs(const crema_net *net) { return net->n_blobs; }
crema_blob *crema_net_blob(const crema_net *net, int i) { return net->blobs[i]; }
const char *crema_net_blob_name(const crema_net *net, int i) { return net->blob_names[i]; }
crema_blob *crema_net_blob_by_name(const crema_net *net, const char *name) {
  int id = find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id];
}
float crema_net_blob_loss_weight(const crema_net *net, int i) { return net->blob_loss_weight[i]; }
bool crema_net_blob_needs_backward(const crema_net *net, int i) { return net->blob_need_backward[i]; }

int crema_net_num_outputs(const crema_net *net) { return net->n_outputs; }
crema_blob *crema_net_output(const crema_net *net, int i) { return net->blobs[net->output_ids[i]]; }
const char *crema_net_output_name(const crema_net *net, int i) { return net->blob_names[net->output_ids[i]]; }
float crema_net_output_loss_weight(const crema_net *net, int i) {
  return net->blob_loss_weight[net->output_ids[i]];
}
int crema_net_num_inputs(const crema_net *net) { return net->n_inputs; }
crema_blob *crema_net_input(const crema_net *net, int i) { return net->blobs[net->input_ids[i]]; }
const char *crema_net_input_name(const crema_net *net, int i) { return net->blob_names[net->input_ids[i]]; }

int crema_net_layer_bottoms(const crema_net *net, int i, const int **ids) {
  *ids = net->layers[i].bottom_ids;
  return net->layers[i].n_bottom;
}
int crema_net_layer_tops(const crema_net *net, int i, const int **ids) {
  *ids = net->layers[i].top_ids;
  return net->layers[i].n_top;
}
bool crema_net_layer_needs_backward(const crema_net *net, int i) { return net->layers[i].need_backward; }
bool crema_net_bottom_needs_backward(const crema_net *net, int i, int bottom) {
  return net->layers[i].bottom_need_backward[bottom];
}

int crema_net_num_params(const crema_net *net) { return net->n_params; }
const crema_net_param *crema_net_param_at(const crema_net *net, int i) { return &net->params[i]; }

const Crema__NetParameter *crema_net_param_message(const crema_net *net) { return net->param; }
Crema__Phase crema_net_phase(const crema_net *net) { return net->phase; }
const char *crema_net_name(const crema_net *net) { return net->param->name ? net->param->name : ""; }
