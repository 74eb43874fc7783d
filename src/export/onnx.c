/* onnx.c -- a deploy model (net + blobs) as an ONNX model (opset 11-13).
 *
 * The net is built to learn every blob's shape; then each layer becomes one or a few ONNX
 * nodes. ONNX values are written once, so a Caffe blob rewritten in place gets a new name per
 * writer ("conv1@relu1"); the last writer keeps the Caffe name, so graph outputs are named as
 * the net's outputs (`prob`). Split layers are aliases, not nodes. Caffe semantics that ONNX
 * spells differently are made explicit:
 *  - pooling's ceil rounding: extra end padding that gives exactly Caffe's output size;
 *    average pooling divides by the window clipped to the padded image (an explicit zero Pad,
 *    then count_include_pad 0 for the ceil overhang);
 *  - BatchNorm's stored factor: mean and variance are divided by it;
 *  - Scale / Bias / PReLU parameters get trailing 1-dims so they broadcast over axis 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"
#include "export/onnx_builder.h"
#include "layers/conv_common.h"
#include "net/net.h"
#include "proto/io.h"

typedef struct conv_ctx {
  crema_onnx_builder *b;
  crema_net *net;
  int opset;
  char **cur;           /* per net blob id: the ONNX name holding its current value */
  int *last_write;      /* per net blob id: the last layer writing it */
  const char *ins[256]; /* the current layer's input names, taken before any top is renamed */
  crema_error *err;
} conv_ctx;

#define OOM(c) crema_fail((c)->err, "out of memory while building the ONNX graph")

static const char *in_name(conv_ctx *c, int li, int k) {
  (void)li;
  return c->ins[k];
}

static const crema_blob *in_blob(conv_ctx *c, int li, int k) {
  const int *ids;
  crema_net_layer_bottoms(c->net, li, &ids);
  return crema_net_blob(c->net, ids[k]);
}

/* The ONNX name the layer's top k gets (and from now on stands for that blob). */
static const char *out_name(conv_ctx *c, int li, int k) {
  const int *ids;
  crema_net_layer_tops(c->net, li, &ids);
  int id = ids[k];
  const char *blob = crema_net_blob_name(c->net, id);
  char *name = c->last_write[id] == li
                   ? crema_onnx_str(c->b, "%s", blob)
                   : crema_onnx_str(c->b, "%s@%s", blob, crema_net_layer_name(c->net, li));
  if (name) c->cur[id] = name;
  return name;
}

static const char *tmp_name(conv_ctx *c, int li, const char *what) {
  return crema_onnx_str(c->b, "%s/%s", crema_net_layer_name(c->net, li), what);
}

/* Node with one input and one output; NULL when out of memory. */
static Onnx__NodeProto *unary(conv_ctx *c, int li, const char *op, const char *in, const char *out) {
  (void)li;
  if (!in || !out) return NULL;
  const char *i[1] = {in}, *o[1] = {out};
  return crema_onnx_node(c->b, op, out, 1, i, 1, o);
}

static Onnx__NodeProto *binary(conv_ctx *c, const char *op, const char *a, const char *bb, const char *out) {
  if (!a || !bb || !out) return NULL;
  const char *i[2] = {a, bb}, *o[1] = {out};
  return crema_onnx_node(c->b, op, out, 2, i, 1, o);
}

/* A float initializer named "<layer>_<what>" with the given dims. */
static const char *param(conv_ctx *c, int li, const char *what, int n_dims, const int64_t *dims,
                         const float *data, size_t count, bool copy) {
  const char *name = crema_onnx_str(c->b, "%s_%s", crema_net_layer_name(c->net, li), what);
  return name ? crema_onnx_init_float(c->b, name, n_dims, dims, data, count, copy) : NULL;
}

static const char *scalar(conv_ctx *c, int li, const char *what, float v) {
  return param(c, li, what, 0, NULL, &v, 1, true);
}

static const char *int64s(conv_ctx *c, int li, const char *what, int n, const int64_t *v) {
  const char *name = crema_onnx_str(c->b, "%s_%s", crema_net_layer_name(c->net, li), what);
  int64_t dims[1] = {n};
  return name ? crema_onnx_init_int64(c->b, name, 1, dims, v, (size_t)n) : NULL;
}

