/* onednn_conv.c -- Convolution forward, backward-data and backward-weights through oneDNN.
 *
 * crema's operands stay NCHW (data) and (Cy, Cx/G, kh, kw) (weights) at the boundaries; each
 * primitive is created with "any" layouts so oneDNN picks its fastest (blocked nChw8c /
 * nChw16c for its JIT kernels), and ports convert in and out through the shared workspace.
 * Caffe's output size rounds down; oneDNN wants the right padding that makes the output
 * exact, so pad_r = (Ho-1)*stride + dilated kernel - H - pad_l (possibly below pad_l). */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/onednn_util.h"
#include "engine/workspace.h"

#ifdef CREMA_HAVE_ONEDNN

struct crema_onednn_conv {
  crema_im2col_geom g;
  int n, cy, group;
  bool bias;
  crema_act act; /* the activation fwd_act applies */
  char impl[64];
  dnnl_primitive_t fwd, bwd_data, bwd_weights;
  /* With an activation: the forward with it as a post-op (the outputs written once), NULL
   * when oneDNN would lay the output out differently with it (then a pass after fwd). */
  dnnl_primitive_t fwd_act;
  /* forward */
  crema_dnnl_port f_src, f_wei, f_bias, f_dst;
  /* backward-data */
  crema_dnnl_port d_ddst, d_wei, d_dsrc;
  /* backward-weights (w_ddst unused when it would repeat d_ddst's conversion) */
  crema_dnnl_port w_src, w_ddst, w_dwei;
  bool share_ddst;
  size_t ws_bytes;
  bool ws_reserved;
};

static void desc_plain(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag) {
  dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag);
}

bool crema_onednn_conv_matches(const crema_onednn_conv *c, const crema_im2col_geom *g, int n, int cy,
                               int group, bool bias, crema_act act) {
  const crema_im2col_geom *a = &c->g;
  return a->channels == g->channels && a->height == g->height && a->width == g->width &&
         a->kernel_h == g->kernel_h && a->kernel_w == g->kernel_w && a->pad_h == g->pad_h &&
         a->pad_w == g->pad_w && a->stride_h == g->stride_h && a->stride_w == g->stride_w &&
         a->dilation_h == g->dilation_h && a->dilation_w == g->dilation_w && c->n == n && c->cy == cy &&
         c->group == group && c->bias == bias && c->act.relu == act.relu &&
         (!act.relu || c->act.slope == act.slope);
}

/* Whether pd lays out its operand `what` as fpd does. */
static bool same_md(const_dnnl_primitive_desc_t pd, const_dnnl_primitive_desc_t fpd, dnnl_query_t what) {
  return dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, what, 0),
                                dnnl_primitive_desc_query_md(fpd, what, 0));
}

/* The forward with c->act as a post-op, when oneDNN lays its operands out as for the plain
 * forward fpd (the ports convert to those layouts); else none. */
static int make_fwd_act(crema_onednn_conv *c, const dnnl_convolution_desc_t *fd,
                        const_dnnl_primitive_desc_t fpd, crema_error *err) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  int rc = 1;
  if (crema_dnnl_check(dnnl_primitive_attr_create(&attr), "attributes", err) ||
      crema_dnnl_check(dnnl_post_ops_create(&po), "post-ops", err) ||
      crema_dnnl_check(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, c->act.slope, 0.0f), "ReLU",
                       err) ||
      crema_dnnl_check(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops", err) ||
      crema_dnnl_check(dnnl_primitive_desc_create(&pd, fd, attr, crema_dnnl_engine(), NULL),
                       "convolution forward with ReLU", err))
    goto done;
  rc = 0;
  if (same_md(pd, fpd, dnnl_query_src_md) && same_md(pd, fpd, dnnl_query_weights_md) &&
      same_md(pd, fpd, dnnl_query_dst_md))
    rc = crema_dnnl_check(dnnl_primitive_create(&c->fwd_act, pd), "convolution forward with ReLU", err);
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return rc;
}

/* Creates the primitive for op descriptor `desc` (hinted by the forward pd for backward). */
static int make_prim(const void *desc, const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd,
                     const char *what, crema_error *err) {
  return crema_dnnl_check(dnnl_primitive_desc_create(pd, desc, NULL, crema_dnnl_engine(), hint), what, err);
}

