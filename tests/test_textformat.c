/* Text format: every zoo prototxt parses, prints and re-parses to the same message; the
 * syntax Caffe's parser accepts; floats printed bit-exactly; errors with file:line:col. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/run.h"
#include "proto/io.h"
#include "proto/textformat.h"
#include "support/textproto.h"

/* Packed wire bytes of a message (malloc'd). */
static uint8_t *packed(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(*len ? *len : 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(protobuf_c_message_pack(m, buf), *len);
  return buf;
}

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
  size_t na, nb;
  uint8_t *pa = packed(a, &na), *pb = packed(b, &nb);
  bool same = na == nb && !memcmp(pa, pb, na);
  free(pa);
  free(pb);
  return same;
}

/* Parses, prints, re-parses and checks the two messages pack to identical bytes. */
static void check_round_trip(const ProtobufCMessage *m, const char *what) {
  char *text = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_text_print(m, &text, &err), 0);
  ProtobufCMessage *again = NULL;
  ck_assert_msg(crema_text_parse(m->descriptor, text, strlen(text), "printed", &again, &err) == 0,
                "%s: printed text does not parse: %s", what, err.msg);
  ck_assert_msg(same_message(m, again), "%s: re-parsed message differs", what);
  crema_message_free(again);
  free(text);
}

static int zoo_files = 0, zoo_nets = 0, zoo_solvers = 0;

static void walk_zoo(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot open %s", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    if (S_ISDIR(st.st_mode)) {
      walk_zoo(path);
      continue;
    }
    size_t n = strlen(path);
    if (n < 9 || strcmp(path + n - 9, ".prototxt")) continue;
    bool solver = strstr(e->d_name, "solver") != NULL;
    const ProtobufCMessageDescriptor *desc =
        solver ? &crema__solver_parameter__descriptor : &crema__net_parameter__descriptor;
    ProtobufCMessage *m = NULL;
    crema_error err = {{0}};
    ck_assert_msg(crema_read_text_message(path, desc, &m, &err) == 0, "%s", err.msg);
    if (solver) {
      const Crema__SolverParameter *s = (const Crema__SolverParameter *)m;
      ck_assert_msg(s->has_base_lr && s->base_lr > 0, "%s: base_lr not read", path);
      zoo_solvers++;
    } else {
      const Crema__NetParameter *net = (const Crema__NetParameter *)m;
      ck_assert_msg(net->n_layer > 0, "%s: no layers read", path);
      zoo_nets++;
    }
    check_round_trip(m, path);
    crema_message_free(m);
    zoo_files++;
  }
  closedir(d);
}

START_TEST(test_zoo_round_trip) {
  walk_zoo(CREMA_TEST_DATA "/zoo");
  ck_assert_int_ge(zoo_files, 40);
  ck_assert_int_ge(zoo_nets, 15);
  ck_assert_int_ge(zoo_solvers, 15);
}
END_TEST

START_TEST(test_zoo_values) {
  Crema__NetParameter *net = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_read_net_param(CREMA_TEST_DATA "/zoo/bvlc_alexnet/train_val.prototxt", &net, &err),
                   0);
  ck_assert_str_eq(net->name, "AlexNet");
  ck_assert_uint_eq(net->n_layer, 26);
  const Crema__LayerParameter *conv1 = net->layer[2];
  ck_assert_str_eq(conv1->name, "conv1");
  ck_assert_str_eq(conv1->type, "Convolution");
  ck_assert_uint_eq(conv1->convolution_param->num_output, 96);
  ck_assert_uint_eq(conv1->convolution_param->n_kernel_size, 1);
  ck_assert_uint_eq(conv1->convolution_param->kernel_size[0], 11);
  ck_assert_str_eq(conv1->convolution_param->weight_filler->type, "gaussian");
  ck_assert_float_eq(conv1->convolution_param->weight_filler->std, 0.01f);
  ck_assert_uint_eq(conv1->n_param, 2);
  ck_assert_float_eq(conv1->param[1]->lr_mult, 2.0f);
  ck_assert_float_eq(conv1->param[1]->decay_mult, 0.0f);
  ck_assert_int_eq(net->layer[0]->include[0]->phase, CREMA__PHASE__TRAIN);
  ck_assert_int_eq(net->layer[0]->data_param->backend, CREMA__DATA_PARAMETER__DB__LMDB);
  crema_message_free(net);

  Crema__SolverParameter *s = NULL;
  ck_assert_int_eq(crema_read_solver_param(CREMA_TEST_DATA "/zoo/mnist/lenet_solver_adam.prototxt", &s, &err),
                   0);
  ck_assert_str_eq(s->type, "Adam");
  ck_assert_float_eq(s->momentum2, 0.999f);
  ck_assert_int_eq(s->solver_mode, CREMA__SOLVER_PARAMETER__SOLVER_MODE__GPU);
  ck_assert_str_eq(s->snapshot_prefix, "examples/mnist/lenet");
  crema_message_free(s);
}
END_TEST

