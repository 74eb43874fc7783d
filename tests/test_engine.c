/* test_engine.c -- every compute engine against the reference im2col+OpenBLAS path.
 *
 * Each case builds the same layer twice on the same bottoms: once with `engine: CAFFE` (the
 * reference path, always) and once with the default engine (oneDNN when crema has it). Both
 * get the same weights, bottoms and top diffs; forward tops, bottom diffs and parameter diffs
 * (accumulated onto non-zero starting values, as the solver's iter_size relies on) must
 * agree within float rounding. Where crema has oneDNN, the default layer must really run it
 * (a silent fallback would make the comparison vacuous). Numerical gradient checks run on
 * the default engine too. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "layers/layer.h"
#include "support/gradcheck.h"
#include "support/layer_run.h"
#include "support/run.h"
#include "support/textproto.h"
#include "tensor/math.h"

typedef struct engine_case {
  const char *type, *param_name, *param; /* layer type, its *_param field, the param's body */
  int n_bottom;
  int n, c, h, w;
  bool all_onednn;    /* every pass on oneDNN (enough channels and weights per output) */
  const char *engine; /* the engine the default must pick (its name's start), or NULL: oneDNN
                       * when crema has it */
} engine_case;

/* The per-image engines need oneDNN's sgemm and as many images as threads (cases have 5+). */
#define POINTWISE CREMA_ENGINE_POINTWISE
#define PER_IMAGE CREMA_ENGINE_PER_IMAGE
#define ONEDNN CREMA_ENGINE_ONEDNN /* when crema has it */
/* The reference where crema's own engines run (its products on oneDNN's sgemm); with oneDNN
 * alone (Winograd off, CREMA_ENGINE=onednn) a strided 1x1 projection takes oneDNN on AVX-512
 * CPUs, a narrow product (under 64 columns) oneDNN on any. */
#define PROJECTION "projection"
#define NARROW "narrow"

static const engine_case CONV_CASES[] = {
    /* stride 2 whose last window ends short of the input: oneDNN's right pad is negative */
    {"Convolution", "convolution_param", "num_output: 6 kernel_size: 5 stride: 2", 1, 2, 3, 24, 24, false,
     NULL},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 11 stride: 4", 1, 2, 3, 35, 35, false,
     NULL},
    {"Convolution", "convolution_param", "num_output: 6 kernel_size: 3 pad: 1 group: 2", 1, 2, 8, 9, 9, false,
     NULL},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1 pad: 1", 1, 3, 16, 7, 7, false, NULL},
    {"Convolution", "convolution_param", "num_output: 5 kernel_size: 3 pad: 2 dilation: 2", 1, 2, 4, 10, 10,
     false, NULL},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 3 pad: 1 group: 8", 1, 2, 8, 12, 12,
     false, NULL},
    {"Convolution", "convolution_param",
     "num_output: 4 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 bias_term: false", 1, 2,
     3, 9, 8, false, NULL},
    {"Convolution", "convolution_param", "num_output: 7 kernel_size: 7 stride: 2 pad: 3", 1, 1, 3, 20, 20,
     false, NULL},
    /* enough channels and weights per output for every pass to run on oneDNN (the stride-2
     * case on 13x13: 98 columns, above NARROW's 64) */
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 3 pad: 1", 1, 2, 16, 8, 8, true, NULL},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 1 stride: 2 group: 2", 1, 2, 32,
     13, 13, true, NULL},
    /* strided 1x1 (a ResNet projection): the reference (see PROJECTION); 81 columns, too few
     * for the 1x1 engine, enough for oneDNN but for the rule on projections */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1 stride: 2", 1, 1, 96, 17, 17, true,
     PROJECTION},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 5 pad: 2 dilation: 2", 1, 2, 12, 11, 11,
     true, NULL},
    /* few weights per output: the weight gradient stays on the reference path */
    {"Convolution", "convolution_param", "num_output: 6 kernel_size: 5", 1, 4, 1, 14, 14, false, NULL},
    /* two bottom/top pairs sharing the weights */
    {"Convolution", "convolution_param", "num_output: 4 kernel_size: 3", 2, 2, 5, 8, 8, false, NULL},
    /* 7x7 planes (ResNet-50's res5): two tiles a row, 40 tiles at batch 10 take Winograd, 28
     * at batch 7 (under CREMA_WINOGRAD_MIN_TILES, 32) do not */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 3 pad: 1", 1, 10, 32, 7, 7, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 3 pad: 1", 1, 7, 32, 7, 7, true,
     ONEDNN},
    /* Winograd F(4x4,3x3), each with >= 256 tiles: partial edge
     * tiles, no padding, padding 2, rectangles, groups, unequal pads, several bottoms, several
     * chunks of images */
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 1", 1, 29, 16, 9, 9, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 32 kernel_size: 3", 1, 43, 24, 10, 11, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 2", 1, 64, 16, 6, 6, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 32 kernel_size: 3 pad: 1 group: 2", 1, 64, 32, 8, 8,
     true, CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad_h: 1 pad_w: 0 bias_term: false",
     1, 43, 16, 7, 13, true, CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 1", 2, 43, 16, 12, 5, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 64 kernel_size: 3 pad: 1", 1, 9, 64, 64, 64, true,
     CREMA_ENGINE_WINOGRAD},
    /* rows of eight whole tiles at a time (no lane-by-lane gather) beside partial ones: 35 and
     * 70 outputs wide, 7 and 13 high */
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3", 1, 8, 16, 9, 37, true,
     CREMA_ENGINE_WINOGRAD},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 1", 1, 2, 16, 13, 70, true,
     CREMA_ENGINE_WINOGRAD},
    /* 1x1, group 1, at least as many images as threads: one product per image (with
     * bias, without, two bottoms; more images than threads); planes under 400 pixels with
     * 1024+ input channels take their gradients on the reference path */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1", 1, 8, 16, 10, 11, false, POINTWISE},
    /* one image of 400 pixels: on two threads the reference's 1x1 path (products on the
     * faster sgemm), on one the per-image engine */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1", 1, 1, 16, 20, 20, false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1 bias_term: false", 1, 5, 32, 10, 10,
     false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 1", 2, 6, 8, 12, 9, false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1", 1, 5, 16, 20, 21, false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1 bias_term: false", 2, 4, 8, 25, 16,
     false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1", 1, 4, 1024, 10, 10, false,
     POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1", 1, 4, 1024, 20, 20, false,
     POINTWISE},
    /* strided (ResNet's projections): the pixels gathered per image, the data gradient spread
     * back with zeros between; odd and even sides, stride 2 and 3, more outputs than inputs and
     * fewer (the weight gradient turned), two bottoms */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1 stride: 2", 1, 8, 16, 21, 22, false,
     POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1 stride: 2 bias_term: false", 2, 4, 32,
     20, 20, false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 1 stride: 3", 1, 5, 8, 31, 32, false,
     POINTWISE},
    /* strided on planes too small per image (ResNet-50's res5a, 7x7 outputs), or with 1024
     * input channels under 400 pixels: the batch folded into one product per pass */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 1 stride: 2", 1, 4, 32, 14, 13, false,
     POINTWISE},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 1 stride: 2 bias_term: false", 2, 3, 16,
     15, 15, false, POINTWISE},
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 1 stride: 2", 1, 2, 1024, 20, 20, false,
     POINTWISE},
    /* fewer channels than one of oneDNN's blocks of 8, small planes: im2col and one product per
     * image (LeNet's conv1; 6 channels into 50; stride and pad; no bias and two bottoms) */
    {"Convolution", "convolution_param", "num_output: 20 kernel_size: 5", 1, 8, 1, 28, 28, false, PER_IMAGE},
    /* the weight gradient straight from the image (stride 1, no pad, 256+ output pixels): 7
     * outputs and 27 column rows (not whole blocks of 4 and 5), rows of 17 pixels (a partial
     * group of eight) */
    {"Convolution", "convolution_param", "num_output: 7 kernel_size: 3", 1, 3, 3, 21, 19, false, PER_IMAGE},
    {"Convolution", "convolution_param", "num_output: 50 kernel_size: 5", 1, 9, 6, 12, 12, false, PER_IMAGE},
    {"Convolution", "convolution_param", "num_output: 6 kernel_size: 3 stride: 2 pad: 1", 1, 8, 3, 20, 19,
     false, PER_IMAGE},
    {"Convolution", "convolution_param", "num_output: 4 kernel_size: 3 bias_term: false", 2, 8, 5, 12, 12,
     false, PER_IMAGE},
    /* whole blocks of channels: per image only when oneDNN would pad both the input and the
     * output channels (LeNet's conv2, 20 -> 50), else oneDNN */
    {"Convolution", "convolution_param", "num_output: 50 kernel_size: 5", 1, 4, 20, 12, 12, false, PER_IMAGE},
    {"Convolution", "convolution_param", "num_output: 50 kernel_size: 5", 1, 4, 16, 12, 12, true, ONEDNN},
    {"Convolution", "convolution_param", "num_output: 48 kernel_size: 5", 1, 4, 20, 12, 12, true, ONEDNN},
    /* 1x1 on planes too small for the per-image engine: the reference's gathered products, on
     * oneDNN's sgemm over OpenMP's threads (with groups, too) */
    {"Convolution", "convolution_param", "num_output: 48 kernel_size: 1", 1, 4, 40, 7, 7, false,
     CREMA_ENGINE_REFERENCE},
    {"Convolution", "convolution_param", "num_output: 74 kernel_size: 1 group: 2", 1, 3, 70, 6, 5, false,
     CREMA_ENGINE_REFERENCE},
    /* one image of 7x7 (ResNet-50's res5 at batch 1): 49 columns, the reference (see NARROW);
     * 64 columns, oneDNN */
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 3 pad: 1", 1, 1, 32, 7, 7, false,
     NARROW},
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 3 pad: 1", 1, 1, 32, 8, 8, true,
     ONEDNN},
    {"Convolution", "convolution_param", "num_output: 24 kernel_size: 3 pad: 1", 1, 1, 32, 7, 9, false,
     NARROW},
    /* Deconvolution: the reference path, its products on oneDNN's sgemm where crema's engines
     * run (a DCGAN-style 4x4 stride-2 upsampling; groups) */
    {"Deconvolution", "convolution_param", "num_output: 16 kernel_size: 4 stride: 2 pad: 1", 1, 3, 32, 6, 6,
     false, CREMA_ENGINE_REFERENCE},
    {"Deconvolution", "convolution_param", "num_output: 6 kernel_size: 3 group: 2", 1, 2, 8, 5, 5, false,
     CREMA_ENGINE_REFERENCE},
    /* too few output channels, or too few tiles, for Winograd: oneDNN (or the reference) instead */
    {"Convolution", "convolution_param", "num_output: 16 kernel_size: 3 pad: 1", 1, 2, 16, 9, 9, true, NULL},
    {"Convolution", "convolution_param", "num_output: 8 kernel_size: 3 pad: 1", 1, 2, 32, 8, 8, true, NULL},
};

