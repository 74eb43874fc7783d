/* test_api.c -- the public C API (include/crema/crema.h): loading, listing, forward against
 * the internal net, errors and their status codes, image preprocessing against hand-computed
 * values, top-k, several models on several threads, and training with callbacks, stop and
 * snapshot requests and an exact resume. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crema/crema.h"
#include "data/image.h"
#include "net/net.h"
#include "proto/io.h"
#include "support/run.h"
#include "support/textproto.h"

#define LENET_NET CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt"
#define LENET_WEIGHTS CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel"

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_api_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  ck_assert_int_eq(fclose(f), 0);
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Deterministic input values in [0, 1). */
static void fill_input(float *x, size_t n, unsigned seed) {
  unsigned s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / 16777216.0f;
  }
}

static crema_model *load_lenet(void) {
  crema_model *m = NULL;
  crema_status s = crema_model_load(LENET_NET, LENET_WEIGHTS, CREMA_PHASE_TEST, &m);
  ck_assert_msg(s == CREMA_OK, "load: %s", crema_last_error());
  return m;
}

START_TEST(test_load_and_list) {
  crema_model *m = load_lenet();
  ck_assert_int_eq(crema_model_num_inputs(m), 1);
  ck_assert_str_eq(crema_model_input_name(m, 0), "data");
  ck_assert_ptr_null(crema_model_input_name(m, 1));
  ck_assert_int_eq(crema_model_num_outputs(m), 1);
  ck_assert_str_eq(crema_model_output_name(m, 0), "prob");
  /* data conv1 pool1 conv2 pool2 ip1 relu1 ip2 prob */
  ck_assert_int_eq(crema_model_num_layers(m), 9);
  ck_assert_str_eq(crema_model_layer_name(m, 1), "conv1");
  ck_assert_str_eq(crema_model_layer_type(m, 1), "Convolution");
  ck_assert_str_eq(crema_model_layer_type(m, 8), "Softmax");
  ck_assert_int_eq(crema_model_num_params(m), 8);
  crema_param_info p;
  ck_assert_int_eq(crema_model_param(m, 0, &p), CREMA_OK);
  ck_assert_str_eq(p.layer, "conv1");
  ck_assert_int_eq(p.index, 0);
  ck_assert_int_eq(p.ndim, 4);
  ck_assert_int_eq(p.dims[0], 20);
  ck_assert_int_eq(p.dims[1], 1);
  ck_assert_int_eq(p.dims[2], 5);
  ck_assert_uint_eq(p.count, 500);
  ck_assert_int_eq(crema_model_param(m, 7, &p), CREMA_OK);
  ck_assert_str_eq(p.layer, "ip2");
  ck_assert_int_eq(p.index, 1);
  ck_assert_uint_eq(p.count, 10);
  ck_assert_int_eq(crema_model_param(m, 8, &p), CREMA_ERR_ARGUMENT);
  int ndim, dims[CREMA_MAX_DIMS];
  ck_assert_int_eq(crema_model_blob_shape(m, "ip1", &ndim, dims), CREMA_OK);
  ck_assert_int_eq(ndim, 2);
  ck_assert_int_eq(dims[0], 64);
  ck_assert_int_eq(dims[1], 500);
  crema_model_free(m);
  crema_model_free(NULL);
}
END_TEST

/* A model runs BatchNorm and Scale folded into the convolution before them: its outputs
 * match an unfolded net's, and still do after a parameter is changed through
 * crema_model_param's pointer (the fold re-read before the next forward). */
static const char *BN_NET =
    "name: 'bn' layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 8 "
    "dim: 8 } } } "
    "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'c' "
    "  convolution_param { num_output: 4 kernel_size: 3 bias_term: false } } "
    "layer { name: 'bn' type: 'BatchNorm' bottom: 'c' top: 'c' } "
    "layer { name: 'sc' type: 'Scale' bottom: 'c' top: 'c' scale_param { bias_term: true } } "
    "layer { name: 'relu' type: 'ReLU' bottom: 'c' top: 'c' } "
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'c' top: 'out' inner_product_param { num_output: 5 } } ";

/* Copies param i of m into the internal net's same blob. */
static void copy_param(const crema_model *m, int i, crema_net *net) {
  crema_param_info p;
  ck_assert_int_eq(crema_model_param(m, i, &p), CREMA_OK);
  crema_blob *b = crema_net_layer(net, crema_net_layer_index(net, p.layer))->blobs[p.index];
  ck_assert_uint_eq(b->count, p.count);
  memcpy(b->data, p.data, p.count * sizeof(float));
}

static void outputs_match(crema_model *m, crema_net *net, const float *x, size_t n) {
  ck_assert_int_eq(crema_model_set_input(m, "data", x, n), CREMA_OK);
  ck_assert_int_eq(crema_model_forward(m), CREMA_OK);
  for (int i = 0; i < crema_model_num_params(m); i++) copy_param(m, i, net);
  memcpy(crema_net_input(net, 0)->data, x, n * sizeof *x);
  crema_error err;
  ck_assert_msg(crema_net_forward(net, NULL, &err) == 0, "%s", err.msg);
  const float *out;
  size_t count;
  ck_assert_int_eq(crema_model_blob_data(m, "out", &out, &count), CREMA_OK);
  const crema_blob *ref = crema_net_blob_by_name(net, "out");
  ck_assert_uint_eq(count, ref->count);
  for (size_t k = 0; k < count; k++)
    ck_assert_msg(fabsf(out[k] - ref->data[k]) <= 1e-5f * (1.0f + fabsf(ref->data[k])),
                  "out[%zu]: %.9g, unfolded %.9g", k, (double)out[k], (double)ref->data[k]);
}