static int fail_layer(conv_ctx *c, int li, const char *why) {
  const Crema__LayerParameter *lp = crema_net_layer_param(c->net, li);
  return crema_fail(c->err, "layer \"%s\" (%s) cannot be written as ONNX: %s", lp->name, lp->type, why);
}

/* ---------------------------------------------------------------- vision layers */

/* Convolution -> Conv, Deconvolution -> ConvTranspose: Caffe's weight layouts are ONNX's
 * ((out, in/group, kh, kw) and (in, out/group, kh, kw)) and so are the output sizes. */
static int convolution(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  crema_conv_params p;
  bool transposed = !strcmp(l->ops->type, "Deconvolution");
  if (crema_conv_params_read(l, in_blob(c, li, 0), &p, c->err)) return -1;
  if (p.axis != 1) return fail_layer(c, li, "only axis 1 convolutions are exported");
  const crema_blob *w = l->blobs[0];
  int64_t wd[4] = {w->shape[0], w->shape[1], w->shape[2], w->shape[3]};
  const char *in[3] = {in_name(c, li, 0), param(c, li, "W", 4, wd, w->data, w->count, false), NULL};
  int n_in = 2;
  if (p.bias_term) {
    int64_t bd[1] = {p.num_output};
    in[2] = param(c, li, "B", 1, bd, l->blobs[1]->data, l->blobs[1]->count, false);
    n_in = 3;
  }
  const char *out[1] = {out_name(c, li, 0)};
  if (!in[0] || !in[1] || (n_in == 3 && !in[2]) || !out[0]) return OOM(c);
  Onnx__NodeProto *n = crema_onnx_node(c->b, transposed ? "ConvTranspose" : "Conv", out[0], n_in, in, 1, out);
  int64_t k[2] = {p.kernel_h, p.kernel_w}, s[2] = {p.stride_h, p.stride_w};
  int64_t d[2] = {p.dilation_h, p.dilation_w}, pads[4] = {p.pad_h, p.pad_w, p.pad_h, p.pad_w};
  if (!n || crema_onnx_attr_ints(c->b, n, "kernel_shape", 2, k) ||
      crema_onnx_attr_ints(c->b, n, "strides", 2, s) || crema_onnx_attr_ints(c->b, n, "dilations", 2, d) ||
      crema_onnx_attr_ints(c->b, n, "pads", 4, pads) || crema_onnx_attr_int(c->b, n, "group", p.group))
    return OOM(c);
  return 0;
}

static int inner_product(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__InnerProductParameter *p = l->param->inner_product_param;
  const crema_blob *x = in_blob(c, li, 0);
  int axis = p ? p->axis : 1;
  if (axis < 0) axis += x->num_axes;
  bool transpose = p && p->transpose;
  bool bias = !p || !p->has_bias_term || p->bias_term;
  int64_t N = p ? p->num_output : 0, K = (int64_t)crema_blob_count_range(x, axis, x->num_axes);
  const crema_blob *w = l->blobs[0];

  const char *a = in_name(c, li, 0);
  int64_t bd[1] = {N};
  const char *B = bias ? param(c, li, "B", 1, bd, l->blobs[1]->data, l->blobs[1]->count, false) : NULL;
  if (bias && !B) return OOM(c);
  if (axis == 1) {
    if (x->num_axes != 2) {
      const char *flat = tmp_name(c, li, "flatten");
      Onnx__NodeProto *f = unary(c, li, "Flatten", a, flat);
      if (!f || crema_onnx_attr_int(c->b, f, "axis", 1)) return OOM(c);
      a = flat;
    }
    int64_t wd[2] = {transpose ? K : N, transpose ? N : K};
    const char *in[3] = {a, param(c, li, "W", 2, wd, w->data, w->count, false), B};
    const char *out[1] = {out_name(c, li, 0)};
    if (!in[1] || !out[0]) return OOM(c);
    Onnx__NodeProto *n = crema_onnx_node(c->b, "Gemm", out[0], bias ? 3 : 2, in, 1, out);
    if (!n || crema_onnx_attr_int(c->b, n, "transB", transpose ? 0 : 1)) return OOM(c);
    return 0;
  }
  /* axis > 1: reshape to (lead..., K), MatMul with W as (K, N), add the bias */
  int64_t shape[CREMA_MAX_AXES + 1];
  for (int i = 0; i < axis; i++) shape[i] = x->shape[i];
  shape[axis] = K;
  const char *rs = tmp_name(c, li, "reshaped");
  Onnx__NodeProto *r = binary(c, "Reshape", a, int64s(c, li, "shape", axis + 1, shape), rs);
  float *wt = crema_onnx_floats(c->b, (size_t)(N * K));
  if (!r || !wt) return OOM(c);
  for (int64_t o = 0; o < N; o++)
    for (int64_t k = 0; k < K; k++) wt[k * N + o] = transpose ? w->data[k * N + o] : w->data[o * K + k];
  int64_t wd[2] = {K, N};
  const char *W = param(c, li, "W", 2, wd, wt, (size_t)(N * K), false);
  const char *mm = bias ? tmp_name(c, li, "matmul") : out_name(c, li, 0);
  if (!binary(c, "MatMul", rs, W, mm)) return OOM(c);
  if (bias && !binary(c, "Add", mm, B, out_name(c, li, 0))) return OOM(c);
  return 0;
}