static char *layer_text(const engine_case *ec, bool reference) {
  static char buf[1024];
  snprintf(buf, sizeof buf,
           "name: 'l' type: '%s' %s { %s %s weight_filler { type: 'gaussian' std: 0.3 } "
           "bias_filler { type: 'uniform' min: -1 max: 1 } }",
           ec->type, ec->param_name, ec->param, reference ? "engine: CAFFE" : "");
  return buf;
}

static void fill_n(float *v, size_t n, uint64_t seed) {
  crema_rng r;
  crema_rng_seed(&r, seed, 7);
  for (size_t i = 0; i < n; i++) v[i] = crema_rng_gaussian(&r, 0.0f, 1.0f);
}

static void fill(crema_blob *b, float *v, uint64_t seed) { fill_n(v, b->count, seed); }

/* max |a - b| / (1 + max |b|): relative to the array's scale, so sums of many products
 * (rounded in another order by each engine) compare fairly. */
static double scaled_diff(const float *a, const float *b, size_t n) {
  double worst = 0.0, scale = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
  }
  return worst / (1.0 + scale);
}

#define TOL 2e-5

/* The fast layer gets the reference's parameters, both get the same nonzero parameter diffs
 * (so accumulation shows) and both propagate to every parameter. */
static void same_params(run *ref, run *fast) {
  ck_assert_int_eq(ref->l->n_blobs, fast->l->n_blobs);
  for (int b = 0; b < ref->l->n_blobs; b++) {
    memcpy(fast->l->blobs[b]->data, ref->l->blobs[b]->data, ref->l->blobs[b]->count * sizeof(float));
    for (size_t i = 0; i < ref->l->blobs[b]->count; i++)
      ref->l->blobs[b]->diff[i] = fast->l->blobs[b]->diff[i] = 0.25f;
    ref->l->param_propagate_down[b] = fast->l->param_propagate_down[b] = true;
  }
}

