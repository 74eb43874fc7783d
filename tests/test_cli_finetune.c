/* `crema finetune` and `crema classify` end to end, on small image folders written here
 * (3 classes of 28x28 grey PNGs, told apart by which third of the image is bright), from the
 * real Caffe LeNet (models/lenet): a deploy base and a train_val base; --dry-run files that
 * parse back and build; freezing checked by weights that do not move; --caffe files free of
 * crema's fields; exact resume; bad folders; classify against `crema forward` on the same
 * preprocessed input, and its --json. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/npy.h"
#include "data/preprocess.h"
#include "data_test_util.h"
#include "net/net.h"
#include "proto/io.h"
#include "recipe/recipe.h"
#include "support/run.h"
#include "tensor/blob.h"

#define LENET CREMA_SOURCE_DIR "/models/lenet/lenet_mnist_deploy.prototxt"
#define LENET_W CREMA_SOURCE_DIR "/models/lenet/lenet_mnist_iter_10000.caffemodel"
#define COMMON "--scale 0.00390625 --mean none --batch 8 --seed 3"

static char dir[256];

static const char *const CLASSES[3] = {"bright top", "middle", "bottom"};

/* DIR/<class>/img<i>.png, n per class, plus a README that is not an image. */
static void make_folder(const char *root, int n) {
  mkdir(root, 0755);
  for (int c = 0; c < 3; c++) {
    char d[512];
    snprintf(d, sizeof d, "%s/%s", root, CLASSES[c]);
    ck_assert_int_eq(mkdir(d, 0755), 0);
    for (int i = 0; i < n; i++) {
      uint8_t *px = random_pixels(28, 28, 1, (uint64_t)(c * 100 + i));
      for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
          uint8_t *p = px + y * 28 + x;
          *p = (uint8_t)(*p / 5 + (y / 10 == c ? 180 : 0));
        }
      char path[600];
      snprintf(path, sizeof path, "%s/img%02d.png", d, i);
      write_png(path, 28, 28, 1, px);
      free(px);
    }
  }
  char readme[512];
  snprintf(readme, sizeof readme, "%s/%s/README.txt", root, CLASSES[0]);
  write_text(readme, "not an image");
}

static void setup(void) {
  tmp_dir(dir);
  char data[300];
  snprintf(data, sizeof data, "%s/data", dir);
  make_folder(data, 8);
}
static void teardown(void) { remove_tree(dir); }

/* Runs crema with the arguments (formatted), from `dir`; returns the status, output in *out. */
static int crema(char **out, const char *fmt, ...) CREMA_PRINTF(2, 3);
static int crema(char **out, const char *fmt, ...) {
  char args[3000], cmd[3400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "crema %s", args);
  char cwd[512];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(dir), 0);
  int st = run_tool(dir, cmd, out);
  ck_assert_int_eq(chdir(cwd), 0);
  return st;
}