START_TEST(test_folded_batch_norm_follows_params) {
  crema_model *m = NULL;
  ck_assert_int_eq(crema_model_load_string(BN_NET, NULL, CREMA_PHASE_TEST, &m), CREMA_OK);
  Crema__NetParameter *msg = test_net_param(BN_NET);
  crema_error err;
  crema_net_options o = {.phase = CREMA__PHASE__TEST};
  crema_net *net = NULL;
  ck_assert_msg(crema_net_build(msg, &o, &net, &err) == 0, "%s", err.msg);
  crema_message_free(msg);
  float x[2 * 3 * 8 * 8];
  fill_input(x, 2 * 3 * 8 * 8, 3);
  /* statistics and scale that move the outputs: BatchNorm's blobs start at zero */
  for (int i = 0; i < crema_model_num_params(m); i++) {
    crema_param_info p;
    ck_assert_int_eq(crema_model_param(m, i, &p), CREMA_OK);
    for (size_t k = 0; k < p.count; k++) p.data[k] = 0.5f + 0.25f * (float)((k * 7 + (size_t)i) % 5);
  }
  outputs_match(m, net, x, sizeof x / sizeof x[0]);
  crema_param_info var;
  ck_assert_int_eq(crema_model_param(m, 2, &var), CREMA_OK); /* conv's weights, bn's mean, bn's variance */
  ck_assert_str_eq(var.layer, "bn");
  ck_assert_int_eq(var.index, 1);
  for (size_t k = 0; k < var.count; k++) var.data[k] *= 9.0f;
  outputs_match(m, net, x, sizeof x / sizeof x[0]);
  crema_net_free(net);
  crema_model_free(m);
}
END_TEST

/* The API's forward equals the internal net's, bit for bit, on the same weights and input. */
START_TEST(test_forward_matches_net) {
  crema_model *m = load_lenet();
  const size_t n = 64 * 28 * 28;
  float *x = malloc(n * sizeof *x);
  ck_assert_ptr_nonnull(x);
  fill_input(x, n, 7);
  ck_assert_int_eq(crema_model_set_input(m, "data", x, n), CREMA_OK);
  ck_assert_int_eq(crema_model_forward(m), CREMA_OK);
  const float *prob;
  size_t count;
  ck_assert_int_eq(crema_model_blob_data(m, "prob", &prob, &count), CREMA_OK);
  ck_assert_uint_eq(count, 640);

  crema_net_options o = {0};
  o.phase = CREMA__PHASE__TEST;
  crema_error err;
  crema_net *net = NULL;
  ck_assert_msg(crema_net_load(LENET_NET, &o, &net, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_copy_trained_layers_from_file(net, LENET_WEIGHTS, &err) == 0, "%s", err.msg);
  memcpy(crema_net_input(net, 0)->data, x, n * sizeof *x);
  ck_assert_int_eq(crema_net_forward(net, NULL, &err), 0);
  const crema_blob *ref = crema_net_blob_by_name(net, "prob");
  ck_assert_int_eq(memcmp(ref->data, prob, 640 * sizeof(float)), 0);
  /* Each row is a distribution. */
  double sum = 0;
  for (int k = 0; k < 10; k++) sum += prob[k];
  ck_assert_double_eq_tol(sum, 1.0, 1e-5);
  crema_net_free(net);
  free(x);
  crema_model_free(m);
}
END_TEST

/* Loading from a string gives the same model as from the file; forward_to stops early. */
START_TEST(test_load_string_and_forward_to) {
  char *text = NULL;
  size_t len;
  crema_error err;
  ck_assert_int_eq(crema_read_file(LENET_NET, &text, &len, &err), 0);
  crema_model *a = load_lenet(), *b = NULL;
  ck_assert_int_eq(crema_model_load_string(text, LENET_WEIGHTS, CREMA_PHASE_TEST, &b), CREMA_OK);
  free(text);
  const size_t n = 64 * 28 * 28;
  float *x = malloc(n * sizeof *x);
  ck_assert_ptr_nonnull(x);
  fill_input(x, n, 3);
  ck_assert_int_eq(crema_model_set_input(a, "data", x, n), CREMA_OK);
  ck_assert_int_eq(crema_model_set_input(b, "data", x, n), CREMA_OK);
  ck_assert_int_eq(crema_model_forward(a), CREMA_OK);
  /* Up to layer ip1: relu1 (in place on blob ip1) does not run yet, ip2 and prob neither. */
  ck_assert_int_eq(crema_model_forward_to(b, "ip1"), CREMA_OK);
  const float *ia, *ib, *pb;
  size_t na, nb, np;
  ck_assert_int_eq(crema_model_blob_data(b, "ip1", &ib, &nb), CREMA_OK);
  int negative = 0;
  for (size_t i = 0; i < nb; i++) negative += ib[i] < 0;
  ck_assert_int_gt(negative, 0);
  ck_assert_int_eq(crema_model_forward_to(b, "relu1"), CREMA_OK);
  ck_assert_int_eq(crema_model_blob_data(a, "ip1", &ia, &na), CREMA_OK);
  ck_assert_uint_eq(na, nb);
  ck_assert_int_eq(memcmp(ia, ib, na * sizeof(float)), 0);
  ck_assert_int_eq(crema_model_blob_data(b, "prob", &pb, &np), CREMA_OK);
  for (size_t i = 0; i < np; i++) ck_assert_float_eq(pb[i], 0.0f);
  /* By layer name: up to and including ip2. */
  ck_assert_int_eq(crema_model_forward_to(b, "ip2"), CREMA_OK);
  ck_assert_int_eq(crema_model_blob_data(b, "prob", &pb, &np), CREMA_OK);
  ck_assert_float_eq(pb[0], 0.0f);
  ck_assert_int_eq(crema_model_forward_to(b, "nothing"), CREMA_ERR_NOT_FOUND);
  free(x);
  crema_model_free(a);
  crema_model_free(b);
}
END_TEST

START_TEST(test_reshape_and_save) {
  crema_model *m = load_lenet();
  int dims[4] = {3, 1, 28, 28};
  ck_assert_int_eq(crema_model_reshape_input(m, "data", 4, dims), CREMA_OK);
  int ndim, got[CREMA_MAX_DIMS];
  ck_assert_int_eq(crema_model_blob_shape(m, "prob", &ndim, got), CREMA_OK);
  ck_assert_int_eq(got[0], 3);
  ck_assert_int_eq(got[1], 10);
  /* ip1 cannot take another image size: refused, and the model keeps its shape. */
  int bad[4] = {3, 1, 32, 32};
  ck_assert_int_eq(crema_model_reshape_input(m, "data", 4, bad), CREMA_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "data"));
  ck_assert_int_eq(crema_model_blob_shape(m, "data", &ndim, got), CREMA_OK);
  ck_assert_int_eq(got[2], 28);
  float x[3 * 28 * 28];
  fill_input(x, 3 * 28 * 28, 1);
  ck_assert_int_eq(crema_model_set_input(m, "data", x, 3 * 28 * 28), CREMA_OK);
  ck_assert_int_eq(crema_model_forward(m), CREMA_OK);
  /* Weights written and read back give the same parameters. */
  make_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/w.caffemodel", tmpdir);
  ck_assert_int_eq(crema_model_save_weights(m, path), CREMA_OK);
  crema_model *r = NULL;
  ck_assert_int_eq(crema_model_load(LENET_NET, path, CREMA_PHASE_TEST, &r), CREMA_OK);
  crema_param_info p1, p2;
  ck_assert_int_eq(crema_model_param(m, 4, &p1), CREMA_OK);
  ck_assert_int_eq(crema_model_param(r, 4, &p2), CREMA_OK);
  ck_assert_uint_eq(p1.count, p2.count);
  ck_assert_int_eq(memcmp(p1.data, p2.data, p1.count * sizeof(float)), 0);
  crema_model_free(r);
  remove_tmpdir();
  crema_model_free(m);
}
END_TEST

