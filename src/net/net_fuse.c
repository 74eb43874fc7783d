/* net_fuse.c -- in-place layers run inside the Convolution, Eltwise or BatchNorm before
 * them (crema_net_fuse).
 *
 * A Convolution's top is often rewritten in place by a chain of element-wise layers:
 * BatchNorm, Scale and ReLU in ResNet, ReLU alone in CaffeNet and GoogLeNet. Run one by one,
 * each re-reads and re-writes the whole activation; run inside the convolution, the ReLU is
 * applied while each output is still in cache, and (when backward never runs) BatchNorm and
 * Scale disappear into a copy of the weights and bias, as `crema export` folds them:
 *   a_o = gamma_o / sqrt(s*v_o + eps),  W'_o = a_o * W_o,  b'_o = a_o * (b_o - s*m_o) + beta_o
 * (s = 1 / BatchNorm's factor, 0 when the factor is 0; arithmetic in double). An Eltwise
 * (ResNet's shortcut sums) takes the ReLU after it the same way.
 *
 * In training the fold is not possible (the layers learn, and backward needs what each one
 * saw), so a BatchNorm (with stored statistics, a finetune's frozen BatchNorm, or the batch's
 * own) runs the Scale and ReLU after it itself: one pass forward, one or two passes backward
 * (batch_norm_chain.h). Such a BatchNorm, and an Eltwise, also run their ReLU's backward
 * (`whole`): the ReLU and Scale then wait for it in backward (crema_net_fusion_skips_backward),
 * and an Eltwise makes the backward sum of the Split after it. A Convolution's ReLU still
 * runs its own backward. Either way a training net gives the same bits fused or not.
 *
 * A chain is fused only when nothing but its own layers touches the blob between the
 * head and the chain's last layer, so every other layer sees what it saw before. A
 * negative slope makes an in-place ReLU keep a copy of its input for backward, so there
 * only nets without backward fuse it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "layers/batch_norm_chain.h"
#include "net/net_internal.h"
#include "tensor/math.h"

static bool is_type(const net_layer *L, const char *type) {
  return L->param->type && !strcmp(L->param->type, type);
}

/* Whether layer L reads or writes blob `id`. */
static bool touches(const net_layer *L, int id) {
  for (int j = 0; j < L->n_bottom; j++)
    if (L->bottom_ids[j] == id) return true;
  for (int j = 0; j < L->n_top; j++)
    if (L->top_ids[j] == id) return true;
  return false;
}

static bool in_place_on(const net_layer *L, int id) {
  return L->n_bottom == 1 && L->n_top == 1 && L->bottom_ids[0] == id && L->top_ids[0] == id;
}

/* BatchNorm with one statistic per channel (batch_norm_chain.h runs its Scale and ReLU). */
static bool per_channel_batch_norm(const net_layer *L, int channels) {
  const crema_layer *l = L->layer;
  return l->n_blobs == 3 && l->blobs[0]->count == (size_t)channels &&
         l->blobs[1]->count == (size_t)channels && l->blobs[2]->count == 1;
}

/* BatchNorm that normalises with its stored statistics, with one value per channel. */
static bool folds_batch_norm(const net_layer *L, int channels) {
  const Crema__BatchNormParameter *p = L->param->batch_norm_param;
  const bool global =
      p && p->has_use_global_stats ? p->use_global_stats : L->layer->phase == CREMA__PHASE__TEST;
  return global && per_channel_batch_norm(L, channels);
}

/* A learned per-channel Scale (one bottom, axis 1, one axis), optionally with a bias. */
static bool folds_scale(const net_layer *L, int channels) {
  const Crema__ScaleParameter *p = L->param->scale_param;
  const crema_layer *l = L->layer;
  if (p && (p->axis != 1 || p->num_axes != 1)) return false;
  const bool bias = p && p->bias_term;
  return l->n_blobs == (bias ? 2 : 1) && l->blobs[0]->count == (size_t)channels &&
         (!bias || l->blobs[1]->count == (size_t)channels);
}

static float relu_slope(const net_layer *L) {
  return L->param->relu_param ? L->param->relu_param->negative_slope : 0.0f;
}

/* Whether BatchNorm and Scale on h's top can fold into h's weights: a Convolution whose
 * output channels are the top's axis 1 (its weights' first axis). */
static bool takes_fold(const net_layer *H, int channels) {
  const crema_layer *hl = H->layer;
  return !strcmp(hl->ops->type, "Convolution") && channels > 0 && hl->n_blobs >= 1 &&
         hl->blobs[0]->num_axes >= 1 && hl->blobs[0]->shape[0] == channels;
}