static int build(crema_onednn_conv *c, crema_error *err) {
  const crema_im2col_geom *g = &c->g;
  const int G = c->group, cx = g->channels;
  const int dkh = (g->kernel_h - 1) * g->dilation_h + 1, dkw = (g->kernel_w - 1) * g->dilation_w + 1;
  dnnl_dims_t src_d = {c->n, cx, g->height, g->width}, dst_d = {c->n, c->cy, g->out_h, g->out_w};
  dnnl_dims_t bias_d = {c->cy};
  dnnl_dims_t strides = {g->stride_h, g->stride_w}, dil = {g->dilation_h - 1, g->dilation_w - 1};
  dnnl_dims_t pad_l = {g->pad_h, g->pad_w};
  dnnl_dims_t pad_r = {(dnnl_dim_t)(g->out_h - 1) * g->stride_h + dkh - g->height - g->pad_h,
                       (dnnl_dim_t)(g->out_w - 1) * g->stride_w + dkw - g->width - g->pad_w};
  dnnl_memory_desc_t src_u, dst_u, wei_u, bias_u, src_a, dst_a, wei_a;
  desc_plain(&src_u, 4, src_d, dnnl_nchw);
  desc_plain(&dst_u, 4, dst_d, dnnl_nchw);
  desc_plain(&bias_u, 1, bias_d, dnnl_x);
  desc_plain(&src_a, 4, src_d, dnnl_format_tag_any);
  desc_plain(&dst_a, 4, dst_d, dnnl_format_tag_any);
  if (G == 1) {
    dnnl_dims_t wd = {c->cy, cx, g->kernel_h, g->kernel_w};
    desc_plain(&wei_u, 4, wd, dnnl_oihw);
    desc_plain(&wei_a, 4, wd, dnnl_format_tag_any);
  } else {
    dnnl_dims_t wd = {G, c->cy / G, cx / G, g->kernel_h, g->kernel_w};
    desc_plain(&wei_u, 5, wd, dnnl_goihw);
    desc_plain(&wei_a, 5, wd, dnnl_format_tag_any);
  }
  dnnl_convolution_desc_t fd, dd, wdsc;
  if (crema_dnnl_check(dnnl_dilated_convolution_forward_desc_init(
                           &fd, dnnl_forward_training, dnnl_convolution_direct, &src_a, &wei_a,
                           c->bias ? &bias_u : NULL, &dst_a, strides, dil, pad_l, pad_r),
                       "convolution forward", err) ||
      crema_dnnl_check(dnnl_dilated_convolution_backward_data_desc_init(
                           &dd, dnnl_convolution_direct, &src_a, &wei_a, &dst_a, strides, dil, pad_l, pad_r),
                       "convolution backward-data", err) ||
      crema_dnnl_check(dnnl_dilated_convolution_backward_weights_desc_init(&wdsc, dnnl_convolution_direct,
                                                                           &src_a, &wei_a, NULL, &dst_a,
                                                                           strides, dil, pad_l, pad_r),
                       "convolution backward-weights", err))
    return 1;
  dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
  int rc = 1;
  if (make_prim(&fd, NULL, &fpd, "convolution forward", err) ||
      make_prim(&dd, fpd, &dpd, "convolution backward-data", err) ||
      make_prim(&wdsc, fpd, &wpd, "convolution backward-weights", err))
    goto done;
  const char *impl = crema_dnnl_impl(fpd);
  /* The reference-style fallbacks inside oneDNN are slower than crema's own GEMM path. */
  if (impl[0] == 'r' && impl[1] == 'e' && impl[2] == 'f') {
    crema_fail(err, "oneDNN has only its reference kernel (%s) for this convolution", impl);
    goto done;
  }
  snprintf(c->impl, sizeof c->impl, "%s", impl);
  /* Forward and backward never run at once: both phases lay their buffers from offset 0. */
  size_t off = 0;
  if (crema_dnnl_port_init(&c->f_src, &src_u, dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0),
                           CREMA_PORT_IN, &off, err) ||
      crema_dnnl_port_init(&c->f_wei, &wei_u, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0),
                           CREMA_PORT_IN, &off, err) ||
      (c->bias &&
       crema_dnnl_port_init(&c->f_bias, &bias_u, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 1),
                            CREMA_PORT_IN, &off, err)) ||
      crema_dnnl_port_init(&c->f_dst, &dst_u, dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0),
                           CREMA_PORT_OUT, &off, err))
    goto done;
  size_t fwd_bytes = off;
  off = 0;
  const dnnl_memory_desc_t *d_ddst_md = dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0);
  const dnnl_memory_desc_t *w_ddst_md = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0);
  c->share_ddst = dnnl_memory_desc_equal(d_ddst_md, w_ddst_md);
  if (crema_dnnl_port_init(&c->d_ddst, &dst_u, d_ddst_md, CREMA_PORT_IN, &off, err) ||
      crema_dnnl_port_init(&c->d_wei, &wei_u, dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0),
                           CREMA_PORT_IN, &off, err) ||
      crema_dnnl_port_init(&c->d_dsrc, &src_u, dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_src_md, 0),
                           CREMA_PORT_OUT, &off, err) ||
      crema_dnnl_port_init(&c->w_src, &src_u, dnnl_primitive_desc_query_md(wpd, dnnl_query_src_md, 0),
                           CREMA_PORT_IN, &off, err) ||
      (!c->share_ddst && crema_dnnl_port_init(&c->w_ddst, &dst_u, w_ddst_md, CREMA_PORT_IN, &off, err)) ||
      crema_dnnl_port_init(&c->w_dwei, &wei_u,
                           dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0),
                           CREMA_PORT_OUT_ADD, &off, err))
    goto done;
  c->ws_bytes = off > fwd_bytes ? off : fwd_bytes;
  if (c->act.relu && make_fwd_act(c, &fd, fpd, err)) goto done;
  if (crema_dnnl_check(dnnl_primitive_create(&c->fwd, fpd), "convolution forward", err) ||
      crema_dnnl_check(dnnl_primitive_create(&c->bwd_data, dpd), "convolution backward-data", err) ||
      crema_dnnl_check(dnnl_primitive_create(&c->bwd_weights, wpd), "convolution backward-weights", err))
    goto done;
  if (crema_engine_ws_reserve(c->ws_bytes, err)) {
    rc = -1;
    goto done;
  }
  c->ws_reserved = true;
  rc = 0;