START_TEST(test_errors) {
  crema_model *m = (crema_model *)1;
  ck_assert_int_eq(crema_model_load("/nonexistent/net.prototxt", NULL, CREMA_PHASE_TEST, &m), CREMA_ERR_IO);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "/nonexistent/net.prototxt"));
  ck_assert_int_eq(crema_model_load_string("layer { name: 'a' typ: 'Input' }", NULL, CREMA_PHASE_TEST, &m),
                   CREMA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "<string>:1:"));
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "typ"));
  ck_assert_int_eq(crema_model_load(LENET_NET, NULL, 7, &m), CREMA_ERR_ARGUMENT);
  ck_assert_int_eq(crema_model_load(NULL, NULL, CREMA_PHASE_TEST, &m), CREMA_ERR_ARGUMENT);
  /* Weights of another shape: the layer is named. */
  const char *net5 =
      "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: 800 } } }"
      "layer { name: 'ip2' type: 'InnerProduct' bottom: 'data' top: 'ip2' "
      "inner_product_param { num_output: 5 } }";
  ck_assert_int_eq(crema_model_load_string(net5, LENET_WEIGHTS, CREMA_PHASE_TEST, &m), CREMA_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "ip2"));
  ck_assert_int_eq(crema_model_load_string(net5, "/nonexistent.caffemodel", CREMA_PHASE_TEST, &m),
                   CREMA_ERR_IO);

  m = load_lenet();
  float x[10] = {0};
  ck_assert_int_eq(crema_model_set_input(m, "data", x, 10), CREMA_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "64 1 28 28"));
  ck_assert_int_eq(crema_model_set_input(m, "dat", x, 10), CREMA_ERR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "its inputs (Input layer tops): data"));
  const float *d;
  size_t n;
  ck_assert_int_eq(crema_model_blob_data(m, "fc8", &d, &n), CREMA_ERR_NOT_FOUND);
  ck_assert_int_eq(crema_model_load_weights(m, CREMA_TEST_DATA "/lenet/README.md"), CREMA_ERR_FORMAT);
  ck_assert_int_eq(crema_model_forward(NULL), CREMA_ERR_ARGUMENT);
  crema_model_free(m);

  ck_assert_str_eq(crema_strerror(CREMA_OK), "success");
  ck_assert_str_eq(crema_strerror(CREMA_ERR_IO), "file cannot be read or written");
  ck_assert_str_eq(crema_strerror((crema_status)99), "unknown status");
  ck_assert_str_eq(crema_version(), CREMA_VERSION);
  /* The header's API version is the project's major.minor. */
  int major = -1, minor = -1;
  ck_assert_int_eq(sscanf(crema_version(), "%d.%d", &major, &minor), 2);
  ck_assert_int_eq(major, CREMA_API_VERSION_MAJOR);
  ck_assert_int_eq(minor, CREMA_API_VERSION_MINOR);
}
END_TEST

/* A net whose "data" input is (1, C, 2, 3) and whose output is the input itself. */
static crema_model *image_net(int channels) {
  char text[512];
  snprintf(text, sizeof text,
           "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 1 dim: %d dim: 2 dim: "
           "3 } } }"
           "layer { name: 'id' type: 'Power' bottom: 'data' top: 'out' }",
           channels);
  crema_model *m = NULL;
  ck_assert_int_eq(crema_model_load_string(text, NULL, CREMA_PHASE_TEST, &m), CREMA_OK);
  return m;
}