/* Whether an in-place BatchNorm can run the Scale after it (batch_norm_chain.h). In training the Scale's
 * per-channel sums must be the ones its own backward makes: with fewer than 16 channels it splits them
 * differently. */
static bool runs_scale(const net_layer *L, int channels, bool inference) {
  return is_type(L, "Scale") && folds_scale(L, channels) && (inference || channels >= 16);
}

/* The chain after layer h (a layer that takes fusion, one top), if any: sets bn, scale and
 * relu to their layer indices (-1 when absent) and returns the last one, or -1. BatchNorm
 * and Scale fold only into a Convolution (takes_fold); the ReLU runs inside any layer that
 * takes fusion (Convolution, Eltwise, BatchNorm). An in-place BatchNorm runs the Scale after
 * it (not folded: `scale` set, `bn` not). */
static int find_chain(const crema_net *net, int h, bool inference, int *bn, int *scale, int *relu) {
  const net_layer *H = &net->layers[h];
  *bn = *scale = *relu = -1;
  if (H->n_top != 1) return -1;
  const int id = H->top_ids[0];
  const crema_blob *top = net->blobs[id];
  const int channels = top->num_axes >= 2 ? top->shape[1] : 0;
  const bool norm = is_type(H, "BatchNorm");
  if (norm && !(in_place_on(H, id) && per_channel_batch_norm(H, channels))) return -1;
  const bool fold = inference && takes_fold(H, channels);
  int last = -1;
  for (int k = h + 1; k < net->n_layers; k++) {
    const net_layer *L = &net->layers[k];
    if (!touches(L, id)) continue;
    if (!in_place_on(L, id)) break;
    if (fold && *bn < 0 && *relu < 0 && is_type(L, "BatchNorm") && folds_batch_norm(L, channels)) {
      *bn = last = k;
    } else if (((fold && *bn >= 0) || norm) && *scale < 0 && *relu < 0 &&
               runs_scale(L, channels, inference)) {
      *scale = last = k;
    } else if (*relu < 0 && is_type(L, "ReLU") && (inference || relu_slope(L) >= 0.0f)) {
      *relu = last = k;
      break;
    } else {
      break;
    }
  }
  return last;
}

/* The Split after layer h's chain (ending at `last`), when it is the next layer to read h's
 * top and has two tops: ResNet's shortcut, feeding the next block and the next sum. Its
 * backward adds its tops' gradients, which the ReLU's backward then reads: h makes the sum
 * inside its own pass instead (crema_fusion.sum). Else -1. */
static int find_sum_split(const crema_net *net, int h, int last) {
  const int id = net->layers[h].top_ids[0];
  for (int k = last + 1; k < net->n_layers; k++) {
    const net_layer *L = &net->layers[k];
    if (!touches(L, id)) continue;
    return is_type(L, "Split") && L->n_bottom == 1 && L->n_top == 2 && L->bottom_ids[0] == id ? k : -1;
  }
  return -1;
}

/* Folds BatchNorm bn (and Scale sc, or -1) into layer h's weights: folded[0 .. count) the
 * weights, then num_output biases. */
static void fold(const crema_net *net, int h, int bn, int sc, float *folded) {
  const crema_layer *hl = net->layers[h].layer, *b = net->layers[bn].layer;
  const crema_layer *s = sc >= 0 ? net->layers[sc].layer : NULL;
  const Crema__BatchNormParameter *bp = net->layers[bn].param->batch_norm_param;
  const double eps = bp ? bp->eps : 1e-5;
  const size_t channels = b->blobs[0]->count, per = hl->blobs[0]->count / channels;
  const double f = b->blobs[2]->data[0], sf = f == 0.0 ? 0.0 : 1.0 / f;
  const float *w = hl->blobs[0]->data, *bias = hl->n_blobs > 1 ? hl->blobs[1]->data : NULL;
  float *fw = folded, *fb = folded + hl->blobs[0]->count;
  /* ResNet-50's 94 MB of weights: re-read before every test pass (and by the C API after
   * its parameters were handed out), so on every thread */
#pragma omp parallel for schedule(static) if (hl->blobs[0]->count > CREMA_PAR_MIN)
  for (size_t o = 0; o < channels; o++) {
    const double mean = sf * b->blobs[0]->data[o], var = sf * b->blobs[1]->data[o];
    const double gamma = s ? s->blobs[0]->data[o] : 1.0,
                 beta = s && s->n_blobs > 1 ? s->blobs[1]->data[o] : 0.0;
    const double a = gamma / sqrt(var + eps);
    for (size_t k = 0; k < per; k++) fw[o * per + k] = (float)(a * w[o * per + k]);
    fb[o] = (float)(a * ((bias ? (double)bias[o] : 0.0) - mean) + beta);
  }
}