START_TEST(test_syntax) {
  Crema__NetParameter *net =
      test_net_param("# a comment\n"
                     "name: 'n' \"et\" 'x'  # adjacent strings concatenate\n"
                     "force_backward: True\n"
                     "layer <\n"
                     "  name: \"a\\tb\\n\\\"q\\\"\\'\\\\\\101\\x42\\0\" type: 'Conv'\n"
                     "  bottom: [\"x\", 'y'] top: \"z\"; loss_weight: [1, .5, 5., 1f, 2e-3]\n"
                     "  propagate_down: [t, f, 1, 0, false, False, true]\n"
                     "  convolution_param: { num_output: 0x10 pad: 010 group: 3,\n"
                     "    weight_filler { type: \"xavier\" std: 1 } engine: 1 }\n"
                     "  pooling_param { pool: AVE }\n"
                     "  exp_param { base: -inf scale: nan shift: -infinity }\n"
                     "  param { lr_mult: -1E+2 } param: [{ name: 'p' }, <decay_mult: 3>]\n"
                     ">\n"
                     "layer {} layer: [] state { phase: TRAIN stage: [] }\n");
  ck_assert_str_eq(net->name, "netx");
  ck_assert(net->has_force_backward && net->force_backward);
  ck_assert_uint_eq(net->n_layer, 2);
  const Crema__LayerParameter *l = net->layer[0];
  ck_assert_str_eq(l->name, "a\tb\n\"q\"'\\AB"); /* the \\0 escape ends the C string */
  ck_assert_str_eq(l->type, "Conv");
  ck_assert_uint_eq(l->n_bottom, 2);
  ck_assert_str_eq(l->bottom[1], "y");
  ck_assert_uint_eq(l->n_loss_weight, 5);
  ck_assert_float_eq(l->loss_weight[1], 0.5f);
  ck_assert_float_eq(l->loss_weight[2], 5.0f);
  ck_assert_float_eq(l->loss_weight[3], 1.0f);
  ck_assert_float_eq(l->loss_weight[4], 2e-3f);
  ck_assert_uint_eq(l->n_propagate_down, 7);
  const int want_pd[7] = {1, 0, 1, 0, 0, 0, 1};
  for (int i = 0; i < 7; i++) ck_assert_int_eq(l->propagate_down[i], want_pd[i]);
  ck_assert_uint_eq(l->convolution_param->num_output, 16);
  ck_assert_uint_eq(l->convolution_param->pad[0], 8);
  ck_assert_uint_eq(l->convolution_param->group, 3);
  ck_assert_int_eq(l->convolution_param->engine, CREMA__CONVOLUTION_PARAMETER__ENGINE__CAFFE);
  ck_assert_float_eq(l->convolution_param->weight_filler->std, 1.0f);
  ck_assert_int_eq(l->pooling_param->pool, CREMA__POOLING_PARAMETER__POOL_METHOD__AVE);
  ck_assert(l->exp_param->has_base_ && isinf(l->exp_param->base_) && l->exp_param->base_ < 0);
  ck_assert(isnan(l->exp_param->scale));
  ck_assert(isinf(l->exp_param->shift) && l->exp_param->shift < 0);
  ck_assert_uint_eq(l->n_param, 3);
  ck_assert_float_eq(l->param[0]->lr_mult, -100.0f);
  ck_assert_str_eq(l->param[1]->name, "p");
  ck_assert_float_eq(l->param[2]->decay_mult, 3.0f);
  ck_assert_ptr_nonnull(net->layer[1]);
  ck_assert_int_eq(net->state->phase, CREMA__PHASE__TRAIN);
  check_round_trip(&net->base, "syntax");
  crema_message_free(net);
}
END_TEST