/* Pixels land in Caffe's layout (channels-first, BGR) and go through mean and scale. */
START_TEST(test_image_input) {
  crema_model *m = image_net(3);
  uint8_t rgb[2 * 4 * 3]; /* 3 wide, 2 high, stride 4 pixels: the padding must be skipped */
  memset(rgb, 255, sizeof rgb);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 3; x++) {
      uint8_t *p = rgb + (y * 4 + x) * 3;
      p[0] = (uint8_t)(10 + x), p[1] = (uint8_t)(20 + y), p[2] = (uint8_t)(30 + x + y);
    }
  ck_assert_int_eq(crema_model_set_input_image(m, 0, rgb, 3, 2, 12, CREMA_PIXEL_FORMAT_RGB), CREMA_OK);
  const float *d;
  size_t n;
  ck_assert_int_eq(crema_model_blob_data(m, "data", &d, &n), CREMA_OK);
  ck_assert_uint_eq(n, 18);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 3; x++) {
      ck_assert_float_eq(d[0 * 6 + y * 3 + x], (float)(30 + x + y)); /* B */
      ck_assert_float_eq(d[1 * 6 + y * 3 + x], (float)(20 + y));     /* G */
      ck_assert_float_eq(d[2 * 6 + y * 3 + x], (float)(10 + x));     /* R */
    }
  /* The same pixels given as BGR swap the planes. */
  ck_assert_int_eq(crema_model_set_input_image(m, 0, rgb, 3, 2, 12, CREMA_PIXEL_FORMAT_BGR), CREMA_OK);
  ck_assert_float_eq(d[0], 10.0f);
  ck_assert_float_eq(d[12], 30.0f);

  /* Stored preprocessing: mean per channel (B, G, R) then scale. */
  make_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/preprocess.prototxt", tmpdir);
  write_text(path, "scale: 0.5\nmean_value: 4\nmean_value: 8\nmean_value: 12\n");
  ck_assert_int_eq(crema_model_load_preprocess(m, path), CREMA_OK);
  ck_assert_int_eq(crema_model_set_input_image(m, 0, rgb, 3, 2, 12, CREMA_PIXEL_FORMAT_RGB), CREMA_OK);
  ck_assert_float_eq(d[0], (30 - 4) * 0.5f);
  ck_assert_float_eq(d[6], (20 - 8) * 0.5f);
  ck_assert_float_eq(d[12 + 5], (10 + 2 - 12) * 0.5f);
  ck_assert_int_eq(crema_model_forward(m), CREMA_OK);
  const float *out;
  ck_assert_int_eq(crema_model_blob_data(m, "out", &out, &n), CREMA_OK);
  ck_assert_float_eq(out[0], 13.0f);

  /* channel_order RGB keeps red first; RGBA pixels drop their alpha. */
  write_text(path, "channel_order: RGB\n");
  ck_assert_int_eq(crema_model_load_preprocess(m, path), CREMA_OK);
  uint8_t rgba[2 * 3 * 4];
  for (int i = 0; i < 6; i++) rgba[4 * i] = 1, rgba[4 * i + 1] = 2, rgba[4 * i + 2] = 3, rgba[4 * i + 3] = 99;
  ck_assert_int_eq(crema_model_set_input_image(m, 0, rgba, 3, 2, 0, CREMA_PIXEL_FORMAT_RGBA), CREMA_OK);
  ck_assert_int_eq(crema_model_blob_data(m, "data", &d, &n), CREMA_OK);
  ck_assert_float_eq(d[0], 1.0f);
  ck_assert_float_eq(d[6], 2.0f);
  ck_assert_float_eq(d[17], 3.0f);
  ck_assert_int_eq(crema_model_set_input_image(m, 0, rgba, 3, 2, 0, (crema_pixel_format)9),
                   CREMA_ERR_ARGUMENT);

  /* A grey net takes colour pixels through stb's luma rule; a 6x4 image is resized to 3x2. */
  crema_model *g = image_net(1);
  uint8_t grey[4 * 6];
  for (int i = 0; i < 24; i++) grey[i] = 100;
  ck_assert_int_eq(crema_model_set_input_image(g, 0, grey, 6, 4, 0, CREMA_PIXEL_FORMAT_GRAY), CREMA_OK);
  ck_assert_int_eq(crema_model_blob_data(g, "data", &d, &n), CREMA_OK);
  ck_assert_uint_eq(n, 6);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(d[i], 100.0f);
  uint8_t px[3] = {200, 100, 50};
  ck_assert_int_eq(crema_model_set_input_image(g, 0, px, 1, 1, 0, CREMA_PIXEL_FORMAT_RGB), CREMA_OK);
  ck_assert_float_eq(d[0], (float)((200 * 77 + 100 * 150 + 50 * 29) >> 8));
  ck_assert_int_eq(crema_model_set_input_image(g, 1, px, 1, 1, 0, CREMA_PIXEL_FORMAT_RGB),
                   CREMA_ERR_ARGUMENT);
  ck_assert_int_eq(crema_model_set_input_image(g, 0, px, 0, 1, 0, CREMA_PIXEL_FORMAT_RGB),
                   CREMA_ERR_ARGUMENT);
  ck_assert_int_eq(crema_model_set_input_image(g, 0, px, 1, 1, 1, CREMA_PIXEL_FORMAT_RGB),
                   CREMA_ERR_ARGUMENT);
  ck_assert_int_eq(crema_model_set_input_image_file(g, 0, CREMA_TEST_DATA "/images/cat.jpg"), CREMA_OK);
  ck_assert_int_eq(crema_model_set_input_image_file(g, 0, "/nonexistent.jpg"), CREMA_ERR_IO);
  ck_assert_int_eq(crema_model_set_input_image_file(g, 0, path), CREMA_ERR_FORMAT);
  /* A crop that does not fit the input is refused with both sizes. */
  write_text(path, "crop_size: 5\n");
  ck_assert_int_eq(crema_model_load_preprocess(g, path), CREMA_OK);
  ck_assert_int_eq(crema_model_set_input_image(g, 0, grey, 6, 4, 0, CREMA_PIXEL_FORMAT_GRAY),
                   CREMA_ERR_SHAPE);
  write_text(path, "scal: 1\n");
  ck_assert_int_eq(crema_model_load_preprocess(g, path), CREMA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "scal"));
  remove_tmpdir();
  crema_model_free(g);
  crema_model_free(m);
}
END_TEST

START_TEST(test_top_k_and_labels) {
  crema_model *m = NULL;
  ck_assert_int_eq(crema_model_load_string("layer { name: 'data' type: 'Input' top: 'data' "
                                           "input_param { shape { dim: 2 dim: 5 } } }"
                                           "layer { name: 'id' type: 'Power' bottom: 'data' top: 'score' }",
                                           NULL, CREMA_PHASE_TEST, &m),
                   CREMA_OK);
  const float x[10] = {0.1f, 3, 2, 3, -1, 5, 4, 3, 2, 1};
  ck_assert_int_eq(crema_model_set_input(m, "data", x, 10), CREMA_OK);
  /* "score" is a blob, not a layer: forward up to the layer that writes it. */
  ck_assert_int_eq(crema_model_forward_to(m, "score"), CREMA_OK);
  make_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/labels.txt", tmpdir);
  write_text(path, "zero\r\none\ntwo\nthree\nfour\n");
  ck_assert_int_eq(crema_model_load_labels(m, path), CREMA_OK);
  ck_assert_int_eq(crema_model_num_labels(m), 5);
  ck_assert_str_eq(crema_model_label(m, 0), "zero");
  crema_class top[8];
  int n = -1;
  ck_assert_int_eq(crema_model_top_k(m, NULL, 0, 3, top, &n), CREMA_OK);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(top[0].index, 1); /* tie with 3: the lower index first */
  ck_assert_int_eq(top[1].index, 3);
  ck_assert_int_eq(top[2].index, 2);
  ck_assert_float_eq(top[2].prob, 2.0f);
  ck_assert_str_eq(top[1].label, "three");
  ck_assert_int_eq(crema_model_top_k(m, "score", 1, 8, top, &n), CREMA_OK);
  ck_assert_int_eq(n, 5);
  ck_assert_int_eq(top[0].index, 0);
  ck_assert_int_eq(top[4].index, 4);
  ck_assert_int_eq(crema_model_top_k(m, "score", 2, 1, top, &n), CREMA_ERR_ARGUMENT);
  ck_assert_int_eq(crema_model_top_k(m, "nope", 0, 1, top, &n), CREMA_ERR_NOT_FOUND);
  remove_tmpdir();
  crema_model_free(m);
}
END_TEST