/* Pooling geometry as Caffe reads it. */
typedef struct pool_geom {
  bool global, ave;
  int kh, kw, sh, sw, ph, pw;
} pool_geom;

static int pool_read(conv_ctx *c, int li, pool_geom *g) {
  const Crema__PoolingParameter *p = crema_net_layer_param(c->net, li)->pooling_param;
  const crema_blob *x = in_blob(c, li, 0);
  memset(g, 0, sizeof *g);
  if (p && p->pool == CREMA__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC)
    return fail_layer(c, li, "STOCHASTIC pooling has no ONNX operator");
  g->ave = p && p->pool == CREMA__POOLING_PARAMETER__POOL_METHOD__AVE;
  g->global = p && p->global_pooling;
  if (x->num_axes != 4) return fail_layer(c, li, "only 4-d pooling is exported");
  g->kh = g->global ? x->shape[2] : (p && p->has_kernel_h ? (int)p->kernel_h : p ? (int)p->kernel_size : 0);
  g->kw = g->global ? x->shape[3] : (p && p->has_kernel_w ? (int)p->kernel_w : p ? (int)p->kernel_size : 0);
  g->sh = p && p->has_stride_h ? (int)p->stride_h : p ? (int)p->stride : 1;
  g->sw = p && p->has_stride_w ? (int)p->stride_w : p ? (int)p->stride : 1;
  g->ph = p && p->has_pad_h ? (int)p->pad_h : p ? (int)p->pad : 0;
  g->pw = p && p->has_pad_w ? (int)p->pad_w : p ? (int)p->pad : 0;
  if (g->global) g->sh = g->sw = 1;
  return 0;
}

/* End padding giving ONNX's floor formula the output size the net computed; -1 if none does. */
static int end_pad(int in, int out, int k, int s, int p) {
  int e = (out - 1) * s + k - in - p;
  if (e < 0) e = 0;
  return (in + p + e - k) / s + 1 == out ? e : -1;
}

static int pooling(conv_ctx *c, int li) {
  pool_geom g;
  if (pool_read(c, li, &g)) return -1;
  const crema_blob *x = in_blob(c, li, 0);
  const int *tops;
  crema_net_layer_tops(c->net, li, &tops);
  const crema_blob *y = crema_net_blob(c->net, tops[0]);
  const char *a = in_name(c, li, 0);
  if (g.global && g.ph == 0 && g.pw == 0) {
    if (!unary(c, li, g.ave ? "GlobalAveragePool" : "GlobalMaxPool", a, out_name(c, li, 0))) return OOM(c);
    return 0;
  }
  int eh = end_pad(x->shape[2], y->shape[2], g.kh, g.sh, g.ph);
  int ew = end_pad(x->shape[3], y->shape[3], g.kw, g.sw, g.pw);
  if (eh < 0 || ew < 0) return fail_layer(c, li, "its output size cannot be reached with end padding");
  int64_t pads[4] = {g.ph, g.pw, eh, ew};
  if (g.ave && (g.ph > 0 || g.pw > 0)) {
    /* zero-pad explicitly (Caffe's divisor counts the padding), then average over what lies
     * in the padded image (a ceil window overhanging it is clipped, as Caffe clips it).
     * count_include_pad is not used for the padding itself: OpenCV's importer ignores it. */
    int64_t zp[8] = {0, 0, g.ph, g.pw, 0, 0, eh < g.ph ? eh : g.ph, ew < g.pw ? ew : g.pw};
    const char *padded = tmp_name(c, li, "padded");
    if (!binary(c, "Pad", a, int64s(c, li, "pads", 8, zp), padded)) return OOM(c);
    a = padded;
    pads[0] = pads[1] = 0;
    pads[2] = eh > g.ph ? eh - g.ph : 0;
    pads[3] = ew > g.pw ? ew - g.pw : 0;
  }
  const char *in[1] = {a}, *out[1] = {out_name(c, li, 0)};
  if (!out[0]) return OOM(c);
  Onnx__NodeProto *n = crema_onnx_node(c->b, g.ave ? "AveragePool" : "MaxPool", out[0], 1, in, 1, out);
  int64_t k[2] = {g.kh, g.kw}, s[2] = {g.sh, g.sw};
  if (!n || crema_onnx_attr_ints(c->b, n, "kernel_shape", 2, k) ||
      crema_onnx_attr_ints(c->b, n, "strides", 2, s) || crema_onnx_attr_ints(c->b, n, "pads", 4, pads) ||
      (g.ave && crema_onnx_attr_int(c->b, n, "count_include_pad", 0)))
    return OOM(c);
  return 0;
}

