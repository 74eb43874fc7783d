/* extract_features: LeNet (weights trained by Caffe) over a Data layer reading a crema LMDB;
 * one float_data Datum per image per blob under 10-digit keys, equal to the blob values of
 * the same net run here; labels come through unchanged; --npy arrays equal the records;
 * errors for unknown blobs, mismatched lists and existing outputs. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/run.h"
#include "common/npy.h"
#include "data/datum.h"
#include "data/lmdb_db.h"
#include "data_test_util.h"
#include "net/net.h"
#include "proto/crema.pb-c.h"

enum { N = 12, BATCH = 4 };
static char dir[256], net_path[300], db_path[300];
static const char WEIGHTS[] = CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel";

static void setup(void) {
  tmp_dir(dir);
  snprintf(db_path, sizeof db_path, "%s/digits", dir);
  crema_lmdb_writer *w;
  crema_error err;
  ck_assert_int_eq(crema_lmdb_create(db_path, 0, &w, &err), 0);
  crema_bytes rec = {0};
  for (int i = 0; i < N; i++) {
    uint8_t *px = random_pixels(28, 28, 1, (uint64_t)i + 5);
    ck_assert_int_eq(crema_datum_serialize_raw(px, 1, 28, 28, i % 10, &rec, &err), 0);
    char key[32];
    int kl = snprintf(key, sizeof key, "%08d", i);
    ck_assert_int_eq(crema_lmdb_put(w, key, (size_t)kl, rec.data, rec.len, &err), 0);
    free(px);
  }
  crema_bytes_free(&rec);
  ck_assert_int_eq(crema_lmdb_writer_close(w, &err), 0);
  char net[4096];
  snprintf(net, sizeof net,
           "name: 'LeNet'\n"
           "layer { name: 'mnist' type: 'Data' top: 'data' top: 'label' include { phase: TEST }\n"
           "  transform_param { scale: 0.00390625 }\n"
           "  data_param { source: '%s' batch_size: %d backend: LMDB } }\n"
           "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1'\n"
           "  convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }\n"
           "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1'\n"
           "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
           "layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2'\n"
           "  convolution_param { num_output: 50 kernel_size: 5 stride: 1 } }\n"
           "layer { name: 'pool2' type: 'Pooling' bottom: 'conv2' top: 'pool2'\n"
           "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
           "layer { name: 'ip1' type: 'InnerProduct' bottom: 'pool2' top: 'ip1' inner_product_param { "
           "num_output: 500 } }\n"
           "layer { name: 'relu1' type: 'ReLU' bottom: 'ip1' top: 'ip1' }\n"
           "layer { name: 'ip2' type: 'InnerProduct' bottom: 'ip1' top: 'ip2' inner_product_param { "
           "num_output: 10 } }\n",
           db_path, BATCH);
  snprintf(net_path, sizeof net_path, "%s/lenet_features.prototxt", dir);
  write_text(net_path, net);
}

static void teardown(void) { remove_tree(dir); }

/* ip2 of all N images, by running the same net here (3 forward passes). */
static void reference_ip2(float *out) {
  crema_net_options opt = {0};
  opt.phase = CREMA__PHASE__TEST;
  crema_net *net;
  crema_error err;
  ck_assert_msg(crema_net_load(net_path, &opt, &net, &err) == 0, "%s", err.msg);
  ck_assert_msg(crema_net_copy_trained_layers_from_file(net, WEIGHTS, &err) == 0, "%s", err.msg);
  for (int b = 0; b < N / BATCH; b++) {
    ck_assert_msg(crema_net_forward(net, NULL, &err) == 0, "%s", err.msg);
    const crema_blob *ip2 = crema_net_blob_by_name(net, "ip2");
    ck_assert_int_eq(ip2->count, BATCH * 10);
    memcpy(out + b * BATCH * 10, ip2->data, sizeof(float) * BATCH * 10);
  }
  crema_net_free(net);
}