/* Oversampling averages ten crops: hand-computed on a 4x4 image v(y, x) = 4y + x with 2x2
 * crops whose four values are the four "classes". */
START_TEST(test_oversample) {
  crema_model *m = NULL;
  ck_assert_int_eq(crema_model_load_string("layer { name: 'data' type: 'Input' top: 'data' "
                                           "input_param { shape { dim: 1 dim: 1 dim: 2 dim: 2 } } }"
                                           "layer { name: 'id' type: 'Power' bottom: 'data' top: 'score' }",
                                           NULL, CREMA_PHASE_TEST, &m),
                   CREMA_OK);
  make_tmpdir();
  char img_path[512], pre_path[512];
  snprintf(img_path, sizeof img_path, "%s/ramp.png", tmpdir);
  snprintf(pre_path, sizeof pre_path, "%s/preprocess.prototxt", tmpdir);
  uint8_t px[16];
  for (int i = 0; i < 16; i++) px[i] = (uint8_t)i;
  crema_image img = {4, 4, 1, px};
  uint8_t *png = NULL;
  size_t len = 0;
  crema_error err;
  ck_assert_int_eq(crema_image_encode(&img, "png", &png, &len, &err), 0);
  FILE *f = fopen(img_path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(png, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
  free(png);
  crema_class top[4];
  int n = -1;
  ck_assert_int_eq(crema_model_classify_file_oversample(m, img_path, 4, top, &n), CREMA_ERR_ARGUMENT);
  write_text(pre_path, "crop_size: 2\nresize_height: 4\nresize_width: 4\n");
  ck_assert_int_eq(crema_model_load_preprocess(m, pre_path), CREMA_OK);
  ck_assert_msg(crema_model_classify_file_oversample(m, img_path, 4, top, &n) == CREMA_OK, "%s",
                crema_last_error());
  ck_assert_int_eq(n, 4);
  /* corners (0,0) (0,2) (2,0) (2,2), centre (1,1), each also mirrored */
  ck_assert_int_eq(top[0].index, 2);
  ck_assert_int_eq(top[1].index, 3);
  ck_assert_int_eq(top[2].index, 0);
  ck_assert_int_eq(top[3].index, 1);
  ck_assert_float_eq_tol(top[0].prob, 9.5f, 1e-6f);
  ck_assert_float_eq_tol(top[1].prob, 9.5f, 1e-6f);
  ck_assert_float_eq_tol(top[2].prob, 5.5f, 1e-6f);
  ck_assert_float_eq_tol(top[3].prob, 5.5f, 1e-6f);
  int ndim, dims[CREMA_MAX_DIMS];
  ck_assert_int_eq(crema_model_blob_shape(m, "data", &ndim, dims), CREMA_OK);
  ck_assert_int_eq(dims[0], 10);
  /* Plain classification of the same file: the centre crop only, batch back to 1. */
  ck_assert_int_eq(crema_model_classify_file(m, img_path, 4, top, &n), CREMA_OK);
  ck_assert_float_eq(top[0].prob, 10.0f);
  ck_assert_int_eq(top[0].index, 3);
  remove_tmpdir();
  crema_model_free(m);
}
END_TEST

/* A run folder: deploy + weights + preprocess + labels; classify one image file. */
START_TEST(test_run_folder_classify) {
  make_tmpdir();
  char cmd[1024], path[512];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s/deploy.prototxt' && cp '%s' '%s/weights.caffemodel'", LENET_NET,
           tmpdir, LENET_WEIGHTS, tmpdir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(path, sizeof path, "%s/preprocess.prototxt", tmpdir);
  write_text(path, "scale: 0.00390625\n");
  snprintf(path, sizeof path, "%s/labels.txt", tmpdir);
  write_text(path, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n");
  crema_model *m = NULL;
  ck_assert_msg(crema_model_load_run(tmpdir, &m) == CREMA_OK, "%s", crema_last_error());
  crema_class top[3];
  int n;
  ck_assert_msg(crema_model_classify_file(m, CREMA_TEST_DATA "/images/cat.jpg", 3, top, &n) == CREMA_OK, "%s",
                crema_last_error());
  ck_assert_int_eq(n, 3);
  ck_assert(top[0].prob >= top[1].prob && top[1].prob >= top[2].prob);
  ck_assert_ptr_nonnull(top[0].label);
  /* The same by hand: grey decode, resize to 28x28, scale -- the input the net saw. */
  int ndim, dims[CREMA_MAX_DIMS];
  ck_assert_int_eq(crema_model_blob_shape(m, "data", &ndim, dims), CREMA_OK);
  ck_assert_int_eq(dims[0], 1);
  const float *d;
  size_t count;
  ck_assert_int_eq(crema_model_blob_data(m, "data", &d, &count), CREMA_OK);
  float lo = 1, hi = 0;
  for (size_t i = 0; i < count; i++) lo = fminf(lo, d[i]), hi = fmaxf(hi, d[i]);
  ck_assert(lo >= 0.0f && hi <= 1.0f && hi > lo);
  crema_model_free(m);
  /* Two caffemodels and no preferred name: the folder is ambiguous. */
  snprintf(cmd, sizeof cmd, "mv '%s/weights.caffemodel' '%s/a.caffemodel' && cp '%s' '%s/b.caffemodel'",
           tmpdir, tmpdir, LENET_WEIGHTS, tmpdir);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(crema_model_load_run(tmpdir, &m), CREMA_ERR_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "several weights"));
  ck_assert_int_eq(crema_model_load_run("/nonexistent", &m), CREMA_ERR_IO);
  remove_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ threads */

#define N_THREADS 4
#define N_PASSES 5

typedef struct thread_job {
  unsigned seed;
  float *expect; /* 640 values computed serially */
  int mismatches;
  crema_status status;
} thread_job;

static void run_lenet(unsigned seed, float *prob_out, crema_status *status) {
  crema_model *m = NULL;
  *status = crema_model_load(LENET_NET, LENET_WEIGHTS, CREMA_PHASE_TEST, &m);
  if (*status) return;
  const size_t n = 64 * 28 * 28;
  float *x = malloc(n * sizeof *x);
  fill_input(x, n, seed);
  const float *prob;
  size_t count;
  if (!(*status = crema_model_set_input(m, "data", x, n)) && !(*status = crema_model_forward(m)) &&
      !(*status = crema_model_blob_data(m, "prob", &prob, &count)))
    memcpy(prob_out, prob, 640 * sizeof(float));
  free(x);
  crema_model_free(m);
}

static void *thread_main(void *arg) {
  thread_job *job = arg;
  float got[640];
  for (int pass = 0; pass < N_PASSES && !job->status; pass++) {
    run_lenet(job->seed, got, &job->status);
    if (!job->status && memcmp(got, job->expect, sizeof got)) job->mismatches++;
  }
  return NULL;
}

/* Several models on several threads at once give exactly what each gives alone. */
START_TEST(test_threads) {
  static float expect[N_THREADS][640];
  thread_job jobs[N_THREADS];
  for (int t = 0; t < N_THREADS; t++) {
    crema_status s;
    run_lenet(100u + (unsigned)t, expect[t], &s);
    ck_assert_int_eq(s, CREMA_OK);
    jobs[t] = (thread_job){100u + (unsigned)t, expect[t], 0, CREMA_OK};
  }
  ck_assert(memcmp(expect[0], expect[1], sizeof expect[0]) != 0);
  pthread_t th[N_THREADS];
  for (int t = 0; t < N_THREADS; t++)
    ck_assert_int_eq(pthread_create(&th[t], NULL, thread_main, &jobs[t]), 0);
  for (int t = 0; t < N_THREADS; t++) ck_assert_int_eq(pthread_join(th[t], NULL), 0);
  for (int t = 0; t < N_THREADS; t++) {
    ck_assert_int_eq(jobs[t].status, CREMA_OK);
    ck_assert_int_eq(jobs[t].mismatches, 0);
  }
}
END_TEST

/* ------------------------------------------------------------------ training */

static const char *TRAIN_NET =
    "name: 'tiny'"
    "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'"
    "  dummy_data_param { shape { dim: 8 dim: 6 } shape { dim: 8 }"
    "    data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 2.99 } } }"
    "layer { name: 'ip1' type: 'InnerProduct' bottom: 'data' top: 'ip1'"
    "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } }"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip1' bottom: 'label' top: 'loss' }"
    "layer { name: 'acc' type: 'Accuracy' bottom: 'ip1' bottom: 'label' top: 'accuracy'"
    "  include { phase: TEST } }";

typedef struct progress {
  int iterations, tests, last_iter, stop_at, snapshot_at;
  float last_loss;
  char test_names[256];
  float last_accuracy;
} progress;

static crema_action on_iter(void *user, int iter, float loss, float lr) {
  progress *p = user;
  p->iterations++;
  p->last_iter = iter;
  p->last_loss = loss;
  ck_assert_float_eq_tol(lr, 0.01f, 1e-9f);
  if (iter == p->snapshot_at) return CREMA_SNAPSHOT;
  return iter == p->stop_at ? CREMA_STOP : CREMA_CONTINUE;
}

static crema_action on_test(void *user, int iter, int n, const char *const *names, const float *values) {
  progress *p = user;
  (void)iter;
  p->tests++;
  p->test_names[0] = '\0';
  for (int i = 0; i < n; i++) {
    strncat(p->test_names, names[i], sizeof p->test_names - strlen(p->test_names) - 2);
    strcat(p->test_names, ",");
    if (!strcmp(names[i], "accuracy")) p->last_accuracy = values[i];
  }
  return CREMA_CONTINUE;
}

static void write_solver(const char *dir, int max_iter) {
  char net[512], solver[512], text[2048];
  snprintf(net, sizeof net, "%s/net.prototxt", dir);
  write_text(net, TRAIN_NET);
  snprintf(solver, sizeof solver, "%s/solver.prototxt", dir);
  snprintf(text, sizeof text,
           "net: '%s' base_lr: 0.01 lr_policy: 'fixed' momentum: 0.9 max_iter: %d display: 0"
           " test_iter: 2 test_interval: 4 random_seed: 5 snapshot_prefix: '%s/snap' metrics_csv: false",
           net, max_iter, dir);
  write_text(solver, text);
}

START_TEST(test_train_callbacks_stop_snapshot_resume) {
  make_tmpdir();
  write_solver(tmpdir, 12);
  char solver[512], path[512];
  snprintf(solver, sizeof solver, "%s/solver.prototxt", tmpdir);
  progress p = {0};
  p.stop_at = 6;
  p.snapshot_at = 2;
  crema_train_options o = {0};
  o.callbacks.user = &p;
  o.callbacks.on_iteration = on_iter;
  o.callbacks.on_test = on_test;
  crema_trainer *t = NULL;
  ck_assert_msg(crema_trainer_create(solver, &o, &t) == CREMA_OK, "%s", crema_last_error());
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  /* Iterations 0..6 trained, then the stop; tests at 0 and 4. */
  ck_assert_int_eq(p.iterations, 7);
  ck_assert_int_eq(p.last_iter, 6);
  ck_assert_int_eq(crema_trainer_iter(t), 7);
  ck_assert(crema_trainer_stopped_early(t));
  ck_assert_int_eq(p.tests, 2);
  ck_assert_str_eq(p.test_names, "accuracy,loss,");
  float acc;
  ck_assert_int_eq(crema_trainer_test_value(t, "accuracy", &acc), CREMA_OK);
  ck_assert_float_eq(acc, p.last_accuracy);
  ck_assert_int_eq(crema_trainer_test_value(t, "nope", &acc), CREMA_ERR_NOT_FOUND);
  ck_assert(isfinite(p.last_loss) && p.last_loss > 0);
  snprintf(path, sizeof path, "%s/snap_iter_3.caffemodel", tmpdir); /* the SNAPSHOT request */
  ck_assert(file_exists(path));
  snprintf(path, sizeof path, "%s/snap_iter_7.solverstate", tmpdir); /* the stop's snapshot */
  ck_assert(file_exists(path));
  char stopped_weights[512];
  snprintf(stopped_weights, sizeof stopped_weights, "%s/at7.caffemodel", tmpdir);
  ck_assert_int_eq(crema_trainer_save_weights(t, stopped_weights), CREMA_OK);
  crema_trainer_free(t);

  /* Resuming from the stop's solverstate and training to 12 equals one run of 12. */
  progress q = {0};
  q.stop_at = q.snapshot_at = -1;
  o.callbacks.user = &q;
  o.resume = path;
  ck_assert_msg(crema_trainer_create(solver, &o, &t) == CREMA_OK, "%s", crema_last_error());
  ck_assert_int_eq(crema_trainer_iter(t), 7);
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  ck_assert_int_eq(crema_trainer_iter(t), 12);
  ck_assert_int_eq(q.iterations, 5);
  char resumed[512], whole[512];
  snprintf(resumed, sizeof resumed, "%s/resumed.caffemodel", tmpdir);
  ck_assert_int_eq(crema_trainer_save_weights(t, resumed), CREMA_OK);
  crema_trainer_free(t);

  progress r = {0};
  r.stop_at = r.snapshot_at = -1;
  o.callbacks.user = &r;
  o.resume = NULL;
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_OK);
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  ck_assert(!crema_trainer_stopped_early(t));
  snprintf(whole, sizeof whole, "%s/whole.caffemodel", tmpdir);
  ck_assert_int_eq(crema_trainer_save_weights(t, whole), CREMA_OK);
  crema_trainer_free(t);
  crema_model *a = NULL, *b = NULL, *c = NULL;
  snprintf(path, sizeof path, "%s/net.prototxt", tmpdir);
  ck_assert_int_eq(crema_model_load(path, resumed, CREMA_PHASE_TEST, &a), CREMA_OK);
  ck_assert_int_eq(crema_model_load(path, whole, CREMA_PHASE_TEST, &b), CREMA_OK);
  ck_assert_int_eq(crema_model_load(path, stopped_weights, CREMA_PHASE_TEST, &c), CREMA_OK);
  crema_param_info pa, pb, pc;
  ck_assert_int_eq(crema_model_param(a, 0, &pa), CREMA_OK);
  ck_assert_int_eq(crema_model_param(b, 0, &pb), CREMA_OK);
  ck_assert_int_eq(crema_model_param(c, 0, &pc), CREMA_OK);
  ck_assert_int_eq(memcmp(pa.data, pb.data, pa.count * sizeof(float)), 0);
  ck_assert(memcmp(pa.data, pc.data, pa.count * sizeof(float)) != 0);
  crema_model_free(a);
  crema_model_free(b);
  crema_model_free(c);
  remove_tmpdir();
}
END_TEST

typedef struct requester {
  crema_trainer *t;
  volatile int *seen_iter;
} requester;

static crema_action count_iter(void *user, int iter, float loss, float lr) {
  (void)loss, (void)lr;
  *(volatile int *)user = iter;
  return CREMA_CONTINUE;
}

static void *request_stop(void *arg) {
  requester *r = arg;
  const struct timespec ms = {0, 1000000};
  while (*r->seen_iter < 3) nanosleep(&ms, NULL);
  crema_trainer_request(r->t, CREMA_STOP);
  return NULL;
}

/* A stop requested from another thread ends the run early. */
START_TEST(test_train_request_from_thread) {
  make_tmpdir();
  write_solver(tmpdir, 1000000);
  char solver[512];
  snprintf(solver, sizeof solver, "%s/solver.prototxt", tmpdir);
  volatile int seen = -1;
  crema_train_options o = {0};
  o.callbacks.user = (void *)&seen;
  o.callbacks.on_iteration = count_iter;
  o.weights = NULL;
  crema_trainer *t = NULL;
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_OK);
  requester r = {t, &seen};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, request_stop, &r), 0);
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert(crema_trainer_stopped_early(t));
  ck_assert_int_lt(crema_trainer_iter(t), 1000000);
  ck_assert_int_ge(crema_trainer_iter(t), 4);
  crema_trainer_free(t);
  remove_tmpdir();
}
END_TEST