static void compare_engines(const engine_case *ec, size_t idx) {
  crema_blob *bot[2], *bot2[2];
  const int shape[4] = {ec->n, ec->c, ec->h, ec->w};
  for (int i = 0; i < ec->n_bottom; i++) {
    bot[i] = blob_of(4, shape);
    fill(bot[i], bot[i]->data, 100 + idx * 10 + (size_t)i);
    bot2[i] = blob_of(4, shape);
    memcpy(bot2[i]->data, bot[i]->data, bot[i]->count * sizeof(float));
  }
  run ref, fast;
  char ref_text[1024];
  snprintf(ref_text, sizeof ref_text, "%s", layer_text(ec, true));
  run_setup(&ref, ref_text, ec->n_bottom, bot, ec->n_bottom);
  run_setup(&fast, layer_text(ec, false), ec->n_bottom, bot2, ec->n_bottom);
  ck_assert_str_eq(crema_layer_engine_name(ref.l), CREMA_ENGINE_REFERENCE);
  const bool per_image_possible = crema_engine_have_onednn() && ec->n >= omp_get_max_threads();
  const bool per_image = ec->engine && (!strcmp(ec->engine, POINTWISE) || !strcmp(ec->engine, PER_IMAGE));
  const char *name = crema_layer_engine_name(fast.l);
  const bool projection = ec->engine && !strcmp(ec->engine, PROJECTION);
  const bool narrow = ec->engine && !strcmp(ec->engine, NARROW);
  const bool onednn_wanted = ec->engine && !strcmp(ec->engine, ONEDNN);
  const bool onednn_alone = crema_engine_have_onednn() && !crema_engine_winograd_wanted(0);
  if ((projection && onednn_alone && crema_engine_onednn_avx512()) || (narrow && onednn_alone))
    ck_assert_msg(!strncmp(name, CREMA_ENGINE_ONEDNN, strlen(CREMA_ENGINE_ONEDNN)), "case %zu: engine \"%s\"",
                  idx, name);
  else if (projection || narrow)
    ck_assert_msg(!strcmp(name, CREMA_ENGINE_REFERENCE), "case %zu (%s, %d x %dx%d): engine \"%s\"", idx,
                  ec->param, ec->n, ec->h, ec->w, name);
  else if (ec->engine && (!per_image || per_image_possible) && (!onednn_wanted || crema_engine_have_onednn()))
    ck_assert_msg(!strncmp(crema_layer_engine_name(fast.l), ec->engine, strlen(ec->engine)),
                  "case %zu (%s): the default engine is \"%s\", not %s", idx, ec->param,
                  crema_layer_engine_name(fast.l), ec->engine);
  else if (crema_engine_have_onednn() && !ec->engine) /* oneDNN, or per image with few threads */
    ck_assert_msg(!strncmp(name, CREMA_ENGINE_ONEDNN, strlen(CREMA_ENGINE_ONEDNN)) ||
                      !strncmp(name, PER_IMAGE, strlen(PER_IMAGE)),
                  "case %zu (%s %s): the default engine is \"%s\", not oneDNN", idx, ec->type, ec->param,
                  name);
  if (ec->engine && !strcmp(ec->engine, POINTWISE) && per_image_possible) /* gradients by plane size */
    ck_assert_msg((strstr(name, "gradients: caffe") != NULL) == (ec->h * ec->w < 400 && ec->c >= 1024),
                  "case %zu: engine \"%s\"", idx, name);
  if (crema_engine_have_onednn() && ec->all_onednn && !projection)
    ck_assert_msg(!strstr(crema_layer_engine_name(fast.l), "caffe"), "case %zu: engine \"%s\"", idx,
                  crema_layer_engine_name(fast.l));
  ck_assert_int_eq(ref.l->n_blobs, fast.l->n_blobs);
  same_params(&ref, &fast);
  run_forward(&ref);
  run_forward(&fast);
  for (int t = 0; t < ec->n_bottom; t++) {
    ck_assert_int_eq((int)ref.top[t]->count, (int)fast.top[t]->count);
    double d = scaled_diff(fast.top[t]->data, ref.top[t]->data, ref.top[t]->count);
    ck_assert_msg(d < TOL, "case %zu (%s %s): forward top %d differs by %g", idx, ec->type, ec->param, t, d);
    fill(ref.top[t], ref.top[t]->diff, 500 + idx * 10 + (size_t)t);
    memcpy(fast.top[t]->diff, ref.top[t]->diff, ref.top[t]->count * sizeof(float));
  }
  const bool prop[2] = {true, true};
  crema_layer_backward(ref.l, ref.top, prop, bot);
  crema_layer_backward(fast.l, fast.top, prop, bot2);
  for (int i = 0; i < ec->n_bottom; i++) {
    double d = scaled_diff(bot2[i]->diff, bot[i]->diff, bot[i]->count);
    ck_assert_msg(d < TOL, "case %zu (%s %s): bottom %d diff differs by %g", idx, ec->type, ec->param, i, d);
  }
  for (int b = 0; b < ref.l->n_blobs; b++) {
    double d = scaled_diff(fast.l->blobs[b]->diff, ref.l->blobs[b]->diff, ref.l->blobs[b]->count);
    ck_assert_msg(d < TOL, "case %zu (%s %s): parameter %d diff differs by %g", idx, ec->type, ec->param, b,
                  d);
  }
  /* A second backward accumulates into the parameter diffs again and overwrites bottoms. */
  crema_layer_backward(ref.l, ref.top, prop, bot);
  crema_layer_backward(fast.l, fast.top, prop, bot2);
  for (int b = 0; b < ref.l->n_blobs; b++) {
    double d = scaled_diff(fast.l->blobs[b]->diff, ref.l->blobs[b]->diff, ref.l->blobs[b]->count);
    ck_assert_msg(d < TOL, "case %zu: parameter %d diff after two backwards differs by %g", idx, b, d);
  }
  double d = scaled_diff(bot2[0]->diff, bot[0]->diff, bot[0]->count);
  ck_assert_msg(d < TOL, "case %zu: bottom diff after two backwards differs by %g", idx, d);
  run_free(&ref);
  run_free(&fast);
  free_blobs(ec->n_bottom, bot);
  free_blobs(ec->n_bottom, bot2);
}

START_TEST(test_conv_engines_agree) { compare_engines(&CONV_CASES[_i], (size_t)_i); }
END_TEST

/* With oneDNN alone (Winograd off, as CREMA_ENGINE=onednn sets it), the projections and the
 * narrow products go to oneDNN again and still agree with the reference. */
START_TEST(test_conv_engines_agree_onednn_alone) {
  const engine_case *ec = &CONV_CASES[_i];
  if (!ec->engine || (strcmp(ec->engine, PROJECTION) && strcmp(ec->engine, NARROW))) return;
  crema_engine_set_winograd(false);
  compare_engines(ec, (size_t)_i);
  crema_engine_set_winograd(true);
}
END_TEST