done:
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (dpd) dnnl_primitive_desc_destroy(dpd);
  if (wpd) dnnl_primitive_desc_destroy(wpd);
  return rc;
}

int crema_onednn_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias, crema_act act,
                             crema_onednn_conv **out, crema_error *err) {
  *out = NULL;
  if (!crema_dnnl_engine()) return crema_fail(err, "oneDNN cannot create a CPU engine here"), 1;
  if (n <= 0 || g->out_h <= 0 || g->out_w <= 0) return crema_fail(err, "empty convolution"), 1;
  crema_onednn_conv *c = calloc(1, sizeof *c);
  if (!c) return crema_fail(err, "out of memory"), -1;
  c->g = *g;
  c->n = n;
  c->cy = cy;
  c->group = group;
  c->bias = bias;
  c->act = act;
  int rc = build(c, err);
  if (rc) {
    crema_onednn_conv_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void crema_onednn_conv_forward(crema_onednn_conv *c, const float *x, const float *w, const float *bias,
                               crema_act act, float *y) {
  char *ws = crema_engine_ws_lock();
  crema_dnnl_port_in(&c->f_src, x, ws);
  crema_dnnl_port_in(&c->f_wei, w, ws);
  if (c->bias) crema_dnnl_port_in(&c->f_bias, bias, ws);
  crema_dnnl_port_bind(&c->f_dst, y, ws);
  const bool post_op = act.relu && c->fwd_act; /* act is c->act or none (an unfused call) */
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, crema_dnnl_port_mem(&c->f_src)},
                             {DNNL_ARG_WEIGHTS, crema_dnnl_port_mem(&c->f_wei)},
                             {DNNL_ARG_DST, crema_dnnl_port_mem(&c->f_dst)},
                             {DNNL_ARG_BIAS, c->bias ? crema_dnnl_port_mem(&c->f_bias) : NULL}};
  crema_dnnl_run(post_op ? c->fwd_act : c->fwd, c->bias ? 4 : 3, args);
  crema_dnnl_port_out(&c->f_dst);
  crema_engine_ws_unlock();
  if (!post_op) crema_act_apply(act, (size_t)c->n * c->cy * c->g.out_h * c->g.out_w, y, false);
}