/* A frozen layer's weights do not move; the others do. */
START_TEST(test_train_freeze) {
  make_tmpdir();
  write_solver(tmpdir, 5);
  char solver[512], net[512], w0[512], w1[512];
  snprintf(solver, sizeof solver, "%s/solver.prototxt", tmpdir);
  snprintf(net, sizeof net, "%s/net.prototxt", tmpdir);
  snprintf(w0, sizeof w0, "%s/w0.caffemodel", tmpdir);
  snprintf(w1, sizeof w1, "%s/w1.caffemodel", tmpdir);
  crema_train_options o = {0};
  o.freeze = "ip*";
  crema_trainer *t = NULL;
  ck_assert_msg(crema_trainer_create(solver, &o, &t) == CREMA_OK, "%s", crema_last_error());
  ck_assert_int_eq(crema_trainer_save_weights(t, w0), CREMA_OK);
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  ck_assert_int_eq(crema_trainer_save_weights(t, w1), CREMA_OK);
  crema_trainer_free(t);
  crema_model *a = NULL, *b = NULL;
  ck_assert_int_eq(crema_model_load(net, w0, CREMA_PHASE_TEST, &a), CREMA_OK);
  ck_assert_int_eq(crema_model_load(net, w1, CREMA_PHASE_TEST, &b), CREMA_OK);
  crema_param_info pa, pb;
  ck_assert_int_eq(crema_model_param(a, 0, &pa), CREMA_OK);
  ck_assert_int_eq(crema_model_param(b, 0, &pb), CREMA_OK);
  ck_assert_int_eq(memcmp(pa.data, pb.data, pa.count * sizeof(float)), 0);
  crema_model_free(a);
  crema_model_free(b);
  /* Unfrozen, the same run moves them. */
  o.freeze = NULL;
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_OK);
  ck_assert_int_eq(crema_trainer_run(t), CREMA_OK);
  ck_assert_int_eq(crema_trainer_save_weights(t, w1), CREMA_OK);
  crema_trainer_free(t);
  ck_assert_int_eq(crema_model_load(net, w0, CREMA_PHASE_TEST, &a), CREMA_OK);
  ck_assert_int_eq(crema_model_load(net, w1, CREMA_PHASE_TEST, &b), CREMA_OK);
  ck_assert_int_eq(crema_model_param(a, 0, &pa), CREMA_OK);
  ck_assert_int_eq(crema_model_param(b, 0, &pb), CREMA_OK);
  ck_assert(memcmp(pa.data, pb.data, pa.count * sizeof(float)) != 0);
  crema_model_free(a);
  crema_model_free(b);
  /* A pattern that matches nothing is an error naming it. */
  o.freeze = "conv*";
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "conv*"));
  remove_tmpdir();
}
END_TEST