/* The same on one thread, where engines plan differently: the reference path's products under
 * crema's engines go to oneDNN's sgemm only for some shapes (conv_common.c's ref_gemm), and
 * the per-image engines write dW without partial sums. */
START_TEST(test_conv_engines_agree_one_thread) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  compare_engines(&CONV_CASES[_i], (size_t)_i);
  omp_set_num_threads(threads);
}
END_TEST

/* A bottom reshaped to a new batch size gets new primitives and still agrees. */
/* A 1x1 stride-1 unpadded convolution runs one product per image when there are as many
 * images as threads and planes of 100+ pixels; grouped, with fewer images or smaller planes,
 * it stays on the reference path (copy-free
 * there), never on oneDNN (whose layout conversions cost more than the product). */
START_TEST(test_conv_pointwise_engine) {
  static const struct {
    int n, side;
    const char *param, *want;
  } cases[] = {
      {1, 10, "num_output: 32 kernel_size: 1", NULL},
      {16, 10, "num_output: 32 kernel_size: 1", CREMA_ENGINE_POINTWISE},
      {16, 10, "num_output: 32 kernel_size: 1 group: 2", CREMA_ENGINE_REFERENCE},
      {16, 7, "num_output: 32 kernel_size: 1", CREMA_ENGINE_REFERENCE}, /* 49 columns per image: folded */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int shape[4] = {cases[k].n, 64, cases[k].side, cases[k].side};
    crema_blob *x = blob_of(4, shape);
    char text[256];
    snprintf(text, sizeof text, "name: 'c' type: 'Convolution' convolution_param { %s }", cases[k].param);
    run r;
    run_setup(&r, text, 1, &x, 1);
    const char *want = cases[k].want;
    if (!want) /* one image: the per-image engine only when there is one thread */
      want = omp_get_max_threads() == 1 && crema_engine_have_onednn() ? CREMA_ENGINE_POINTWISE
                                                                      : CREMA_ENGINE_REFERENCE;
    if (!crema_engine_have_onednn() || omp_get_max_threads() > cases[k].n) want = CREMA_ENGINE_REFERENCE;
    ck_assert_msg(!strncmp(crema_layer_engine_name(r.l), want, strlen(want)),
                  "case %zu: engine \"%s\", want %s", k, crema_layer_engine_name(r.l), want);
    run_free(&r);
    crema_blob_free(x);
  }
}
END_TEST

START_TEST(test_conv_engine_reshape) {
  const engine_case ec = {
      "Convolution", "convolution_param", "num_output: 4 kernel_size: 3 pad: 1", 1, 2, 3, 6, 6, false, false};
  const int shape[4] = {2, 3, 6, 6}, shape3[4] = {3, 3, 6, 6};
  crema_blob *x = blob_of(4, shape), *x2 = blob_of(4, shape);
  fill(x, x->data, 1);
  memcpy(x2->data, x->data, x->count * sizeof(float));
  run ref, fast;
  char ref_text[1024];
  snprintf(ref_text, sizeof ref_text, "%s", layer_text(&ec, true));
  run_setup(&ref, ref_text, 1, &x, 1);
  run_setup(&fast, layer_text(&ec, false), 1, &x2, 1);
  crema_error err;
  ck_assert(crema_blob_reshape(x, 4, shape3, &err) == 0);
  ck_assert(crema_blob_reshape(x2, 4, shape3, &err) == 0);
  fill(x, x->data, 2);
  memcpy(x2->data, x->data, x->count * sizeof(float));
  memcpy(fast.l->blobs[0]->data, ref.l->blobs[0]->data, ref.l->blobs[0]->count * sizeof(float));
  memcpy(fast.l->blobs[1]->data, ref.l->blobs[1]->data, ref.l->blobs[1]->count * sizeof(float));
  ck_assert_msg(crema_layer_reshape(ref.l, &x, ref.top, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_layer_reshape(fast.l, &x2, fast.top, &err) == 0, "%s", err.msg);
  run_forward(&ref);
  run_forward(&fast);
  ck_assert_int_eq(fast.top[0]->shape[0], 3);
  double d = scaled_diff(fast.top[0]->data, ref.top[0]->data, ref.top[0]->count);
  ck_assert_msg(d < TOL, "after reshape the tops differ by %g", d);
  run_free(&ref);
  run_free(&fast);
  crema_blob_free(x);
  crema_blob_free(x2);
}
END_TEST

/* The per-image engine's direct passes on sixteen lanes (AVX-512 CPUs) against the same passes
 * on eight: the same bits, forward and every gradient (each lane adds its products in the
 * eight-lane order). Shapes: LeNet's conv1; 7 outputs and 27 column rows (part blocks) on rows
 * of 17 (a part group of eight) and an odd row count; 2 channels of 4x4 on 17 rows of 38. On a CPU
 * without AVX-512 both run eight wide, and the test still checks the engine against itself. */
START_TEST(test_per_image_wide_same_bits) {
  if (!crema_engine_have_onednn()) return; /* the engine needs oneDNN's sgemm */
  static const int geoms[][6] = {          /* C, H, W, K, outputs, images */
                                 {1, 28, 28, 5, 20, 4},
                                 {3, 21, 19, 3, 7, 3},
                                 {2, 20, 41, 4, 9, 2}};
  for (size_t k = 0; k < sizeof geoms / sizeof geoms[0]; k++) {
    const int C = geoms[k][0], H = geoms[k][1], W = geoms[k][2], K = geoms[k][3], cy = geoms[k][4];
    const int n = geoms[k][5] > omp_get_max_threads() ? geoms[k][5] : omp_get_max_threads();
    crema_im2col_geom g = {C, H, W, K, K, 0, 0, 1, 1, 1, 1, 0, 0};
    ck_assert_int_eq(crema_im2col_geom_finish(&g), 0);
    const size_t xs = (size_t)n * C * H * W, ws = (size_t)cy * C * K * K,
                 ys = (size_t)n * cy * g.out_h * g.out_w;
    crema_per_image_conv *c[2];
    crema_error err;
    float *x = malloc(xs * sizeof(float)), *w = malloc(ws * sizeof(float)), *b = malloc(cy * sizeof(float));
    float *dy = malloc(ys * sizeof(float)), *y[2], *dw[2], *db[2], *dx[2];
    fill_n(x, xs, 1 + k);
    fill_n(w, ws, 11 + k);
    fill_n(b, (size_t)cy, 21 + k);
    fill_n(dy, ys, 31 + k);
    for (int v = 0; v < 2; v++) {
      ck_assert_msg(crema_per_image_conv_create(&g, n, cy, 1, true, &c[v], &err) == 0, "%s", err.msg);
      ck_assert(crema_per_image_conv_direct(c[v]));
      if (v == 1) ck_assert(!crema_per_image_conv_set_wide(c[v], false));
      y[v] = malloc(ys * sizeof(float));
      dw[v] = calloc(ws, sizeof(float));
      db[v] = calloc((size_t)cy, sizeof(float));
      dx[v] = malloc(xs * sizeof(float));
      crema_per_image_conv_forward(c[v], x, w, b, (crema_act){false, 0.0f}, y[v]);
      crema_per_image_conv_backward(c[v], x, dy, w, dw[v], db[v], dx[v]);
    }
    ck_assert_msg(!memcmp(y[0], y[1], ys * sizeof(float)), "shape %zu: the outputs differ", k);
    ck_assert_msg(!memcmp(dw[0], dw[1], ws * sizeof(float)), "shape %zu: the weight gradients differ", k);
    ck_assert_msg(!memcmp(db[0], db[1], (size_t)cy * sizeof(float)), "shape %zu: the bias gradients differ",
                  k);
    ck_assert_msg(!memcmp(dx[0], dx[1], xs * sizeof(float)), "shape %zu: the data gradients differ", k);
    for (int v = 0; v < 2; v++) {
      crema_per_image_conv_free(c[v]);
      free(y[v]);
      free(dw[v]);
      free(db[v]);
      free(dx[v]);
    }
    free(x);
    free(w);
    free(b);
    free(dy);
  }
}
END_TEST

/* Finite differences on the default engine: its gradients are right on their own, not only
 * equal to the reference's. */
START_TEST(test_conv_engine_gradient) {
  static const char *params[] = {
      "num_output: 3 kernel_size: 3 stride: 2 pad: 1 engine: DEFAULT",
      "num_output: 4 kernel_size: 3 group: 2",
      "num_output: 16 kernel_size: 3 pad: 1",   /* Winograd */
      "num_output: 32 kernel_size: 3 group: 2", /* Winograd, 16 channels per group */
      "num_output: 8 kernel_size: 1",           /* one product per image */
      "num_output: 6 kernel_size: 3 pad: 1",    /* im2col and one product per image */
  };
  for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
    char text[512];
    snprintf(
        text, sizeof text,
        "name: 'g' type: 'Convolution' convolution_param { %s weight_filler { type: 'gaussian' std: 0.5 } "
        "bias_filler { type: 'uniform' min: -1 max: 1 } }",
        params[k]);
    Crema__LayerParameter *p = test_layer_param(text);
    /* 8+ channels per group: every gradient on oneDNN; 3x3 with 16+ per group: Winograd */
    /* k >= 2: 4 images of 30x30 (8x8 tiles each: 256, enough for Winograd at any thread count) */
    /* k == 4: 1x1 on 4 images (as many as the threads of a CI machine, or more) */
    /* k == 5: 5 channels (no whole block of 8), 4 images of 9x10: the per-image engine */
    const int shape[4] = {k >= 2 ? 4 : 2,
                          k == 5   ? 5
                          : k == 3 ? 32
                                   : 16,
                          k == 5   ? 9
                          : k == 4 ? 10
                          : k >= 2 ? 30
                                   : 6,
                          k == 5   ? 10
                          : k == 4 ? 11
                          : k >= 2 ? 30
                                   : 7};
    crema_blob *x = blob_of(4, shape);
    gradcheck_fill_gaussian(x, 1.0f, 3 + k);
    gradcheck_opts o = gradcheck_defaults();
    /* A convolution is linear in its input and its weights, so a large step costs no
     * truncation error, while it shrinks the float rounding of the objective (a sum over
     * every top element) relative to the difference: Winograd's transforms round more than
     * a plain dot product, enough to disturb a 1e-2 step. */
    o.step = 0.5f;
    o.max_per_blob = 400; /* an even sample of each blob keeps 16-image cases quick */
    gradcheck_layer(p, 1, &x, 1, NULL, &o);
    crema_blob_free(x);
    crema_message_free(p);
  }
}
END_TEST