static int lrn(conv_ctx *c, int li) {
  const Crema__LRNParameter *p = crema_net_layer_param(c->net, li)->lrn_param;
  if (p && p->norm_region != CREMA__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS)
    return fail_layer(c, li, "WITHIN_CHANNEL LRN has no ONNX operator (ONNX's LRN is across channels)");
  Onnx__NodeProto *n = unary(c, li, "LRN", in_name(c, li, 0), out_name(c, li, 0));
  if (!n || crema_onnx_attr_int(c->b, n, "size", p ? p->local_size : 5) ||
      crema_onnx_attr_float(c->b, n, "alpha", p ? p->alpha : 1.0f) ||
      crema_onnx_attr_float(c->b, n, "beta", p ? p->beta : 0.75f) ||
      crema_onnx_attr_float(c->b, n, "bias", p ? p->k : 1.0f))
    return OOM(c);
  return 0;
}

/* ---------------------------------------------------------------- activations */

static int relu(conv_ctx *c, int li) {
  const Crema__ReLUParameter *p = crema_net_layer_param(c->net, li)->relu_param;
  float slope = p ? p->negative_slope : 0.0f;
  Onnx__NodeProto *n =
      unary(c, li, slope != 0.0f ? "LeakyRelu" : "Relu", in_name(c, li, 0), out_name(c, li, 0));
  if (!n || (slope != 0.0f && crema_onnx_attr_float(c->b, n, "alpha", slope))) return OOM(c);
  return 0;
}

/* Dims of a per-channel parameter of `count` values at axis `axis` .. of a rank-`rank`
 * input, padded with trailing 1s so it broadcasts (numpy rules) over the axes after it. */
static int broadcast_dims(const crema_blob *param, int axis, int rank, int64_t *dims) {
  int n = 0;
  for (int i = 0; i < param->num_axes; i++) dims[n++] = param->shape[i];
  for (int i = axis + param->num_axes; i < rank && n < CREMA_MAX_AXES; i++) dims[n++] = 1;
  return n;
}

static int prelu(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const crema_blob *x = in_blob(c, li, 0), *s = l->blobs[0];
  int64_t dims[CREMA_MAX_AXES];
  int nd = s->count == 1 ? 1 : broadcast_dims(s, 1, x->num_axes, dims);
  if (s->count == 1) dims[0] = 1;
  if (!binary(c, "PRelu", in_name(c, li, 0), param(c, li, "slope", nd, dims, s->data, s->count, false),
              out_name(c, li, 0)))
    return OOM(c);
  return 0;
}

static int simple(conv_ctx *c, int li, const char *op) {
  return unary(c, li, op, in_name(c, li, 0), out_name(c, li, 0)) ? 0 : OOM(c);
}

static int elu(conv_ctx *c, int li) {
  const Crema__ELUParameter *p = crema_net_layer_param(c->net, li)->elu_param;
  Onnx__NodeProto *n = unary(c, li, "Elu", in_name(c, li, 0), out_name(c, li, 0));
  return !n || crema_onnx_attr_float(c->b, n, "alpha", p ? p->alpha : 1.0f) ? OOM(c) : 0;
}