/* Runs crema from `dir` with stdout into dir/<file> (stderr into dir/stderr.txt). */
static int crema_stdout(const char *file, const char *args) {
  char cmd[3400];
  snprintf(cmd, sizeof cmd, "cd '%s' && CREMA_NO_REEXEC=1 %s/crema %s > '%s' 2> stderr.txt", dir,
           CREMA_BIN_DIR, args, file);
  const int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool exists(const char *fmt, const char *run) {
  char p[600];
  snprintf(p, sizeof p, fmt, dir, run);
  return access(p, F_OK) == 0;
}

/* The first parameter blob of `layer` in a caffemodel (malloc'd copy), its count in *n. */
static float *weights_of(const char *path, const char *layer, size_t *n) {
  Crema__NetParameter *m;
  crema_error err;
  ck_assert_msg(
      crema_read_binary_message(path, &crema__net_parameter__descriptor, (ProtobufCMessage **)&m, &err) == 0,
      "%s", err.msg);
  float *out = NULL;
  for (size_t i = 0; i < m->n_layer; i++)
    if (!strcmp(m->layer[i]->name, layer) && m->layer[i]->n_blobs) {
      *n = m->layer[i]->blobs[0]->n_data;
      out = malloc(sizeof(float) * *n);
      memcpy(out, m->layer[i]->blobs[0]->data, sizeof(float) * *n);
    }
  crema_message_free(m);
  ck_assert_msg(out != NULL, "%s: no layer %s with weights", path, layer);
  return out;
}

static bool same_weights(const char *a, const char *b, const char *layer_a, const char *layer_b) {
  size_t na, nb;
  float *wa = weights_of(a, layer_a, &na), *wb = weights_of(b, layer_b, &nb);
  const bool same = na == nb && !memcmp(wa, wb, sizeof(float) * na);
  free(wa);
  free(wb);
  return same;
}

START_TEST(test_finetune_deploy_base_and_classify) {
  char *out;
  int st = crema(&out, "finetune --model " LENET " --weights " LENET_W " --data data --out run " COMMON
                       " --epochs 6 --lr 0.01 --train head");
  ck_assert_msg(st == 0, "%s", out);
  ck_assert_msg(strstr(out, "Best val accuracy") && strstr(out, "crema classify --run run"), "%s", out);
  ck_assert_msg(strstr(out, "Ignoring") && strstr(out, "README.txt"), "the non-image file is reported: %s",
                out);
  /* the log says what the recipe did */
  ck_assert_msg(strstr(out, "Head ip2 -> ip2_ft: num_output 3") && strstr(out, "Freezing layer conv1") &&
                    strstr(out, "Copying source layer conv1"),
                "%s", out);
  free(out);
  const char *files[] = {"labels.txt",          "train_val.prototxt", "solver.prototxt", "deploy.prototxt",
                         "preprocess.prototxt", "best.caffemodel",    "metrics.csv",     "train.log",
                         "mean.binaryproto",    "train_lmdb",         "val_lmdb"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char f[100];
    snprintf(f, sizeof f, "%%s/run/%s", files[i]);
    /* no mean with --mean none */
    ck_assert_msg(exists(f, "") == (strcmp(files[i], "mean.binaryproto") != 0), "%s", files[i]);
  }
  char p[600];
  snprintf(p, sizeof p, "%s/run/labels.txt", dir);
  char *labels = slurp(p, NULL);
  ck_assert_str_eq(labels, "bottom\nbright top\nmiddle\n");
  free(labels);
  /* --train head: conv1 and ip1 did not move, the new head did */
  snprintf(p, sizeof p, "%s/run/best.caffemodel", dir);
  ck_assert(same_weights(p, LENET_W, "conv1", "conv1"));
  ck_assert(same_weights(p, LENET_W, "ip1", "ip1"));
  char p0[600], p1[600];
  snprintf(p0, sizeof p0, "%s/run/snapshots/ft_iter_3.caffemodel", dir);
  snprintf(p1, sizeof p1, "%s/run/snapshots/ft_iter_18.caffemodel", dir);
  ck_assert(!same_weights(p1, p0, "ip2_ft", "ip2_ft"));
  ck_assert(same_weights(p1, p0, "conv2", "conv2"));
  /* the task is easy: the head alone learns it */
  ck_assert_int_eq(
      crema(&out, "classify --run run --json --top 3 data/middle/img00.png data/bottom/img01.png"), 0);
  ck_assert_msg(strstr(out, "\"label\": \"middle\"") != NULL, "%s", out);
  free(out);

  /* classify agrees with crema forward on the same preprocessed input */
  crema_preprocess *pp;
  crema_error err;
  snprintf(p, sizeof p, "%s/run/preprocess.prototxt", dir);
  ck_assert_msg(crema_preprocess_load(p, &pp, &err) == 0, "%s", err.msg);
  crema_blob *x = crema_blob_new();
  ck_assert_int_eq(crema_blob_reshape4(x, 1, 1, 28, 28, &err), 0);
  snprintf(p, sizeof p, "%s/data/middle/img03.png", dir);
  ck_assert_int_eq(crema_preprocess_file(pp, p, false, x->data, x->count, &err), 0);
  crema_preprocess_free(pp);
  snprintf(p, sizeof p, "%s/x.npy", dir);
  ck_assert_int_eq(crema_npy_write(p, x, &err), 0);
  ck_assert_int_eq(
      crema(&out, "forward --model run/deploy.prototxt --weights run/best.caffemodel --input data=x.npy "
                  "--output prob=prob.npy"),
      0);
  free(out);
  snprintf(p, sizeof p, "%s/prob.npy", dir);
  ck_assert_int_eq(crema_npy_read(p, x, &err), 0);
  ck_assert_int_eq((int)x->count, 3);
  ck_assert_int_eq(crema_stdout("json.txt", "classify --run run --json --top 3 data/middle/img03.png"), 0);
  /* parse it with Python's json and print index and probability of each entry */
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "python3 -c \"import json; d = json.loads(open('%s/json.txt').readline()); "
           "print(' '.join('%%d %%.9g' %% (t['index'], t['prob']) for t in d['top']))\" > %s/parsed.txt",
           dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(p, sizeof p, "%s/parsed.txt", dir);
  char *parsed = slurp(p, NULL);
  int idx[3];
  float prob[3];
  ck_assert_int_eq(
      sscanf(parsed, "%d %f %d %f %d %f", &idx[0], &prob[0], &idx[1], &prob[1], &idx[2], &prob[2]), 6);
  free(parsed);
  for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(prob[i], x->data[idx[i]], 1e-5);
  ck_assert(prob[0] >= prob[1] && prob[1] >= prob[2]);
  crema_blob_free(x);
  /* Caffe's classifier flags give the same as the stored preprocessing */
  ck_assert_int_eq(crema_stdout("json2.txt",
                                "classify --model run/deploy.prototxt --weights run/best.caffemodel "
                                "--labels run/labels.txt --input_scale 0.00390625 --json --top 3 "
                                "data/middle/img03.png"),
                   0);
  char p2[600];
  snprintf(p, sizeof p, "%s/json.txt", dir);
  snprintf(p2, sizeof p2, "%s/json2.txt", dir);
  char *j1 = slurp(p, NULL), *j2 = slurp(p2, NULL);
  ck_assert_str_eq(j1, j2);
  free(j1);
  free(j2);
  /* --list: one path per line, a trailing label ignored, blank lines skipped; batches of 1 */
  snprintf(p, sizeof p, "%s/list.txt", dir);
  write_text(p, "data/middle/img00.png 1\n\ndata/bright top/img01.png\n");
  ck_assert_int_eq(crema(&out, "classify --run run --list list.txt --top 1 --batch 1"), 0);
  ck_assert_msg(strstr(out, "data/middle/img00.png\n") && strstr(out, "data/bright top/img01.png\n"), "%s",
                out);
  free(out);
  /* an unreadable image is reported, the others still classified, status 1 */
  ck_assert_int_eq(crema(&out, "classify --run run nothing.png data/middle/img00.png"), 1);
  ck_assert_msg(strstr(out, "nothing.png") && strstr(out, "middle"), "%s", out);
  free(out);
}
END_TEST

/* --dry-run --caffe: the files parse back, build, and hold no crema-only field. */
START_TEST(test_dry_run_caffe_files) {
  char *out;
  /* no --mean: a deploy base gets the mean of the new images */
  int st =
      crema(&out, "finetune --model " LENET " --weights " LENET_W " --data data --out run --batch 8 --seed 3"
                  " --dry-run --caffe --freeze-through conv2 --val-split 0.25");
  ck_assert_msg(st == 0, "%s", out);
  ck_assert_msg(strstr(out, "crema train --solver solver.prototxt --weights"), "%s", out);
  free(out);
  ck_assert(!exists("%s/run/best.caffemodel", ""));
  ck_assert(exists("%s/run/mean.binaryproto", ""));
  /* preprocess.prototxt names the mean relative to itself, and loads from anywhere */
  char pre[600];
  snprintf(pre, sizeof pre, "%s/run/preprocess.prototxt", dir);
  char *pre_text = slurp(pre, NULL);
  ck_assert_msg(strstr(pre_text, "mean_file: \"mean.binaryproto\"") &&
                    strstr(pre_text, "resize_height: 28") && strstr(pre_text, "force_gray: true"),
                "%s", pre_text);
  free(pre_text);
  crema_preprocess *pp;
  crema_error perr;
  ck_assert_msg(crema_preprocess_load(pre, &pp, &perr) == 0, "%s", perr.msg);
  crema_preprocess_free(pp);
  char p[600];
  crema_error err;
  snprintf(p, sizeof p, "%s/run/solver.prototxt", dir);
  Crema__SolverParameter *s;
  ck_assert_int_eq(crema_read_solver_param(p, &s, &err), 0);
  ck_assert(!crema_recipe_has_crema_fields(&s->base, NULL, 0));
  ck_assert_str_eq(s->net, "train_val.prototxt");
  /* 3 x 8 images, 2 of each class held out: 18 train (3 iterations of 8 per epoch), 6 val */
  ck_assert_int_eq(s->test_interval, 3);
  ck_assert_int_eq(s->test_iter[0] * s->n_test_iter, 1);
  crema_message_free(s);
  const char *nets[] = {"train_val.prototxt", "deploy.prototxt"};
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof p, "%s/run/%s", dir, nets[k]);
    Crema__NetParameter *n;
    ck_assert_msg(crema_read_net_param(p, &n, &err) == 0, "%s", err.msg);
    char where[128] = "";
    ck_assert_msg(!crema_recipe_has_crema_fields(&n->base, where, sizeof where), "%s: %s", nets[k], where);
    crema_message_free(n);
  }
  /* they build: the deploy net anywhere, the train_val net from the run folder */
  snprintf(p, sizeof p, "%s/run", dir);
  ck_assert_int_eq(chdir(p), 0);
  for (int phase = 0; phase < 2; phase++) {
    crema_net_options no = {.phase = (Crema__Phase)phase, .seed = 1};
    crema_net *net;
    ck_assert_msg(crema_net_load("train_val.prototxt", &no, &net, &err) == 0, "%s", err.msg);
    const int i = crema_net_layer_index(net, "conv2");
    ck_assert_int_ge(i, 0);
    ck_assert_int_ge(crema_net_layer_index(net, "ip2_ft"), 0);
    crema_net_free(net);
  }
  crema_net_options no = {.phase = CREMA__PHASE__TEST, .seed = 1};
  crema_net *net;
  ck_assert_msg(crema_net_load("deploy.prototxt", &no, &net, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(crema_net_blob_by_name(net, "prob")->count, 3);
  crema_net_free(net);
  /* --freeze-through conv2 in the file */
  Crema__NetParameter *tv;
  ck_assert_int_eq(crema_read_net_param("train_val.prototxt", &tv, &err), 0);
  int frozen = 0;
  for (size_t i = 0; i < tv->n_layer; i++)
    for (size_t j = 0; j < tv->layer[i]->n_param; j++) frozen += tv->layer[i]->param[j]->lr_mult == 0;
  ck_assert_int_eq(frozen, 4); /* conv1, conv2: weights and bias */
  crema_message_free(tv);
}
END_TEST

/* Stopped after the second epoch's snapshot and resumed: the same weights as one run. */
START_TEST(test_resume_exact) {
  char *out;
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --weights " LENET_W " --data data --out a " COMMON
                               " --epochs 4 --schedule cosine --patience 10"),
                   0);
  free(out);
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --weights " LENET_W " --data data --out b " COMMON
                               " --epochs 4 --schedule cosine --patience 10"),
                   0);
  free(out);
  /* b "stopped" after iteration 6: later snapshots removed */
  char cmd[800];
  snprintf(cmd, sizeof cmd, "cd '%s/b/snapshots' && rm -f ft_iter_9.* ft_iter_12.* && ls > /dev/null", dir);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(crema(&out, "finetune --resume b"), 0);
  ck_assert_msg(strstr(out, "Resuming from b/snapshots/ft_iter_6.solverstate"), "%s", out);
  free(out);
  char pa[600], pb[600];
  snprintf(pa, sizeof pa, "%s/a/snapshots/ft_iter_12.caffemodel", dir);
  snprintf(pb, sizeof pb, "%s/b/snapshots/ft_iter_12.caffemodel", dir);
  size_t la, lb;
  char *fa = slurp(pa, &la), *fb = slurp(pb, &lb);
  ck_assert_ptr_nonnull(fa);
  ck_assert_ptr_nonnull(fb);
  ck_assert(la == lb && !memcmp(fa, fb, la));
  free(fa);
  free(fb);
  /* the whole base net learned (no freezing): conv1 moved */
  ck_assert(!same_weights(pa, LENET_W, "conv1", "conv1"));
  /* an existing run folder is refused */
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --data data --out a"), 1);
  ck_assert_msg(strstr(out, "\"a\" already exists") && strstr(out, "--resume"), "%s", out);
  free(out);
}
END_TEST