typedef struct train_job {
  char solver[512], weights[512];
  crema_status status;
} train_job;

static void *train_main(void *arg) {
  train_job *job = arg;
  crema_trainer *t = NULL;
  job->status = crema_trainer_create(job->solver, NULL, &t);
  if (!job->status) job->status = crema_trainer_run(t);
  if (!job->status) job->status = crema_trainer_save_weights(t, job->weights);
  crema_trainer_free(t);
  return NULL;
}

/* A trainer on one thread while models run on two others: each result equals its serial one. */
START_TEST(test_train_beside_models) {
  make_tmpdir();
  write_solver(tmpdir, 30);
  train_job serial = {0}, parallel = {0};
  snprintf(serial.solver, sizeof serial.solver, "%s/solver.prototxt", tmpdir);
  snprintf(parallel.solver, sizeof parallel.solver, "%s/solver.prototxt", tmpdir);
  snprintf(serial.weights, sizeof serial.weights, "%s/serial.caffemodel", tmpdir);
  snprintf(parallel.weights, sizeof parallel.weights, "%s/parallel.caffemodel", tmpdir);
  train_main(&serial);
  ck_assert_int_eq(serial.status, CREMA_OK);
  static float expect[2][640];
  thread_job jobs[2];
  for (int t = 0; t < 2; t++) {
    crema_status st;
    run_lenet(200u + (unsigned)t, expect[t], &st);
    ck_assert_int_eq(st, CREMA_OK);
    jobs[t] = (thread_job){200u + (unsigned)t, expect[t], 0, CREMA_OK};
  }
  pthread_t trainer, models[2];
  ck_assert_int_eq(pthread_create(&trainer, NULL, train_main, &parallel), 0);
  for (int t = 0; t < 2; t++) ck_assert_int_eq(pthread_create(&models[t], NULL, thread_main, &jobs[t]), 0);
  ck_assert_int_eq(pthread_join(trainer, NULL), 0);
  for (int t = 0; t < 2; t++) ck_assert_int_eq(pthread_join(models[t], NULL), 0);
  ck_assert_int_eq(parallel.status, CREMA_OK);
  for (int t = 0; t < 2; t++) {
    ck_assert_int_eq(jobs[t].status, CREMA_OK);
    ck_assert_int_eq(jobs[t].mismatches, 0);
  }
  char net[512];
  snprintf(net, sizeof net, "%s/net.prototxt", tmpdir);
  crema_model *a = NULL, *b = NULL;
  ck_assert_int_eq(crema_model_load(net, serial.weights, CREMA_PHASE_TEST, &a), CREMA_OK);
  ck_assert_int_eq(crema_model_load(net, parallel.weights, CREMA_PHASE_TEST, &b), CREMA_OK);
  for (int i = 0; i < crema_model_num_params(a); i++) {
    crema_param_info pa, pb;
    ck_assert_int_eq(crema_model_param(a, i, &pa), CREMA_OK);
    ck_assert_int_eq(crema_model_param(b, i, &pb), CREMA_OK);
    ck_assert_int_eq(memcmp(pa.data, pb.data, pa.count * sizeof(float)), 0);
  }
  crema_model_free(a);
  crema_model_free(b);
  remove_tmpdir();
}
END_TEST