/* y = (shift + scale * x) ^ power, one node per term that is not the identity. */
static int power(conv_ctx *c, int li) {
  const Crema__PowerParameter *p = crema_net_layer_param(c->net, li)->power_param;
  float pw = p ? p->power : 1.0f, sc = p ? p->scale : 1.0f, sh = p ? p->shift : 0.0f;
  const char *v = in_name(c, li, 0);
  int steps = (sc != 1.0f) + (sh != 0.0f) + (pw != 1.0f), done = 0;
  if (steps == 0) return simple(c, li, "Identity");
  if (sc != 1.0f) {
    const char *o = ++done == steps ? out_name(c, li, 0) : tmp_name(c, li, "scaled");
    if (!binary(c, "Mul", v, scalar(c, li, "scale", sc), o)) return OOM(c);
    v = o;
  }
  if (sh != 0.0f) {
    const char *o = ++done == steps ? out_name(c, li, 0) : tmp_name(c, li, "shifted");
    if (!binary(c, "Add", v, scalar(c, li, "shift", sh), o)) return OOM(c);
    v = o;
  }
  if (pw != 1.0f && !binary(c, "Pow", v, scalar(c, li, "power", pw), out_name(c, li, 0))) return OOM(c);
  return 0;
}

/* ---------------------------------------------------------------- normalisation */

static int batch_norm(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__BatchNormParameter *p = l->param->batch_norm_param;
  if (p && p->has_use_global_stats && !p->use_global_stats)
    return fail_layer(c, li, "it normalises with batch statistics at test time (use_global_stats: false)");
  const crema_blob *x = in_blob(c, li, 0);
  if (x->num_axes < 2) return fail_layer(c, li, "its input has fewer than 2 axes");
  size_t C = (size_t)x->shape[1];
  float f = l->blobs[2]->data[0], s = f == 0.0f ? 0.0f : 1.0f / f;
  float *mean = crema_onnx_floats(c->b, C), *var = crema_onnx_floats(c->b, C);
  float *one = crema_onnx_floats(c->b, C), *zero = crema_onnx_floats(c->b, C);
  if (!mean || !var || !one || !zero) return OOM(c);
  for (size_t i = 0; i < C; i++) {
    mean[i] = s * l->blobs[0]->data[i];
    var[i] = s * l->blobs[1]->data[i];
    one[i] = 1.0f;
  }
  int64_t d[1] = {(int64_t)C};
  const char *in[5] = {in_name(c, li, 0), param(c, li, "gamma", 1, d, one, C, false),
                       param(c, li, "beta", 1, d, zero, C, false), param(c, li, "mean", 1, d, mean, C, false),
                       param(c, li, "var", 1, d, var, C, false)};
  const char *out[1] = {out_name(c, li, 0)};
  for (int i = 0; i < 5; i++)
    if (!in[i]) return OOM(c);
  if (!out[0]) return OOM(c);
  Onnx__NodeProto *n = crema_onnx_node(c->b, "BatchNormalization", out[0], 5, in, 1, out);
  return !n || crema_onnx_attr_float(c->b, n, "epsilon", p ? p->eps : 1e-5f) ? OOM(c) : 0;
}

/* Scale (op "Mul") or Bias (op "Add"): by a learned blob, or by a second bottom reshaped to
 * broadcast. Scale's optional bias follows as an Add. */
static int scale_or_bias(conv_ctx *c, int li, bool is_scale) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__LayerParameter *lp = l->param;
  const crema_blob *x = in_blob(c, li, 0);
  int axis =
      is_scale ? (lp->scale_param ? lp->scale_param->axis : 1) : (lp->bias_param ? lp->bias_param->axis : 1);
  if (axis < 0) axis += x->num_axes;
  bool has_bias = is_scale && lp->scale_param && lp->scale_param->bias_term;
  int64_t dims[CREMA_MAX_AXES];
  const char *factor;
  if (l->n_bottom >= 2) {
    const crema_blob *y = in_blob(c, li, 1);
    int nd = broadcast_dims(y, axis, x->num_axes, dims);
    factor =
        binary(c, "Reshape", in_name(c, li, 1), int64s(c, li, "shape", nd, dims), tmp_name(c, li, "factor"))
            ? tmp_name(c, li, "factor")
            : NULL;
  } else {
    const crema_blob *w = l->blobs[0];
    int nd = broadcast_dims(w, axis, x->num_axes, dims);
    factor = param(c, li, is_scale ? "scale" : "bias", nd, dims, w->data, w->count, false);
  }
  if (!factor) return OOM(c);
  int bias_blob = l->n_bottom >= 2 ? 0 : 1;
  const char *o = has_bias ? tmp_name(c, li, "scaled") : out_name(c, li, 0);
  if (!binary(c, is_scale ? "Mul" : "Add", in_name(c, li, 0), factor, o)) return OOM(c);
  if (has_bias) {
    const crema_blob *bb = l->blobs[bias_blob];
    int nd = broadcast_dims(bb, axis, x->num_axes, dims);
    if (!binary(c, "Add", o, param(c, li, "bias", nd, dims, bb->data, bb->count, false), out_name(c, li, 0)))
      return OOM(c);
  }
  return 0;
}