START_TEST(test_base_alias_and_printing) {
  Crema__LayerParameter *l = test_layer_param("name: \"e\" type: \"Exp\" exp_param { base: 2 scale: 0.5 }\n"
                                              "log_param { base: 10 }");
  ck_assert_float_eq(l->exp_param->base_, 2.0f);
  ck_assert_float_eq(l->log_param->base_, 10.0f);
  char *text = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_text_print(&l->base, &text, &err), 0);
  ck_assert_ptr_nonnull(strstr(text, "exp_param {\n  base: 2\n  scale: 0.5\n}\n"));
  ck_assert_ptr_null(strstr(text, "base_"));
  free(text);
  crema_message_free(l);

  /* Caffe's layout: layer blocks indented by 2, fields in field-number order. */
  Crema__NetParameter *net =
      test_net_param("layer { top: 'b' name: 'a' convolution_param { kernel_size: 3 } }");
  ck_assert_int_eq(crema_text_print(&net->base, &text, &err), 0);
  ck_assert_str_eq(
      text, "layer {\n  name: \"a\"\n  top: \"b\"\n  convolution_param {\n    kernel_size: 3\n  }\n}\n");
  free(text);
  crema_message_free(net);

  /* A string field given its default value is still printed (it was set). */
  Crema__FillerParameter *f = (Crema__FillerParameter *)test_message(&crema__filler_parameter__descriptor,
                                                                     "type: \"constant\" value: 0");
  ck_assert_int_eq(crema_text_print(&f->base, &text, &err), 0);
  ck_assert_str_eq(text, "type: \"constant\"\nvalue: 0\n");
  free(text);
  crema_message_free(f);
}
END_TEST

START_TEST(test_strings_and_bytes_round_trip) {
  Crema__Datum *d = malloc(sizeof *d);
  crema__datum__init(d);
  uint8_t bytes[256];
  for (int i = 0; i < 256; i++) bytes[i] = (uint8_t)(255 - i);
  d->has_data = 1;
  d->data.len = sizeof bytes;
  d->data.data = malloc(sizeof bytes);
  memcpy(d->data.data, bytes, sizeof bytes);
  check_round_trip(&d->base, "bytes");
  char *text = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_text_print(&d->base, &text, &err), 0);
  ProtobufCMessage *m = NULL;
  ck_assert_int_eq(crema_text_parse(&crema__datum__descriptor, text, strlen(text), "t", &m, &err), 0);
  const Crema__Datum *back = (const Crema__Datum *)m;
  ck_assert_uint_eq(back->data.len, 256);
  ck_assert_int_eq(memcmp(back->data.data, bytes, 256), 0);
  crema_message_free(m);
  free(text);
  crema_message_free(d);

  Crema__NetParameter *net = test_net_param("name: \"caf\\303\\251 \\\"x\\\" \\\\ \\001\\n7\"");
  ck_assert_str_eq(net->name, "caf\xc3\xa9 \"x\" \\ \001\n7");
  check_round_trip(&net->base, "string escapes");
  crema_message_free(net);
}
END_TEST

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