void crema_onednn_conv_backward(crema_onednn_conv *c, const float *x, const float *dy, const float *w,
                                float *dw, float *dx) {
  if (!dw && !dx) return;
  char *ws = crema_engine_ws_lock();
  crema_dnnl_port_in(&c->d_ddst, dy, ws);
  if (dx) {
    crema_dnnl_port_in(&c->d_wei, w, ws);
    crema_dnnl_port_bind(&c->d_dsrc, dx, ws);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, crema_dnnl_port_mem(&c->d_ddst)},
                               {DNNL_ARG_WEIGHTS, crema_dnnl_port_mem(&c->d_wei)},
                               {DNNL_ARG_DIFF_SRC, crema_dnnl_port_mem(&c->d_dsrc)}};
    crema_dnnl_run(c->bwd_data, 3, args);
    crema_dnnl_port_out(&c->d_dsrc);
  }
  if (dw) {
    crema_dnnl_port_in(&c->w_src, x, ws);
    dnnl_memory_t ddst = crema_dnnl_port_mem(&c->d_ddst);
    if (!c->share_ddst) {
      crema_dnnl_port_in(&c->w_ddst, dy, ws);
      ddst = crema_dnnl_port_mem(&c->w_ddst);
    }
    crema_dnnl_port_bind(&c->w_dwei, dw, ws);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, crema_dnnl_port_mem(&c->w_src)},
                               {DNNL_ARG_DIFF_DST, ddst},
                               {DNNL_ARG_DIFF_WEIGHTS, crema_dnnl_port_mem(&c->w_dwei)}};
    crema_dnnl_run(c->bwd_weights, 3, args);
    crema_dnnl_port_out(&c->w_dwei);
  }
  crema_engine_ws_unlock();
}

const char *crema_onednn_conv_impl(const crema_onednn_conv *c) { return c->impl; }

void crema_onednn_conv_free(crema_onednn_conv *c) {
  if (!c) return;
  crema_dnnl_port *ports[] = {&c->f_src, &c->f_wei,  &c->f_bias, &c->f_dst,  &c->d_ddst,
                              &c->d_wei, &c->d_dsrc, &c->w_src,  &c->w_ddst, &c->w_dwei};
  for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) crema_dnnl_port_free(ports[i]);
  if (c->fwd) dnnl_primitive_destroy(c->fwd);
  if (c->fwd_act) dnnl_primitive_destroy(c->fwd_act);
  if (c->bwd_data) dnnl_primitive_destroy(c->bwd_data);
  if (c->bwd_weights) dnnl_primitive_destroy(c->bwd_weights);
  if (c->ws_reserved) crema_engine_ws_release();
  free(c);
}

#else /* built without oneDNN: every create declines */

int crema_onednn_conv_create(const crema_im2col_geom *g, int n, int cy, int group, bool bias, crema_act act,
                             crema_onednn_conv **out, crema_error *err) {
  (void)g, (void)n, (void)cy, (void)group, (void)bias, (void)act;
  *out = NULL;
  crema_fail(err, "crema was built without oneDNN");
  return 1;
}
bool crema_onednn_conv_matches(const crema_onednn_conv *c, const crema_im2col_geom *g, int n, int cy,
                               int group, bool bias, crema_act act) {
  (void)c, (void)g, (void)n, (void)cy, (void)group, (void)bias, (void)act;
  return false;
}
void crema_onednn_conv_forward(crema_onednn_conv *c, const float *x, const float *w, const float *bias,
                               crema_act act, float *y) {
  (void)c, (void)x, (void)w, (void)bias, (void)act, (void)y;
}
void crema_onednn_conv_backward(crema_onednn_conv *c, const float *x, const float *dy, const float *w,
                                float *dw, float *dx) {
  (void)c, (void)x, (void)dy, (void)w, (void)dw, (void)dx;
}
const char *crema_onednn_conv_impl(const crema_onednn_conv *c) {
  (void)c;
  return CREMA_ENGINE_REFERENCE;
}
void crema_onednn_conv_free(crema_onednn_conv *c) { (void)c; }

#endif