/* ---------------------------------------------------------------- structure */

static int eltwise(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__EltwiseParameter *p = l->param->eltwise_param;
  int op = p ? p->operation : CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM;
  const char *in[64];
  int n = l->n_bottom < 64 ? l->n_bottom : 64;
  for (int i = 0; i < n; i++) in[i] = in_name(c, li, i);
  if (op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__SUM && p && p->n_coeff > 0) {
    for (int i = 0; i < n; i++) {
      if (p->coeff[i] == 1.0f) continue;
      char what[32];
      snprintf(what, sizeof what, "coeff%d", i);
      const char *o = tmp_name(c, li, what);
      if (!binary(c, "Mul", in[i], scalar(c, li, what, p->coeff[i]), o)) return OOM(c);
      in[i] = o;
    }
  }
  const char *ops = op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__PROD  ? "Mul"
                    : op == CREMA__ELTWISE_PARAMETER__ELTWISE_OP__MAX ? "Max"
                                                                      : "Sum";
  if (!strcmp(ops, "Mul")) { /* Mul is binary: chain it */
    const char *acc = in[0];
    for (int i = 1; i < n; i++) {
      char what[32];
      snprintf(what, sizeof what, "prod%d", i);
      const char *o = i == n - 1 ? out_name(c, li, 0) : tmp_name(c, li, what);
      if (!binary(c, "Mul", acc, in[i], o)) return OOM(c);
      acc = o;
    }
    return 0;
  }
  const char *out[1] = {out_name(c, li, 0)};
  return out[0] && crema_onnx_node(c->b, ops, out[0], n, in, 1, out) ? 0 : OOM(c);
}

static int concat(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__ConcatParameter *p = l->param->concat_param;
  const crema_blob *x = in_blob(c, li, 0);
  int axis = p ? (p->has_axis || !p->has_concat_dim ? p->axis : (int)p->concat_dim) : 1;
  if (axis < 0) axis += x->num_axes;
  const char *in[256];
  int n = l->n_bottom < 256 ? l->n_bottom : 256;
  for (int i = 0; i < n; i++) in[i] = in_name(c, li, i);
  const char *out[1] = {out_name(c, li, 0)};
  Onnx__NodeProto *node = out[0] ? crema_onnx_node(c->b, "Concat", out[0], n, in, 1, out) : NULL;
  return !node || crema_onnx_attr_int(c->b, node, "axis", axis) ? OOM(c) : 0;
}

static int slice(conv_ctx *c, int li) {
  crema_layer *l = crema_net_layer(c->net, li);
  const Crema__SliceParameter *p = l->param->slice_param;
  const crema_blob *x = in_blob(c, li, 0);
  int axis = p ? (p->has_axis || !p->has_slice_dim ? p->axis : (int)p->slice_dim) : 1;
  if (axis < 0) axis += x->num_axes;
  int64_t start = 0, ax[1] = {axis};
  const char *axes = int64s(c, li, "axes", 1, ax);
  if (!axes) return OOM(c);
  for (int t = 0; t < l->n_top; t++) {
    const int *tops;
    crema_net_layer_tops(c->net, li, &tops);
    int64_t end = start + crema_net_blob(c->net, tops[t])->shape[axis];
    char ws[32], we[32];
    snprintf(ws, sizeof ws, "start%d", t);
    snprintf(we, sizeof we, "end%d", t);
    const char *in[4] = {in_name(c, li, 0), int64s(c, li, ws, 1, &start), int64s(c, li, we, 1, &end), axes};
    const char *out[1] = {out_name(c, li, t)};
    if (!in[0] || !in[1] || !in[2] || !in[3] || !out[0]) return OOM(c);
    if (!crema_onnx_node(c->b, "Slice", out[0], 4, in, 1, out)) return OOM(c);
    start = end;
  }
  return 0;
}