/* A train_val base (Caffe's MNIST example with its Data layers) and list-file input. */
START_TEST(test_train_val_base_and_lists) {
  char *out, p[600];
  /* list files relative to a root */
  snprintf(p, sizeof p, "%s/train.txt", dir);
  write_text(p, "middle/img00.png 1\nmiddle/img01.png 1\nbottom/img00.png 0\nbottom/img01.png 0\n"
                "bright top/img00.png 2\nbright top/img01.png 2\n");
  snprintf(p, sizeof p, "%s/val.txt", dir);
  write_text(p, "middle/img02.png 1\nbottom/img02.png 0\nbright top/img02.png 2\n");
  int st = crema(&out,
                 "finetune --model " CREMA_TEST_DATA "/zoo/mnist/lenet_train_test.prototxt --weights " LENET_W
                 " --train-list train.txt --val-list val.txt --root data --out run --gray --resize 28 "
                 "--batch 3 --epochs 2");
  ck_assert_msg(st == 0, "%s", out);
  ck_assert_msg(strstr(out, "3 classes, 6 training / 3 validation images"), "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/run/train_val.prototxt", dir);
  Crema__NetParameter *tv;
  crema_error err;
  ck_assert_int_eq(crema_read_net_param(p, &tv, &err), 0);
  /* the base's own scale is kept, its MNIST sources replaced */
  ck_assert_float_eq(tv->layer[0]->transform_param->scale, 0.00390625f);
  /* the base had no mean: none is added */
  ck_assert_ptr_null(tv->layer[0]->transform_param->mean_file);
  ck_assert(!exists("%s/run/mean.binaryproto%s", ""));
  ck_assert_str_eq(tv->layer[0]->data_param->source, "train_lmdb");
  bool head = false;
  for (size_t i = 0; i < tv->n_layer; i++) head |= !strcmp(tv->layer[i]->name, "ip2_ft");
  ck_assert(head);
  crema_message_free(tv);
  snprintf(p, sizeof p, "%s/run/labels.txt", dir);
  char *labels = slurp(p, NULL);
  ck_assert_str_eq(labels, "0\n1\n2\n");
  free(labels);
  /* a base solver adapted: Adam kept, base_lr x 0.1, the nets and iterations replaced */
  st = crema(&out,
             "finetune --model " LENET " --weights " LENET_W " --train-list train.txt --val-list val.txt "
             "--root data --out run2 --solver " CREMA_TEST_DATA "/zoo/mnist/lenet_solver_adam.prototxt "
             "--dry-run --batch 3 --epochs 2");
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/run2/solver.prototxt", dir);
  Crema__SolverParameter *s;
  ck_assert_int_eq(crema_read_solver_param(p, &s, &err), 0);
  ck_assert_str_eq(s->type, "Adam");
  ck_assert_float_eq_tol(s->base_lr, 0.0001f, 1e-9);
  ck_assert_str_eq(s->net, "train_val.prototxt");
  ck_assert_int_eq(s->max_iter, 4);
  ck_assert_int_eq(s->test_interval, 2);
  crema_message_free(s);
}
END_TEST