/* crema_engine_set_default(false) sends DEFAULT layers to the reference path. */
/* The batched products against one crema_gemm_ld per product: both transposes, beta 0 and 1,
 * leading dimensions wider than the rows, more products than threads. */
START_TEST(test_gemm_batch_matches_gemm) {
  const int m = 7, n = 13, k = 5, count = 9, pad = 3;
  for (int t = 0; t < 8; t++) {
    const bool ta = t & 1, tb = t & 2;
    const float beta = (t & 4) ? 1.0f : 0.0f;
    const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const size_t sa = (size_t)(ta ? k : m) * lda + 1, sb = (size_t)(tb ? n : k) * ldb + 2,
                 sc = (size_t)m * ldc + 5;
    float *a = malloc(sa * count * sizeof(float)), *b = malloc(sb * count * sizeof(float));
    float *c = malloc(sc * count * sizeof(float)), *want = malloc(sc * count * sizeof(float));
    for (size_t i = 0; i < sa * count; i++) a[i] = (float)((i * 7) % 11) - 5.0f;
    for (size_t i = 0; i < sb * count; i++) b[i] = (float)((i * 5) % 13) - 6.0f;
    for (size_t i = 0; i < sc * count; i++) c[i] = want[i] = (float)(i % 3);
    for (int j = 0; j < count; j++)
      crema_gemm_ld(ta, tb, m, n, k, 0.5f, a + j * sa, lda, b + j * sb, ldb, beta, want + j * sc, ldc);
    const crema_gemm_batch batch = {.trans_a = ta,
                                    .trans_b = tb,
                                    .m = m,
                                    .n = n,
                                    .k = k,
                                    .alpha = 0.5f,
                                    .beta = beta,
                                    .a = a,
                                    .lda = lda,
                                    .stride_a = sa,
                                    .b = b,
                                    .ldb = ldb,
                                    .stride_b = sb,
                                    .c = c,
                                    .ldc = ldc,
                                    .stride_c = sc,
                                    .count = count};
    crema_gemm_batch_run(&batch);
    /* small integers: every sum is exact in float, whatever the order */
    for (size_t i = 0; i < sc * count; i++)
      ck_assert_msg(c[i] == want[i], "case %d, element %zu: %g, want %g", t, i, c[i], want[i]);
    free(a);
    free(b);
    free(c);
    free(want);
  }
}
END_TEST

/* A product split by columns over the threads (the recurrent layers' products) against one
 * crema_gemm_ld: both transposes, beta 0 and 1, leading dimensions wider than the rows, on two
 * threads and with a column count that is no multiple of a thread's sixteen-column groups;
 * narrow products (under 128 columns) and one thread take the unsplit product. */