/* Flatten and Reshape: Flatten(1) when that is what it is, else Reshape to the net's top
 * shape (batch axis copied with 0). */
static int reshape_like_top(conv_ctx *c, int li) {
  const Crema__LayerParameter *lp = crema_net_layer_param(c->net, li);
  const crema_blob *x = in_blob(c, li, 0);
  const int *tops;
  crema_net_layer_tops(c->net, li, &tops);
  const crema_blob *y = crema_net_blob(c->net, tops[0]);
  if (!strcmp(lp->type, "Flatten") && y->num_axes == 2 && y->shape[0] == x->shape[0]) {
    Onnx__NodeProto *n = unary(c, li, "Flatten", in_name(c, li, 0), out_name(c, li, 0));
    return !n || crema_onnx_attr_int(c->b, n, "axis", 1) ? OOM(c) : 0;
  }
  int64_t dims[CREMA_MAX_AXES];
  for (int i = 0; i < y->num_axes; i++) dims[i] = y->shape[i];
  if (y->num_axes > 0 && x->num_axes > 0 && y->shape[0] == x->shape[0]) dims[0] = 0;
  return binary(c, "Reshape", in_name(c, li, 0), int64s(c, li, "shape", y->num_axes, dims),
                out_name(c, li, 0))
             ? 0
             : OOM(c);
}

static int softmax(conv_ctx *c, int li) {
  const Crema__SoftmaxParameter *p = crema_net_layer_param(c->net, li)->softmax_param;
  const crema_blob *x = in_blob(c, li, 0);
  int axis = p ? p->axis : 1;
  if (axis < 0) axis += x->num_axes;
  if (c->opset < 13 && crema_blob_count_range(x, axis + 1, x->num_axes) != 1)
    return fail_layer(c, li, "softmax over one axis of a blob with more axes after it needs --opset 13");
  Onnx__NodeProto *n = unary(c, li, "Softmax", in_name(c, li, 0), out_name(c, li, 0));
  return !n || crema_onnx_attr_int(c->b, n, "axis", axis) ? OOM(c) : 0;
}

/* Split (and a Dropout left in the net): every top is the bottom under another name. */
static int alias(conv_ctx *c, int li) {
  const int *tops;
  crema_net_layer_tops(c->net, li, &tops);
  const char *src = in_name(c, li, 0);
  for (int t = 0; t < crema_net_layer(c->net, li)->n_top; t++) c->cur[tops[t]] = (char *)src;
  return 0;
}

static int convert_layer(conv_ctx *c, int li) {
  const char *t = crema_net_layer(c->net, li)->ops->type;
  const int *ids;
  int n = crema_net_layer_bottoms(c->net, li, &ids);
  if (n > 256) return fail_layer(c, li, "it has more than 256 inputs");
  for (int k = 0; k < n; k++) c->ins[k] = c->cur[ids[k]];
  if (!strcmp(t, "Input")) return 0;
  if (!strcmp(t, "Convolution") || !strcmp(t, "Deconvolution")) return convolution(c, li);
  if (!strcmp(t, "InnerProduct")) return inner_product(c, li);
  if (!strcmp(t, "Pooling")) return pooling(c, li);
  if (!strcmp(t, "LRN")) return lrn(c, li);
  if (!strcmp(t, "ReLU")) return relu(c, li);
  if (!strcmp(t, "PReLU")) return prelu(c, li);
  if (!strcmp(t, "ELU")) return elu(c, li);
  if (!strcmp(t, "Sigmoid")) return simple(c, li, "Sigmoid");
  if (!strcmp(t, "TanH")) return simple(c, li, "Tanh");
  if (!strcmp(t, "AbsVal")) return simple(c, li, "Abs");
  if (!strcmp(t, "Power")) return power(c, li);
  if (!strcmp(t, "BatchNorm")) return batch_norm(c, li);
  if (!strcmp(t, "Scale")) return scale_or_bias(c, li, true);
  if (!strcmp(t, "Bias")) return scale_or_bias(c, li, false);
  if (!strcmp(t, "Eltwise")) return eltwise(c, li);
  if (!strcmp(t, "Concat")) return concat(c, li);
  if (!strcmp(t, "Slice")) return slice(c, li);
  if (!strcmp(t, "Flatten") || !strcmp(t, "Reshape")) return reshape_like_top(c, li);
  if (!strcmp(t, "Softmax")) return softmax(c, li);
  if (!strcmp(t, "Split") || !strcmp(t, "Dropout")) return alias(c, li);
  return fail_layer(
      c, li,
      "crema's ONNX writer covers Convolution, Deconvolution, InnerProduct, Pooling, LRN, ReLU, PReLU, ELU, "
      "Sigmoid, TanH, AbsVal, Power, BatchNorm, Scale, Bias, Eltwise, Concat, Slice, Flatten, "
      "Reshape, Softmax and Dropout");
}