/* A colour net with a crop (CIFAR-10 quick, random base weights from crema forward):
 * resize + crop + mirror in the files, the mean of the new images, and classify's
 * --oversample averaging Caffe's 10 crops. */
START_TEST(test_colour_crop_oversample) {
  char p[600], *out;
  snprintf(p, sizeof p, "%s/colour", dir);
  mkdir(p, 0755);
  for (int c = 0; c < 2; c++) {
    snprintf(p, sizeof p, "%s/colour/class%d", dir, c);
    mkdir(p, 0755);
    for (int i = 0; i < 5; i++) {
      uint8_t *px = random_pixels(40, 44, 3, (uint64_t)(c * 10 + i));
      for (int k = 0; k < 40 * 44; k++) px[3 * k + c] = (uint8_t)(px[3 * k + c] / 2 + 128); /* red or green */
      char f[700];
      snprintf(f, sizeof f, "%s/img%d.png", p, i);
      write_png(f, 40, 44, 3, px);
      free(px);
    }
  }
  ck_assert_int_eq(crema(&out, "forward --model " CREMA_TEST_DATA "/zoo/cifar10/cifar10_quick.prototxt "
                               "--random-weights --save-weights base.caffemodel"),
                   0);
  free(out);
  int st = crema(&out,
                 "finetune --model " CREMA_TEST_DATA "/zoo/cifar10/cifar10_quick.prototxt --weights "
                 "base.caffemodel --data colour --out run --resize 36 --crop 32 --batch 4 --epochs 2 --scale "
                 "0.01 --val-split 0.4");
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/run/train_val.prototxt", dir);
  Crema__NetParameter *tv;
  crema_error err;
  ck_assert_int_eq(crema_read_net_param(p, &tv, &err), 0);
  const Crema__TransformationParameter *t = tv->layer[0]->transform_param;
  ck_assert_uint_eq(t->crop_size, 32);
  ck_assert(t->mirror); /* colour nets mirror by default, in TRAIN only */
  ck_assert(!tv->layer[1]->transform_param->mirror);
  ck_assert_str_eq(t->mean_file, "mean.binaryproto");
  crema_message_free(tv);
  snprintf(p, sizeof p, "%s/run/deploy.prototxt", dir);
  char *dep = slurp(p, NULL);
  ck_assert_msg(strstr(dep, "dim: 1\n      dim: 3\n      dim: 32\n      dim: 32"), "%s", dep);
  free(dep);
  /* oversampled probabilities: 2 classes that sum to 1, and differ from the centre crop's */
  ck_assert_int_eq(crema_stdout("o.txt", "classify --run run --json --oversample colour/class0/img0.png"), 0);
  ck_assert_int_eq(crema_stdout("c.txt", "classify --run run --json colour/class0/img0.png"), 0);
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && python3 -c \"import json; o = json.loads(open('o.txt').readline()); c = json.loads("
           "open('c.txt').readline()); so = sum(t['prob'] for t in o['top']); sc = sum(t['prob'] for t in "
           "c['top']); "
           "assert abs(so - 1) < 1e-4 and abs(sc - 1) < 1e-4, (so, sc); assert len(o['top']) == 2; "
           "assert o['top'] != c['top'], o\"",
           dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* On a terminal (a pty from util-linux's `script`): the one-line progress display, while the
 * full log goes to RUN_DIR/train.log only. */
START_TEST(test_terminal_progress) {
  if (system("command -v script > /dev/null 2>&1") != 0) return; /* no pty helper here */
  char cmd[1500], p[600];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && CREMA_NO_REEXEC=1 script -qec \"%s/crema finetune --model " LENET " --weights " LENET_W
           " --data data --out run " COMMON " --epochs 3\" /dev/null > tty.txt 2>&1",
           dir, CREMA_BIN_DIR);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(p, sizeof p, "%s/tty.txt", dir);
  char *tty = slurp(p, NULL);
  ck_assert_msg(strstr(tty, "\r\033[Kiter ") && strstr(tty, "/9  epoch ") && strstr(tty, "img/s") &&
                    strstr(tty, "ETA") && strstr(tty, "Best val accuracy"),
                "%s", tty);
  ck_assert_msg(!strstr(tty, "solver.c"), "INFO lines stay out of the terminal: %s", tty);
  free(tty);
  snprintf(p, sizeof p, "%s/run/train.log", dir);
  char *log = slurp(p, NULL);
  ck_assert_msg(strstr(log, "Iteration 9, Testing net") && strstr(log, "Head ip2 -> ip2_ft"), "%s", log);
  free(log);
}
END_TEST

/* Ctrl-C: a snapshot, a message saying how to resume, exit status 0. */
START_TEST(test_sigint_snapshots) {
  char cmd[1500], p[600];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && (CREMA_NO_REEXEC=1 %s/crema finetune --model " LENET " --weights " LENET_W
           " --data data --out run " COMMON " --epochs 1000 > out.txt 2>&1 & echo $! > pid.txt)",
           dir, CREMA_BIN_DIR);
  ck_assert_int_eq(system(cmd), 0);
  /* wait until training runs: up to 180 s, for a loaded machine under the sanitizers */
  snprintf(p, sizeof p, "%s/run/train.log", dir);
  bool training = false;
  for (int i = 0; i < 1800 && !training; i++) {
    char *log = slurp(p, NULL);
    training = log && strstr(log, "Iteration 6,");
    free(log);
    if (!training) {
      const struct timespec ts = {0, 100000000};
      nanosleep(&ts, NULL);
    }
  }
  if (!training) { /* stop the run and say what it printed: the last 2000 characters */
    snprintf(cmd, sizeof cmd, "cd '%s' && kill $(cat pid.txt)", dir);
    ck_assert_int_ne(system(cmd), -1);
    snprintf(p, sizeof p, "%s/out.txt", dir);
    char *out = slurp(p, NULL);
    const size_t len = out ? strlen(out) : 0;
    ck_abort_msg("training did not start; its output: %s",
                 out ? out + (len > 2000 ? len - 2000 : 0) : "(none)");
  }
  snprintf(
      cmd, sizeof cmd,
      "cd '%s' && kill -INT $(cat pid.txt) && while kill -0 $(cat pid.txt) 2>/dev/null; do sleep 0.1; done",
      dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(p, sizeof p, "%s/out.txt", dir);
  char *out = slurp(p, NULL);
  /* on failure the output's last 2000 characters: Check cannot report a longer message */
  const size_t len = strlen(out);
  ck_assert_msg(strstr(out, "Interrupted at iteration") && strstr(out, "crema finetune --resume run"), "%s",
                out + (len > 2000 ? len - 2000 : 0));
  int iter = -1;
  sscanf(strstr(out, "Interrupted at iteration") + strlen("Interrupted at iteration"), "%d", &iter);
  free(out);
  ck_assert_int_gt(iter, 0);
  char snap[64];
  snprintf(snap, sizeof snap, "%%s/run/snapshots/ft_iter_%d.solverstate%%s", iter);
  ck_assert(exists(snap, ""));
}
END_TEST

START_TEST(test_bad_folders) {
  char *out, p[600];
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --data nowhere --out run"), 1);
  ck_assert_msg(strstr(out, "nowhere"), "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/empty", dir);
  mkdir(p, 0755);
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --data empty --out run"), 1);
  ck_assert_msg(strstr(out, "empty\" has no class folders"), "%s", out);
  free(out);
  snprintf(p, sizeof p, "%s/data/no images", dir);
  mkdir(p, 0755);
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --data data --out run"), 1);
  ck_assert_msg(strstr(out, "data/no images\" has no images"), "%s", out);
  free(out);
  /* nothing was left behind: no run folder, no partial one */
  snprintf(p, sizeof p, "ls -a '%s' | grep -c run > '%s/count.txt'", dir, dir);
  ck_assert_int_ne(system(p), -1);
  snprintf(p, sizeof p, "%s/count.txt", dir);
  char *count = slurp(p, NULL);
  ck_assert_str_eq(count, "0\n");
  free(count);
  /* a head that does not exist */
  snprintf(p, sizeof p, "rm -r '%s/data/no images'", dir);
  ck_assert_int_eq(system(p), 0);
  ck_assert_int_eq(crema(&out, "finetune --model " LENET " --data data --out run --head fc9"), 1);
  ck_assert_msg(strstr(out, "fc9"), "%s", out);
  free(out);
  ck_assert(!exists("%s/run%s", ""));
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli_finetune");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_finetune_deploy_base_and_classify);
  tcase_add_test(tc, test_dry_run_caffe_files);
  tcase_add_test(tc, test_resume_exact);
  tcase_add_test(tc, test_train_val_base_and_lists);
  tcase_add_test(tc, test_colour_crop_oversample);
  tcase_add_test(tc, test_terminal_progress);
  tcase_add_test(tc, test_sigint_snapshots);
  tcase_add_test(tc, test_bad_folders);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