void crema_net_fusion_free(crema_net *net) {
  net_fusion *f = net->fusion;
  if (!f) return;
  for (int i = 0; i < net->n_layers; i++) {
    free(f->folded[i]);
    crema_layer *l = net->layers[i].layer;
    if (l->fusion.scale) crema_scale_keep_input_in(l->fusion.scale, NULL);
    memset(&l->fusion, 0, sizeof l->fusion);
    l->run_fused = false;
  }
  free(f->head);
  free(f->last);
  free(f->bn);
  free(f->scale);
  free(f->whole);
  free(f->split);
  free(f->split_head);
  free(f->folded);
  free(f);
  net->fusion = NULL;
}

/* Finds the chains and sets the layers' fusion (first call). */
static int plan(crema_net *net, bool inference, crema_error *err) {
  const int n = net->n_layers;
  net_fusion *f = calloc(1, sizeof *f);
  if (!f) return crema_fail(err, "out of memory");
  net->fusion = f;
  f->inference = inference;
  f->head = malloc((size_t)n * sizeof *f->head);
  f->last = malloc((size_t)n * sizeof *f->last);
  f->bn = malloc((size_t)n * sizeof *f->bn);
  f->scale = malloc((size_t)n * sizeof *f->scale);
  f->whole = calloc((size_t)n, sizeof *f->whole);
  f->split = malloc((size_t)n * sizeof *f->split);
  f->split_head = malloc((size_t)n * sizeof *f->split_head);
  f->folded = calloc((size_t)n, sizeof *f->folded);
  if (!f->head || !f->last || !f->bn || !f->scale || !f->whole || !f->split || !f->split_head || !f->folded) {
    crema_net_fusion_free(net);
    return crema_fail(err, "out of memory");
  }
  for (int i = 0; i < n; i++)
    f->head[i] = f->last[i] = f->bn[i] = f->scale[i] = f->split[i] = f->split_head[i] = -1;
  for (int h = 0; h < n; h++) {
    crema_layer *hl = net->layers[h].layer;
    if (!hl->ops->takes_fusion || f->head[h] >= 0) continue;
    int bn, sc, relu;
    const int last = find_chain(net, h, inference, &bn, &sc, &relu);
    if (last < 0) continue;
    f->last[h] = last;
    f->bn[h] = bn;
    f->scale[h] = sc;
    for (int k = h + 1; k <= last; k++)
      if (k == bn || k == sc || k == relu) f->head[k] = h;
    if (relu >= 0) hl->fusion.act = (crema_act){.relu = true, .slope = relu_slope(&net->layers[relu])};
    /* A BatchNorm runs its Scale, and BatchNorm and Eltwise run their chain's backward too (a
     * Convolution leaves its ReLU's backward to the ReLU) */
    f->whole[h] =
        !inference && (is_type(&net->layers[h], "BatchNorm") || is_type(&net->layers[h], "Eltwise"));
    if (sc >= 0 && is_type(&net->layers[h], "BatchNorm")) {
      hl->fusion.scale = net->layers[sc].layer;
      /* with batch statistics the BatchNorm keeps x_hat, which is the Scale's input: one
       * copy serves both (ResNet-50 at batch 10: 415 MB less) */
      if (!inference) crema_scale_keep_input_in(hl->fusion.scale, crema_batch_norm_x_norm(hl));
    }
    /* not once the gradients' storage is planned: the plan must know the Split's top
     * gradients are read at h's turn (net_memory.c) */
    if (f->whole[h] && relu >= 0 && is_type(&net->layers[h], "Eltwise") && !net->diffs.buf) {
      f->split[h] = find_sum_split(net, h, last);
      if (f->split[h] >= 0) f->split_head[f->split[h]] = h;
    }
    if (bn >= 0) {
      const size_t count = hl->blobs[0]->count + net->blobs[net->layers[h].top_ids[0]]->shape[1];
      if (!(f->folded[h] = malloc(count * sizeof(float)))) {
        crema_net_fusion_free(net);
        return crema_fail(err, "out of memory folding \"%s\" into \"%s\"", net->layers[bn].param->name,
                          net->layers[h].param->name);
      }
      hl->fusion.weights = f->folded[h];
      hl->fusion.bias = f->folded[h] + hl->blobs[0]->count;
    }
  }
  return 0;
}