START_TEST(test_gemm_cols_matches_gemm) {
  const int before = omp_get_max_threads(), m = 5, k = 7, pad = 3;
  const int widths[] = {301, 60, 301}, threads[] = {2, 2, 1};
  for (int w = 0; w < 3; w++)
    for (int t = 0; t < 8; t++) {
      const int n = widths[w];
      const bool ta = t & 1, tb = t & 2;
      const float beta = (t & 4) ? 1.0f : 0.0f;
      const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
      const size_t sa = (size_t)(ta ? k : m) * lda, sb = (size_t)(tb ? n : k) * ldb, sc = (size_t)m * ldc;
      float *a = malloc(sa * sizeof(float)), *b = malloc(sb * sizeof(float));
      float *c = malloc(sc * sizeof(float)), *want = malloc(sc * sizeof(float));
      for (size_t i = 0; i < sa; i++) a[i] = (float)((i * 7) % 11) - 5.0f;
      for (size_t i = 0; i < sb; i++) b[i] = (float)((i * 5) % 13) - 6.0f;
      for (size_t i = 0; i < sc; i++) c[i] = want[i] = (float)(i % 3);
      crema_gemm_ld(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, beta, want, ldc);
      omp_set_num_threads(threads[w]);
      crema_gemm_cols_omp(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, beta, c, ldc);
      omp_set_num_threads(before);
      /* small integers: every sum is exact in float, whatever the order */
      for (size_t i = 0; i < sc; i++)
        ck_assert_msg(c[i] == want[i], "n %d, case %d, element %zu: %g, want %g", n, t, i, c[i], want[i]);
      free(a);
      free(b);
      free(c);
      free(want);
    }
}
END_TEST

/* A small batch of a large InnerProduct streams its weights in the forward pass (fc_stream.c):
 * forward, data and weight gradients (accumulated twice) against the reference GEMMs, for batches of 1 to 16,
 * an input size that is no multiple of the vector width, with and without bias; a batch of 17,
 * a transposed layer or a small one keeps the GEMM, on oneDNN's sgemm when crema has it. */
START_TEST(test_fc_stream_matches_reference) {
  static const struct {
    int m, c, hw; /* bottom (m, c, hw, 1): k = c * hw */
    const char *param;
    bool stream;
  } cases[] = {
      {1, 1801, 1, "num_output: 37", true},
      {3, 1801, 1, "num_output: 37 bias_term: false", true},
      {10, 64, 49, "num_output: 300", true}, /* k = 3136, a 4-D bottom */
      {16, 259, 1, "num_output: 257", true},
      {5, 1804, 1, "num_output: 38", true}, /* k % 16 = 12: one 8-wide tile, four single columns */
      {7, 2051, 1, "num_output: 39", true}, /* groups of 4 + 3 rows; 39 = 6 * 6 + 3 = 4 * 9 + 3 */
      {13, 64, 49, "num_output: 40", true}, /* groups of 5 + 4 + 4; an odd last pair of dx rows */
      {17, 259, 1, "num_output: 257", false},
      {10, 64, 49, "num_output: 300 transpose: true", false},
      {64, 50, 16, "num_output: 500", false}, /* LeNet's ip1 */
      {3, 20, 1, "num_output: 5", false},     /* too few weights to stream */
  };
  const bool before = crema_engine_get_default();
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int shape[4] = {cases[k].m, cases[k].c, cases[k].hw, 1};
    crema_blob *x = blob_of(4, shape), *x2 = blob_of(4, shape);
    fill(x, x->data, 40 + k);
    memcpy(x2->data, x->data, x->count * sizeof(float));
    char text[256];
    snprintf(text, sizeof text,
             "name: 'ip' type: 'InnerProduct' inner_product_param { %s weight_filler { type: 'gaussian' std: "
             "0.1 } "
             "bias_filler { type: 'uniform' min: -1 max: 1 } }",
             cases[k].param);
    run ref, fast;
    crema_engine_set_default(false);
    run_setup(&ref, text, 1, &x, 1);
    crema_engine_set_default(true);
    run_setup(&fast, text, 1, &x2, 1);
    ck_assert_str_eq(crema_layer_engine_name(ref.l), CREMA_ENGINE_REFERENCE);
    const char *want = cases[k].stream              ? CREMA_ENGINE_FC_STREAM " (small batch)"
                       : crema_engine_have_onednn() ? CREMA_ENGINE_ONEDNN " sgemm"
                                                    : CREMA_ENGINE_REFERENCE;
    ck_assert_msg(!strcmp(crema_layer_engine_name(fast.l), want), "case %zu: engine \"%s\", not \"%s\"", k,
                  crema_layer_engine_name(fast.l), want);
    same_params(&ref, &fast);
    run_forward(&ref);
    run_forward(&fast);
    double d = scaled_diff(fast.top[0]->data, ref.top[0]->data, ref.top[0]->count);
    ck_assert_msg(d < TOL, "case %zu: forward differs by %g", k, d);
    fill(ref.top[0], ref.top[0]->diff, 60 + k);
    memcpy(fast.top[0]->diff, ref.top[0]->diff, ref.top[0]->count * sizeof(float));
    const bool prop[1] = {true};
    for (int pass = 0; pass < 2; pass++) { /* the second accumulates into the parameter diffs */
      crema_layer_backward(ref.l, ref.top, prop, &x);
      crema_layer_backward(fast.l, fast.top, prop, &x2);
      d = scaled_diff(x2->diff, x->diff, x->count);
      ck_assert_msg(d < TOL, "case %zu pass %d: bottom diff differs by %g", k, pass, d);
      for (int b = 0; b < ref.l->n_blobs; b++) {
        d = scaled_diff(fast.l->blobs[b]->diff, ref.l->blobs[b]->diff, ref.l->blobs[b]->count);
        ck_assert_msg(d < TOL, "case %zu pass %d: parameter %d diff differs by %g", k, pass, b, d);
      }
    }
    run_free(&ref);
    run_free(&fast);
    crema_blob_free(x);
    crema_blob_free(x2);
  }
  crema_engine_set_default(before);
}
END_TEST

/* The small-batch InnerProduct kernels give the same bits on any number of threads (every
 * sum has one order), and values within float rounding of sums taken in double. */