typedef struct log_capture {
  int lines, infos;
  char first[256];
} log_capture;

static void capture_log(void *user, int level, const char *line) {
  log_capture *c = user;
  if (!c->lines++) snprintf(c->first, sizeof c->first, "%s", line);
  c->infos += level == 0;
}

/* Log lines go to the callback (glog layout, no newline) and respect the level. */
START_TEST(test_log_callback) {
  log_capture c = {0};
  crema_set_log_level(0);
  crema_set_log_callback(capture_log, &c);
  crema_model *m = load_lenet(); /* logs "Copying source layer ..." */
  crema_set_log_callback(NULL, NULL);
  crema_set_log_level(1);
  crema_model_free(m);
  ck_assert_int_gt(c.lines, 5);
  ck_assert_int_eq(c.infos, c.lines);
  ck_assert_msg(c.first[0] == 'I' && strstr(c.first, "] ") && !strchr(c.first, '\n'), "%s", c.first);
  log_capture quiet = {0};
  crema_set_log_callback(capture_log, &quiet);
  m = load_lenet(); /* level 1: information lines are dropped */
  crema_set_log_callback(NULL, NULL);
  crema_model_free(m);
  ck_assert_int_eq(quiet.infos, 0);
}
END_TEST

START_TEST(test_train_errors) {
  crema_trainer *t = (crema_trainer *)1;
  ck_assert_int_eq(crema_trainer_create("/nonexistent/solver.prototxt", NULL, &t), CREMA_ERR_IO);
  ck_assert_ptr_null(t);
  make_tmpdir();
  write_solver(tmpdir, 10);
  char solver[512];
  snprintf(solver, sizeof solver, "%s/solver.prototxt", tmpdir);
  crema_train_options o = {0};
  o.weights = "a.caffemodel";
  o.resume = "b.solverstate";
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_ERR_ARGUMENT);
  o.resume = NULL;
  o.weights = "/nonexistent.caffemodel";
  ck_assert_int_eq(crema_trainer_create(solver, &o, &t), CREMA_ERR_IO);
  ck_assert_ptr_nonnull(strstr(crema_last_error(), "/nonexistent.caffemodel"));
  write_text(solver, "base_lr: 0.01 max_iter: 3 lr_policy: 'fixed' type: 'Sgdx' net: 'x.prototxt'");
  ck_assert_int_eq(crema_trainer_create(solver, NULL, &t), CREMA_ERR_FORMAT);
  remove_tmpdir();
}
END_TEST

static Suite *api_suite(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("model");
  tcase_add_test(tc, test_load_and_list);
  tcase_add_test(tc, test_forward_matches_net);
  tcase_add_test(tc, test_load_string_and_forward_to);
  tcase_add_test(tc, test_folded_batch_norm_follows_params);
  tcase_add_test(tc, test_reshape_and_save);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_image_input);
  tcase_add_test(tc, test_top_k_and_labels);
  tcase_add_test(tc, test_oversample);
  tcase_add_test(tc, test_run_folder_classify);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_log_callback);
  suite_add_tcase(s, tc);
  TCase *tr = tcase_create("train");
  tcase_add_test(tr, test_train_callbacks_stop_snapshot_resume);
  tcase_add_test(tr, test_train_request_from_thread);
  tcase_add_test(tr, test_train_freeze);
  tcase_add_test(tr, test_train_beside_models);
  tcase_add_test(tr, test_train_errors);
  suite_add_tcase(s, tr);
  return s;
}

int main(void) {
  crema_set_log_level(1);
  return test_run_suite(api_suite());
}