/* Re-reads every folded layer's parameters into its folded copy. */
static void refold(crema_net *net) {
  const net_fusion *f = net->fusion;
  for (int h = 0; h < net->n_layers; h++)
    if (f->bn[h] >= 0) fold(net, h, f->bn[h], f->scale[h], f->folded[h]);
}

int crema_net_fuse(crema_net *net, bool inference, crema_error *err) {
  if (net->fusion && net->fusion->inference != inference)
    return crema_fail(err, "%s: already fused %s", net->source ? net->source : "net",
                      net->fusion->inference ? "for inference" : "for training");
  if (net->fusion) {
    refold(net);
    return 0;
  }
  if (plan(net, inference, err)) return -1;
  int relus = 0, folds = 0, scales = 0;
  for (int i = 0; i < net->n_layers; i++) {
    relus += net->fusion->head[i] >= 0 && is_type(&net->layers[i], "ReLU");
    folds += net->fusion->bn[i] >= 0;
    scales += net->fusion->head[i] >= 0 && net->fusion->bn[net->fusion->head[i]] < 0 &&
              is_type(&net->layers[i], "Scale");
  }
  const char *name = net->source ? net->source : "net";
  if (folds)
    CREMA_INFO("%s: %d ReLU layers run inside the layer before them, %d BatchNorm (+ Scale) folded into "
               "convolutions",
               name, relus, folds);
  else if (scales)
    CREMA_INFO("%s: %d ReLU layers run inside the layer before them, %d Scale layers inside the BatchNorm "
               "before them (forward and backward)",
               name, relus, scales);
  else if (relus)
    CREMA_INFO("%s: %d ReLU layers run inside the layer before them", name, relus);
  refold(net);
  if (crema_net_reshape(net, err)) { /* a folded bias changes the engines the layers create */
    crema_net_fusion_free(net);
    return -1;
  }
  return 0;
}

int crema_net_fused_into(const crema_net *net, int i) {
  return net->fusion && i >= 0 && i < net->n_layers ? net->fusion->head[i] : -1;
}

/* Forward over [start, end] (net.c): whether layer i runs, and (for a layer running others)
 * whether with them. */
bool crema_net_fusion_skips(const crema_net *net, int i, int start, int end) {
  const net_fusion *f = net->fusion;
  if (!f || f->head[i] < 0) return false;
  const int h = f->head[i];
  return h >= start && f->last[h] <= end;
}

void crema_net_fusion_arm(crema_net *net, int i, int end) {
  const net_fusion *f = net->fusion;
  if (f) net->layers[i].layer->run_fused = f->last[i] >= 0 && f->last[i] <= end;
}

/* Backward over [end, start]: a chain whose head runs its backward too (`whole`) is run by
 * the head when it lies in the range whole; the layers after the head then wait for it. */
bool crema_net_fusion_skips_backward(const crema_net *net, int i, int end, int start) {
  const net_fusion *f = net->fusion;
  if (!f) return false;
  if (f->split_head[i] >= 0) /* a Split summed by the Eltwise before it, with that one's chain */
    return f->split_head[i] >= end && i <= start && f->last[f->split_head[i]] <= start;
  if (f->head[i] < 0 || !f->whole[f->head[i]]) return false;
  const int h = f->head[i];
  return h >= end && f->last[h] <= start;
}

int crema_net_fusion_arm_backward(crema_net *net, int i, int start) {
  const net_fusion *f = net->fusion;
  if (!f || !f->whole[i]) return -1;
  crema_layer *l = net->layers[i].layer;
  const bool whole = f->last[i] >= 0 && f->last[i] <= start;
  const int split = whole && f->split[i] >= 0 && f->split[i] <= start ? f->split[i] : -1;
  l->run_fused = whole;
  l->fusion.sum[0] = split >= 0 ? net->layers[split].tops[0] : NULL;
  l->fusion.sum[1] = split >= 0 ? net->layers[split].tops[1] : NULL;
  return split >= 0 ? split : whole ? f->last[i] : -1;
}

int crema_net_backward_fused_into(const crema_net *net, int i) {
  const net_fusion *f = net->fusion;
  if (!f || i < 0 || i >= net->n_layers) return -1;
  if (f->split_head[i] >= 0) return f->split_head[i];
  return f->head[i] >= 0 && f->whole[f->head[i]] ? f->head[i] : -1;
}