START_TEST(test_float_printing_bit_exact) {
  enum { N = 20000 };
  Crema__BlobProto *b = malloc(sizeof *b);
  crema__blob_proto__init(b);
  b->data = malloc(N * sizeof(float));
  b->double_data = malloc(N * sizeof(double));
  b->n_data = N;
  b->n_double_data = N;
  uint64_t x = 88172645463325252ull;
  const float special[] = {0.0f,        -0.0f,           INFINITY,        -INFINITY,      1e-45f,
                           -1e-45f,     1.17549421e-38f, 1.17549435e-38f, 3.40282347e38f, 0.1f,
                           1.0f / 3.0f, 16777217.0f,     1e-4f,           0.00390625f};
  const size_t n_special = sizeof special / sizeof special[0];
  for (size_t i = 0; i < N; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint32_t u = (uint32_t)x;
    if (i % 4 == 1) u &= 0x807fffffu;                    /* denormals */
    if (i % 4 == 2) u = (u & 0x80ffffffu) | 0x3c000000u; /* ordinary magnitudes */
    float f;
    memcpy(&f, &u, sizeof f);
    if (isnan(f)) f = 1.5f;
    if (i < n_special) f = special[i];
    b->data[i] = f;
    double dv;
    memcpy(&dv, &x, sizeof dv);
    b->double_data[i] = isnan(dv) ? 0.25 : dv;
  }
  char *text = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_text_print(&b->base, &text, &err), 0);
  ProtobufCMessage *m = NULL;
  ck_assert_int_eq(crema_text_parse(&crema__blob_proto__descriptor, text, strlen(text), "f", &m, &err), 0);
  const Crema__BlobProto *back = (const Crema__BlobProto *)m;
  ck_assert_uint_eq(back->n_data, N);
  for (size_t i = 0; i < N; i++) {
    ck_assert_msg(float_bits(back->data[i]) == float_bits(b->data[i]), "float %zu: %a printed, read back %a",
                  i, (double)b->data[i], (double)back->data[i]);
    ck_assert_msg(!memcmp(&back->double_data[i], &b->double_data[i], sizeof(double)), "double %zu differs",
                  i);
  }
  crema_message_free(m);
  free(text);
  crema_message_free(b);

  char buf[32];
  ck_assert_str_eq(crema_format_float(0.1f, buf, sizeof buf), "0.1");
  ck_assert_str_eq(crema_format_float(-0.0f, buf, sizeof buf), "-0");
  ck_assert_str_eq(crema_format_float(NAN, buf, sizeof buf), "nan");
  ck_assert_str_eq(crema_format_float(-INFINITY, buf, sizeof buf), "-inf");
  ck_assert_str_eq(crema_format_float(1e-4f, buf, sizeof buf), "0.0001");
  ck_assert_str_eq(crema_format_double(0.1, buf, sizeof buf), "0.1");
  /* protobuf's printer: 6 significant digits when they read back exactly, else 9 (never 7
   * or 8): Caffe writes the scale 1/255 as 0.00392156839, not the shorter 0.0039215684. */
  ck_assert_str_eq(crema_format_float(0.0039215684f, buf, sizeof buf), "0.00392156839");
  ck_assert_str_eq(crema_format_float(1.234567f, buf, sizeof buf), "1.23456705");
  ck_assert_str_eq(crema_format_float(1e-8f, buf, sizeof buf), "1e-08");
  ck_assert_str_eq(crema_format_float(0.9f, buf, sizeof buf), "0.9");
  ck_assert_str_eq(crema_format_double(1.0 / 3.0, buf, sizeof buf), "0.33333333333333331");

  Crema__LayerParameter *l = test_layer_param("loss_weight: nan loss_weight: -nan");
  ck_assert(isnan(l->loss_weight[0]) && isnan(l->loss_weight[1]));
  crema_message_free(l);
}
END_TEST

START_TEST(test_integer_ranges) {
  Crema__SolverParameter *s = test_solver_param("random_seed: -9223372036854775808 max_iter: 2147483647 "
                                                "display: -2147483648 device_id: 0x7fffffff");
  ck_assert_int_eq(s->random_seed, INT64_MIN);
  ck_assert_int_eq(s->max_iter, INT32_MAX);
  ck_assert_int_eq(s->display, INT32_MIN);
  check_round_trip(&s->base, "int ranges");
  crema_message_free(s);
  Crema__SolverState *st = (Crema__SolverState *)test_message(
      &crema__solver_state__descriptor, "reader_position: 18446744073709551615 iter: 7");
  ck_assert_uint_eq(st->reader_position[0], UINT64_MAX);
  check_round_trip(&st->base, "uint64");
  crema_message_free(st);
}
END_TEST

typedef struct bad_case {
  const char *text;
  int line, col;
  const char *words[3];
} bad_case;