START_TEST(test_fc_stream_same_bits_any_threads) {
  /* with AVX-512, batches of 8+ take the forward pass in slices of x (608 columns at batch
   * 10): 1803 and 1032 end in a part slice and single columns, 1216 is two whole slices, and
   * 12 columns are all single ones */
  static const int shapes[][3] = {{10, 301, 1803}, {1, 7, 9000},   {16, 66, 1032},
                                  {3, 1001, 77},   {10, 33, 1216}, {9, 40, 12}};
  const int before = omp_get_max_threads();
  for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
    const int m = shapes[c][0], n = shapes[c][1], k = shapes[c][2];
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *dy = malloc(sizeof(float) * m * n), *bias = malloc(sizeof(float) * n);
    float *scratch = malloc(sizeof(float) * crema_fc_stream_scratch_floats(m, k));
    float *y[2], *dx[2], *dw[2];
    for (int v = 0; v < 2; v++) {
      y[v] = malloc(sizeof(float) * m * n);
      dx[v] = malloc(sizeof(float) * m * k);
      dw[v] = malloc(sizeof(float) * n * k);
    }
    fill_n(x, (size_t)m * k, 70 + c);
    fill_n(w, (size_t)n * k, 80 + c);
    fill_n(dy, (size_t)m * n, 90 + c);
    fill_n(bias, n, 100 + c);
    static const int threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
      const int v = t > 0; /* [0] from one thread, [1] from each of the others */
      omp_set_num_threads(threads[t]);
      for (size_t i = 0; i < (size_t)n * k; i++) dw[v][i] = w[i] * 0.5f; /* accumulates */
      crema_fc_stream_forward(m, n, k, x, w, bias, y[v], scratch);
      crema_fc_stream_backward_data(m, n, k, dy, w, dx[v]);
      crema_fc_stream_backward_weights(m, n, k, dy, x, dw[v], false, scratch);
      if (!v) continue;
      ck_assert_msg(!memcmp(y[0], y[1], sizeof(float) * m * n), "shape %zu: y differs on %d threads", c,
                    threads[t]);
      ck_assert_msg(!memcmp(dx[0], dx[1], sizeof(float) * m * k), "shape %zu: dx differs on %d threads", c,
                    threads[t]);
      ck_assert_msg(!memcmp(dw[0], dw[1], sizeof(float) * n * k), "shape %zu: dW differs on %d threads", c,
                    threads[t]);
    }
    for (int b = 0; b < m; b++)
      for (int o = 0; o < n; o++) {
        double s = bias[o];
        for (int j = 0; j < k; j++) s += (double)x[(size_t)b * k + j] * w[(size_t)o * k + j];
        ck_assert_msg(fabs(y[0][(size_t)b * n + o] - s) < 1e-4 * (1 + fabs(s)),
                      "shape %zu: y[%d][%d] %g, want %g", c, b, o, y[0][(size_t)b * n + o], s);
      }
    for (int b = 0; b < m; b++)
      for (int j = 0; j < k; j += 7) {
        double s = 0;
        for (int o = 0; o < n; o++) s += (double)dy[(size_t)b * n + o] * w[(size_t)o * k + j];
        ck_assert_msg(fabs(dx[0][(size_t)b * k + j] - s) < 1e-4 * (1 + fabs(s)),
                      "shape %zu: dx[%d][%d] %g, want %g", c, b, j, dx[0][(size_t)b * k + j], s);
      }
    for (int o = 0; o < n; o += 3)
      for (int j = 0; j < k; j++) {
        double s = w[(size_t)o * k + j] * 0.5;
        for (int b = 0; b < m; b++) s += (double)dy[(size_t)b * n + o] * x[(size_t)b * k + j];
        ck_assert_msg(fabs(dw[0][(size_t)o * k + j] - s) < 1e-5 * (1 + fabs(s)),
                      "shape %zu: dW[%d][%d] %g, want %g", c, o, j, dw[0][(size_t)o * k + j], s);
      }
    /* overwrite: dW = dy^T x, the old contents (NaN here) never read; the same bits as
     * accumulating into zeros */
    for (size_t i = 0; i < (size_t)n * k; i++) {
      dw[0][i] = 0.0f;
      dw[1][i] = NAN;
    }
    crema_fc_stream_backward_weights(m, n, k, dy, x, dw[0], false, scratch);
    crema_fc_stream_backward_weights(m, n, k, dy, x, dw[1], true, scratch);
    ck_assert_msg(!memcmp(dw[0], dw[1], sizeof(float) * n * k), "shape %zu: overwritten dW differs", c);
    for (int v = 0; v < 2; v++) {
      free(y[v]);
      free(dx[v]);
      free(dw[v]);
    }
    free(x);
    free(w);
    free(dy);
    free(bias);
    free(scratch);
  }
  omp_set_num_threads(before);
}
END_TEST

START_TEST(test_engine_default_switch) {
  const int shape[4] = {1, 2, 5, 5};
  crema_blob *x = blob_of(4, shape);
  bool before = crema_engine_get_default();
  crema_engine_set_default(false);
  run r;
  run_setup(&r, "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 }", 1, &x, 1);
  ck_assert_str_eq(crema_layer_engine_name(r.l), CREMA_ENGINE_REFERENCE);
  run_free(&r);
  crema_engine_set_default(true);
  ck_assert(crema_engine_get_default());
  ck_assert_ptr_nonnull(strstr(crema_engine_describe(), "Winograd F(4x4,3x3) on"));
  ck_assert_ptr_nonnull(
      strstr(crema_engine_describe(), crema_engine_have_onednn() ? "oneDNN" : "without oneDNN"));
  crema_engine_set_default(before);
  crema_blob_free(x);
}
END_TEST

/* FLOP counts behind crema time's GFLOP/s: 2 per multiply-add of the matrix product. */
START_TEST(test_layer_flops) {
  const int shape[4] = {2, 4, 9, 9};
  crema_blob *x = blob_of(4, shape);
  run r;
  run_setup(&r, "name: 'c' type: 'Convolution' convolution_param { num_output: 6 kernel_size: 3 group: 2 }",
            1, &x, 1);
  /* top 2x6x7x7, each output a dot product of 4/2*3*3 = 18 */
  ck_assert(crema_layer_forward_flops(r.l, &x, r.top) == 2.0 * (2 * 6 * 7 * 7) * 18);
  run_free(&r);
  run_setup(&r, "name: 'f' type: 'InnerProduct' inner_product_param { num_output: 5 }", 1, &x, 1);
  ck_assert(crema_layer_forward_flops(r.l, &x, r.top) == 2.0 * 2 * 5 * (4 * 9 * 9));
  run_free(&r);
  run_setup(&r, "name: 'r' type: 'ReLU'", 1, &x, 1);
  ck_assert(crema_layer_forward_flops(r.l, &x, r.top) == 0.0);
  run_free(&r);
  crema_blob_free(x);
}
END_TEST