static int build_graph(conv_ctx *c) {
  crema_net *net = c->net;
  int nb = crema_net_num_blobs(net), nl = crema_net_num_layers(net);
  for (int li = 0; li < nl; li++) {
    const int *ids;
    int n = crema_net_layer_tops(net, li, &ids);
    for (int k = 0; k < n; k++) c->last_write[ids[k]] = li;
  }
  for (int i = 0; i < nb; i++) c->cur[i] = (char *)crema_net_blob_name(net, i);
  for (int i = 0; i < crema_net_num_inputs(net); i++) {
    const crema_blob *x = crema_net_input(net, i);
    if (crema_onnx_graph_io(c->b, true, crema_net_input_name(net, i), x->num_axes, x->shape)) return OOM(c);
  }
  for (int li = 0; li < nl; li++)
    if (convert_layer(c, li)) return -1;
  for (int i = 0; i < crema_net_num_outputs(net); i++) {
    const crema_blob *y = crema_net_output(net, i);
    const char *name = crema_net_output_name(net, i);
    int id = -1;
    for (int k = 0; k < nb && id < 0; k++)
      if (crema_net_blob(net, k) == y) id = k;
    if (id >= 0 && strcmp(c->cur[id], name)) { /* an alias (Split/Dropout) ends the net */
      if (!unary(c, 0, "Identity", c->cur[id], name)) return OOM(c);
    }
    if (crema_onnx_graph_io(c->b, false, name, y->num_axes, y->shape)) return OOM(c);
  }
  return 0;
}

int crema_export_write_onnx(const Crema__NetParameter *model, const crema_onnx_options *opt, const char *path,
                            int *n_nodes, crema_error *err) {
  int opset = opt && opt->opset ? opt->opset : 13;
  if (opset < 11 || opset > 13) return crema_fail(err, "ONNX opset %d: crema writes opsets 11 to 13", opset);
  crema_net_options o = {.phase = CREMA__PHASE__TEST, .seed = 1, .source = path};
  crema_net *net = NULL;
  if (crema_net_build(model, &o, &net, err))
    return crema_error_prefix(err, "ONNX export: cannot build the net");
  if (crema_net_copy_trained_layers(net, model, err)) {
    crema_net_free(net);
    return -1;
  }
  int nb = crema_net_num_blobs(net);
  conv_ctx c = {.b = crema_onnx_builder_new(), .net = net, .opset = opset, .err = err};
  c.cur = calloc((size_t)nb + 1, sizeof *c.cur);
  c.last_write = calloc((size_t)nb + 1, sizeof *c.last_write);
  int rc = (!c.b || !c.cur || !c.last_write) ? crema_fail(err, "out of memory") : build_graph(&c);
  if (!rc) {
    crema_onnx_builder_finish(c.b);
    Onnx__GraphProto *g = crema_onnx_builder_graph(c.b);
    g->name = (char *)(model->name && *model->name ? model->name : "crema");
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsp = &ops;
    ops.domain = (char *)"";
    ops.has_version = 1;
    ops.version = opset;
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = opset >= 13 ? 7 : 6;
    m.opset_import = &opsp;
    m.n_opset_import = 1;
    m.producer_name = (char *)(opt && opt->producer ? opt->producer : "crema");
    m.producer_version = (char *)CREMA_VERSION;
    m.graph = g;
    if (n_nodes) *n_nodes = crema_onnx_builder_node_count(c.b);
    rc = crema_write_binary_message(path, &m.base, err);
  }
  free(c.cur);
  free(c.last_write);
  crema_onnx_builder_free(c.b);
  crema_net_free(net);
  return rc;
}