static const bad_case BAD[] = {
    {"name: 'x'\nlayer {\n  convolution_param { num_ouput: 3 }\n}",
     3,
     23,
     {"unknown field \"num_ouput\"", "convolution_param", "did you mean \"num_output\""}},
    {"layer { name: 'a' type: 3 }", 1, 25, {"expected a quoted string", "\"type\"", NULL}},
    {"layer { name: 'a' type: ReLU }",
     1,
     25,
     {"expected a quoted string", "\"ReLU\"", "strings need quotes"}},
    {"layer { pooling_param { pool: \"MAX\" } }",
     1,
     31,
     {"expected a value for field \"pool\"", "\"\"MAX\"\"", "enum names do not"}},
    {"layer { pooling_param { pool: MEAN } }",
     1,
     31,
     {"unknown value \"MEAN\"", "MAX, AVE, STOCHASTIC", NULL}},
    {"name: \"abc\nlayer {}", 1, 7, {"unterminated string", NULL, NULL}},
    {"layer {\n  name: 'a'\n", 3, 1, {"expected \"}\"", "end of file", NULL}},
    {"name: 'a'\nname: 'b'", 2, 1, {"non-repeated field \"name\"", "multiple times", NULL}},
    {"layer { convolution_param { num_output: 4294967296 } }",
     1,
     41,
     {"out of range", "uint32", "num_output"}},
    {"layer { convolution_param { axis: -2147483649 } }", 1, 35, {"out of range", "int32", NULL}},
    {"layer { convolution_param { num_output: -1 } }", 1, 41, {"negative value", "unsigned", NULL}},
    {"name: 'a' }", 1, 11, {"unexpected \"}\"", NULL, NULL}},
    {"name: 'a' 17", 1, 11, {"expected a field name", "\"17\"", NULL}},
    {"layer { name: }", 1, 15, {"expected a quoted string", "name", NULL}},
    {"force_backward: maybe", 1, 17, {"expected true or false", "maybe", NULL}},
    {"layer { loss_weight: 1.5.3 }", 1, 22, {"expected a number", "1.5.3", NULL}},
    {"layer { top 'x' }", 1, 13, {"expected \":\"", "top", NULL}},
    {"layer { name: 'x' 'y' param { lr_mult: 1e } }", 1, 40, {"expected a number", "lr_mult", NULL}},
    {"layer { bottom: ['a' 'b', }", 1, 27, {"expected a quoted string", NULL, NULL}},
    {"layer { name: 'a\\q' }", 1, 17, {"invalid escape", NULL, NULL}},
    {"debug_info: true\nlayer { convolution_param { kernel_size: 3 } kernel_size: 3 }",
     2,
     46,
     {"unknown field \"kernel_size\"", "layer", NULL}},
    {"layer { convolution_param { weight_filler: 3 } }", 1, 44, {"expected \"{\"", "weight_filler", NULL}},
};

START_TEST(test_errors) {
  const bad_case *c = &BAD[_i];
  ProtobufCMessage *m = (ProtobufCMessage *)0x1;
  crema_error err = {{0}};
  int rc =
      crema_text_parse(&crema__net_parameter__descriptor, c->text, strlen(c->text), "bad.prototxt", &m, &err);
  ck_assert_int_eq(rc, -1);
  ck_assert_ptr_null(m);
  char where[64];
  snprintf(where, sizeof where, "bad.prototxt:%d:%d: ", c->line, c->col);
  ck_assert_msg(!strncmp(err.msg, where, strlen(where)), "case %d: expected \"%s...\", got \"%s\"", _i, where,
                err.msg);
  for (int k = 0; k < 3 && c->words[k]; k++)
    ck_assert_msg(strstr(err.msg, c->words[k]) != NULL, "case %d: \"%s\" lacks \"%s\"", _i, err.msg,
                  c->words[k]);
}
END_TEST

START_TEST(test_large_input) {
  /* 100k layers (about 3 MB of text): the arrays grow correctly and size costs nothing special. */
  const size_t n = 100000;
  char *text = malloc(n * 40 + 1);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += (size_t)sprintf(text + k, "layer { name: 'l%zu' top: 't' }\n", i);
  ProtobufCMessage *m = NULL;
  crema_error err = {{0}};
  ck_assert_int_eq(crema_text_parse(&crema__net_parameter__descriptor, text, k, "big", &m, &err), 0);
  const Crema__NetParameter *net = (const Crema__NetParameter *)m;
  ck_assert_uint_eq(net->n_layer, n);
  ck_assert_str_eq(net->layer[n - 1]->name, "l99999");
  crema_message_free(m);
  free(text);
}
END_TEST

int main(void) {
  Suite *s = suite_create("textformat");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_zoo_round_trip);
  tcase_add_test(tc, test_zoo_values);
  tcase_add_test(tc, test_syntax);
  tcase_add_test(tc, test_base_alias_and_printing);
  tcase_add_test(tc, test_strings_and_bytes_round_trip);
  tcase_add_test(tc, test_float_printing_bit_exact);
  tcase_add_test(tc, test_integer_ranges);
  tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof BAD / sizeof BAD[0]));
  tcase_add_test(tc, test_large_input);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