/* The arithmetic behind a layer line of crema time's report: backward (ms x GFLOP/s) over
 * forward's, i.e. how many forward passes' worth of products the backward pass counted. */
static double backward_counts(const char *line, double *tolerance) {
  double f_ms = 0, f_gf = 0, b_ms = 0, b_gf = 0;
  const char *f = strstr(line, "forward: "), *b = strstr(line, "backward: ");
  ck_assert_msg(f && b && sscanf(f, "forward: %lf ms, %lf GFLOP/s", &f_ms, &f_gf) == 2 &&
                    sscanf(b, "backward: %lf ms, %lf GFLOP/s", &b_ms, &b_gf) == 2 && f_ms * f_gf > 0 &&
                    b_ms * b_gf > 0,
                "no times and GFLOP/s in: %.300s", line);
  /* the figures are printed to 0.001 ms and 0.1 GFLOP/s: on a loaded machine a pass can
   * take long enough for that rounding to move the ratio by several percent */
  *tolerance = 0.02 + 0.0005 / f_ms + 0.0005 / b_ms + 0.05 / f_gf + 0.05 / b_gf;
  return b_ms * b_gf / (f_ms * f_gf);
}

/* Runs cmd (a crema time whose log goes to the file log) and returns the log. */
static const char *time_log(const char *cmd, const char *log) {
  static char out[1 << 16];
  ck_assert_int_eq(system(cmd), 0);
  FILE *f = fopen(log, "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  return out;
}

/* crema time names each layer's engine and gives GFLOP/s for convolutions. */
START_TEST(test_time_reports_engines) {
  char dir[] = "/tmp/crema_test_engine_XXXXXX", cmd[1024], log[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(log, sizeof log, "%s/log", dir);
  for (int forced = 0; forced < 2; forced++) {
    snprintf(cmd, sizeof cmd,
             "%s'%s/crema' time --model '%s/lenet/lenet_mnist_deploy.prototxt' --iterations 1 2>'%s'",
             forced ? "CREMA_ENGINE=caffe " : "", CREMA_BIN_DIR, CREMA_TEST_DATA, log);
    const char *out = time_log(cmd, log);
    const char *conv = strstr(out, "conv1\tConvolution  engine: ");
    ck_assert_msg(conv != NULL, "no engine line for conv1 in:\n%.3000s", out);
    /* 64 images of 1 channel: LeNet's conv1 runs im2col and one product per image */
    const char *want = crema_engine_have_onednn() && !forced ? CREMA_ENGINE_PER_IMAGE : "caffe";
    ck_assert_msg(!strncmp(conv + strlen("conv1\tConvolution  engine: "), want, strlen(want)),
                  "conv1 should run %s:\n%.3000s", want, out);
    const char *eol = strchr(conv, '\n');
    const char *gf = strstr(conv, "GFLOP/s");
    ck_assert_msg(gf && (!eol || gf < eol), "no GFLOP/s for conv1:\n%.3000s", out);
    /* the deploy net has no loss: timed with force_backward, conv1 computes both gradients */
    double tol;
    const double counts = backward_counts(conv, &tol);
    ck_assert_msg(fabs(counts - 2.0) <= 2.0 * tol, "conv1's backward counts %g forward passes:\n%.3000s",
                  counts, out);
    ck_assert_msg(strstr(out, "pool1\tPooling      engine: caffe") != NULL, "%.3000s", out);
    const char *says = forced && crema_engine_have_onednn() ? "CREMA_ENGINE=caffe"
                       : crema_engine_have_onednn()         ? "oneDNN"
                                                            : "built without oneDNN";
    ck_assert_msg(strstr(out, says) != NULL, "missing \"%s\" in:\n%.3000s", says, out);
  }
  /* With a loss and no force_backward, a first layer computes its weight gradient alone: its
   * backward counts one forward pass of products, not two. */
  char model[160];
  snprintf(model, sizeof model, "%s/first.prototxt", dir);
  FILE *m = fopen(model, "w");
  ck_assert_ptr_nonnull(m);
  fputs("layer { name: 'data' type: 'Input' top: 'data'\n"
        "  input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } } }\n"
        "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n"
        "  convolution_param { num_output: 16 kernel_size: 5 weight_filler { type: 'xavier' } } }\n"
        "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'conv1' bottom: 'conv1' top: 'loss' }\n",
        m);
  ck_assert_int_eq(fclose(m), 0);
  snprintf(cmd, sizeof cmd, "'%s/crema' time --model '%s' --iterations 3 2>'%s'", CREMA_BIN_DIR, model, log);
  const char *out = time_log(cmd, log);
  const char *conv = strstr(out, "conv1\tConvolution  engine: ");
  ck_assert_msg(conv != NULL, "no engine line for conv1 in:\n%.3000s", out);
  double tol;
  const double counts = backward_counts(conv, &tol);
  ck_assert_msg(fabs(counts - 1.0) <= tol, "conv1's backward counts %g forward passes:\n%.3000s", counts,
                out);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *engine_suite(void) {
  Suite *s = suite_create("engine");
  TCase *tc = tcase_create("conv");
  tcase_set_timeout(tc, 300); /* the 16-image Winograd gradient checks, under the sanitizers */
  tcase_add_loop_test(tc, test_conv_engines_agree, 0, (int)(sizeof CONV_CASES / sizeof CONV_CASES[0]));
  tcase_add_loop_test(tc, test_conv_engines_agree_one_thread, 0,
                      (int)(sizeof CONV_CASES / sizeof CONV_CASES[0]));
  tcase_add_loop_test(tc, test_conv_engines_agree_onednn_alone, 0,
                      (int)(sizeof CONV_CASES / sizeof CONV_CASES[0]));
  tcase_add_test(tc, test_conv_engine_reshape);
  tcase_add_test(tc, test_per_image_wide_same_bits);
  tcase_add_test(tc, test_conv_pointwise_engine);
  tcase_add_test(tc, test_conv_engine_gradient);
  tcase_add_test(tc, test_engine_default_switch);
  tcase_add_test(tc, test_gemm_batch_matches_gemm);
  tcase_add_test(tc, test_gemm_cols_matches_gemm);
  tcase_add_test(tc, test_fc_stream_matches_reference);
  tcase_add_test(tc, test_fc_stream_same_bits_any_threads);
  suite_add_tcase(s, tc);
  TCase *tr = tcase_create("report");
  tcase_add_test(tr, test_layer_flops);
  tcase_add_test(tr, test_time_reports_engines);
  suite_add_tcase(s, tr);
  return s;
}

int main(void) { return test_run_suite(engine_suite()); }