START_TEST(test_extract_lmdb_and_npy) {
  char args[2048], *out;
  snprintf(args, sizeof args, "extract_features --npy '%s' '%s' ip2,label '%s/f_ip2,%s/f_label' 3 lmdb CPU",
           WEIGHTS, net_path, dir, dir);
  ck_assert_msg(run_tool(dir, args, &out) == 0, "%s", out);
  ck_assert_msg(strstr(out, "Extracted features of 12 query images for feature blob ip2") != NULL, "%s", out);
  free(out);
  float want[N * 10];
  reference_ip2(want);
  char p[512];
  snprintf(p, sizeof p, "%s/f_ip2", dir);
  db_records r = read_db(p);
  ck_assert_int_eq(r.n, N);
  for (int i = 0; i < N; i++) {
    char key[16];
    snprintf(key, sizeof key, "%010d", i);
    ck_assert_str_eq(r.keys[i], key);
    Crema__Datum *d = crema__datum__unpack(NULL, r.value_len[i], r.values[i]);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->channels, 10);
    ck_assert_int_eq(d->height, 1);
    ck_assert_int_eq(d->width, 1);
    ck_assert_int_eq(d->n_float_data, 10);
    for (int j = 0; j < 10; j++) ck_assert_float_eq_tol(d->float_data[j], want[i * 10 + j], 1e-4f);
    crema__datum__free_unpacked(d, NULL);
  }
  free_db(&r);
  snprintf(p, sizeof p, "%s/f_label", dir);
  r = read_db(p);
  ck_assert_int_eq(r.n, N);
  for (int i = 0; i < N; i++) {
    Crema__Datum *d = crema__datum__unpack(NULL, r.value_len[i], r.values[i]);
    ck_assert_int_eq(d->channels, 1);
    ck_assert_float_eq(d->float_data[0], (float)(i % 10));
    crema__datum__free_unpacked(d, NULL);
  }
  free_db(&r);
  /* The .npy arrays: (12, 10) and (12,). */
  crema_blob *b = crema_blob_new();
  crema_error err;
  snprintf(p, sizeof p, "%s/f_ip2.npy", dir);
  ck_assert_msg(crema_npy_read(p, b, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(b->num_axes, 2);
  ck_assert_int_eq(b->shape[0], N);
  ck_assert_int_eq(b->shape[1], 10);
  for (int i = 0; i < N * 10; i++) ck_assert_float_eq_tol(b->data[i], want[i], 1e-4f);
  snprintf(p, sizeof p, "%s/f_label.npy", dir);
  ck_assert_msg(crema_npy_read(p, b, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(b->num_axes, 1);
  ck_assert_int_eq(b->shape[0], N);
  ck_assert_float_eq(b->data[11], 1.0f);
  crema_blob_free(b);
}
END_TEST

START_TEST(test_errors) {
  char args[2048], *out, p[512];
  snprintf(args, sizeof args, "extract_features '%s' '%s' nope '%s/f' 1", WEIGHTS, net_path, dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "Unknown feature blob name nope") != NULL, "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/f", dir);
  ck_assert_int_ne(access(p, F_OK), 0);
  snprintf(args, sizeof args, "extract_features '%s' '%s' ip2,ip1 '%s/f' 1", WEIGHTS, net_path, dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "2 blob name(s) but 1 data set") != NULL, "%s", out);
  free(out);
  snprintf(args, sizeof args, "extract_features '%s' '%s' ip2 '%s' 1", WEIGHTS, net_path, db_path);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "already exists") != NULL, "%s", out);
  free(out);
  snprintf(args, sizeof args, "extract_features '%s' '%s' ip2 '%s/g' 1 rocksdb", WEIGHTS, net_path, dir);
  ck_assert_int_ne(run_tool(dir, args, &out), 0);
  ck_assert_msg(strstr(out, "use lmdb or leveldb") != NULL, "%s", out);
  free(out);
  snprintf(args, sizeof args, "extract_features '%s' '%s' ip2 '%s/g' 1 leveldb", WEIGHTS, net_path, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/g/CURRENT", dir); /* a LevelDB data set */
  ck_assert_int_eq(access(p, F_OK), 0);
  /* --npy_only writes no LMDB. */
  snprintf(args, sizeof args, "extract_features --npy_only '%s' '%s' ip2 '%s/h' 2", WEIGHTS, net_path, dir);
  ck_assert_int_eq(run_tool(dir, args, &out), 0);
  free(out);
  snprintf(p, sizeof p, "%s/h", dir);
  ck_assert_int_ne(access(p, F_OK), 0);
  snprintf(p, sizeof p, "%s/h.npy", dir);
  ck_assert_int_eq(access(p, F_OK), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("extract_features");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_extract_lmdb_and_npy);
  tcase_add_test(tc, test_errors);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
