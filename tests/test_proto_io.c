/* Binary and text message files: the LeNet caffemodel written by real Caffe, write/read
 * round trips, text/binary detection, error cases, atomic writes, blob <-> BlobProto. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/run.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "support/textproto.h"
#include "tensor/blob_proto.h"

#define LENET_MODEL CREMA_TEST_DATA "/lenet/lenet_mnist_iter_10000.caffemodel"
#define LENET_DEPLOY CREMA_TEST_DATA "/lenet/lenet_mnist_deploy.prototxt"

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crema_test_proto_io.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

static void tmp_path(char *buf, size_t size, const char *name) { snprintf(buf, size, "%s/%s", tmpdir, name); }

static void write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

static int count_files(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
  FILE *p = popen(cmd, "r");
  int n = -1;
  ck_assert_int_eq(fscanf(p, "%d", &n), 1);
  pclose(p);
  return n;
}

static const Crema__LayerParameter *find_layer(const Crema__NetParameter *net, const char *name) {
  for (size_t i = 0; i < net->n_layer; i++)
    if (net->layer[i]->name && !strcmp(net->layer[i]->name, name)) return net->layer[i];
  return NULL;
}

static void check_blob_shape(const Crema__BlobProto *b, int n, const int *dims) {
  int num_axes = 0, shape[CREMA_MAX_AXES];
  crema_error err = {{0}};
  ck_assert_int_eq(crema_blob_shape_from_proto(b, &num_axes, shape, &err), 0);
  ck_assert_int_eq(num_axes, n);
  size_t count = 1;
  for (int i = 0; i < n; i++) {
    ck_assert_int_eq(shape[i], dims[i]);
    count *= (size_t)dims[i];
  }
  ck_assert_uint_eq(b->n_data, count);
}

START_TEST(test_lenet_caffemodel) {
  Crema__NetParameter *net = NULL;
  crema_error err = {{0}};
  ck_assert_msg(crema_read_net_param(LENET_MODEL, &net, &err) == 0, "%s", err.msg);
  const char *names[] = {"conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    ck_assert_msg(find_layer(net, names[i]) != NULL, "layer %s missing", names[i]);
  const Crema__LayerParameter *conv1 = find_layer(net, "conv1"), *conv2 = find_layer(net, "conv2");
  const Crema__LayerParameter *ip1 = find_layer(net, "ip1"), *ip2 = find_layer(net, "ip2");
  ck_assert_str_eq(conv1->type, "Convolution");
  ck_assert_uint_eq(conv1->n_blobs, 2);
  check_blob_shape(conv1->blobs[0], 4, (const int[]){20, 1, 5, 5});
  check_blob_shape(conv1->blobs[1], 1, (const int[]){20});
  check_blob_shape(conv2->blobs[0], 4, (const int[]){50, 20, 5, 5});
  check_blob_shape(conv2->blobs[1], 1, (const int[]){50});
  check_blob_shape(ip1->blobs[0], 2, (const int[]){500, 800});
  check_blob_shape(ip2->blobs[0], 2, (const int[]){10, 500});
  check_blob_shape(ip2->blobs[1], 1, (const int[]){10});
  ck_assert_uint_eq(find_layer(net, "pool1")->n_blobs, 0);
  /* Trained weights: finite, not all zero, of a plausible size. */
  double sumsq = 0;
  for (size_t i = 0; i < conv1->blobs[0]->n_data; i++) {
    ck_assert(isfinite(conv1->blobs[0]->data[i]));
    sumsq += (double)conv1->blobs[0]->data[i] * conv1->blobs[0]->data[i];
  }
  ck_assert(sumsq > 1.0 && sumsq < 1e4);

  /* Binary round trip: identical bytes, identical blobs. */
  make_tmpdir();
  char path[512];
  tmp_path(path, sizeof path, "copy.caffemodel");
  ck_assert_msg(crema_write_binary_message(path, &net->base, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(count_files(tmpdir), 1); /* no temp file left behind */
  Crema__NetParameter *again = NULL;
  ck_assert_msg(crema_read_net_param(path, &again, &err) == 0, "%s", err.msg);
  ck_assert_uint_eq(again->n_layer, net->n_layer);
  for (size_t i = 0; i < net->n_layer; i++) {
    ck_assert_str_eq(again->layer[i]->name, net->layer[i]->name);
    ck_assert_uint_eq(again->layer[i]->n_blobs, net->layer[i]->n_blobs);
    for (size_t k = 0; k < net->layer[i]->n_blobs; k++) {
      const Crema__BlobProto *a = net->layer[i]->blobs[k], *b = again->layer[i]->blobs[k];
      ck_assert_uint_eq(a->n_data, b->n_data);
      ck_assert_int_eq(memcmp(a->data, b->data, a->n_data * sizeof(float)), 0);
    }
  }
  /* Caffe's own file and ours are byte-identical after the round trip. */
  struct stat s1, s2;
  ck_assert_int_eq(stat(LENET_MODEL, &s1), 0);
  ck_assert_int_eq(stat(path, &s2), 0);
  ck_assert_int_eq(s1.st_size, s2.st_size);
  crema_message_free(again);
  crema_message_free(net);
  remove_tmpdir();
}
END_TEST

START_TEST(test_text_and_detection) {
  make_tmpdir();
  Crema__NetParameter *net = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_read_net_param(LENET_DEPLOY, &net, &err), 0);
  ck_assert_uint_eq(net->n_layer, 9);
  char txt[512], bin[512], noext[512];
  tmp_path(txt, sizeof txt, "net.prototxt");
  tmp_path(bin, sizeof bin, "net.bin");
  tmp_path(noext, sizeof noext, "net_text_no_extension");
  ck_assert_int_eq(crema_write_text_message(txt, &net->base, &err), 0);
  ck_assert_int_eq(crema_write_binary_message(bin, &net->base, &err), 0);
  ck_assert_int_eq(crema_write_text_message(noext, &net->base, &err), 0);
  const char *paths[] = {txt, bin, noext};
  for (int i = 0; i < 3; i++) {
    ProtobufCMessage *m = NULL;
    ck_assert_msg(crema_read_message(paths[i], &crema__net_parameter__descriptor, &m, &err) == 0, "%s",
                  err.msg);
    const Crema__NetParameter *back = (const Crema__NetParameter *)m;
    ck_assert_uint_eq(back->n_layer, 9);
    ck_assert_str_eq(back->layer[8]->type, "Softmax");
    crema_message_free(m);
  }
  /* This text is also valid wire format (unknown fields only): read as text all the same. */
  char ambiguous[512];
  tmp_path(ambiguous, sizeof ambiguous, "ambiguous");
  const char *amb_text = "input: \"jan_rudf\"\n";
  write_bytes(ambiguous, amb_text, strlen(amb_text));
  ProtobufCMessage *wire = protobuf_c_message_unpack(&crema__net_parameter__descriptor, NULL,
                                                     strlen(amb_text), (const uint8_t *)amb_text);
  ck_assert_ptr_nonnull(wire); /* the premise of this check */
  crema_message_free(wire);
  ProtobufCMessage *amb = NULL;
  ck_assert_int_eq(crema_read_message(ambiguous, &crema__net_parameter__descriptor, &amb, &err), 0);
  ck_assert_uint_eq(((const Crema__NetParameter *)amb)->n_input, 1);
  ck_assert_str_eq(((const Crema__NetParameter *)amb)->input[0], "jan_rudf");
  crema_message_free(amb);

  /* The wrong reader for the content: a clear word about what the file is. */
  ProtobufCMessage *m = NULL;
  ck_assert_int_eq(crema_read_binary_message(txt, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(err.msg, txt));
  ck_assert_ptr_nonnull(strstr(err.msg, "looks like a text file"));
  ck_assert_int_eq(crema_read_text_message(LENET_MODEL, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "binary data"));
  ck_assert_int_eq(
      crema_read_message(LENET_MODEL ".prototxt.missing", &crema__net_parameter__descriptor, &m, &err), -1);
  crema_message_free(net);
  remove_tmpdir();
}
END_TEST

START_TEST(test_binary_errors) {
  make_tmpdir();
  crema_error err = {{0}};
  ProtobufCMessage *m = NULL;
  char path[512];

  tmp_path(path, sizeof path, "empty.caffemodel");
  write_bytes(path, "", 0);
  ck_assert_int_eq(crema_read_binary_message(path, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "empty.caffemodel: the file is empty"));

  /* Truncated: the first half of Caffe's file. */
  char *model = NULL;
  size_t len = 0;
  ck_assert_int_eq(crema_read_file(LENET_MODEL, &model, &len, &err), 0);
  ck_assert_uint_gt(len, 1000000);
  tmp_path(path, sizeof path, "half.caffemodel");
  write_bytes(path, model, len / 2);
  ck_assert_int_eq(crema_read_binary_message(path, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(err.msg, "half.caffemodel: not a valid NetParameter (truncated"));
  ck_assert_int_eq(crema_read_net_param(path, (Crema__NetParameter **)&m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "half.caffemodel"));
  free(model);

  /* Not protobuf at all: a JPEG-like header with invalid wire types. */
  const unsigned char junk[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J',
                                'F',  'I',  'F',  0x00, 0x07, 0x07, 0x07};
  tmp_path(path, sizeof path, "photo.caffemodel");
  write_bytes(path, junk, sizeof junk);
  ck_assert_int_eq(crema_read_net_param(path, (Crema__NetParameter **)&m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "photo.caffemodel: not a valid NetParameter"));

  ck_assert_int_eq(crema_read_binary_message(tmpdir, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "is a directory"));

  tmp_path(path, sizeof path, "missing.caffemodel");
  ck_assert_int_eq(crema_read_binary_message(path, &crema__net_parameter__descriptor, &m, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "missing.caffemodel: no such file"));

  /* Permission denied (root reads anything, so only checked for other users). */
  tmp_path(path, sizeof path, "secret.caffemodel");
  write_bytes(path, "\x0a\x01x", 3);
  ck_assert_int_eq(chmod(path, 0), 0);
  if (geteuid() != 0) {
    ck_assert_int_eq(crema_read_binary_message(path, &crema__net_parameter__descriptor, &m, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "permission denied"));
  }

  /* Writing into a folder that does not exist fails and names the target. */
  Crema__NetParameter *net = test_net_param("name: 'x'");
  tmp_path(path, sizeof path, "no/such/dir/x.caffemodel");
  ck_assert_int_eq(crema_write_binary_message(path, &net->base, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "x.caffemodel"));
  crema_message_free(net);
  remove_tmpdir();
}
END_TEST

START_TEST(test_atomic_write) {
  make_tmpdir();
  crema_error err = {{0}};
  char path[512];
  tmp_path(path, sizeof path, "out.csv");
  ck_assert_int_eq(crema_write_file_atomic(path, "a,b\n", 4, &err), 0);
  ck_assert_int_eq(crema_write_file_atomic(path, "1,2\n3,4\n", 8, &err), 0);
  char *data = NULL;
  size_t len = 0;
  ck_assert_int_eq(crema_read_file(path, &data, &len, &err), 0);
  ck_assert_uint_eq(len, 8);
  ck_assert_str_eq(data, "1,2\n3,4\n");
  free(data);
  ck_assert_int_eq(count_files(tmpdir), 1);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert(st.st_mode & S_IRUSR);
  remove_tmpdir();
}
END_TEST

START_TEST(test_blob_proto_round_trip) {
  crema_error err = {{0}};
  crema_blob *b = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape(b, 3, (const int[]){2, 3, 4}, &err), 0);
  for (size_t i = 0; i < b->count; i++) {
    b->data[i] = (float)i * 0.25f - 1.0f;
    b->diff[i] = -(float)i;
  }
  Crema__BlobProto *p = NULL;
  ck_assert_int_eq(crema_blob_to_proto(b, true, &p, &err), 0);
  ck_assert_uint_eq(p->shape->n_dim, 3);
  ck_assert_int_eq(p->shape->dim[2], 4);
  ck_assert_uint_eq(p->n_data, 24);
  ck_assert_uint_eq(p->n_diff, 24);
  crema_blob *c = crema_blob_new();
  ck_assert_int_eq(crema_blob_from_proto(c, p, true, &err), 0);
  ck_assert(crema_blob_same_shape(b, c));
  ck_assert_int_eq(memcmp(b->data, c->data, 24 * sizeof(float)), 0);
  ck_assert_int_eq(memcmp(b->diff, c->diff, 24 * sizeof(float)), 0);
  crema_message_free(p);

  /* Without diff; through the wire format too. */
  ck_assert_int_eq(crema_blob_to_proto(b, false, &p, &err), 0);
  ck_assert_uint_eq(p->n_diff, 0);
  size_t n = protobuf_c_message_get_packed_size(&p->base);
  uint8_t *wire = malloc(n);
  protobuf_c_message_pack(&p->base, wire);
  Crema__BlobProto *q = crema__blob_proto__unpack(NULL, n, wire);
  free(wire);
  ck_assert_ptr_nonnull(q);
  crema_blob *d = crema_blob_new();
  ck_assert_int_eq(crema_blob_from_proto(d, q, false, &err), 0);
  ck_assert_int_eq(memcmp(b->data, d->data, 24 * sizeof(float)), 0);
  /* Asking for a diff the proto does not hold is an error. */
  ck_assert_int_eq(crema_blob_from_proto(d, q, true, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "diff"));
  crema_message_free(q);
  crema_message_free(p);

  /* Legacy 4-d shape and double data, as old Caffe files hold them. */
  Crema__BlobProto *legacy = (Crema__BlobProto *)test_message(
      &crema__blob_proto__descriptor,
      "num: 1 channels: 2 height: 1 width: 3 double_data: [1, 2, 3, 4, 5, 6.5]");
  int num_axes, shape[CREMA_MAX_AXES];
  ck_assert_int_eq(crema_blob_shape_from_proto(legacy, &num_axes, shape, &err), 0);
  ck_assert_int_eq(num_axes, 4);
  ck_assert_int_eq(shape[1], 2);
  ck_assert_int_eq(shape[3], 3);
  ck_assert_int_eq(crema_blob_from_proto(d, legacy, false, &err), 0);
  ck_assert_uint_eq(d->count, 6);
  ck_assert_float_eq(d->data[5], 6.5f);
  crema_message_free(legacy);

  /* Count mismatch and bad dims. */
  Crema__BlobProto *bad = (Crema__BlobProto *)test_message(&crema__blob_proto__descriptor,
                                                           "shape { dim: 2 dim: 3 } data: [1, 2, 3]");
  ck_assert_int_eq(crema_blob_from_proto(d, bad, false, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "6 elements"));
  ck_assert_ptr_nonnull(strstr(err.msg, "3 data"));
  crema_message_free(bad);
  bad = (Crema__BlobProto *)test_message(&crema__blob_proto__descriptor, "shape { dim: -2 }");
  ck_assert_int_eq(crema_blob_shape_from_proto(bad, &num_axes, shape, &err), -1);
  crema_message_free(bad);
  bad = (Crema__BlobProto *)test_message(&crema__blob_proto__descriptor,
                                         "shape { dim: [1, 1, 1, 1, 1, 1, 1, 1, 1] }");
  ck_assert_int_eq(crema_blob_shape_from_proto(bad, &num_axes, shape, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "at most"));
  crema_message_free(bad);

  crema_blob_free(b);
  crema_blob_free(c);
  crema_blob_free(d);
}
END_TEST

int main(void) {
  Suite *s = suite_create("proto_io");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_lenet_caffemodel);
  tcase_add_test(tc, test_text_and_detection);
  tcase_add_test(tc, test_binary_errors);
  tcase_add_test(tc, test_atomic_write);
  tcase_add_test(tc, test_blob_proto_round_trip);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
